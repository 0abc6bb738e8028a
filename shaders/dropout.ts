/**
 * Declaration of inverted dropout's mask-and-scale: element i is kept when a counter-based hash
 * of (seed, i) is at least p * 2^32, and kept elements are scaled by 1 / (1 - p). The mask is
 * recomputed from the hash wherever it is needed (forward, backward, JVP), so nothing is stored
 * and no host randomness is involved.
 */
import { kernelFamily } from "../src/gpu/kernel.ts";

/**
 * out[i] = keep(seed, i) ? a[i] * scale : 0. With `seedInBuffer`, the seed is
 * `seeds[0] ^ p.seed` (a per-step u32 the host rewrites without new GPU objects, mixed with a
 * per-call salt); otherwise it is the uniform `p.seed`.
 */
export const dropoutMask = kernelFamily((seedInBuffer: boolean) => ({
  name: seedInBuffer ? "dropout-seeded" : "dropout",
  storage: [
    ["a", "read"],
    ...(seedInBuffer ? [["seeds", "read", "array<u32>"] as const] : []),
    ["out", "write"],
  ],
  uniforms: [["n", "u32"], ["seed", "u32"], ["threshold", "u32"], ["scale", "f32"]],
  workgroupSize: 256,
  helpers: `
      // lowbias32, a 32-bit integer hash with good avalanche
      fn hash32(x: u32) -> u32 {
        var v = x;
        v ^= v >> 16u;
        v *= 0x7feb352du;
        v ^= v >> 15u;
        v *= 0x846ca68bu;
        v ^= v >> 16u;
        return v;
      }`,
  main: `
      let i = flatIndex(gid, nwg);
      if (i >= p.n) { return; }
      let seed = ${seedInBuffer ? "seeds[0] ^ p.seed" : "p.seed"};
      let r = hash32(hash32(i ^ hash32(seed)) ^ seed);
      out[i] = select(0.0, a[i] * p.scale, r >= p.threshold);`,
}));
