/**
 * Small kernels of the step engine and the fit loop, so a step needs no readback:
 *
 * - {@linkcode accumulateLoss}: the running sum and count of per-example losses;
 * - {@linkcode metaWeights}: eps and the final per-example weights of a meta step, by rule;
 * - {@linkcode normalizeBySum}: weights divided by their sum (Meta-Weight-Net's final weights);
 * - {@linkcode monitorStep}: counts steps and records the first step whose running loss sum is
 *   not finite, so a NaN is pinned to its step even when the host reads only every k steps.
 *
 * Each walks its (small) arrays in index order in one invocation: deterministic, and cheap next
 * to a training step.
 */
import type { BufferView, Gpu } from "../gpu/runtime.ts";
import { bind, type Tensor } from "../tensor.ts";
import {
  type MetaWeightRule,
  metaWeightsKernel,
  normalizeBySumKernel,
} from "../../shaders/meta.ts";
import { lossSumKernel, monitorKernel } from "../../shaders/train.ts";

/** lossSum[0] += sum(loss), lossSum[1] += |B|, in index order (one thread). */
export function accumulateLoss(gpu: Gpu, loss: Tensor, into: Tensor): void {
  lossSumKernel.dispatch(gpu, [bind(loss), bind(into)], { n: loss.size }, [1]);
}

/**
 * eps_i = c * ldot_i (c: one f32 in a storage slot); final weights by rule; seed = final / |B| (or the normalised weights
 * for L2RW-style rules, whose loss is a weighted sum).
 */
export function metaWeights(
  gpu: Gpu,
  rule: MetaWeightRule,
  w: Tensor,
  ldot: Tensor,
  labels: Tensor,
  classW: Tensor,
  eps: Tensor,
  final: Tensor,
  seed: Tensor,
  c: BufferView,
  batch: number,
): void {
  metaWeightsKernel(rule).dispatch(
    gpu,
    [bind(w), bind(ldot), bind(labels), bind(classW), bind(eps), bind(final), bind(seed), c],
    { B: batch },
    [1],
  );
}

/** out = v / sum(v), the sum in index order (one thread); v itself when the sum is 0. */
export function normalizeBySum(gpu: Gpu, v: Tensor, out: Tensor): void {
  normalizeBySumKernel.dispatch(gpu, [bind(v), bind(out)], { B: v.size }, [1]);
}

/**
 * mon = [steps done, first step (1-based count) with a non-finite loss sum or -1, loss sum,
 * loss count] after each step (recorded).
 */
export function monitorStep(gpu: Gpu, lossSum: Tensor, mon: Tensor): void {
  monitorKernel.dispatch(gpu, [bind(lossSum), bind(mon)], null, [1]);
}
