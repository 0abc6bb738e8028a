/**
 * SGD with momentum, Nesterov option and weight decay, as one fused kernel over the flat
 * parameter buffer (every parameter at once, one dispatch per step).
 */
import type { BufferView, Gpu } from "../gpu/runtime.ts";
import { grid1d } from "../gpu/runtime.ts";
import { sgdKernel } from "../../shaders/optim.ts";
import { StepValues } from "./step_values.ts";

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

/** The learning-rate slot of {@linkcode sgdStep} calls, one per device. */
const sharedLr = new WeakMap<Gpu, StepValues>();

/**
 * One SGD step over `count` floats: params -= lr * direction, with the momentum buffer
 * updated in place. `lr` is a slot holding the learning rate (default: one shared per device).
 */
export function sgdStep(
  gpu: Gpu,
  params: BufferView,
  grads: BufferView,
  momentum: BufferView,
  count: number,
  o: SgdOptions,
  lr?: StepValues,
): void {
  let slot = lr ?? sharedLr.get(gpu);
  if (!slot) sharedLr.set(gpu, slot = new StepValues(gpu, 1));
  sgdKernel.dispatch(
    gpu,
    [grads, params, momentum, slot.set([o.lr])],
    { n: count, nesterov: o.nesterov ? 1 : 0, momentum: o.momentum, wd: o.weightDecay },
    grid1d(Math.ceil(count / 256)),
  );
}
