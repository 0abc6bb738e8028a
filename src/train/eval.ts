/**
 * Evaluation on the balanced test set in eval mode (BN running statistics, no tape, running
 * statistics untouched), images normalised on the GPU: the metrics of src/engine/metrics.ts.
 */
import { Ctx } from "../autograd/tape.ts";
import type { Gpu } from "../gpu/runtime.ts";
import type { Model } from "../nn/model.ts";
import { EVAL } from "../nn/module.ts";
import { type EvalMetrics, MetricAccumulator } from "../engine/metrics.ts";
import { Tensor } from "../tensor.ts";
import { Batcher } from "../data/batcher.ts";
import type { GpuAugmenter } from "../data/augment.ts";
import type { RunData } from "./data.ts";

/** Evaluates the model on `data.testIndices`, `evalBatch` images at a time. */
export async function evaluate(
  gpu: Gpu,
  model: Model,
  augmenter: GpuAugmenter,
  data: RunData,
  evalBatch: number,
  logitScale: number,
): Promise<EvalMetrics> {
  const [C, H, W] = data.image;
  const acc = new MetricAccumulator(data.numClasses);
  const batcher = new Batcher(data.test, evalBatch, 1);
  const x = Tensor.empty(gpu, [evalBatch, C, H, W]);
  try {
    const idx = data.testIndices;
    for (let at = 0; at < idx.length; at += evalBatch) {
      const n = Math.min(evalBatch, idx.length - at);
      const b = batcher.gather(idx.subarray(at, at + n));
      const xn = n === evalBatch
        ? x
        : new Tensor([n, C, H, W], { ...x.view, size: n * C * H * W * 4 }, false);
      augmenter.run(b.pixels, null, n, xn.view);
      const ctx = new Ctx(gpu, null);
      const logits = model.forward(ctx, xn, EVAL);
      const values = await logits.read(gpu);
      ctx.release();
      acc.add(values, b.labels, n, logitScale);
    }
  } finally {
    x.release(gpu);
  }
  return acc.result();
}
