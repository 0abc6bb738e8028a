/**
 * Classification metrics computed on the host from logits (read back once per batch): top-1/3/5
 * error, cross-entropy, per-class accuracy and the confusion matrix (counted sparsely, recorded
 * as src/engine/confusion.ts says); the many/medium/few-shot accuracies of long-tailed
 * recognition; and the evaluation of a classifier over in-memory inputs.
 */
import { Ctx } from "../autograd/tape.ts";
import { Tensor } from "../tensor.ts";
import type { Model } from "../nn/model.ts";
import { EVAL } from "../nn/module.ts";
import {
  canonicalConfusion,
  checkConfusion,
  type Confusion,
  confusionRowTotals,
  recordedConfusion,
} from "./confusion.ts";

/** Test metrics of one evaluation. */
export interface EvalMetrics {
  /** Fractions in [0, 1]. */
  top1Error: number;
  /** Fraction of examples whose label is not among the 3 largest logits. */
  top3Error: number;
  /** Fraction of examples whose label is not among the 5 largest logits. */
  top5Error: number;
  /** Mean cross-entropy of the (scaled) logits. */
  loss: number;
  /** Accuracy of each class, in [0, 1]. */
  perClassAccuracy: number[];
  /**
   * Counts of (true, predicted) classes: dense rows `confusion[true][predicted]` for up to
   * `DENSE_CONFUSION_CLASSES` classes, else `{classes, entries: [[true, predicted, count], ...]}`
   * (src/engine/confusion.ts, whose helpers read either form).
   */
  confusion: Confusion;
  /** Number of examples evaluated. */
  count: number;
  /** Many/medium/few-shot accuracies, when the training counts are known (see shotGroups). */
  shots?: ShotGroups;
}

/** Accuracy by training-set frequency, as the long-tail literature reports it. */
export interface ShotGroups {
  /** Mean per-class accuracy of the classes with more than `many` training images. */
  many: number | null;
  /** Mean per-class accuracy of the classes with `few` to `many` training images. */
  medium: number | null;
  /** Mean per-class accuracy of the classes with fewer than `few` training images. */
  few: number | null;
  /** Classes in each group (those with test examples). */
  classes: { many: number; medium: number; few: number };
  /** The thresholds: many-shot above `many`, few-shot below `few`. */
  thresholds: { many: number; few: number };
}

/** The literature's thresholds (Liu et al. 2019): > 100 many-shot, < 20 few-shot. */
export const SHOT_THRESHOLDS = { many: 100, few: 20 } as const;

/**
 * Many-shot (more than `many` training images), medium-shot (`few` to `many`) and few-shot
 * (fewer than `few`) accuracy: the mean per-class accuracy of each group's classes, over the
 * classes that have test examples (`testCounts`, default all); null for an empty group.
 */
export function shotGroups(
  perClassAccuracy: ArrayLike<number>,
  trainCounts: ArrayLike<number>,
  testCounts?: ArrayLike<number>,
  thresholds: { many: number; few: number } = SHOT_THRESHOLDS,
): ShotGroups {
  if (perClassAccuracy.length !== trainCounts.length) {
    throw new Error(
      `shotGroups: ${perClassAccuracy.length} class accuracies, ${trainCounts.length} counts`,
    );
  }
  const sum = { many: 0, medium: 0, few: 0 };
  const classes = { many: 0, medium: 0, few: 0 };
  for (let c = 0; c < trainCounts.length; c++) {
    if (testCounts && !(testCounts[c] > 0)) continue;
    const n = trainCounts[c];
    const g = n > thresholds.many ? "many" : n < thresholds.few ? "few" : "medium";
    sum[g] += perClassAccuracy[c];
    classes[g]++;
  }
  const mean = (g: keyof typeof sum) => (classes[g] ? sum[g] / classes[g] : null);
  return {
    many: mean("many"),
    medium: mean("medium"),
    few: mean("few"),
    classes,
    thresholds: { ...thresholds },
  };
}

/** `m` with its shot groups for classes of `trainCounts` training images. */
export function withShots(m: EvalMetrics, trainCounts: ArrayLike<number>): EvalMetrics {
  const testCounts = confusionRowTotals(m.confusion);
  return { ...m, shots: shotGroups(m.perClassAccuracy, trainCounts, testCounts) };
}

/**
 * Accumulates metrics from logits batch by batch. The confusion counts are sparse (one map entry
 * per (true, predicted) pair seen), so memory grows with the images evaluated, not with C².
 */
export class MetricAccumulator {
  /** Number of classes C (logit row length). */
  readonly numClasses: number;
  /** Count of each (true, predicted) pair seen, keyed by `true * C + predicted`. */
  #pairs = new Map<number, number>();
  /** Examples of each true class, and those predicted right. */
  #total: number[];
  #correct: number[];
  #hits = [0, 0, 0];
  #loss = 0;
  #count = 0;

  /** An empty accumulator for `numClasses` classes. */
  constructor(numClasses: number) {
    this.numClasses = numClasses;
    this.#total = new Array(numClasses).fill(0);
    this.#correct = new Array(numClasses).fill(0);
  }

