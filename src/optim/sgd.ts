/**
 * SGD with momentum, Nesterov option and weight decay, as one fused kernel over the flat
 * parameter buffer (every parameter at once, one dispatch per step).
 */
import type { BufferView, Gpu, Program } from "../gpu/runtime.ts";
import { grid1d } from "../gpu/runtime.ts";
import { sgdSource } from "../../shaders/optim.ts";

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

let program: Program | null = null;

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
  program ??= { key: "sgd", code: sgdSource(), bindings: ["read", "write", "write", "uniform"] };
  const buf = new ArrayBuffer(20);
  new Uint32Array(buf, 0, 2).set([count, o.nesterov ? 1 : 0]);
  new Float32Array(buf, 8, 3).set([o.lr, o.momentum, o.weightDecay]);
  gpu.dispatch(
    program,
    [grads, params, momentum, gpu.uniform(buf)],
    grid1d(Math.ceil(count / 256)),
  );
}
