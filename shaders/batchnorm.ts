/**
 * Declarations of batchnorm2d (NCHW). Reductions run one workgroup per channel over its
 * M = N * HW values with a fixed strided split and a fixed tree, so statistics and sums are
 * bit-identical run to run. Shapes (N, C, HW) are literals in the WGSL (`KernelDecl.constants`),
 * so the per-element channel indexing costs shifts, not divisions.
 *
 * stats:   one pass: each thread keeps Welford's running (count, mean, M2) over its values, and
 *          the tree merges them with Chan's pairwise formula (numerically sound, unlike
 *          sum(x^2) - sum(x)^2 / M); writes mean, invstd (biased variance) and, when p.update
 *          is 1, running_mean/var <- (1-m) * running + m * batch (unbiased variance, as PyTorch).
 * apply:   y = gamma * xhat + beta (+ residual) (then relu), xhat = (x - mean) * invstd.
 * grad:    per channel s1 = sum(a), s2 = sum(a * xhat) (with a = dy: dbeta and dgamma; with
 *          a = x': what the JVP needs), then
 *          out = gamma * invstd * (a - s1/M - xhat * s2/M)   (train; eval drops the sums)
 *          plus gamma' * xhat + beta' (+ residual') for the JVP. Backward through a fused relu
 *          masks a by y > 0 on the way in (and can write the masked a for a residual input);
 *          the JVP masks its result by y > 0 on the way out.
 *
 * Each reduction can run its elementwise pass itself ("fused": after the tree, the workgroup
 * walks its channel again, which is still in cache on a CPU adapter, and one dispatch does what
 * took two or three), or leave it to a separate elementwise kernel reading the statistics from
 * buffers (the form for GPUs, where C workgroups are too few for an elementwise pass).
 */
import { type KernelDecl, kernelFamily, type StorageDecl } from "../src/gpu/kernel.ts";

const WG = 256;

/** Shape constants of a batchnorm kernel. */
export interface BnShape {
  /** Batch size. */
  N: number;
  /** Channels. */
  C: number;
  /** Values per channel and image (H * W). */
  HW: number;
}

/** Uniform fields of the batchnorm kernels (the shape is in the constants). */
const UNIFORMS = [["update", "u32"], ["eps", "f32"], ["momentum", "f32"]] as const;

/** Uniform values of a batchnorm call. */
export type BnUniforms = Record<typeof UNIFORMS[number][0], number>;

/** What the elementwise pass of the forward does after normalising. */
export interface ApplyVariant {
  /** Add a residual input (`res`) before the relu. */
  residual: boolean;
  /** Apply max(., 0). */
  relu: boolean;
}

/** Which form of the backward / JVP (see the module comment). */
export interface GradVariant {
  /** Train mode: subtract the batch-statistics terms. */
  coupled: boolean;
  /** Backward of a fused relu: a is masked by y > 0 before use. */
  gateIn: boolean;
  /** Also write the masked a to `ga` (the gradient of a residual input). */
  writeGated: boolean;
  /** JVP: add gamma' * xhat + beta'. */
  tangent: boolean;
  /** JVP: add the residual input's tangent `resDot`. */
  residual: boolean;
  /** JVP of a fused relu: the result is masked by y > 0. */
  gateOut: boolean;
}

const apply = (v: ApplyVariant) => ({
  storage: [
    ["gamma", "read"],
    ["beta", "read"],
    ...(v.residual ? [["res", "read"]] as const : []),
    ["y", "write"],
  ] as StorageDecl[],
  body: `var v = gamma[c] * (x[i] - mean) * invstd + beta[c];
    ${v.residual ? "v += res[i];" : ""}
    y[i] = ${v.relu ? "max(v, 0.0)" : "v"};`,
});

/** The per-element value of `a` the sums and the gradient see. */
const gradInput = (v: GradVariant) => v.gateIn ? "select(0.0, a[i], y[i] > 0.0)" : "a[i]";

/** Bindings the sums pass of a grad reduction reads. */
const gradReads = (v: GradVariant): StorageDecl[] => [
  ["a", "read"],
  ["x", "read"],
  ["stats", "read"],
  ...(v.gateIn || v.gateOut ? [["y", "read"]] as const : []),
];

