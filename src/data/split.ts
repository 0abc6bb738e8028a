/**
 * Long-tailed training subsets with a balanced development set.
 *
 * From a (roughly balanced) training set with labels in `[0, C)`:
 * 1. each class's indices are shuffled with a generator seeded by `(seed, class)`;
 * 2. the first `devPerClass` (default 10) of each class form the balanced dev set;
 * 3. of the rest, class `c` keeps the first `n_c = floor(n_max * IF^(-c/(C-1)))`, class 0
 *    being the head.
 *
 * `n_max` is the remaining count of the largest class after the dev set is removed (for
 * Fashion-MNIST, 6000 - 10 = 5990), or `maxPerClass` when that is smaller (small presets keep
 * the formula, just scaled down). A class with fewer remaining images than `n_c` keeps what it
 * has (never the case for balanced sources). IF = 1 keeps `n_max` per class. The test set is
 * untouched.
 */
import { Rng } from "../random.ts";

/** Options for {@linkcode longTailSplit}. */
export interface LongTailOptions {
  /** Imbalance factor IF = n_max / n_min, >= 1. */
  imbalanceFactor: number;
  /** Seed of the per-class shuffles. */
  seed: number;
  /** Balanced dev images per class, taken first; default 10. */
  devPerClass?: number;
  /** Caps `n_max` (e.g. 1000 for small presets). */
  maxPerClass?: number;
}

/** The result of {@linkcode longTailSplit}: indices into the source training set. */
export interface LongTailSplit {
  /** Long-tailed training subset, ascending. */
  train: Int32Array;
  /** Balanced dev set, ascending. */
  dev: Int32Array;
  /** Per-class counts of `train`. */
  counts: number[];
  /** Per-class counts of `dev`. */
  devCounts: number[];
  /** The `n_max` used in the formula. */
  nMax: number;
  /** The imbalance factor used (from the options). */
  imbalanceFactor: number;
}

/**
 * Per-class counts `floor(nMax * IF^(-c/(C-1)))` for `c = 0..C-1` (all `nMax` when C = 1).
 */
export function longTailCounts(
  nMax: number,
  numClasses: number,
  imbalanceFactor: number,
): number[] {
  if (!(imbalanceFactor >= 1)) {
    throw new RangeError(`imbalance factor must be >= 1, got ${imbalanceFactor}`);
  }
  const out: number[] = [];
  for (let c = 0; c < numClasses; c++) {
    const e = numClasses > 1 ? -c / (numClasses - 1) : 0;
    out.push(Math.floor(nMax * Math.pow(imbalanceFactor, e)));
  }
  return out;
}

/** Builds a seeded long-tailed split (see the module doc). `labels` must lie in `[0, C)`. */
export function longTailSplit(
  labels: ArrayLike<number>,
  numClasses: number,
  options: LongTailOptions,
): LongTailSplit {
  const devPerClass = options.devPerClass ?? 10;
  const byClass: number[][] = Array.from({ length: numClasses }, () => []);
  for (let i = 0; i < labels.length; i++) {
    const y = labels[i];
    if (!(y >= 0 && y < numClasses)) {
      throw new RangeError(`label ${y} at index ${i} is out of range [0, ${numClasses})`);
    }
    byClass[y].push(i);
  }
  const dev: number[] = [];
  const devCounts: number[] = [];
  const rest: number[][] = [];
  for (let c = 0; c < numClasses; c++) {
    const idx = new Rng(options.seed, 0x5ee1, c).shuffle(byClass[c]);
    if (idx.length < devPerClass) {
      throw new RangeError(
        `class ${c} has ${idx.length} images, fewer than devPerClass = ${devPerClass}`,
      );
    }
    dev.push(...idx.slice(0, devPerClass));
    devCounts.push(devPerClass);
    rest.push(idx.slice(devPerClass));
  }
  let nMax = Math.max(...rest.map((r) => r.length));
  if (options.maxPerClass !== undefined) nMax = Math.min(nMax, options.maxPerClass);
  const target = longTailCounts(nMax, numClasses, options.imbalanceFactor);
  const train: number[] = [];
  const counts: number[] = [];
  for (let c = 0; c < numClasses; c++) {
    const n = Math.min(target[c], rest[c].length);
    train.push(...rest[c].slice(0, n));
    counts.push(n);
  }
  return {
    train: Int32Array.from(train).sort(),
    dev: Int32Array.from(dev).sort(),
    counts,
    devCounts,
    nMax,
    imbalanceFactor: options.imbalanceFactor,
  };
}
