/**
 * Seeded batch order: per-epoch shuffles that are a pure function of `(seed, epoch)`, so a
 * resumed run reproduces the exact batches, and a balanced dev-batch sampler for the meta step.
 */
import { Rng } from "../random.ts";

/** A permutation of `0..n-1` determined by `(seed, epoch)` alone. */
export function epochPermutation(n: number, seed: number, epoch: number): Uint32Array {
  const p = new Uint32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  return new Rng(seed, 0xe90c, epoch).shuffle(p);
}

/** Options for {@linkcode EpochSampler}. */
export interface EpochSamplerOptions {
  /** Images per batch, >= 1. */
  batchSize: number;
  /** Seed of the per-epoch shuffles. */
  seed: number;
  /** Drop the final short batch of an epoch; default false. */
  dropLast?: boolean;
}

/**
 * Yields the batches of each epoch over a fixed index set (e.g. a long-tailed subset),
 * reshuffled per epoch from `(seed, epoch)`.
 */
export class EpochSampler {
  /** The index set sampled from (a copy of the constructor argument). */
  readonly indices: Int32Array;
  /** Images per batch (the last batch of an epoch may be shorter). */
  readonly batchSize: number;
  /** Seed of the per-epoch shuffles. */
  readonly seed: number;
  /** Whether the final short batch of an epoch is dropped. */
  readonly dropLast: boolean;
  #epoch = -1;
  #order = new Int32Array(0);

  /** Samples from `indices` (copied); throws a RangeError if `batchSize < 1`. */
  constructor(indices: ArrayLike<number>, options: EpochSamplerOptions) {
    if (!(options.batchSize >= 1)) throw new RangeError("batchSize must be >= 1");
    this.indices = Int32Array.from(indices);
    this.batchSize = options.batchSize;
    this.seed = options.seed;
    this.dropLast = options.dropLast ?? false;
    this.#order = new Int32Array(this.indices.length);
  }

  /** Number of batches per epoch. */
  get batchesPerEpoch(): number {
    const n = this.indices.length / this.batchSize;
    return this.dropLast ? Math.floor(n) : Math.ceil(n);
  }

  /** The whole epoch's index order. */
  order(epoch: number): Int32Array {
    if (epoch !== this.#epoch) {
      const perm = epochPermutation(this.indices.length, this.seed, epoch);
      for (let i = 0; i < perm.length; i++) this.#order[i] = this.indices[perm[i]];
      this.#epoch = epoch;
    }
    return this.#order;
  }

  /**
   * Indices of batch `step` (0-based) of `epoch`: a view valid until a different epoch is
   * requested.
   */
  batch(epoch: number, step: number): Int32Array {
    if (!(step >= 0 && step < this.batchesPerEpoch)) {
      throw new RangeError(`step ${step} out of range [0, ${this.batchesPerEpoch})`);
    }
    const start = step * this.batchSize;
    return this.order(epoch).subarray(start, Math.min(start + this.batchSize, this.indices.length));
  }
}

/**
 * Draws balanced batches from a dev set: `perClass` images of every class per batch, without
 * replacement within a batch, chosen by a generator seeded with `(seed, step)`, so batch
 * `step` is reproducible on resume. Classes with fewer than `perClass` dev images are drawn
 * with replacement.
 */
export class BalancedDevSampler {
  /** Number of classes; every class must have a dev image. */
  readonly numClasses: number;
  /** Images of each class per batch (default 1). */
  readonly perClass: number;
  /** Seed; batch `step` is drawn from `(seed, step)`. */
  readonly seed: number;
  #byClass: Int32Array[];
  #out: Int32Array;

  /**
   * Groups the dev set by class; throws a RangeError if a class has no dev image.
   *
   * @param devIndices dataset indices of the dev set
   * @param labels labels of the whole dataset (indexed by dataset index)
   */
  constructor(
    devIndices: ArrayLike<number>,
    labels: ArrayLike<number>,
    numClasses: number,
    options: { perClass?: number; seed: number },
  ) {
    this.numClasses = numClasses;
    this.perClass = options.perClass ?? 1;
    this.seed = options.seed;
    const lists: number[][] = Array.from({ length: numClasses }, () => []);
    for (let k = 0; k < devIndices.length; k++) lists[labels[devIndices[k]]].push(devIndices[k]);
    lists.forEach((l, c) => {
      if (l.length === 0) throw new RangeError(`dev set has no image of class ${c}`);
    });
    this.#byClass = lists.map((l) => Int32Array.from(l));
    this.#out = new Int32Array(numClasses * this.perClass);
  }

  /** Batch size: `numClasses * perClass`. */
  get batchSize(): number {
    return this.#out.length;
  }

  /**
   * Dataset indices of dev batch `step`, class-major (`perClass` of class 0, then class 1...).
   * The returned array is reused by the next call.
   */
  batch(step: number): Int32Array {
    const rng = new Rng(this.seed, 0xde5, step);
    let at = 0;
    for (const list of this.#byClass) {
      const n = list.length;
      if (n >= this.perClass) {
        // Partial Fisher-Yates on a scratch copy: first perClass of a random permutation.
        const scratch = list.slice();
        for (let i = 0; i < this.perClass; i++) {
          const j = i + rng.nextInt(n - i);
          const t = scratch[i];
          scratch[i] = scratch[j];
          scratch[j] = t;
          this.#out[at++] = scratch[i];
        }
      } else {
        for (let i = 0; i < this.perClass; i++) this.#out[at++] = list[rng.nextInt(n)];
      }
    }
    return this.#out;
  }
}
