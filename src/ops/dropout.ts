/**
 * Train-time inverted dropout with a mask hashed on the GPU from (seed, element index): the
 * same seed gives the same mask, with no host randomness and nothing stored for backward.
 */
import { bind, Tensor } from "../tensor.ts";
import type { Ctx } from "../autograd/tape.ts";
import { type BufferView, grid1d } from "../gpu/runtime.ts";
import { dropoutMask } from "../../shaders/dropout.ts";

/**
 * A seed read on the GPU: `seeds` holds one u32 (rewritten every step, so new masks need no new
 * uniforms), mixed with a constant per-call `salt` (different layers and passes differ).
 */
export interface GpuSeed {
  /** One u32 value. */
  seeds: BufferView;
  /** XOR-ed with the value, a u32. */
  salt: number;
}

function checkSeed(what: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v >= 2 ** 32) {
    throw new Error(`dropout: ${what} = ${v}, expected an integer in [0, 2^32)`);
  }
}

/**
 * Zeroes each element with probability `p` and scales the rest by 1 / (1 - p); the mask is a
 * hash of (seed, element index), so forward, backward (dy * mask / (1 - p)) and JVP
 * (x' * mask / (1 - p)) agree without storing it. `p = 0` returns `x` itself, unrecorded.
 * `seed` is a u32 (vary it per step and per layer for fresh masks) or a {@linkcode GpuSeed},
 * whose value is `seeds[0] ^ salt`.
 */
export function dropout(ctx: Ctx, x: Tensor, p: number, seed: number | GpuSeed): Tensor {
  if (!(p >= 0 && p < 1)) {
    throw new Error(`dropout: p = ${p}, expected a probability in [0, 1)`);
  }
  const onGpu = typeof seed !== "number";
  checkSeed(onGpu ? "salt" : "seed", onGpu ? seed.salt : seed);
  if (p === 0) return x;
  const gpu = ctx.gpu;
  const u = {
    n: x.size,
    seed: onGpu ? seed.salt : seed,
    threshold: Math.min(2 ** 32 - 1, Math.floor(p * 2 ** 32)),
    scale: 1 / (1 - p),
  };
  const masked = (src: Tensor, out: Tensor): Tensor => {
    const views = onGpu ? [bind(src), seed.seeds, bind(out)] : [bind(src), bind(out)];
    dropoutMask(onGpu).dispatch(gpu, views, u, grid1d(Math.ceil(x.size / 256)));
    return out;
  };
  const y = masked(x, ctx.empty(x.shape));
  ctx.record({
    op: "dropout",
    inputs: [x],
    output: y,
    backward: (dy) => [masked(dy, Tensor.empty(gpu, x.shape))],
    jvp: ([xDot]) => masked(xDot!, Tensor.empty(gpu, x.shape)),
  });
  return y;
}
