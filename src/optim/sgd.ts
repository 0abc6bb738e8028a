/**
 * SGD with momentum, Nesterov option and weight decay, as one fused kernel over the flat
 * parameter buffer (every parameter at once, one dispatch per step).
 */
import type { BufferView, Gpu } from "../gpu/runtime.ts";
import type { FlatLayout } from "../nn/params.ts";
import { grid1d } from "../gpu/runtime.ts";
import { sgdExemptKernel, sgdKernel } from "../../shaders/optim.ts";
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

/** Flat index ranges exempt from weight decay: `count` pairs [lo, hi) as u32 in `ranges`. */
export interface DecayExemption {
  /** u32 pairs [lo0, hi0, lo1, hi1, ...]. */
  ranges: BufferView;
  /** Number of pairs. */
  count: number;
}

/** The learning-rate slot of {@linkcode sgdStep} calls, one per device. */
const sharedLr = new WeakMap<Gpu, StepValues>();

/**
 * One SGD step over `count` floats: params -= lr * direction, with the momentum buffer
 * updated in place. `lr` is a slot holding the learning rate (default: one shared per device).
 * With `exempt`, the indices in its ranges take no weight decay (a kernel variant; without it,
 * the plain kernel runs); `base` is the flat index of the views' first float, against which
 * the ranges are read (0: the views start at the flat buffer's start).
 */
export function sgdStep(
  gpu: Gpu,
  params: BufferView,
  grads: BufferView,
  momentum: BufferView,
  count: number,
  o: SgdOptions,
  lr?: StepValues,
  exempt?: DecayExemption,
  base = 0,
): void {
  let slot = lr ?? sharedLr.get(gpu);
  if (!slot) sharedLr.set(gpu, slot = new StepValues(gpu, 1));
  const uniforms = {
    n: count,
    nesterov: o.nesterov ? 1 : 0,
    momentum: o.momentum,
    wd: o.weightDecay,
  };
  const grid = grid1d(Math.ceil(count / 256));
  const bound = [grads, params, momentum, slot.set([o.lr])];
  if (!exempt || exempt.count === 0) {
    sgdKernel.dispatch(gpu, bound, uniforms, grid);
  } else {
    sgdExemptKernel.dispatch(
      gpu,
      [...bound, exempt.ranges],
      { ...uniforms, ranges: exempt.count, base },
      grid,
    );
  }
}

/**
 * The flat index ranges [offset, offset + size) of the parameters of `layout` named by an
 * optimizer's `decayExempt`, on the GPU (none: undefined; the owner frees the buffer with
 * `gpu.destroy`); throws naming an unknown name, for `owner` ("Sgd", "Adam").
 */
export function exemptRanges(
  gpu: Gpu,
  layout: FlatLayout,
  names: readonly string[],
  owner: string,
): DecayExemption | undefined {
  if (names.length === 0) return undefined;
  const pairs = new Uint32Array(2 * names.length);
  names.forEach((name, r) => {
    const i = layout.byName.get(name);
    if (i === undefined) {
      throw new Error(
        `${owner}: decayExempt names ${JSON.stringify(name)}, which is not a parameter; ` +
          `parameters: ${layout.specs.map((s) => s.name).join(", ")}`,
      );
    }
    const size = layout.specs[i].shape.reduce((a, b) => a * b, 1);
    pairs.set([layout.offsets[i], layout.offsets[i] + size], 2 * r);
  });
  const bytes = pairs.byteLength;
  const buffer = gpu.createStorage(bytes, `${owner} decay-exempt ranges`);
  const ranges = { buffer, offset: 0, size: bytes };
  gpu.write(ranges, pairs);
  return { ranges, count: names.length };
}
