/**
 * The trainer's view of the data layer: loads the dataset, builds the long-tailed split with
 * its balanced dev set, picks the balanced test subset, and draws every random choice of an
 * epoch (shuffle, augmentation, dev batches) from generators derived from (seed, epoch), so an
 * epoch is reproducible on its own and a resumed run replays it exactly.
 */
import { classCounts, DATASET_STATS, type ImageDataset } from "../data/dataset.ts";
import { loadDataset } from "../data/load.ts";
import { longTailSplit } from "../data/split.ts";
import {
  checkClassCounts,
  checkSplitContents,
  checkSplitsAgree,
  splitFingerprint,
  type SplitNames,
} from "../data/validate.ts";
import { drawAugmentParams } from "../data/augment.ts";
import { Rng, type RngState } from "../random.ts";
import type { TrainConfig } from "./config.ts";

/** Train and test splits supplied in memory (scripts and tests), bypassing the loader. */
export interface SuppliedData {
  /** Training split; the long-tailed subset and dev set are drawn from it. */
  train: ImageDataset;
  /** Test split. */
  test: ImageDataset;
  /** Per-channel normalisation; default: computed by the known dataset's constants or 0.5/0.25. */
  mean?: number[];
  /** Per-channel standard deviation; default as for `mean`. */
  std?: number[];
}

/** Everything the loop needs to know about the data of a run. */
export interface RunData {
  /** The full training split. */
  train: ImageDataset;
  /** The full test split. */
  test: ImageDataset;
  /** Where the files came from ("memory" for supplied data). */
  source: string;
  /** Long-tailed training subset (dataset indices, ascending). */
  trainIndices: Int32Array;
  /** Balanced dev set (dataset indices). */
  devIndices: Int32Array;
  /** Dev indices by class. */
  devByClass: Int32Array[];
  /** Test subset (test-set indices, ascending). */
  testIndices: Int32Array;
  /** Per-class counts of `trainIndices`. */
  trainCounts: number[];
  /** Per-class counts of `devIndices`. */
  devCounts: number[];
  /** Per-class counts of `testIndices`. */
  testCounts: number[];
  /** Head-class count `n_max` of the long-tailed split. */
  nMax: number;
  /** Number of classes. */
  numClasses: number;
  /** Image shape `[channels, height, width]`. */
  image: [number, number, number];
  /** Per-channel normalisation mean (pixels scaled to [0, 1]). */
  mean: number[];
  /** Per-channel normalisation standard deviation (pixels scaled to [0, 1]). */
  std: number[];
  /** Horizontal flips in augmentation (off for digits). */
  flip: boolean;
  /** Reflect padding of the random crop: min(4, height - 1, width - 1). */
  pad: number;
  /** SHA-256 fingerprints of the full splits (a checkpoint records them; see resume). */
  fingerprints: { train: string; test: string };
}

/** Loads (or takes) the data and builds the split of a run. */
export async function prepareData(
  cfg: TrainConfig,
  supplied?: SuppliedData,
  log?: (msg: string) => void,
): Promise<RunData> {
  let train: ImageDataset, test: ImageDataset, source: string, names: SplitNames;
  let mean: number[], std: number[];
  if (supplied) {
    ({ train, test } = supplied);
    source = "memory";
    names = { train: "data.train (in memory)", test: "data.test (in memory)" };
    checkSplitContents(train, names.train);
    checkSplitContents(test, names.test);
    checkSplitsAgree(train, test, names);
    const known = DATASET_STATS[cfg.dataset];
    mean = supplied.mean ??
      (known?.mean.length === train.channels ? known.mean : Array(train.channels).fill(0.5));
    std = supplied.std ??
      (known?.std.length === train.channels ? known.std : Array(train.channels).fill(0.25));
  } else {
    const loaded = await loadDataset(cfg.dataset, {
      dataDir: cfg.dataDir ?? undefined,
      allowDownload: cfg.download,
      log,
    });
    ({ train, test } = loaded);
    source = loaded.dir;
    names = loaded.files;
    ({ mean, std } = DATASET_STATS[cfg.dataset]);
  }
  checkClassCounts(train, test, cfg.devPerClass, names);
  const C = train.numClasses;
  const split = longTailSplit(train.labels, C, {
    imbalanceFactor: cfg.imbalance,
    seed: cfg.seed,
    devPerClass: cfg.devPerClass,
    maxPerClass: cfg.maxPerClass ?? undefined,
  });
  const devByClass: number[][] = Array.from({ length: C }, () => []);
  for (const i of split.dev) devByClass[train.labels[i]].push(i);
  const testIndices = balancedSubset(test.labels, C, cfg.testPerClass);
  const pad = Math.min(4, train.height - 1, train.width - 1);
  return {
    train,
    test,
    source,
    trainIndices: split.train,
    devIndices: split.dev,
    devByClass: devByClass.map((l) => Int32Array.from(l)),
    testIndices,
    trainCounts: split.counts,
    devCounts: split.devCounts,
    testCounts: classCounts(Array.from(testIndices, (i) => test.labels[i]), C),
    nMax: split.nMax,
    numClasses: C,
    image: [train.channels, train.height, train.width],
    mean,
    std,
    flip: cfg.dataset !== "mnist",
    pad,
    fingerprints: { train: await splitFingerprint(train), test: await splitFingerprint(test) },
  };
}

