/**
 * Train-time inverted dropout with a mask hashed on the GPU from (seed, element index): the
 * same seed gives the same mask, with no host randomness and nothing stored for backward.
 */
import { bind, Tensor } from "../tensor.ts";
import type { Ctx } from "../autograd/tape.ts";
import { grid1d } from "../gpu/runtime.ts";
import { dropoutMask } from "../../shaders/dropout.ts";

/**
 * Zeroes each element with probability `p` and scales the rest by 1 / (1 - p); the mask is a
 * hash of (`seed`, element index), so forward, backward (dy * mask / (1 - p)) and JVP
 * (x' * mask / (1 - p)) agree without storing it. `p = 0` returns `x` itself, unrecorded.
 * `seed` is a u32: vary it per step (and per layer) for fresh masks.
 */
export function dropout(ctx: Ctx, x: Tensor, p: number, seed: number): Tensor {
  if (!(p >= 0 && p < 1)) {
    throw new Error(`dropout: p = ${p}, expected a probability in [0, 1)`);
  }
  if (!Number.isInteger(seed) || seed < 0 || seed >= 2 ** 32) {
    throw new Error(`dropout: seed = ${seed}, expected an integer in [0, 2^32)`);
  }
  if (p === 0) return x;
  const gpu = ctx.gpu;
  const u = {
    n: x.size,
    seed,
    threshold: Math.min(2 ** 32 - 1, Math.floor(p * 2 ** 32)),
    scale: 1 / (1 - p),
  };
  const masked = (src: Tensor, out: Tensor): Tensor => {
    dropoutMask.dispatch(gpu, [bind(src), bind(out)], u, grid1d(Math.ceil(x.size / 256)));
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
