/**
 * Classification metrics computed on the host from logits (read back once per batch): top-1/3/5
 * error, cross-entropy, per-class accuracy and the confusion matrix (counted sparsely, recorded
 * as src/engine/confusion.ts says); the many/medium/few-shot accuracies of long-tailed
 * recognition; and the evaluation of a classifier over in-memory inputs.
 */
import { firstBadLabel } from "../labels.ts";
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

/**
 * Test metrics of one evaluation.
 *
 * @category Core
 */
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

/**
 * Accuracy by training-set frequency, as the long-tail literature reports it.
 *
 * @category Long-tail
 */
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

/**
 * The literature's thresholds (Liu et al. 2019): > 100 many-shot, < 20 few-shot.
 *
 * @category Long-tail
 */
export const SHOT_THRESHOLDS = { many: 100, few: 20 } as const;

/**
 * Many-shot (more than `many` training images), medium-shot (`few` to `many`) and few-shot
 * (fewer than `few`) accuracy: the mean per-class accuracy of each group's classes, over the
 * classes that have test examples (`testCounts`, default all); null for an empty group.
 *
 * @category Long-tail
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

/**
 * `m` with its shot groups for classes of `trainCounts` training images.
 *
 * @category Long-tail
 */
export function withShots(m: EvalMetrics, trainCounts: ArrayLike<number>): EvalMetrics {
  const testCounts = confusionRowTotals(m.confusion);
  return { ...m, shots: shotGroups(m.perClassAccuracy, trainCounts, testCounts) };
}

/**
 * Accumulates metrics from logits batch by batch. The confusion counts are sparse (one map entry
 * per (true, predicted) pair seen), so memory grows with the images evaluated, not with C².
 *
 * @category Core
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
    const bad = firstBadLabel(labels, C, n);
    if (bad >= 0) {
      throw new Error(
        `MetricAccumulator: label ${labels[bad]} of row ${bad} is not a class of [0, ${C})`,
      );
    }
    for (let i = 0; i < n; i++) {
      const y = labels[i];
      const row = logits.subarray(i * C, (i + 1) * C);
      const zy = row[y];
      const [pred, mx] = rowMax(row);
      let rank = 0;
      for (let j = 0; j < C; j++) {
        const z = row[j];
        if (z > zy || (z === zy && j < y) || Number.isNaN(z)) rank++;
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
 * Options of {@linkcode predict}.
 *
 * @category Core
 */
export interface PredictOptions {
  /** Examples per forward: an integer >= 1 (GPU memory grows with it). */
  batch: number;
  /** Shape of one example, e.g. `[784]` for an MLP or `[1, 28, 28]` for a CNN. */
  inputShape: readonly number[];
}

/**
 * Options of {@linkcode evaluateClassifier}.
 *
 * @category Core
 */
export interface EvaluateOptions {
  /** Examples per forward: an integer >= 1. */
  batch: number;
  /**
   * Shape of one example (default: flat, `[inputs.length / labels.length]`, an MLP's input; a
   * CNN needs its `[C, H, W]`).
   */
  inputShape?: readonly number[];
  /**
   * Classes C: the labels must be in [0, C) and the output [n, C] (default: the model's output
   * width, read at the first batch; the labels are checked then).
   */
  numClasses?: number;
}

/**
 * Outputs of `model` in eval mode (running batch-norm statistics, no dropout, no tape) for the
 * examples of `inputs`, held back to back (`count * size of inputShape` floats), `batch` of them
 * per forward: one Float32Array, row-major [count, ...output shape of one example] (logits
 * [count, C] for a classifier; {@linkcode argmax} gives the classes). Throws before any work on
 * a bad size or inputs that are not whole examples, and when the model's output is not one row
 * per example.
 *
 * @category Core
 */
