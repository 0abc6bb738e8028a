/**
 * Smooth activations: sigmoid and tanh. Both derivatives are functions of the output, so the
 * forward keeps y and backward (dy * act') and JVP (x' * act') share one kernel.
 */
import { bind, Tensor } from "../tensor.ts";
import type { Ctx } from "../autograd/tape.ts";
import { grid1d } from "../gpu/runtime.ts";
import {
  type Activation,
  activationDerivative,
  activationForward,
} from "../../shaders/activation.ts";

function activate(act: Activation, ctx: Ctx, x: Tensor): Tensor {
  const gpu = ctx.gpu;
  const u = { n: x.size };
  const grid = grid1d(Math.ceil(x.size / 256));
  const y = ctx.empty(x.shape);
  activationForward(act).dispatch(gpu, [bind(x), bind(y)], u, grid);
  const times = (g: Tensor): Tensor => {
    const out = Tensor.empty(gpu, x.shape);
    activationDerivative(act).dispatch(gpu, [bind(g), bind(y), bind(out)], u, grid);
    return out;
  };
  ctx.record({
    op: act,
    inputs: [x],
    output: y,
    backward: (dy) => [times(dy)],
    jvp: ([xDot]) => times(xDot!),
  });
  return y;
}

/** 1 / (1 + exp(-x)). Backward dy * y (1 - y); JVP x' * y (1 - y). */
export function sigmoid(ctx: Ctx, x: Tensor): Tensor {
  return activate("sigmoid", ctx, x);
}

/** tanh(x). Backward dy * (1 - y^2); JVP x' * (1 - y^2). */
export function tanh(ctx: Ctx, x: Tensor): Tensor {
  return activate("tanh", ctx, x);
}
