/**
 * Per-channel bias: y = x + b[c] for x [N, C, ...] ([N, C] activations or [N, C, H, W] maps;
 * a conv with bias is conv2d followed by channelBias). Forward, backward and JVP side by side.
 */
import { bind, Tensor } from "../tensor.ts";
import type { Ctx } from "../autograd/tape.ts";
import { grid1d } from "../gpu/runtime.ts";
import { channelBiasAdd, channelBiasGrad } from "../../shaders/bias.ts";

/**
 * x + b[c] over the channel axis 1. Backward: dx = dy, db[c] = sum of dy over every other
 * axis (fixed order); JVP: x' + b'[c].
 */
export function channelBias(ctx: Ctx, x: Tensor, b: Tensor): Tensor {
  if (x.shape.length < 2 || b.shape.length !== 1 || b.size !== x.shape[1]) {
    throw new Error(
      `channelBias: expected x [N, C, ...] and b [C], got [${x.shape}] and [${b.shape}]`,
    );
  }
  const gpu = ctx.gpu;
  const [N, C] = x.shape;
  const inner = x.size / (N * C);
  const u = { total: x.size, C, inner };
  const grid = grid1d(Math.ceil(x.size / 256));
  const y = ctx.empty(x.shape);
  channelBiasAdd(true).dispatch(gpu, [bind(x), bind(b), bind(y)], u, grid);
  ctx.record({
    op: "channelBias",
    inputs: [x, b],
    output: y,
    backward: (dy, needs, into) => {
      let dx: Tensor | null = null, db: Tensor | null = null;
      if (needs[0]) {
        dx = Tensor.empty(gpu, x.shape);
        gpu.copy(dy.view, dx.view, x.size * 4);
      }
      if (needs[1]) {
        db = into?.[1] ?? Tensor.empty(gpu, [C]);
        channelBiasGrad.dispatch(gpu, [bind(dy), bind(db)], { N, C, inner }, [C]);
      }
      return [dx, db];
    },
    jvp: ([xDot, bDot]) => {
      const out = Tensor.empty(gpu, x.shape);
      if (xDot && bDot) {
        channelBiasAdd(true).dispatch(gpu, [bind(xDot), bind(bDot), bind(out)], u, grid);
      } else if (xDot) gpu.copy(xDot.view, out.view, x.size * 4);
      else channelBiasAdd(false).dispatch(gpu, [bind(bDot!), bind(out)], u, grid);
      return out;
    },
  });
  return y;
}
