/**
 * An in-memory data source for the fit loop: inputs and targets held on the host, shuffled per
 * epoch from the stream `(seed, "shuffle", epoch)`, each batch uploaded into the engine's inputs.
 * The last batch of an epoch wraps around to the epoch's first examples, so every step is full:
 * an epoch is ceil(count / batch) steps, and when `count` is not a multiple of the batch its
 * steps train on `steps * batch` rows, the first few of the epoch's order twice (600 examples in
 * batches of 32: 19 steps, 608 rows). Its epochs give `count` as their examples, which `fit`
 * reports (600). A batch larger than the data set is refused.
 *
 * Class labels are checked on the host, never on the GPU (a label >= C would make the loss
 * kernel read outside its row of logits): all of them at construction with `numClasses`, else
 * all of them once the engine knows the model's output width (its first forward), and each
 * batch's through {@linkcode StepEngine.writeBatch}.
 */
import { firstBadLabel } from "../labels.ts";
import { Rng, type RngState } from "../random.ts";
import type { DataSource, EpochBatches } from "./fit.ts";
import type { StepEngine } from "./step.ts";

/** Options of {@linkcode ArraySource}. */
export interface ArraySourceOptions {
  /** The engine whose `x`, `targets` (and `weights`, when given) each batch fills. */
  engine: StepEngine;
  /** Inputs, one example after another (`count * exampleSize` values). */
  inputs: Float32Array;
  /** Targets, one example after another (class labels, or `count * targetSize` values). */
  targets: ArrayLike<number>;
  /** Per-example loss weights (default: the engine's weights are left as they are, 1). */
  weights?: Float32Array;
  /** Seed of the shuffles. */
  seed: number;
  /** Keep the order (no shuffle). */
  ordered?: boolean;
  /**
   * Classes C of class-label targets: every target must be an integer in [0, C), checked at
   * construction (default: checked against the model's output width once the engine knows it).
   */
  numClasses?: number;
}

/**
 * Batches of host arrays, shuffled per epoch. The epoch's last batch wraps round to the epoch's
 * first examples, so every step is full: 600 examples in batches of 32 are 19 steps of 608 rows,
 * the first 8 twice, and `fit` reports 600 examples. A batch larger than the data set is refused.
 * Class labels are checked on the host before they reach the GPU.
 */
export class ArraySource implements DataSource {
  /** Number of examples. */
  readonly count: number;
  /** Example indices of the batch loaded last (for per-example extras such as class weights). */
  readonly batchIndices: Int32Array;
  readonly #o: ArraySourceOptions;
  readonly #x: Float32Array;
  readonly #t: Float32Array | Uint32Array;
  readonly #w: Float32Array;
  readonly #inSize: number;
  readonly #tSize: number;
  /** Whether every target has been checked as a class label. */
  #labelsChecked = false;

  /**
   * A source over `o.inputs` and `o.targets` for `o.engine`; throws naming the first target that
   * is not a class of `o.numClasses`, on an empty or ragged data set, and when the engine's batch
   * is larger than the data set (every step would repeat examples).
   */
  constructor(o: ArraySourceOptions) {
    const e = o.engine;
    this.#o = o;
    this.#inSize = e.x.size / e.batch;
    this.#tSize = e.targets.size / e.batch;
    this.count = o.inputs.length / this.#inSize;
    if (!Number.isInteger(this.count) || o.targets.length !== this.count * this.#tSize) {
      throw new Error(
        `ArraySource: ${o.inputs.length} input values and ${o.targets.length} targets do not ` +
          `make whole examples of ${this.#inSize} inputs and ${this.#tSize} targets`,
      );
    }
    if (this.count === 0) {
      throw new Error("ArraySource: no examples (inputs and targets are empty)");
    }
    if (e.batch > this.count) {
      throw new RangeError(
        `ArraySource: the engine's batch is ${e.batch}, larger than the ${this.count} examples ` +
          `of the data set: each step would see examples twice; build the StepEngine with ` +
          `batch <= ${this.count}`,
      );
    }
    if (o.numClasses !== undefined) this.#checkLabels(o.numClasses, "numClasses");
    this.#x = new Float32Array(e.x.size);
    this.#t = e.targets.dtype === "u32"
      ? new Uint32Array(e.targets.size)
      : new Float32Array(e.targets.size);
    this.#w = new Float32Array(e.batch);
    this.batchIndices = new Int32Array(e.batch);
  }

  /** The epoch's order (shuffled from `(seed, "shuffle", epoch)`) and its batches. */
  epoch(epoch: number): EpochBatches {
    const order = Int32Array.from({ length: this.count }, (_, i) => i);
    if (!this.#o.ordered) new Rng(this.#o.seed, "shuffle", epoch).shuffle(order);
    const B = this.#o.engine.batch;
    return {
      steps: Math.ceil(this.count / B),
      examples: this.count, // the wrapped rows of the last batch are repeats
      load: (step) => this.#load(order, step),
    };
  }

  /** The generator state at the start of `epoch` (the shuffle stream). */
  rngState(epoch: number): RngState {
    return new Rng(this.#o.seed, "shuffle", epoch).getState();
  }

  /**
   * Throws naming the first target that is not an integer in [0, classes), where `source` says
   * where the class count came from; the targets must be one u32 label per example.
   */
  #checkLabels(classes: number, source: string): void {
    const e = this.#o.engine;
    if (e.targets.dtype !== "u32" || this.#tSize !== 1) {
      throw new Error(
        `ArraySource: numClasses needs class-label targets (the engine's are ` +
          `${e.targets.dtype} [${e.targets.shape.slice(1)}] per example)`,
      );
    }
    if (!Number.isInteger(classes) || classes < 1) {
      throw new RangeError(`ArraySource: numClasses = ${classes}, expected an integer >= 1`);
    }
    const t = this.#o.targets;
    const i = firstBadLabel(t, classes);
    if (i >= 0) {
      throw new RangeError(
        `ArraySource: targets[${i}] = ${t[i]} is not a class label in [0, ${classes}) ` +
          `(${source} ${classes})`,
      );
    }
    this.#labelsChecked = true;
  }

  #load(order: Int32Array, step: number): void {
    const { engine, inputs, targets, weights } = this.#o;
    const classes = engine.numClasses;
    if (!this.#labelsChecked && classes !== null) {
      this.#checkLabels(classes, "the model's output width");
    }
    const B = engine.batch, n = this.#inSize, m = this.#tSize;
    for (let k = 0; k < B; k++) {
      const i = order[(step * B + k) % order.length];
      this.batchIndices[k] = i;
      this.#x.set(inputs.subarray(i * n, (i + 1) * n), k * n);
      for (let j = 0; j < m; j++) this.#t[k * m + j] = targets[i * m + j];
      if (weights) this.#w[k] = weights[i];
    }
    engine.writeBatch(this.#x, this.#t, weights ? this.#w : undefined, this.batchIndices);
  }
}