const grad = (v: GradVariant) => ({
  storage: [
    ["gamma", "read"],
    ...(v.tangent ? [["gammaDot", "read"], ["betaDot", "read"]] as const : []),
    ...(v.residual ? [["resDot", "read"]] as const : []),
    ["out", "write"],
    ...(v.writeGated ? [["ga", "write"]] as const : []),
  ] as StorageDecl[],
  body: `let ai = ${gradInput(v)};
    let xhat = (x[i] - mean) * invstd;
    var v = ${
    v.coupled ? `gamma[c] * invstd * (ai - s1 * invM - xhat * s2 * invM)` : `gamma[c] * invstd * ai`
  };
    ${v.tangent ? "v += gammaDot[c] * xhat + betaDot[c];" : ""}
    ${v.residual ? "v += resDot[i];" : ""}
    out[i] = ${v.gateOut ? "select(0.0, v, y[i] > 0.0)" : "v"};
    ${v.writeGated ? "ga[i] = ai;" : ""}`,
});

/** Index of value k (0 <= k < M) of channel c, and the tree reductions of a workgroup. */
const CHANNEL_HELPERS = `
fn at(c: u32, k: u32) -> u32 { return ((k / p.HW) * p.C + c) * p.HW + k % p.HW; }
var<workgroup> red1: array<f32, ${WG}>;
var<workgroup> red2: array<f32, ${WG}>;
var<workgroup> red3: array<f32, ${WG}>;
fn sumTree(t: u32) {
  for (var s = ${WG / 2}u; s > 0u; s = s >> 1u) {
    workgroupBarrier();
    if (t < s) { red1[t] += red1[t + s]; red2[t] += red2[t + s]; }
  }
  workgroupBarrier();
}
// Chan et al.'s merge of (count, mean, M2) triples, pairwise in a fixed tree.
fn welfordTree(t: u32) {
  for (var s = ${WG / 2}u; s > 0u; s = s >> 1u) {
    workgroupBarrier();
    if (t < s && red1[t + s] > 0.0) {
      let na = red1[t]; let nb = red1[t + s]; let n = na + nb;
      let d = red2[t + s] - red2[t];
      red2[t] += d * (nb / n);
      red3[t] += red3[t + s] + d * d * (na * nb / n);
      red1[t] = n;
    }
  }
  workgroupBarrier();
}`;

/** A one-workgroup-per-channel reduction with an optional elementwise pass over the channel. */
function channelReduction(
  name: string,
  shape: BnShape,
  storage: StorageDecl[],
  reduce: string,
  pass: string | null,
): KernelDecl {
  return {
    name,
    storage,
    uniforms: UNIFORMS,
    workgroupSize: WG,
    constants: { ...shape },
    helpers: CHANNEL_HELPERS,
    main: `
      let c = wid.x;
      let t = lid.x;
      let M = p.N * p.HW;
      ${reduce}
      ${pass ? `for (var k = t; k < M; k += ${WG}u) { let i = at(c, k); ${pass} }` : ""}`,
  };
}

/** An elementwise kernel over the N*C*HW values: element `i` of channel `c`. */
function channelMap(name: string, shape: BnShape, storage: StorageDecl[], body: string) {
  return {
    name,
    storage,
    uniforms: UNIFORMS,
    workgroupSize: 256,
    constants: { ...shape },
    main: `
      let i = flatIndex(gid, nwg);
      if (i >= p.N * p.C * p.HW) { return; }
      let c = (i / p.HW) % p.C;
      ${body}`,
  } as KernelDecl;
}

const key = (v: unknown) => JSON.stringify(v);
const shapeName = (s: BnShape) => `${s.N},${s.C},${s.HW}`;

