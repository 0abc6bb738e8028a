/**
 * The fit loop's data source over JPEG lists: each step's batch comes from a streaming
 * {@linkcode JpegLoader} (decoded on worker threads `prefetch` batches ahead, so decoding
 * overlaps the GPU step; cropped, resized, flipped and normalised on the GPU) and is copied into
 * the engine's input on the GPU. In meta epochs each step also gets a dev batch from the
 * balanced dev set, and the per-example weights w_y. Everything random is a function of
 * (seed, epoch): the loaders' order and crops, and the dev cycle.
 */
import type { Gpu } from "../gpu/runtime.ts";
import { JpegLoader } from "../data/jpeg/loader.ts";
import type { GpuImageBatch } from "../data/jpeg/loader.ts";
import type { DecodePool } from "../data/jpeg/pool.ts";
import type { DataSource, EpochBatches } from "../engine/fit.ts";
import type { StepEngine } from "../engine/step.ts";
import type { MetaReweighter } from "../engine/meta.ts";
import type { LargeData } from "./data.ts";

/** Options of {@linkcode JpegSource}. */
export interface JpegSourceOptions {
  gpu: Gpu;
  pool: DecodePool;
  data: LargeData;
  engine: StepEngine;
  meta: MetaReweighter;
  seed: number;
  size: number;
  /** Whether epoch e is a meta epoch (dev batches and w_y weights). */
  isMeta(epoch: number): boolean;
}

/** Training batches from JPEG files (see the module doc). */
export class JpegSource implements DataSource {
  readonly #o: JpegSourceOptions;
  readonly train: JpegLoader;
  readonly dev: JpegLoader;
  readonly #weights: Float32Array;
  readonly #labels: Uint32Array;
  readonly #devLabels: Uint32Array;

  /** Loaders over the training and dev entries of `o.data`. */
  constructor(o: JpegSourceOptions) {
    this.#o = o;
    const { engine, meta } = o;
    this.train = new JpegLoader(o.gpu, o.pool, o.data.train, {
      batchSize: engine.batch,
      mode: "train",
      seed: o.seed,
      indices: o.data.split.train,
      size: o.size,
    });
    this.dev = new JpegLoader(o.gpu, o.pool, o.data.train, {
      batchSize: meta.devBatch,
      mode: "train",
      seed: o.seed + 1,
      indices: o.data.split.dev,
      size: o.size,
      prefetch: 1,
    });
    this.#weights = new Float32Array(engine.batch);
    this.#labels = new Uint32Array(engine.batch);
    this.#devLabels = new Uint32Array(meta.devBatch);
  }

  /** Steps of an epoch: full batches of the training entries. */
  get stepsPerEpoch(): number {
    return this.train.batchesPerEpoch;
  }

  /** The batches of `epoch` (deterministic in (seed, epoch); no state to restore). */
  epoch(epoch: number): EpochBatches {
    const batches = this.train.epoch(epoch);
    const meta = this.#o.isMeta(epoch);
    let devCycle = 0;
    let devBatches = meta ? this.dev.epoch(epoch * 1_000_000) : null;
    const nextDev = async (): Promise<GpuImageBatch> => {
      let r = await devBatches!.next();
      if (r.done) {
        devBatches = this.dev.epoch(epoch * 1_000_000 + ++devCycle);
        r = await devBatches.next();
      }
      return r.value as GpuImageBatch;
    };
    return {
      steps: this.train.batchesPerEpoch,
      load: async () => {
        const r = await batches.next();
        if (r.done) throw new Error("JpegSource: the epoch ended early");
        this.#write(r.value, meta);
        if (meta) this.#writeDev(await nextDev());
      },
    };
  }

  #write(b: GpuImageBatch, meta: boolean): void {
    const { gpu, engine, data } = this.#o;
    gpu.copy(b.images, engine.x.view);
    for (let k = 0; k < b.count; k++) {
      this.#labels[k] = b.labels[k];
      this.#weights[k] = meta ? data.classWeights[b.labels[k]] : 1;
    }
    gpu.write(engine.targets.view, this.#labels);
    gpu.write(engine.weights.view, this.#weights);
  }

  #writeDev(b: GpuImageBatch): void {
    const { gpu, meta } = this.#o;
    gpu.copy(b.images, meta.devX.view);
    for (let k = 0; k < b.count; k++) this.#devLabels[k] = b.labels[k];
    gpu.write(meta.devTargets.view, this.#devLabels);
  }

  /** Frees the loaders' GPU buffers. */
  dispose(): void {
    this.train.dispose();
    this.dev.dispose();
  }
}
