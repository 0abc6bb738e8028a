/**
 * WGSL of batchnorm2d (NCHW). One workgroup per channel reduces its N*H*W values with a fixed
 * strided split and a fixed tree, so the statistics are bit-identical run to run.
 *
 * stats:    mean, invstd (biased variance, two passes for accuracy) and, when p.update is 1,
 *           running_mean/var <- (1-m) * running + m * batch (unbiased variance, as PyTorch).
 * sums:     per channel s1 = sum(a), s2 = sum(a * xhat): with a = dy these are dbeta and dgamma,
 *           with a = x' they are what the JVP needs.
 * apply:    y = gamma * xhat + beta (optionally fused relu).
 * backward / jvp share one form:
 *           out = gamma * invstd * (a - s1/M - xhat * s2/M)   (train mode; eval drops the sums)
 *           jvp adds gamma' * xhat + beta'.
 */

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

const PARAMS = `struct P { N: u32, C: u32, HW: u32, update: u32, eps: f32, momentum: f32 }`;

/** Statistics (+ optional running-stat update). Bindings: x, stats[2C], running_mean, running_var. */
export function bnStatsSource(): string {
  return `${PARAMS}
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> stats: array<f32>;
@group(0) @binding(2) var<storage, read_write> rmean: array<f32>;
@group(0) @binding(3) var<storage, read_write> rvar: array<f32>;
@group(0) @binding(4) var<uniform> p: P;
${REDUCE}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let c = wg.x;
  let t = lid.x;
  let M = p.N * p.HW;
  var s = 0.0;
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
  }
}
`;
}

/** Eval-mode statistics from the running ones: stats = [running_mean, 1/sqrt(running_var+eps)]. */
export function bnEvalStatsSource(): string {
  return `${PARAMS}
@group(0) @binding(0) var<storage, read> rmean: array<f32>;
@group(0) @binding(1) var<storage, read> rvar: array<f32>;
@group(0) @binding(2) var<storage, read_write> stats: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  if (c >= p.C) { return; }
  stats[c] = rmean[c];
  stats[p.C + c] = inverseSqrt(rvar[c] + p.eps);
}
`;
}

/** Per-channel s1 = sum(a), s2 = sum(a * xhat). Bindings: a, x, stats, sums[2C]. */
export function bnSumsSource(): string {
  return `${PARAMS}
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> stats: array<f32>;
@group(0) @binding(3) var<storage, read_write> sums: array<f32>;
@group(0) @binding(4) var<uniform> p: P;
${REDUCE}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let c = wg.x;
  let t = lid.x;
  let M = p.N * p.HW;
  let mean = stats[c];
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
  if (t == 0u) { sums[c] = red1[0]; sums[p.C + c] = red2[0]; }
}
`;
}

/** y = gamma * (x - mean) * invstd + beta, optionally relu. Bindings: x, stats, gamma, beta, y. */
export function bnApplySource(relu: boolean): string {
  return `${PARAMS}
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> stats: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<uniform> p: P;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.N * p.C * p.HW) { return; }
  let c = (i / p.HW) % p.C;
  let v = gamma[c] * (x[i] - stats[c]) * stats[p.C + c] + beta[c];
  y[i] = ${relu ? "max(v, 0.0)" : "v"};
}
`;
}

/**
 * The shared backward/JVP form. Bindings: a, x, stats, sums, gamma, [gammaDot, betaDot,] out.
 * `coupled` (train mode) subtracts the batch-statistics terms; `tangentParams` adds
 * gamma' * xhat + beta' (JVP only).
 */
export function bnGradSource(coupled: boolean, tangentParams: boolean): string {
  const extra = tangentParams
    ? `@group(0) @binding(5) var<storage, read> gammaDot: array<f32>;
@group(0) @binding(6) var<storage, read> betaDot: array<f32>;`
    : "";
  const outBinding = tangentParams ? 7 : 5;
  return `${PARAMS}
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> stats: array<f32>;
@group(0) @binding(3) var<storage, read> sums: array<f32>;
@group(0) @binding(4) var<storage, read> gamma: array<f32>;
${extra}
@group(0) @binding(${outBinding}) var<storage, read_write> out: array<f32>;
@group(0) @binding(${outBinding + 1}) var<uniform> p: P;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.N * p.C * p.HW) { return; }
  let c = (i / p.HW) % p.C;
  let invstd = stats[p.C + c];
  let xhat = (x[i] - stats[c]) * invstd;
  ${
    coupled
      ? `let invM = 1.0 / f32(p.N * p.HW);
  var v = gamma[c] * invstd * (a[i] - sums[c] * invM - xhat * sums[p.C + c] * invM);`
      : `var v = gamma[c] * invstd * a[i];`
  }
  ${tangentParams ? "v += gammaDot[c] * xhat + betaDot[c];" : ""}
  out[i] = v;
}
`;
}
