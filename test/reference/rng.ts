/**
 * A small seeded PRNG (mulberry32) for the float64 reference and its tests.
 *
 * Deterministic across platforms: the same seed gives the same sequence everywhere.
 */

/** Seeded pseudo-random generator with uniform and normal draws. */
export class Rng {
  #state: number;
  #spare: number | null = null;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** Next 32-bit unsigned integer (mulberry32). */
  nextU32(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform in the open interval (lo, hi); never returns an endpoint. */
  uniform(lo = 0, hi = 1): number {
    const u = (this.nextU32() + 0.5) / 4294967296;
    return lo + (hi - lo) * u;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.uniform() * n);
  }

  /** Normal draw (Box-Muller, caching the second value). */
  normal(mean = 0, std = 1): number {
    if (this.#spare !== null) {
      const z = this.#spare;
      this.#spare = null;
      return mean + std * z;
    }
    const u1 = this.uniform();
    const u2 = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u1));
    this.#spare = r * Math.sin(2 * Math.PI * u2);
    return mean + std * r * Math.cos(2 * Math.PI * u2);
  }

  /** A new Float64Array of n normal draws. */
  normalArray(n: number, mean = 0, std = 1): Float64Array {
    const a = new Float64Array(n);
    for (let i = 0; i < n; i++) a[i] = this.normal(mean, std);
    return a;
  }

  /** A new Float64Array of n uniform draws in (lo, hi). */
  uniformArray(n: number, lo = 0, hi = 1): Float64Array {
    const a = new Float64Array(n);
    for (let i = 0; i < n; i++) a[i] = this.uniform(lo, hi);
    return a;
  }

  /** A new Int32Array of n integers in [0, k). */
  intArray(n: number, k: number): Int32Array {
    const a = new Int32Array(n);
    for (let i = 0; i < n; i++) a[i] = this.int(k);
    return a;
  }
}
