/**
 * The one seeded pseudo-random generator of tailgrad, with serialisable state. Every random
 * choice of a run (init, splits, shuffles, augmentation, dev batches) comes from it, so the same
 * seed gives the same run.
 *
 * The generator is xoshiro128** (Blackman and Vigna) on four 32-bit words, seeded through
 * splitmix32 so that nearby seeds give unrelated streams. {@linkcode Rng.derive} mixes several
 * integers or names (e.g. `(seed, "shuffle", epoch)`) into one stream, which is how every
 * per-epoch or per-step draw is made reproducible without storing generator state.
 */

/** The serialisable state of an {@linkcode Rng}: four unsigned 32-bit words. */
export interface RngState {
  /** The xoshiro128** state words, each in [0, 2^32). */
  s: [number, number, number, number];
}

function splitmix32(x: number): number {
  x = (x + 0x9e3779b9) | 0;
  let z = x;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** A name as a stream number (FNV-1a), so streams can be named: `new Rng(seed, "init")`. */
function streamId(v: number | string): number {
  if (typeof v === "number") return v;
  let h = 0x811c9dc5;
  for (let i = 0; i < v.length; i++) h = Math.imul(h ^ v.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** Seeded xoshiro128** generator. */
export class Rng {
  #s = new Uint32Array(4);

  /**
   * A generator seeded from one or more integers. Each is taken modulo 2^32 (negative and
   * fractional values are folded in too), so `new Rng(seed, epoch)` is a stream per epoch.
   */
  constructor(seed: number, ...streams: (number | string)[]) {
    let h = 0x243f6a88;
    for (const v of [seed, ...streams.map(streamId)]) {
      const lo = v >>> 0;
      const hi = Math.floor(v / 4294967296) >>> 0;
      h = splitmix32(h ^ lo);
      h = splitmix32(h ^ hi);
    }
    let x = h;
    for (let i = 0; i < 4; i++) {
      x = splitmix32(x + i);
      this.#s[i] = x;
    }
    if ((this.#s[0] | this.#s[1] | this.#s[2] | this.#s[3]) === 0) this.#s[0] = 1;
  }

  /** A generator for the stream `(seed, ...streams)`; same as the constructor. */
  static derive(seed: number, ...streams: (number | string)[]): Rng {
    return new Rng(seed, ...streams);
  }

  /** A copy of the current state (plain JSON-serialisable object). */
  getState(): RngState {
    return { s: [this.#s[0], this.#s[1], this.#s[2], this.#s[3]] };
  }

  /** Restores a state from {@linkcode getState}. */
  setState(state: RngState): void {
    const s = state?.s;
    if (!Array.isArray(s) || s.length !== 4 || s.some((v) => !Number.isInteger(v))) {
      throw new TypeError("Rng.setState: expected { s: [u32, u32, u32, u32] }");
    }
    for (let i = 0; i < 4; i++) this.#s[i] = s[i] >>> 0;
    if ((this.#s[0] | this.#s[1] | this.#s[2] | this.#s[3]) === 0) {
      throw new TypeError("Rng.setState: the all-zero state is invalid");
    }
  }

  /** The next unsigned 32-bit integer. */
  nextU32(): number {
    const s = this.#s;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** A uniform float in [0, 1) with 53 random bits. */
  nextFloat(): number {
    const hi = this.nextU32() >>> 5; // 27 bits
    const lo = this.nextU32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** A uniform integer in [0, n), unbiased (rejection sampling); `n` in [1, 2^32]. */
  nextInt(n: number): number {
    if (!(n >= 1 && n <= 4294967296) || !Number.isInteger(n)) {
      throw new RangeError(`Rng.nextInt: n must be an integer in [1, 2^32], got ${n}`);
    }
    if (n === 1) return 0;
    const limit = 4294967296 - (4294967296 % n);
    for (;;) {
      const r = this.nextU32();
      if (r < limit) return r % n;
    }
  }

  /** Shuffles `array` in place (Fisher-Yates) and returns it. */
  shuffle<T extends { length: number; [i: number]: unknown }>(array: T): T {
    for (let i = array.length - 1; i > 0; i--) {
      const j = this.nextInt(i + 1);
      const tmp = array[i];
      array[i] = array[j];
      array[j] = tmp;
    }
    return array;
  }

  /** A standard normal draw (Box-Muller, one value per call). */
  normal(): number {
    const u = 1 - this.nextFloat(); // (0, 1]: log stays finite
    const v = this.nextFloat();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
}
