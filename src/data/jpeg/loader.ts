/**
 * The streaming JPEG loader: turns an {@linkcode ImageList} into GPU-ready batches
 * [B, 3, size, size] (float32, normalised), decoding on worker threads ahead of the consumer.
 *
 * Per epoch, the order is the given indices (shuffled by (seed, "order", epoch) for training).
 * Decodes are submitted `prefetch` batches ahead, so while the consumer's GPU step runs the
 * workers decode the next batches; at most `(prefetch + 1) * batchSize` decoded images are held.
 * The host computes each image's sampling box (transforms.ts) and the GPU crops, resizes, flips
 * and normalises the whole batch in one dispatch (shaders/resize.ts). Batches come out in order
 * regardless of which worker finished first.
 *
 * A batch's `images` buffer belongs to the loader and is overwritten by the next batch: record
 * the work that reads it before asking for the next one (queue order then keeps it safe).
 */
import type { BufferView, Gpu } from "../../gpu/runtime.ts";
import { grid1d } from "../../gpu/runtime.ts";
import { Rng } from "../../random.ts";
import { CROP_RECORD_WORDS, cropResizeKernel } from "../../../shaders/resize.ts";
import { type ImageList, imagePath } from "../lists.ts";
import type { DecodePool } from "./pool.ts";
import type { RgbImage } from "./decode.ts";
import {
  evalBox,
  IMAGENET_MEAN,
  IMAGENET_STD,
  packBox,
  type SampleBox,
  trainBox,
} from "./transforms.ts";

/** Options of {@linkcode JpegLoader}. */
export interface JpegLoaderOptions {
  /** Images per batch. */
  batchSize: number;
  /** "train": random resized crop and flip, shuffled; "eval": resize and centre crop, in order. */
  mode: "train" | "eval";
  /** Seed of the shuffle and the crops; default 0. */
  seed?: number;
  /** Entries of the list to use (e.g. a training split), in this order; default all. */
  indices?: Int32Array;
  /** Output side; default 224. */
  size?: number;
  /** Shorter side before the evaluation centre crop; default 256. */
  resize?: number;
  /** Batches decoded ahead of the one being consumed; default 2. */
  prefetch?: number;
  /** Drop a last partial batch; default: true for "train", false for "eval". */
  dropLast?: boolean;
  /** Per-channel mean and std (pixels in [0, 1]); default ImageNet's. */
  mean?: readonly number[];
  /** Per-channel standard deviation. */
  std?: readonly number[];
}

/** One batch on the GPU. */
export interface GpuImageBatch {
  /** Number of images. */
  count: number;
  /** float32 [count, 3, size, size], valid until the next batch is requested. */
  images: BufferView;
  /** Labels, one per image. */
  labels: Int32Array;
  /** List entries of the images. */
  indices: Int32Array;
}

/** Streams batches of a JPEG image list to the GPU (see the module doc). */
export class JpegLoader {
  /** The list images come from. */
  readonly list: ImageList;
  /** Images per batch. */
  readonly batchSize: number;
  /** Output side in pixels. */
  readonly size: number;
  readonly #gpu: Gpu;
  readonly #pool: DecodePool;
  readonly #opts: Required<Omit<JpegLoaderOptions, "indices">>;
  readonly #indices: Int32Array;
  #pixels: GPUBuffer | null = null;
  #staging = new Uint8Array(0);
  readonly #boxes: GPUBuffer;
  readonly #out: GPUBuffer;
  readonly #boxHost: Uint32Array;