/** The first `perClass` indices of each class in file order (all when null), ascending. */
export function balancedSubset(
  labels: ArrayLike<number>,
  numClasses: number,
  perClass: number | null,
): Int32Array {
  if (perClass === null) return Int32Array.from({ length: labels.length }, (_, i) => i);
  const taken = new Array<number>(numClasses).fill(0);
  const out: number[] = [];
  for (let i = 0; i < labels.length; i++) {
    if (taken[labels[i]] < perClass) {
      taken[labels[i]]++;
      out.push(i);
    }
  }
  return Int32Array.from(out);
}

/**
 * The class-balanced fine-tuning subset of cb-finetune: `min_c n_c` images of every class from
 * the long-tailed training set, chosen once from the run's seed.
 */
export function fineTuneSubset(data: RunData, seed: number): Int32Array {
  const C = data.numClasses;
  const per = Math.min(...data.trainCounts.filter((n) => n > 0));
  const byClass: number[][] = Array.from({ length: C }, () => []);
  for (const i of data.trainIndices) byClass[data.train.labels[i]].push(i);
  const out: number[] = [];
  byClass.forEach((list, c) => {
    const rng = Rng.derive(seed, "cb-finetune", c);
    out.push(...rng.shuffle(list.slice()).slice(0, per));
  });
  return Int32Array.from(out).sort();
}

/** Random choices of one epoch: shuffle, then per step augmentation and dev batches. */
export class EpochRandom {
  /** Generator of the epoch's shuffle, derived from `(seed, "shuffle", epoch)`. */
  readonly shuffle: Rng;
  /** Generator of augmentation parameters, derived from `(seed, "augment", epoch)`. */
  readonly augment: Rng;
  /** Generator of dev batches, derived from `(seed, "dev", epoch)`. */
  readonly dev: Rng;

  /** The generators of epoch `epoch` of a run seeded with `seed`. */
  constructor(seed: number, epoch: number) {
    this.shuffle = Rng.derive(seed, "shuffle", epoch);
    this.augment = Rng.derive(seed, "augment", epoch);
    this.dev = Rng.derive(seed, "dev", epoch);
  }

  /** States of the three generators (what a checkpoint stores for the next epoch). */
  getState(): Record<string, RngState> {
    return {
      shuffle: this.shuffle.getState(),
      augment: this.augment.getState(),
      dev: this.dev.getState(),
    };
  }

  /** Restores {@linkcode getState}. */
  setState(s: Record<string, RngState>): void {
    this.shuffle.setState(s.shuffle);
    this.augment.setState(s.augment);
    this.dev.setState(s.dev);
  }

  /** The epoch's order of `indices` (a shuffled copy). */
  order(indices: Int32Array): Int32Array {
    return this.shuffle.shuffle(indices.slice()) as Int32Array;
  }

  /** Packed augmentation parameters of `count` images (see src/data/augment.ts). */
  augmentParams(count: number, pad: number, flip: boolean, out: Uint32Array): Uint32Array {
    return drawAugmentParams(this.augment, count, { pad, flip }, out);
  }

  /**
   * A balanced dev batch: `perClass` images of every class (class-major), without replacement
   * within a class when it has enough dev images.
   */
  devBatch(devByClass: Int32Array[], perClass: number, out: Int32Array): Int32Array {
    let at = 0;
    for (const list of devByClass) {
      const scratch = Array.from(list);
      for (let k = 0; k < perClass; k++) {
        if (scratch.length >= perClass) {
          const j = k + this.dev.nextInt(scratch.length - k);
          const t = scratch[k];
          scratch[k] = scratch[j];
          scratch[j] = t;
          out[at++] = scratch[k];
        } else {
          out[at++] = scratch[this.dev.nextInt(scratch.length)];
        }
      }
    }
    return out;
  }
}

/** Indices of batch `step` of an epoch over `order`, wrapping around to fill the last batch. */
export function batchIndices(
  order: Int32Array,
  step: number,
  batch: number,
  out: Int32Array,
): Int32Array {
  const n = order.length;
  for (let k = 0; k < batch; k++) out[k] = order[(step * batch + k) % n];
  return out;
}
