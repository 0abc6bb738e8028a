/**
 * Tiny bookkeeping kernels of the trainer, so a step needs no readback:
 *
 * - {@linkcode gatherClassWeights}: weights_i = classW[labels_i] (the "meta-update-wy" rule
 *   keeps its class weights on the GPU, and its look-ahead uses their current values);
 * - {@linkcode accumulateMetaStats}: per-class sums of eps, eps / w, count, min(w + eps) and
 *   the final weights, over every meta step of an epoch, read once at the epoch's end;
 *
 * Each is one invocation walking its (small) arrays in index order: deterministic, and cheap
 * next to a training step.
 */
import type { Gpu } from "../gpu/runtime.ts";
import { bind, type Tensor } from "../tensor.ts";
import { gatherClassWeightsKernel, metaStatsKernel } from "../../shaders/train.ts";

/** Floats per class in the meta statistics buffer. */
export const META_STATS_FIELDS = 5;
/** Field offsets within a class's stats. */
export const MetaStat = { sumEps: 0, sumEpsOverW: 1, count: 2, minWPlusEps: 3, sumFinal: 4 };

/** weights[i] = classW[labels[i]] (recorded). */
export function gatherClassWeights(
  gpu: Gpu,
  classW: Tensor,
  labels: Tensor,
  weights: Tensor,
): void {
  const B = weights.size;
  gatherClassWeightsKernel.dispatch(gpu, [bind(classW), bind(labels), bind(weights)], { B }, [
    Math.ceil(B / 64),
  ]);
}

/** Adds one meta step's per-example values to the per-class statistics (recorded). */
export function accumulateMetaStats(
  gpu: Gpu,
  w: Tensor,
  eps: Tensor,
  final: Tensor,
  labels: Tensor,
  stats: Tensor,
): void {
  metaStatsKernel.dispatch(
    gpu,
    [bind(w), bind(eps), bind(final), bind(labels), bind(stats)],
    { B: w.size, F: META_STATS_FIELDS },
    [1],
  );
}

/** Host values that reset the statistics of `numClasses` classes (min fields at +max). */
export function emptyMetaStats(numClasses: number): Float32Array {
  const s = new Float32Array(numClasses * META_STATS_FIELDS);
  for (let c = 0; c < numClasses; c++) s[c * META_STATS_FIELDS + MetaStat.minWPlusEps] = 3.4e38;
  return s;
}