  /** A loader over `list`, decoding with `pool` and uploading to `gpu`. */
  constructor(gpu: Gpu, pool: DecodePool, list: ImageList, options: JpegLoaderOptions) {
    if (!(Number.isInteger(options.batchSize) && options.batchSize >= 1)) {
      throw new RangeError(`batchSize must be a positive integer, got ${options.batchSize}`);
    }
    this.#gpu = gpu;
    this.#pool = pool;
    this.list = list;
    this.batchSize = options.batchSize;
    this.size = options.size ?? 224;
    this.#opts = {
      batchSize: options.batchSize,
      mode: options.mode,
      seed: options.seed ?? 0,
      size: this.size,
      resize: options.resize ?? 256,
      prefetch: Math.max(0, options.prefetch ?? 2),
      dropLast: options.dropLast ?? options.mode === "train",
      mean: options.mean ?? IMAGENET_MEAN,
      std: options.std ?? IMAGENET_STD,
    };
    this.#indices = options.indices ?? Int32Array.from(list.paths, (_, i) => i);
    this.#boxHost = new Uint32Array(this.batchSize * CROP_RECORD_WORDS);
    this.#boxes = gpu.alloc(this.#boxHost.byteLength);
    this.#out = gpu.alloc(this.batchSize * 3 * this.size * this.size * 4);
  }

  /** Number of batches in one epoch. */
  get batchesPerEpoch(): number {
    const n = this.#indices.length, b = this.batchSize;
    return this.#opts.dropLast ? Math.floor(n / b) : Math.ceil(n / b);
  }

  /** The entry order of an epoch. */
  order(epoch: number): Int32Array {
    const order = this.#indices.slice();
    if (this.#opts.mode === "train") new Rng(this.#opts.seed, "order", epoch).shuffle(order);
    return order;
  }

  /** The batches of one epoch, in order. */
  async *epoch(epoch: number): AsyncGenerator<GpuImageBatch> {
    const order = this.order(epoch);
    const B = this.batchSize, nb = this.batchesPerEpoch;
    const limit = Math.min(order.length, nb * B);
    const pending: Promise<RgbImage>[] = [];
    let submitted = 0;
    const submitUpTo = (end: number) => {
      for (; submitted < Math.min(end, limit); submitted++) {
        const i = order[submitted];
        const p = this.#pool.decode(imagePath(this.list, i), this.list.where(i));
        p.catch(() => {}); // rejections surface when the batch awaits them, in order
        pending.push(p);
      }
    };
    for (let b = 0; b < nb; b++) {
      submitUpTo((b + 1 + this.#opts.prefetch) * B);
      const start = b * B, count = Math.min(B, limit - start);
      const images = await Promise.all(pending.splice(0, count));
      const indices = order.slice(start, start + count);
      yield this.#upload(epoch, images, indices);
    }
  }

  /** The sampling box of entry `index` for an image of the given size. */
  box(epoch: number, index: number, width: number, height: number): SampleBox {
    const o = this.#opts;
    return o.mode === "train"
      ? trainBox(width, height, o.seed, epoch, index, o.size)
      : evalBox(width, height, o.resize, o.size);
  }

  #upload(epoch: number, images: RgbImage[], indices: Int32Array): GpuImageBatch {
    const gpu = this.#gpu, count = images.length;
    let bytes = 0;
    const offsets = images.map((img) => {
      const at = bytes;
      bytes += Math.ceil(img.data.length / 4) * 4;
      return at;
    });
    if (this.#staging.length < bytes) this.#staging = new Uint8Array(Math.ceil(bytes * 1.25));
    images.forEach((img, n) => {
      this.#staging.set(img.data, offsets[n]);
      const box = this.box(epoch, indices[n], img.width, img.height);
      packBox(this.#boxHost, n, offsets[n], img.width, box);
    });
    if (!this.#pixels || this.#pixels.size < bytes) {
      if (this.#pixels) gpu.release(this.#pixels);
      this.#pixels = gpu.alloc(Math.ceil(bytes * 1.25));
    }
    const pixels = { buffer: this.#pixels, offset: 0, size: this.#pixels.size };
    const boxes = { buffer: this.#boxes, offset: 0, size: this.#boxes.size };
    gpu.write(pixels, this.#staging.subarray(0, bytes));
    gpu.write(boxes, this.#boxHost);
    const S = this.size, total = count * S * S, { mean, std } = this.#opts;
    const out = { buffer: this.#out, offset: 0, size: this.#out.size };
    cropResizeKernel.dispatch(gpu, [pixels, boxes, out], {
      total,
      outW: S,
      outH: S,
      mul0: 1 / (255 * std[0]),
      mul1: 1 / (255 * std[1]),
      mul2: 1 / (255 * std[2]),
      add0: -mean[0] / std[0],
      add1: -mean[1] / std[1],
      add2: -mean[2] / std[2],
    }, grid1d(Math.ceil(total / 64)));
    const labels = Int32Array.from(indices, (i) => this.list.labels[i]);
    return {
      count,
      images: { buffer: this.#out, offset: 0, size: total * 3 * 4 },
      labels,
      indices,
    };
  }

  /** Returns the loader's GPU buffers to the pool. */
  dispose(): void {
    if (this.#pixels) this.#gpu.release(this.#pixels);
    this.#pixels = null;
    this.#gpu.release(this.#boxes);
    this.#gpu.release(this.#out);
  }
}
