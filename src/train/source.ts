/**
 * The long-tail data source of the fit loop: each epoch shuffles the long-tailed set (or the
 * balanced fine-tuning subset), and each step gathers its images, augments them on the GPU into
 * the engine's input, uploads labels and per-example class weights, and, for meta epochs, draws a
 * balanced dev batch. Every draw comes from the epoch's {@linkcode EpochRandom}.
 */
import type { Gpu } from "../gpu/runtime.ts";
import type { Tensor } from "../tensor.ts";
import { Batcher } from "../data/batcher.ts";
import type { GpuAugmenter } from "../data/augment.ts";
import type { DataSource, EpochBatches } from "../engine/fit.ts";
import type { RngState } from "../random.ts";
import { batchIndices, EpochRandom, type RunData } from "./data.ts";
import type { Phase } from "./methods.ts";

/** Where the source writes a step's inputs. */
export interface SourceTargets {
  /** Training images [B, C, H, W], labels u32 [B], per-example weights [B]. */
  x: Tensor;
  labels: Tensor;
  weights: Tensor;
  /** Dev images and labels (meta epochs). */
  devX: Tensor;
  devLabels: Tensor;
}

/** Settings of {@linkcode LongTailSource}. */
export interface LongTailSourceOptions {
  gpu: Gpu;
  data: RunData;
  seed: number;
  batch: number;
  /** The epoch's last batch when `batch` does not divide its images (see RecipeConfig). */
  lastBatch: "partial" | "wrap" | "drop";
  /** Dev images per class in a dev batch. */
  devPerClass: number;
  /** The phase of each epoch. */
  phases: Phase[];
  /** Effective-number class weights. */
  classWeights: number[];
  /** The class-balanced fine-tuning subset (cb-finetune), if any phase uses it. */
  subset: Int32Array | null;
  augmenter: GpuAugmenter;
  into: SourceTargets;
}

/** Batches of the long-tailed split (see the module comment). */
export class LongTailSource implements DataSource {
  readonly #o: LongTailSourceOptions;
  readonly #train: Batcher;
  readonly #dev: Batcher;
  readonly #idx: Int32Array;
  readonly #devIdx: Int32Array;
  readonly #aug: Uint32Array;
  readonly #hostW: Float32Array;
  /** Host labels of the last loaded batch. */
  labels: ArrayLike<number> = [];
  /** Examples of the last loaded batch: the batch size, or fewer for a partial last batch. */
  count = 0;

  /** A source writing into `o.into`. */
  constructor(o: LongTailSourceOptions) {
    this.#o = o;
    const devBatch = o.devPerClass * o.data.numClasses;
    this.#train = new Batcher(o.data.train, o.batch, 2);
    this.#dev = new Batcher(o.data.train, devBatch, 2);
    this.#idx = new Int32Array(o.batch);
    this.#devIdx = new Int32Array(devBatch);
    this.#aug = new Uint32Array(Math.max(o.batch, devBatch));
    this.#hostW = new Float32Array(o.batch);
  }

  /** The epoch's order and its batches. */
  epoch(epoch: number, rngState?: unknown): EpochBatches {
    const o = this.#o;
    const phase = o.phases[epoch];
    const rnd = new EpochRandom(o.seed, epoch);
    if (rngState) rnd.setState(rngState as Record<string, RngState>);
    const order = rnd.order(phase.images === "all" ? o.data.trainIndices : o.subset!);
    const C = o.data.numClasses;
    const classW = phase.weights === "cb"
      ? o.classWeights
      : new Array(C).fill(phase.weights === "zero" ? 0 : 1);
    return {
      steps: this.steps(order.length),
      examples: this.examples(order.length),
      load: (step) => this.#load(step, order, rnd, phase, classW),
    };
  }

  /** Steps of an epoch over `images` images. */
  steps(images: number): number {
    const B = this.#o.batch;
    return this.#o.lastBatch === "drop" ? Math.floor(images / B) : Math.ceil(images / B);
  }

  /**
   * Distinct images the steps of an epoch over `images` images train on (fit's
   * `EpochEnd.examples`): all of them, but for "drop", which leaves out the last partial batch.
   */
  examples(images: number): number {
    return Math.min(images, this.steps(images) * this.#o.batch);
  }

  /**
   * Rows the steps of an epoch over `images` images train on (the `images` of metrics.jsonl):
   * {@linkcode LongTailSource.examples}, and with "wrap" the images that refill the last batch
   * once more.
   */
  rows(images: number): number {
    const o = this.#o;
    return o.lastBatch === "partial" ? images : this.steps(images) * o.batch;
  }

  /** Images of `epoch`'s order: the long-tailed set, or the fine-tuning subset. */
  imagesOf(epoch: number): number {
    const o = this.#o;
    return o.phases[epoch].images === "all" ? o.data.trainIndices.length : o.subset!.length;
  }

  /** The generators' state at the start of `epoch`. */
  rngState(epoch: number): unknown {
    return new EpochRandom(this.#o.seed, epoch).getState();
  }

  #load(step: number, order: Int32Array, rnd: EpochRandom, phase: Phase, classW: number[]): void {
    const { gpu, data, augmenter, into } = this.#o;
    const B = this.#o.batch;
    // "partial": the images left (N mod B at the last step); "wrap" refills from the start
    const batch = this.#o.lastBatch === "partial" ? Math.min(B, order.length - step * B) : B;
    this.count = batch;
    batchIndices(order, step, B, this.#idx);
    const tb = this.#train.gather(this.#idx.subarray(0, batch));
    const aug = rnd.augmentParams(batch, data.pad, data.flip, this.#aug);
    augmenter.run(tb.pixels, aug, batch, into.x.view);
    into.labels.upload(gpu, tb.labelsU32);
    this.labels = tb.labels;
    // meta-update-wy keeps its weights on the GPU (gathered from the meta-learned class weights)
    if (!(phase.kind === "meta" && phase.rule === "meta-update-wy")) {
      for (let k = 0; k < batch; k++) this.#hostW[k] = classW[tb.labels[k]];
      into.weights.upload(gpu, this.#hostW.subarray(0, batch));
    }
    if (phase.kind === "plain") return;
    rnd.devBatch(data.devByClass, this.#o.devPerClass, this.#devIdx);
    const db = this.#dev.gather(this.#devIdx);
    const n = this.#devIdx.length;
    augmenter.run(
      db.pixels,
      rnd.augmentParams(n, data.pad, data.flip, this.#aug),
      n,
      into.devX.view,
    );
    into.devLabels.upload(gpu, db.labelsU32);
  }
}