  /** Adds `n` rows of logits [n, C] with labels; logits are multiplied by `scale` for the loss. */
  add(logits: Float32Array, labels: ArrayLike<number>, n: number, scale = 1): void {
    const C = this.numClasses;
    for (let i = 0; i < n; i++) {
      const y = labels[i];
      if (!(Number.isInteger(y) && y >= 0 && y < C)) {
        throw new Error(`MetricAccumulator: label ${y} of row ${i} is not a class of [0, ${C})`);
      }
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
      const key = y * C + pred;
      this.#pairs.set(key, (this.#pairs.get(key) ?? 0) + 1);
      this.#total[y]++;
      if (pred === y) this.#correct[y]++;
      this.#count++;
    }
  }

  /** The metrics so far. */
  result(): EvalMetrics {
    const n = Math.max(1, this.#count);
    const C = this.numClasses;
    const perClassAccuracy = this.#total.map((t, c) => (t > 0 ? this.#correct[c] / t : 0));
    const entries = [...this.#pairs].sort((a, b) => a[0] - b[0])
      .map(([key, count]): [number, number, number] => [Math.floor(key / C), key % C, count]);
    return {
      top1Error: 1 - this.#hits[0] / n,
      top3Error: 1 - this.#hits[1] / n,
      top5Error: 1 - this.#hits[2] / n,
      loss: this.#loss / n,
      perClassAccuracy,
      confusion: recordedConfusion(C, entries),
      count: this.#count,
    };
  }
}

/**
 * Metrics read back from JSON (a checkpoint's `last`, `best`, `final`): null stays null; the
 * confusion is checked ({@linkcode checkConfusion}, throws on a malformed one) and put in the
 * form a run of its classes records now, so a run resumed from a checkpoint written before the
 * sparse form writes one form throughout.
 */
export function metricsFromJson<M extends EvalMetrics>(v: M | null): M | null {
  if (v === null) return null;
  const classes = v.perClassAccuracy?.length;
  return { ...v, confusion: canonicalConfusion(checkConfusion(v.confusion, classes)) };
}

/**
 * Metrics of `model` (eval mode) on `count` examples: `inputs` holds them back to back
 * (`count * exampleSize` floats), `labels` their classes; `batch` examples per forward. Throws
 * before any work on a bad size, on inputs that are not `count` examples, and naming the first
 * label that is not a class of [0, numClasses); and, at the first batch, when the model's
 * output is not [n, numClasses].
 */
export async function evaluateClassifier(
  model: Model,
  inputs: Float32Array,
  labels: ArrayLike<number>,
  o: { batch: number; inputShape: readonly number[]; numClasses: number },
): Promise<EvalMetrics> {
  const gpu = model.gpu;
  const per = o.inputShape.reduce((a, b) => a * b, 1);
  const count = labels.length;
  checkEvaluation(inputs, labels, o);
  const acc = new MetricAccumulator(o.numClasses);
  const x = Tensor.empty(gpu, [o.batch, ...o.inputShape]);
  try {
    for (let at = 0; at < count; at += o.batch) {
      const n = Math.min(o.batch, count - at);
      const xn = n === o.batch
        ? x
        : new Tensor([n, ...o.inputShape], { ...x.view, size: n * per * 4 }, false);
      gpu.write(xn.view, inputs.subarray(at * per, (at + n) * per));
      const ctx = new Ctx(gpu, null);
      const output = model.forward(ctx, xn, EVAL);
      if (output.shape.length !== 2 || output.shape[1] !== o.numClasses) {
        ctx.release();
        throw new Error(
          `evaluateClassifier: numClasses ${o.numClasses}, but the model's output is ` +
            `[${output.shape}] for ${n} examples; expected [${n}, ${o.numClasses}]`,
        );
      }
      const logits = await output.read(gpu);
      ctx.release();
      acc.add(logits, Array.from({ length: n }, (_, i) => labels[at + i]), n);
    }
  } finally {
    x.release(gpu);
  }
  return acc.result();
}

/** The up-front checks of {@linkcode evaluateClassifier}. */
function checkEvaluation(
  inputs: Float32Array,
  labels: ArrayLike<number>,
  o: { batch: number; inputShape: readonly number[]; numClasses: number },
): void {
  const bad = (what: string, v: unknown) => {
    throw new RangeError(`evaluateClassifier: ${what} = ${v}, expected an integer >= 1`);
  };
  if (!Number.isInteger(o.batch) || o.batch < 1) bad("batch", o.batch);
  if (!Number.isInteger(o.numClasses) || o.numClasses < 1) bad("numClasses", o.numClasses);
  o.inputShape.forEach((d, i) => {
    if (!Number.isInteger(d) || d < 1) bad(`inputShape[${i}]`, d);
  });
  const per = o.inputShape.reduce((a, b) => a * b, 1);
  if (inputs.length !== labels.length * per) {
    throw new Error(
      `evaluateClassifier: ${inputs.length} input values for ${labels.length} labels; ` +
        `expected ${labels.length} examples of ${per} (inputShape [${o.inputShape}])`,
    );
  }
  for (let i = 0; i < labels.length; i++) {
    const y = labels[i];
    if (Number.isInteger(y) && y >= 0 && y < o.numClasses) continue;
    throw new RangeError(
      `evaluateClassifier: labels[${i}] = ${y} is not a class in [0, ${o.numClasses})`,
    );
  }
}
