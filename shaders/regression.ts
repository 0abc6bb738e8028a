/**
 * Declarations of the per-example regression losses over pred, target [B, D] (D = every
 * non-batch element): loss[b] = mean_j f(pred - target), f(d) = d^2 (MSE) or |d| (L1).
 * The per-example sums run in element order, one thread per example.
 */
import { kernelFamily } from "../src/gpu/kernel.ts";

/** Which regression loss. */
export type RegressionKind = "mse" | "l1";

/** f(d) and its derivative f'(d) (the L1 subgradient is 0 at 0, WGSL's sign). */
const terms: Record<RegressionKind, { f: string; slope: string }> = {
  mse: { f: "d * d", slope: "2.0 * d" },
  l1: { f: "abs(d)", slope: "sign(d)" },
};

const uniforms = [["B", "u32"], ["D", "u32"]] as const;

/** loss[b] = sum_j f(pred - target) / D. */
export const regressionForward = kernelFamily((kind: RegressionKind) => ({
  name: `${kind}-forward`,
  storage: [["pred", "read"], ["want", "read"], ["loss", "write"]],
  uniforms,
  workgroupSize: 64,
  main: `
    let b = flatIndex(gid, nwg);
    if (b >= p.B) { return; }
    var s = 0.0;
    for (var j = b * p.D; j < (b + 1u) * p.D; j++) {
      let d = pred[j] - want[j];
      s += ${terms[kind].f};
    }
    loss[b] = s / f32(p.D);`,
}));

/** dpred[i] = w[b] * f'(pred - target) / D: the seed is the per-example weight vector. */
export const regressionBackward = kernelFamily((kind: RegressionKind) => ({
  name: `${kind}-backward`,
  storage: [["pred", "read"], ["want", "read"], ["w", "read"], ["dpred", "write"]],
  uniforms,
  workgroupSize: 256,
  main: `
    let i = flatIndex(gid, nwg);
    if (i >= p.B * p.D) { return; }
    let d = pred[i] - want[i];
    dpred[i] = w[i / p.D] * (${terms[kind].slope}) / f32(p.D);`,
}));

/** loss'[b] = sum_j f'(pred - target) pred' / D. */
export const regressionJvp = kernelFamily((kind: RegressionKind) => ({
  name: `${kind}-jvp`,
  storage: [["pred", "read"], ["want", "read"], ["t", "read"], ["out", "write"]],
  uniforms,
  workgroupSize: 64,
  main: `
    let b = flatIndex(gid, nwg);
    if (b >= p.B) { return; }
    var s = 0.0;
    for (var j = b * p.D; j < (b + 1u) * p.D; j++) {
      let d = pred[j] - want[j];
      s += (${terms[kind].slope}) * t[j];
    }
    out[b] = s / f32(p.D);`,
}));