export async function predict(
  model: Model,
  inputs: Float32Array,
  o: PredictOptions,
): Promise<Float32Array> {
  checkSizes("predict", o.batch, o.inputShape);
  const per = o.inputShape.reduce((a, b) => a * b, 1);
  const count = inputs.length / per;
  if (!Number.isInteger(count) || count < 1) {
    throw new Error(
      `predict: ${inputs.length} input values are not a whole number >= 1 of examples of ` +
        `${per} (inputShape [${o.inputShape}])`,
    );
  }
  let out: Float32Array | null = null, outPer = 0;
  for await (const b of forwardBatches(model, inputs, o.batch, o.inputShape)) {
    const rowSize = b.shape.slice(1).reduce((a, d) => a * d, 1);
    if (!out) [out, outPer] = [new Float32Array(count * rowSize), rowSize];
    if (b.shape[0] !== b.n || rowSize !== outPer) {
      throw new Error(
        `predict: the model's output for ${b.n} examples is [${b.shape}]; expected ` +
          `${b.n} rows of ${outPer}`,
      );
    }
    out.set(b.values, b.at * outPer);
  }
  return out!;
}

/**
 * The class of each row of `outputs` (row-major [n, classes]): the index of its largest value,
 * the first on ties; NaN is never the largest (the prediction {@linkcode evaluateClassifier}
 * counts). Throws a RangeError when `classes` is not an integer >= 1 dividing the length.
 *
 * @category Core
 */
export function argmax(outputs: ArrayLike<number>, classes: number): Uint32Array {
  if (!Number.isInteger(classes) || classes < 1 || outputs.length % classes !== 0) {
    throw new RangeError(
      `argmax: classes = ${classes}, expected an integer >= 1 that divides the ` +
        `${outputs.length} outputs`,
    );
  }
  const rows = new Uint32Array(outputs.length / classes);
  for (let i = 0; i < rows.length; i++) {
    rows[i] = rowMax(outputs, i * classes, classes)[0];
  }
  return rows;
}

/**
 * The index (within the row) and value of the largest of `length` values of `values` from
 * `start` (default the whole array): the first on ties, NaN never; [0, -Infinity] for a row
 * with nothing above -Infinity. The prediction of {@linkcode argmax} and of the metrics.
 */
function rowMax(
  values: ArrayLike<number>,
  start = 0,
  length = values.length,
): [index: number, max: number] {
  let best = 0, mx = -Infinity;
  for (let j = 0; j < length; j++) {
    const z = values[start + j];
    if (z > mx) {
      mx = z;
      best = j;
    }
  }
  return [best, mx];
}

/** One batch's outputs: examples [at, at + n), of shape `shape` (`[n, ...]`), read back. */
interface OutputBatch {
  at: number;
  n: number;
  shape: number[];
  values: Float32Array;
}

/**
 * Eval-mode forwards of `model` over the examples of `inputs` (checked by the caller), `batch`
 * at a time into one input tensor; each batch's output read back.
 */
async function* forwardBatches(
  model: Model,
  inputs: Float32Array,
  batch: number,
  inputShape: readonly number[],
): AsyncGenerator<OutputBatch> {
  const gpu = model.gpu;
  const per = inputShape.reduce((a, b) => a * b, 1);
  const count = inputs.length / per;
  const x = Tensor.empty(gpu, [batch, ...inputShape]);
  try {
    for (let at = 0; at < count; at += batch) {
      const n = Math.min(batch, count - at);
      const xn = n === batch
        ? x
        : new Tensor([n, ...inputShape], { ...x.view, size: n * per * 4 }, false);
      gpu.write(xn.view, inputs.subarray(at * per, (at + n) * per));
      const ctx = new Ctx(gpu, null);
      let output: Tensor, values: Float32Array;
      try {
        output = model.forward(ctx, xn, EVAL);
        values = await output.read(gpu);
      } finally {
        ctx.release();
      }
      yield { at, n, shape: [...output.shape], values };
    }
  } finally {
    x.release(gpu);
  }
}

