/**
 * SGD with momentum, Nesterov option and weight decay, as one fused kernel over the flat
 * parameter buffer (every parameter at once, one dispatch per step).
 */
import type { BufferView, Gpu } from "../gpu/runtime.ts";
import { grid1d } from "../gpu/runtime.ts";
import { sgdKernel } from "../../shaders/optim.ts";

/** Hyper-parameters of {@linkcode sgdStep}. */
export interface SgdOptions {
  /** Learning rate. */
  lr: number;
  /** Momentum factor (dampening 0, as PyTorch). */
  momentum: number;
  /** L2 weight decay, added to the gradient as `weightDecay * param`. */
  weightDecay: number;
  /** Use Nesterov momentum. */
  nesterov: boolean;
}

/**
 * One SGD step over `count` floats: params -= lr * direction, with the momentum buffer
 * updated in place.
 */
export function sgdStep(
  gpu: Gpu,
  params: BufferView,
  grads: BufferView,
  momentum: BufferView,
  count: number,
  o: SgdOptions,
): void {
  sgdKernel.dispatch(
    gpu,
    [grads, params, momentum],
    {
      n: count,
      nesterov: o.nesterov ? 1 : 0,
      lr: o.lr,
      momentum: o.momentum,
      wd: o.weightDecay,
    },
    grid1d(Math.ceil(count / 256)),
  );
}
