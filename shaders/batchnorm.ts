/**
 * Declarations of batchnorm2d (NCHW). One workgroup per channel reduces its N*H*W values with a
 * fixed strided split and a fixed tree, so the statistics are bit-identical run to run.
 *
 * stats:    mean, invstd (biased variance, two passes for accuracy) and, when p.update is 1,
 *           running_mean/var <- (1-m) * running + m * batch (unbiased variance, as PyTorch).
 * sums:     per channel s1 = sum(a), s2 = sum(a * xhat): with a = dy these are dbeta and dgamma,
 *           with a = x' they are what the JVP needs.
 * apply:    y = gamma * xhat + beta (optionally fused relu).
 * backward / jvp share one form:
 *           out = gamma * invstd * (a - s1/M - xhat * s2/M)   (train mode; eval drops the sums)
 *           jvp adds gamma' * xhat + beta'.
 *
 * Every kernel takes the same uniform fields, so one uniform buffer serves a whole call.
 */
import { kernel, type KernelDecl, kernelFamily, type StorageDecl } from "../src/gpu/kernel.ts";

const WG = 256;

const REDUCE = `
var<workgroup> red1: array<f32, ${WG}>;
var<workgroup> red2: array<f32, ${WG}>;
fn reduce2(t: u32) {
  for (var s = ${WG / 2}u; s > 0u; s = s >> 1u) {
    workgroupBarrier();
    if (t < s) { red1[t] += red1[t + s]; red2[t] += red2[t + s]; }
  }
  workgroupBarrier();
}
fn at(c: u32, i: u32) -> u32 { return ((i / p.HW) * p.C + c) * p.HW + i % p.HW; }
`;

/** Uniform fields of every batchnorm kernel. */
const UNIFORMS = [
  ["N", "u32"],
  ["C", "u32"],
  ["HW", "u32"],
  ["update", "u32"],
  ["eps", "f32"],
  ["momentum", "f32"],
] as const;

/**
 * A per-channel reduction: one workgroup per channel `c`, thread `t` of it, over the
 * `M = N * HW` values of the channel (read through `at(c, i)`).
 */
function channelReduction(name: string, storage: StorageDecl[], body: string) {
  return kernel({
    name,
    storage,
    uniforms: UNIFORMS,
    workgroupSize: WG,
    helpers: REDUCE,
    main: `
      let c = wid.x;
      let t = lid.x;
      let M = p.N * p.HW;
      ${body}`,
  });
}

/** Statistics (+ optional running-stat update). */
export const bnStatsKernel = channelReduction(
  "bn:stats",
  [["x", "read"], ["stats", "write"], ["rmean", "write"], ["rvar", "write"]],
  `var s = 0.0;
    for (var i = t; i < M; i += ${WG}u) { s += x[at(c, i)]; }
    red1[t] = s; red2[t] = 0.0;
    reduce2(t);
    let mean = red1[0] / f32(M);
    workgroupBarrier();
    var q = 0.0;
    for (var i = t; i < M; i += ${WG}u) { let d = x[at(c, i)] - mean; q += d * d; }
    red1[t] = q;
    reduce2(t);
    if (t == 0u) {
      let variance = red1[0] / f32(M);
      stats[c] = mean;
      stats[p.C + c] = inverseSqrt(variance + p.eps);
      if (p.update == 1u) {
        let unbiased = variance * f32(M) / f32(max(M, 2u) - 1u);
        rmean[c] = (1.0 - p.momentum) * rmean[c] + p.momentum * mean;
        rvar[c] = (1.0 - p.momentum) * rvar[c] + p.momentum * unbiased;
      }
    }`,
);

/** Eval-mode statistics from the running ones: stats = [running_mean, 1/sqrt(running_var+eps)]. */
export const bnEvalStatsKernel = kernel({
  name: "bn:eval-stats",
  storage: [["rmean", "read"], ["rvar", "read"], ["stats", "write"]],
  uniforms: UNIFORMS,
  workgroupSize: 64,
  main: `
    let c = gid.x;
    if (c >= p.C) { return; }
    stats[c] = rmean[c];
    stats[p.C + c] = inverseSqrt(rvar[c] + p.eps);`,
});

/** Per-channel s1 = sum(a), s2 = sum(a * xhat) into sums[2C]. */
export const bnSumsKernel = channelReduction(
  "bn:sums",
  [["a", "read"], ["x", "read"], ["stats", "read"], ["sums", "write"]],
  `let mean = stats[c];
    let invstd = stats[p.C + c];
    var s1 = 0.0;
    var s2 = 0.0;
    for (var i = t; i < M; i += ${WG}u) {
      let j = at(c, i);
      s1 += a[j];
      s2 += a[j] * (x[j] - mean) * invstd;
    }
    red1[t] = s1; red2[t] = s2;
    reduce2(t);
    if (t == 0u) { sums[c] = red1[0]; sums[p.C + c] = red2[0]; }`,
);

/** An elementwise kernel over the N*C*HW values: element `i` of channel `c`. */
function channelMap(
  name: string,
  storage: readonly StorageDecl[],
  body: string,
): KernelDecl<typeof UNIFORMS[number][0]> {
  return {
    name,
    storage,
    uniforms: UNIFORMS,
    workgroupSize: 256,
    main: `
      let i = flatIndex(gid, nwg);
      if (i >= p.N * p.C * p.HW) { return; }
      let c = (i / p.HW) % p.C;
      ${body}`,
  };
}

/** y = gamma * (x - mean) * invstd + beta, optionally relu. */
export const bnApplyKernel = kernelFamily((relu: boolean) =>
  channelMap(
    `bn:apply:${relu}`,
    [["x", "read"], ["stats", "read"], ["gamma", "read"], ["beta", "read"], ["y", "write"]],
    `let v = gamma[c] * (x[i] - stats[c]) * stats[p.C + c] + beta[c];
    y[i] = ${relu ? "max(v, 0.0)" : "v"};`,
  )
);

/** Which form of the shared backward/JVP kernel. */
export interface BnGradVariant {
  /** Train mode: subtract the batch-statistics terms. */
  coupled: boolean;
  /** JVP: add gamma' * xhat + beta' (two more read bindings before `out`). */
  tangentParams: boolean;
}

/** The shared backward/JVP form (see the module comment). */
export const bnGradKernel = kernelFamily(({ coupled, tangentParams }: BnGradVariant) =>
  channelMap(
    `bn:grad:${coupled}:${tangentParams}`,
    [
      ["a", "read"],
      ["x", "read"],
      ["stats", "read"],
      ["sums", "read"],
      ["gamma", "read"],
      ...(tangentParams ? [["gammaDot", "read"], ["betaDot", "read"]] as const : []),
      ["out", "write"],
    ],
    `let invstd = stats[p.C + c];
    let xhat = (x[i] - stats[c]) * invstd;
    ${
      coupled
        ? `let invM = 1.0 / f32(p.N * p.HW);
    var v = gamma[c] * invstd * (a[i] - sums[c] * invM - xhat * sums[p.C + c] * invM);`
        : `var v = gamma[c] * invstd * a[i];`
    }
    ${tangentParams ? "v += gammaDot[c] * xhat + betaDot[c];" : ""}
    out[i] = v;`,
  )
);