/**
 * Metrics of `model` (eval mode) on `count` examples: `inputs` holds them back to back
 * (`count * exampleSize` floats), `labels` their classes; `batch` examples per forward (the
 * forwards of {@linkcode predict}, accumulated batch by batch). Throws before any work on a bad
 * size, on inputs that are not `count` examples, and, with `numClasses`, naming the first label
 * that is not a class of [0, numClasses); at the first batch, when the model's output is not
 * [n, numClasses], and without `numClasses`, naming the first label that is not a class of the
 * model's output.
 *
 * @category Core
 */
export async function evaluateClassifier(
  model: Model,
  inputs: Float32Array,
  labels: ArrayLike<number>,
  o: EvaluateOptions,
): Promise<EvalMetrics> {
  const count = labels.length;
  if (count === 0) throw new Error("evaluateClassifier: no examples (labels is empty)");
  if (o.inputShape === undefined && inputs.length % count !== 0) {
    throw new Error(
      `evaluateClassifier: ${inputs.length} input values for ${count} labels are not ${count} ` +
        `examples of one size`,
    );
  }
  const inputShape = o.inputShape ?? [inputs.length / count];
  checkEvaluation(inputs, labels, { ...o, inputShape });
  const given = o.numClasses !== undefined;
  if (given) checkLabels(labels, o.numClasses!, "");
  let acc = given ? new MetricAccumulator(o.numClasses!) : null;
  for await (const b of forwardBatches(model, inputs, o.batch, inputShape)) {
    const classes = acc?.numClasses ?? b.shape[1];
    if (b.shape.length !== 2 || b.shape[0] !== b.n || b.shape[1] !== classes) {
      throw new Error(
        `evaluateClassifier: ${given ? `numClasses ${classes}, but ` : ""}the model's output ` +
          `is [${b.shape}] for ${b.n} examples; expected [${b.n}, ${acc ? classes : "C"}]`,
      );
    }
    if (!acc) {
      checkLabels(labels, classes, " (the model's output width)");
      acc = new MetricAccumulator(classes);
    }
    acc.add(b.values, Array.from({ length: b.n }, (_, i) => labels[b.at + i]), b.n);
  }
  return acc!.result();
}

/** Throws a RangeError naming `batch` or a dimension of `inputShape` that is not >= 1. */
function checkSizes(fn: string, batch: number, inputShape: readonly number[]): void {
  const bad = (what: string, v: unknown) => {
    throw new RangeError(`${fn}: ${what} = ${v}, expected an integer >= 1`);
  };
  if (!Number.isInteger(batch) || batch < 1) bad("batch", batch);
  inputShape.forEach((d, i) => {
    if (!Number.isInteger(d) || d < 1) bad(`inputShape[${i}]`, d);
  });
}

/** The up-front checks of {@linkcode evaluateClassifier}, but the labels'. */
function checkEvaluation(
  inputs: Float32Array,
  labels: ArrayLike<number>,
  o: EvaluateOptions & { inputShape: readonly number[] },
): void {
  checkSizes("evaluateClassifier", o.batch, o.inputShape);
  if (o.numClasses !== undefined && !(Number.isInteger(o.numClasses) && o.numClasses >= 1)) {
    throw new RangeError(
      `evaluateClassifier: numClasses = ${o.numClasses}, expected an integer >= 1`,
    );
  }
  const per = o.inputShape.reduce((a, b) => a * b, 1);
  if (inputs.length !== labels.length * per) {
    throw new Error(
      `evaluateClassifier: ${inputs.length} input values for ${labels.length} labels; ` +
        `expected ${labels.length} examples of ${per} (inputShape [${o.inputShape}])`,
    );
  }
}

/** Throws naming the first label that is not a class of [0, classes); `why` follows the range. */
function checkLabels(labels: ArrayLike<number>, classes: number, why: string): void {
  const i = firstBadLabel(labels, classes);
  if (i < 0) return;
  throw new RangeError(
    `evaluateClassifier: labels[${i}] = ${labels[i]} is not a class in [0, ${classes})${why}`,
  );
}