/** Batch statistics (+ running update); with `apply`, the normalisation too (fused). */
export const bnStatsKernel = kernelFamily(
  ({ shape, apply: av }: { shape: BnShape; apply: ApplyVariant | null }) => {
    const a = av ? apply(av) : null;
    return channelReduction(
      `bn:stats${av ? `+apply:${av.residual}:${av.relu}` : ""}:${shapeName(shape)}`,
      shape,
      [
        ["x", "read"],
        ["stats", "write"],
        ["rmean", "write"],
        ["rvar", "write"],
        ...(a ? a.storage : []),
      ],
      `var n = 0.0; var mu = 0.0; var m2 = 0.0;
      for (var k = t; k < M; k += ${WG}u) {
        let v = x[at(c, k)];
        n += 1.0;
        let d = v - mu;
        mu += d / n;
        m2 += d * (v - mu);
      }
      red1[t] = n; red2[t] = mu; red3[t] = m2;
      welfordTree(t);
      let mean = red2[0];
      let variance = red3[0] / f32(M);
      let invstd = inverseSqrt(variance + p.eps);
      if (t == 0u) {
        stats[c] = mean;
        stats[p.C + c] = invstd;
        if (p.update == 1u) {
          let unbiased = variance * f32(M) / f32(max(M, 2u) - 1u);
          rmean[c] = (1.0 - p.momentum) * rmean[c] + p.momentum * mean;
          rvar[c] = (1.0 - p.momentum) * rvar[c] + p.momentum * unbiased;
        }
      }`,
      a ? a.body : null,
    );
  },
  key,
);

/** Eval-mode statistics from the running ones: stats = [running_mean, 1/sqrt(running_var+eps)]. */
export const bnEvalStatsKernel = kernelFamily((shape: BnShape) => ({
  name: `bn:eval-stats:${shapeName(shape)}`,
  storage: [["rmean", "read"], ["rvar", "read"], ["stats", "write"]],
  uniforms: UNIFORMS,
  workgroupSize: 64,
  constants: { ...shape },
  main: `
    let c = gid.x;
    if (c >= p.C) { return; }
    stats[c] = rmean[c];
    stats[p.C + c] = inverseSqrt(rvar[c] + p.eps);`,
}), key);

/** The normalisation as its own elementwise kernel (eval mode, and the unfused form). */
export const bnApplyKernel = kernelFamily(
  ({ shape, apply: av }: { shape: BnShape; apply: ApplyVariant }) => {
    const a = apply(av);
    return channelMap(
      `bn:apply:${av.residual}:${av.relu}:${shapeName(shape)}`,
      shape,
      [["x", "read"], ["stats", "read"], ...a.storage],
      `let mean = stats[c]; let invstd = stats[p.C + c];
      ${a.body}`,
    );
  },
  key,
);

/**
 * Per-channel sums s1 = sum(a), s2 = sum(a * xhat) into `sum1`, `sum2` ([C] each: dbeta and
 * dgamma in a backward); with `fused`, the gradient / tangent pass too.
 */
export const bnGradReduceKernel = kernelFamily(
  ({ shape, grad: gv, fused }: { shape: BnShape; grad: GradVariant; fused: boolean }) => {
    const g = grad(gv);
    const name = `bn:grad-sums${fused ? "+grad" : ""}:${variantName(gv)}:${shapeName(shape)}`;
    return channelReduction(
      name,
      shape,
      [...gradReads(gv), ...(fused ? g.storage : []), ["sum1", "write"], ["sum2", "write"]],
      `let mean = stats[c];
      let invstd = stats[p.C + c];
      var q1 = 0.0;
      var q2 = 0.0;
      for (var k = t; k < M; k += ${WG}u) {
        let i = at(c, k);
        let ai = ${gradInput(gv)};
        q1 += ai;
        q2 += ai * (x[i] - mean) * invstd;
      }
      red1[t] = q1; red2[t] = q2;
      sumTree(t);
      let s1 = red1[0];
      let s2 = red2[0];
      let invM = 1.0 / f32(M);
      if (t == 0u) { sum1[c] = s1; sum2[c] = s2; }`,
      fused ? g.body : null,
    );
  },
  key,
);

/** The gradient / tangent pass as its own elementwise kernel, reading the sums. */
export const bnGradMapKernel = kernelFamily(
  ({ shape, grad: gv }: { shape: BnShape; grad: GradVariant }) => {
    const g = grad(gv);
    return channelMap(
      `bn:grad:${variantName(gv)}:${shapeName(shape)}`,
      shape,
      [...gradReads(gv), ["sum1", "read"], ["sum2", "read"], ...g.storage],
      `let mean = stats[c]; let invstd = stats[p.C + c];
      let s1 = sum1[c]; let s2 = sum2[c]; let invM = 1.0 / f32(p.N * p.HW);
      ${g.body}`,
    );
  },
  key,
);

function variantName(v: GradVariant): string {
  return Object.entries(v).filter(([, on]) => on).map(([k]) => k).join("+") || "plain";
}
