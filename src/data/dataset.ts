/**
 * The in-memory image dataset type shared by readers, splits and batchers.
 */

/** Names of the datasets the data layer knows how to find, read and download. */
export type DatasetName = "fashion-mnist" | "mnist" | "cifar10" | "cifar100";

/** All known dataset names. */
export const DATASET_NAMES: readonly DatasetName[] = [
  "fashion-mnist",
  "mnist",
  "cifar10",
  "cifar100",
];

/** A set of uint8 images with integer labels, held in host memory. */
export interface ImageDataset {
  /** Dataset name, e.g. "fashion-mnist". */
  name: string;
  /** Which split this is. */
  split: "train" | "test";
  /** Number of images. */
  count: number;
  /** Channels per image (1 for grayscale, 3 for RGB). */
  channels: number;
  /** Image height in pixels. */
  height: number;
  /** Image width in pixels. */
  width: number;
  /** Number of classes; labels lie in `[0, numClasses)`. */
  numClasses: number;
  /** Pixels, `count * channels * height * width` bytes, NCHW (channel planes per image). */
  images: Uint8Array;
  /** One label per image, each in `[0, numClasses)`. */
  labels: Uint8Array;
}

/** Bytes of one image: `channels * height * width`. */
export function imageBytes(d: Pick<ImageDataset, "channels" | "height" | "width">): number {
  return d.channels * d.height * d.width;
}

/** Per-class image counts of a label vector. */
export function classCounts(labels: ArrayLike<number>, numClasses: number): number[] {
  const counts = new Array<number>(numClasses).fill(0);
  for (let i = 0; i < labels.length; i++) counts[labels[i]]++;
  return counts;
}

/** Per-channel mean and standard deviation of pixel values scaled to [0, 1]. */
export interface ChannelStats {
  /** Per-channel mean. */
  mean: number[];
  /** Per-channel standard deviation. */
  std: number[];
}

/**
 * Commonly used normalisation constants (training-set statistics, pixels scaled to [0, 1]).
 * {@linkcode channelStats} computes them from data instead.
 */
export const DATASET_STATS: Record<DatasetName, ChannelStats> = {
  "fashion-mnist": { mean: [0.2860], std: [0.3530] },
  mnist: { mean: [0.1307], std: [0.3081] },
  cifar10: { mean: [0.4914, 0.4822, 0.4465], std: [0.2470, 0.2435, 0.2616] },
  cifar100: { mean: [0.5071, 0.4865, 0.4409], std: [0.2673, 0.2564, 0.2762] },
};

/**
 * Per-channel mean and (population) standard deviation of a dataset's pixels scaled to
 * [0, 1], optionally over a subset of image indices.
 */
export function channelStats(d: ImageDataset, indices?: ArrayLike<number>): ChannelStats {
  const plane = d.height * d.width;
  const per = d.channels * plane;
  const hist = new Float64Array(d.channels * 256);
  const n = indices ? indices.length : d.count;
  for (let k = 0; k < n; k++) {
    const i = indices ? indices[k] : k;
    const base = i * per;
    for (let c = 0; c < d.channels; c++) {
      const h = c * 256;
      const start = base + c * plane;
      for (let p = 0; p < plane; p++) hist[h + d.images[start + p]]++;
    }
  }
  const mean: number[] = [];
  const std: number[] = [];
  for (let c = 0; c < d.channels; c++) {
    let s = 0, s2 = 0, total = 0;
    for (let v = 0; v < 256; v++) {
      const count = hist[c * 256 + v];
      const x = v / 255;
      s += count * x;
      s2 += count * x * x;
      total += count;
    }
    const m = total ? s / total : 0;
    mean.push(m);
    std.push(total ? Math.sqrt(Math.max(0, s2 / total - m * m)) : 0);
  }
  return { mean, std };
}
