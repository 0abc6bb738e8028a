/**
 * Evaluation on the balanced test set in eval mode (BN running statistics, no tape, running
 * statistics untouched): top-1/3/5 error, cross-entropy, per-class accuracy and the confusion
 * matrix, computed on the host from the logits (read back once per eval batch).
 */
import { Ctx } from "../autograd/tape.ts";
import type { Gpu } from "../gpu/runtime.ts";
import type { FlatTensors } from "../nn/params.ts";
import type { ResNet } from "../nn/resnet.ts";
import { Tensor } from "../tensor.ts";
import { Batcher } from "../data/batcher.ts";
import type { GpuAugmenter } from "../data/augment.ts";
import type { RunData } from "./data.ts";
import type { EvalMetrics } from "../report/summary.ts";

/** Test metrics of one evaluation (the record type of src/report/summary.ts). */
export type { EvalMetrics };

/** Accumulates metrics from logits batch by batch. */
export class MetricAccumulator {
  /** Number of classes C (logit row length). */
  readonly numClasses: number;
  /** Running counts `confusion[true][predicted]`, C x C. */
  readonly confusion: number[][];
  #hits = [0, 0, 0];
  #loss = 0;
  #count = 0;

  /** An empty accumulator for `numClasses` classes. */
  constructor(numClasses: number) {
    this.numClasses = numClasses;
    this.confusion = Array.from({ length: numClasses }, () => new Array(numClasses).fill(0));
  }

  /** Adds `n` rows of logits [n, C] with labels; logits are multiplied by `scale` for the loss. */
  add(logits: Float32Array, labels: ArrayLike<number>, n: number, scale = 1): void {
    const C = this.numClasses;
    for (let i = 0; i < n; i++) {
      const y = labels[i];
      const row = logits.subarray(i * C, (i + 1) * C);
      const zy = row[y];
      let rank = 0, pred = 0, mx = -Infinity;
      for (let j = 0; j < C; j++) {
        const z = row[j];
        if (z > zy || (z === zy && j < y) || Number.isNaN(z)) rank++;
        if (z > mx) {
          mx = z;
          pred = j;
        }
      }
      if (rank < 1) this.#hits[0]++;
      if (rank < 3) this.#hits[1]++;
      if (rank < 5) this.#hits[2]++;
      // cross-entropy in float64
      let se = 0;
      for (let j = 0; j < C; j++) se += Math.exp(scale * (row[j] - mx));
      this.#loss += Math.log(se) - scale * (zy - mx);
      this.confusion[y][pred]++;
      this.#count++;
    }
  }

  /** The metrics so far. */
  result(): EvalMetrics {
    const n = Math.max(1, this.#count);
    const perClassAccuracy = this.confusion.map((row, c) => {
      const total = row.reduce((a, b) => a + b, 0);
      return total > 0 ? row[c] / total : 0;
    });
    return {
      top1Error: 1 - this.#hits[0] / n,
      top3Error: 1 - this.#hits[1] / n,
      top5Error: 1 - this.#hits[2] / n,
      loss: this.#loss / n,
      perClassAccuracy,
      confusion: this.confusion.map((r) => [...r]),
      count: this.#count,
    };
  }
}

/** Evaluates the model on `data.testIndices`, `evalBatch` images at a time. */
export async function evaluate(
  gpu: Gpu,
  model: ResNet,
  params: FlatTensors,
  buffers: FlatTensors,
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
      const logits = model.forward(ctx, xn, params, buffers, {
        bn: "eval",
        updateRunningStats: false,
      });
      const values = await logits.read(gpu);
      ctx.release();
      acc.add(values, b.labels, n, logitScale);
    }
  } finally {
    x.release(gpu);
  }
  return acc.result();
}
