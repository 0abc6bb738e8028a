/** WGSL of the trainer's bookkeeping kernels (src/train/kernels.ts, src/train/step.ts). */

/** acc[0] += sum(loss) in index order, acc[1] += |B| (one invocation). Bindings: loss, acc, uniform {n}. */
export function lossSumSource(): string {
  return `struct P { n: u32 }
@group(0) @binding(0) var<storage, read> loss: array<f32>;
@group(0) @binding(1) var<storage, read_write> acc: array<f32>;
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(1)
fn main() {
  var s = 0.0;
  for (var i = 0u; i < p.n; i++) { s += loss[i]; }
  acc[0] += s;
  acc[1] += f32(p.n);
}`;
}

/** weights[i] = classW[labels[i]]. Bindings: classW, labels (u32), weights, uniform {B}. */
export function gatherClassWeightsSource(): string {
  return `struct P { B: u32 }
@group(0) @binding(0) var<storage, read> classW: array<f32>;
@group(0) @binding(1) var<storage, read> labels: array<u32>;
@group(0) @binding(2) var<storage, read_write> w: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  if (i >= p.B) { return; }
  w[i] = classW[labels[i]];
}`;
}

/** Per-class sums of eps, eps / w, count, min(w + eps), final weight over a batch, one invocation in index order. Bindings: w, eps, final, labels, stats, uniform {B, F}. */
export function metaStatsSource(): string {
  return `struct P { B: u32, F: u32 }
@group(0) @binding(0) var<storage, read> w: array<f32>;
@group(0) @binding(1) var<storage, read> eps: array<f32>;
@group(0) @binding(2) var<storage, read> fin: array<f32>;
@group(0) @binding(3) var<storage, read> labels: array<u32>;
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;
@group(0) @binding(5) var<uniform> p: P;
@compute @workgroup_size(1)
fn main() {
  for (var i = 0u; i < p.B; i++) {
    let base = labels[i] * p.F;
    let e = eps[i];
    stats[base] += e;
    if (w[i] != 0.0) { stats[base + 1u] += e / w[i]; }
    stats[base + 2u] += 1.0;
    stats[base + 3u] = min(stats[base + 3u], w[i] + e);
    stats[base + 4u] += fin[i];
  }
}`;
}

/** Step counter, first step with a non-finite loss sum, and a copy of the loss sums. Bindings: lossSum, mon. */
export function monitorSource(): string {
  return `@group(0) @binding(0) var<storage, read> lossSum: array<f32>;
@group(0) @binding(1) var<storage, read_write> mon: array<f32>;
fn finite(x: f32) -> bool { return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u; }
@compute @workgroup_size(1)
fn main() {
  mon[0] = mon[0] + 1.0;
  if (mon[1] < 0.0 && !finite(lossSum[0])) { mon[1] = mon[0]; }
  mon[2] = lossSum[0];
  mon[3] = lossSum[1];
}`;
}
