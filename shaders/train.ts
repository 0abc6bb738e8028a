/** Declarations of the trainer's bookkeeping kernels (src/train/kernels.ts, src/engine/kernels.ts). */
import { kernel } from "../src/gpu/kernel.ts";

/** acc[0] += sum(loss) in index order, acc[1] += |B| (one invocation). */
export const lossSumKernel = kernel({
  name: "loss-sum",
  storage: [["loss", "read"], ["acc", "write"]],
  uniforms: [["n", "u32"]],
  workgroupSize: 1,
  main: `
    var s = 0.0;
    for (var i = 0u; i < p.n; i++) { s += loss[i]; }
    acc[0] += s;
    acc[1] += f32(p.n);`,
});

/** weights[i] = classW[labels[i]]. */
export const gatherClassWeightsKernel = kernel({
  name: "train:gather-class-weights",
  storage: [["classW", "read"], ["labels", "read", "array<u32>"], ["w", "write"]],
  uniforms: [["B", "u32"]],
  workgroupSize: 64,
  main: `
    let i = gid.x;
    if (i >= p.B) { return; }
    w[i] = classW[labels[i]];`,
});

/**
 * Per-class sums of eps, eps / w, count, min(w + eps), final weight over a batch into
 * stats[class * F + field], one invocation in index order.
 */
export const metaStatsKernel = kernel({
  name: "train:meta-stats",
  storage: [
    ["w", "read"],
    ["eps", "read"],
    ["fin", "read"],
    ["labels", "read", "array<u32>"],
    ["stats", "write"],
  ],
  uniforms: [["B", "u32"], ["F", "u32"]],
  workgroupSize: 1,
  main: `
    for (var i = 0u; i < p.B; i++) {
      let base = labels[i] * p.F;
      let e = eps[i];
      stats[base] += e;
      if (w[i] != 0.0) { stats[base + 1u] += e / w[i]; }
      stats[base + 2u] += 1.0;
      stats[base + 3u] = min(stats[base + 3u], w[i] + e);
      stats[base + 4u] += fin[i];
    }`,
});

/** Step counter, first step with a non-finite loss sum, and a copy of the loss sums. */
export const monitorKernel = kernel({
  name: "train:monitor",
  storage: [["lossSum", "read"], ["mon", "write"]],
  workgroupSize: 1,
  helpers: `fn finite(x: f32) -> bool { return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u; }`,
  main: `
    mon[0] = mon[0] + 1.0;
    if (mon[1] < 0.0 && !finite(lossSum[0])) { mon[1] = mon[0]; }
    mon[2] = lossSum[0];
    mon[3] = lossSum[1];`,
});
