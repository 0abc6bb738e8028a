/**
 * Shape ops recorded on the tape: reshape and flatten. The data is row-major, so a reshape
 * moves no values; each direction still writes a fresh pooled tensor, because the tape releases
 * the gradients and tangents it consumes and the ctx releases what it owns: a view sharing
 * another tensor's pooled buffer would be freed under its reader.
 */
import { Tensor } from "../tensor.ts";
import type { Ctx } from "../autograd/tape.ts";
import type { Gpu } from "../gpu/runtime.ts";

/** A copy of `src`'s values with another shape (same element count). */
function copyAs(gpu: Gpu, src: Tensor, shape: readonly number[], dst?: Tensor): Tensor {
  const out = dst ?? Tensor.empty(gpu, shape, src.dtype);
  gpu.copy(src.view, out.view, src.size * 4);
  return out;
}

/**
 * `x` with shape `shape` (one entry may be -1: inferred from the others). Backward gives the
 * gradient back the input's shape, JVP gives the tangent the output's shape.
 */
export function reshape(ctx: Ctx, x: Tensor, shape: readonly number[]): Tensor {
  const target = resolveShape(x, shape);
  const y = copyAs(ctx.gpu, x, target, ctx.empty(target, x.dtype));
  ctx.record({
    op: "reshape",
    inputs: [x],
    output: y,
    backward: (dy) => [copyAs(ctx.gpu, dy, x.shape)],
    jvp: ([xDot]) => copyAs(ctx.gpu, xDot!, target),
  });
  return y;
}

/** [N, ...] -> [N, product of the rest], recorded on the tape (see {@linkcode reshape}). */
export function flatten(ctx: Ctx, x: Tensor): Tensor {
  if (x.shape.length < 1) throw new Error(`flatten: expected [N, ...], got a scalar`);
  return reshape(ctx, x, [x.shape[0], -1]);
}

function resolveShape(x: Tensor, shape: readonly number[]): number[] {
  const bad = (why: string) => new Error(`reshape: cannot view [${x.shape}] as [${shape}]: ${why}`);
  const free = shape.filter((d) => d === -1).length;
  if (free > 1) throw bad("at most one dimension may be -1");
  if (shape.some((d) => d !== -1 && !(Number.isInteger(d) && d >= 0))) {
    throw bad("dimensions must be integers >= 0 (or one -1)");
  }
  const known = shape.reduce((a, d) => (d === -1 ? a : a * d), 1);
  if (free === 1) {
    if (known === 0 || x.size % known !== 0) throw bad(`${x.size} elements do not divide`);
    return shape.map((d) => (d === -1 ? x.size / known : d));
  }
  if (known !== x.size) throw bad(`${x.size} elements, the new shape holds ${known}`);
  return [...shape];
}
