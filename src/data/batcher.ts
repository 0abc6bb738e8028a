/**
 * Host-side batch assembly: gathers the uint8 pixels and labels of a batch from a dataset by
 * indices into reusable buffers, so the next batch can be prepared and uploaded while the
 * current one trains.
 */
import { imageBytes, type ImageDataset } from "./dataset.ts";

/** One gathered batch, in buffers owned by the {@linkcode Batcher} (reused in rotation). */
export interface HostBatch {
  /** Number of images. */
  count: number;
  /** Dataset indices of the images. */
  indices: Int32Array;
  /** `count * imageBytes` bytes of NCHW pixels (the buffer is padded to whole u32 words). */
  pixels: Uint8Array;
  /** Labels as int32. */
  labels: Int32Array;
  /** The same labels viewed as uint32. */
  labelsU32: Uint32Array;
}

/**
 * Gathers batches from a dataset into `slots` rotating host buffers (default 2: one being
 * uploaded or trained on while the next is filled). A batch returned by {@linkcode gather}
 * stays valid until `slots` further calls.
 */
export class Batcher {
  /** The dataset batches are gathered from. */
  readonly dataset: ImageDataset;
  /** Largest number of indices {@linkcode Batcher.gather} accepts. */
  readonly maxBatch: number;
  /** Bytes of one image (`channels * height * width`). */
  readonly imageBytes: number;
  #slots: { indices: Int32Array; pixels: Uint8Array; labels: Int32Array }[];
  #next = 0;

  /** Allocates `slots` (at least 1) host buffers of `maxBatch` images each. */
  constructor(dataset: ImageDataset, maxBatch: number, slots = 2) {
    if (!(maxBatch >= 1)) throw new RangeError("maxBatch must be >= 1");
    this.dataset = dataset;
    this.maxBatch = maxBatch;
    this.imageBytes = imageBytes(dataset);
    const padded = Math.ceil((maxBatch * this.imageBytes) / 4) * 4;
    this.#slots = Array.from({ length: Math.max(1, slots) }, () => ({
      indices: new Int32Array(maxBatch),
      pixels: new Uint8Array(padded),
      labels: new Int32Array(maxBatch),
    }));
  }

  /** Gathers the images and labels at `indices` (at most `maxBatch`). */
  gather(indices: ArrayLike<number>): HostBatch {
    const count = indices.length;
    if (count > this.maxBatch) {
      throw new RangeError(`batch of ${count} exceeds maxBatch ${this.maxBatch}`);
    }
    const slot = this.#slots[this.#next];
    this.#next = (this.#next + 1) % this.#slots.length;
    const { images, labels } = this.dataset;
    const per = this.imageBytes;
    for (let k = 0; k < count; k++) {
      const i = indices[k];
      if (!(i >= 0 && i < this.dataset.count)) {
        throw new RangeError(`index ${i} out of range [0, ${this.dataset.count})`);
      }
      slot.indices[k] = i;
      slot.pixels.set(images.subarray(i * per, (i + 1) * per), k * per);
      slot.labels[k] = labels[i];
    }
    const labelsOut = slot.labels.subarray(0, count);
    return {
      count,
      indices: slot.indices.subarray(0, count),
      pixels: slot.pixels.subarray(0, count * per),
      labels: labelsOut,
      labelsU32: new Uint32Array(labelsOut.buffer, labelsOut.byteOffset, count),
    };
  }
}
