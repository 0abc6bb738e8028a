/**
 * Declarations of the optimizer kernels: one fused kernel per optimizer over the flat parameter
 * buffer. Values that change from step to step (the learning rate, Adam's bias corrections) are
 * read from a small storage buffer `hyper` that the host rewrites when they change, so a
 * learning-rate schedule creates no uniforms; the constant hyper-parameters stay uniforms.
 */
import { kernel } from "../src/gpu/kernel.ts";

/**
 * The WGSL helper of the exempt kernels: whether flat index `flat` lies in one of the
 * `p.ranges` pairs [lo, hi) of `exempt`, the parameters that take no weight decay (Cui et al.
 * do not decay the sigmoid classifier's bias).
 */
const DECAY_EXEMPT = `
fn decayExempt(flat: u32) -> bool {
  for (var r = 0u; r < p.ranges; r++) {
    if (flat >= exempt[2u * r] && flat < exempt[2u * r + 1u]) { return true; }
  }
  return false;
}`;

/** The storage binding of the exempt ranges, bound after the kernel's own. */
const EXEMPT_STORAGE = ["exempt", "read", "array<u32>"] as const;

/**
 * The body of the SGD kernels: the WGSL `decays` runs first; `wd` is the weight decay of
 * element i (an expression).
 */
function sgdMain(decays: string, wd: string): string {
  return `
    let i = flatIndex(gid, nwg);
    if (i >= p.n) { return; }${decays}
    let lr = hyper[0];
    let gi = g[i] + ${wd} * param[i];
    let b = p.momentum * buf[i] + gi;
    buf[i] = b;
    let d = select(b, gi + p.momentum * b, p.nesterov == 1u);
    param[i] = param[i] - lr * d;`;
}

/** The storage bindings of the SGD kernels (the exempt one adds its ranges). */
const sgdStorage = [["g", "read"], ["param", "write"], ["buf", "write"], [
  "hyper",
  "read",
]] as const;

/** The uniforms of the SGD kernels (the exempt one adds its ranges and base). */
const sgdUniforms = [["n", "u32"], ["nesterov", "u32"], ["momentum", "f32"], [
  "wd",
  "f32",
]] as const;

/**
 * Fused SGD (PyTorch semantics, dampening 0), hyper = [lr]:
 * g' = g + wd * p; buf = momentum * buf + g'; d = nesterov ? g' + momentum * buf : buf;
 * p -= lr * d.
 */
export const sgdKernel = kernel({
  name: "sgd",
  storage: sgdStorage,
  uniforms: sgdUniforms,
  workgroupSize: 256,
  main: sgdMain("", "p.wd"),
});

/**
 * {@linkcode sgdKernel} with parameters exempt from weight decay: `exempt` holds `ranges` pairs
 * [lo, hi) of flat indices whose decay is 0; every other index computes exactly what sgdKernel
 * computes. `base` is the flat index of the bound views' first float (0 for the whole buffer;
 * a sub-range's start when only part of the parameters is updated). A variant of its own, so
 * runs without exemptions keep sgdKernel's code and bits.
 */
export const sgdExemptKernel = kernel({
  name: "sgd_exempt",
  storage: [...sgdStorage, EXEMPT_STORAGE],
  uniforms: [...sgdUniforms, ["ranges", "u32"], ["base", "u32"]],
  workgroupSize: 256,
  helpers: DECAY_EXEMPT,
  main: sgdMain(
    `
    let wd = select(p.wd, 0.0, decayExempt(p.base + i));`,
    "wd",
  ),
});

/**
 * The body of the Adam kernels: the WGSL `decays` runs first; `wd` is the coupled decay and
 * `shrink` the decoupled factor (1 - lr * wd) of element i (expressions).
 */
function adamMain(decays: string, wd: string, shrink: string): string {
  return `
    let i = flatIndex(gid, nwg);
    if (i >= p.n) { return; }${decays}
    let coupled = p.decoupled == 0u;
    var w = param[i];
    let gi = select(g[i], g[i] + ${wd} * w, coupled);
    w = select(w * ${shrink}, w, coupled);
    let mi = p.beta1 * m[i] + p.omb1 * gi;
    let vi = p.beta2 * v[i] + p.omb2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    param[i] = w - hyper[0] * mi / (sqrt(vi) / hyper[1] + p.eps);`;
}

/** The storage bindings of the Adam kernels (the exempt one adds its ranges). */
const adamStorage = [
  ["g", "read"],
  ["param", "write"],
  ["m", "write"],
  ["v", "write"],
  ["hyper", "read"],
] as const;

/** The uniforms of the Adam kernels. */
const adamUniforms = [
  ["n", "u32"],
  ["decoupled", "u32"],
  ["beta1", "f32"],
  ["beta2", "f32"],
  ["omb1", "f32"],
  ["omb2", "f32"],
  ["eps", "f32"],
  ["wd", "f32"],
] as const;

/**
 * Fused Adam / AdamW (PyTorch semantics), hyper = [lr / (1 - beta1^t), sqrt(1 - beta2^t),
 * 1 - lr * wd]: Adam adds wd * p to the gradient, AdamW (decoupled) scales p by 1 - lr * wd;
 * m = beta1 m + (1 - beta1) g; v = beta2 v + (1 - beta2) g^2 (1 - beta as its own f32, computed
 * in float64 as PyTorch does: 1 - f32(0.999) would be off by 1e-5);
 * p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps).
 */
export const adamKernel = kernel({
  name: "adam",
  storage: adamStorage,
  uniforms: adamUniforms,
  workgroupSize: 256,
  main: adamMain("", "p.wd", "hyper[2]"),
});

/**
 * {@linkcode adamKernel} with parameters exempt from weight decay, as
 * {@linkcode sgdExemptKernel}: the `ranges` pairs [lo, hi) of flat indices in `exempt` take
 * neither the coupled decay nor the decoupled shrink; every other index computes exactly what
 * adamKernel computes. Adam always updates the whole buffer, so the ranges are read against
 * index 0.
 */
export const adamExemptKernel = kernel({
  name: "adam_exempt",
  storage: [...adamStorage, EXEMPT_STORAGE],
  uniforms: [...adamUniforms, ["ranges", "u32"]],
  workgroupSize: 256,
  helpers: DECAY_EXEMPT,
  main: adamMain(
    `
    let exempted = decayExempt(i);
    let wd = select(p.wd, 0.0, exempted);
    let shrink = select(hyper[2], 1.0, exempted);`,
    "wd",
    "shrink",
  ),
});
