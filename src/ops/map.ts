/**
 * Elementwise maps (`out[i] = expr`) and the primitive helpers built on them that the tape and
 * the optimizers need: accumulate, scale, clone, zero. This module sits below the autograd
 * (it imports nothing from it), so the tape and the ops can both use it.
 */
import { bind, Tensor } from "../tensor.ts";
import { type Gpu, grid1d } from "../gpu/runtime.ts";
import { mapKernel } from "../../shaders/elementwise.ts";

/**
 * Runs an elementwise kernel over `out.size` elements: `out[i] = expr`, where expr may read
 * `a[i]`, `b[i]`, ... (the inputs), `out[i]` (its previous value), and the f32 scalars
 * `p.s0`..`p.s2`. `name` labels the pipeline in profiles; kernels are told apart by their code.
 */
export function runMap(
  gpu: Gpu,
  name: string,
  expr: string,
  inputs: Tensor[],
  out: Tensor,
  s0 = 0,
  s1 = 0,
  s2 = 0,
): void {
  mapKernel({ name, inputs: inputs.length, expr }).dispatch(
    gpu,
    [...inputs.map(bind), bind(out)],
    { n: out.size, s0, s1, s2 },
    grid1d(Math.ceil(out.size / 256)),
  );
}

/** dst += src (the gradient accumulation of the tape). */
export function accumulateInto(gpu: Gpu, dst: Tensor, src: Tensor): void {
  runMap(gpu, "acc", "out[i] + a[i]", [src], dst);
}

/** out = s0 * a (out may be a fresh tensor). */
export function scale(gpu: Gpu, a: Tensor, s: number, out = Tensor.empty(gpu, a.shape)): Tensor {
  runMap(gpu, "scale", "p.s0 * a[i]", [a], out, s);
  return out;
}

/** A copy of `a` as a fresh pooled tensor. */
export function clone(gpu: Gpu, a: Tensor): Tensor {
  const out = Tensor.empty(gpu, a.shape, a.dtype);
  gpu.copy(a.view, out.view, a.size * 4);
  return out;
}

/** Fills a tensor with zeros (recorded on the command encoder). */
export function zero(gpu: Gpu, t: Tensor): void {
  gpu.encoder().clearBuffer(t.view.buffer, t.view.offset, t.size * 4);
}
