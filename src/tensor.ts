/**
 * Tensors: float32 (or u32 labels) on the GPU, row-major, NCHW for images.
 *
 * NCHW because the checkpoints must load into PyTorch as they are (conv weights are
 * [out, in, kh, kw]) and because the per-channel reductions of batchnorm then read contiguous
 * H*W runs. A tensor is a view of a buffer: parameters are views into one flat buffer so the
 * optimizer, the look-ahead step and the meta direction are single kernels over all of them.
 */
import { bufferGeneration, type BufferView, DESTROYED, type Gpu } from "./gpu/runtime.ts";

/** Element type of a tensor. */
export type DType = "f32" | "u32";

let nextTensorId = 1;

/** A GPU tensor: shape plus a byte range of a GPU buffer. */
export class Tensor {
  /** Process-unique id, increasing in creation order. */
  readonly id = nextTensorId++;
  /** Dimensions, row-major (NCHW for images). */
  readonly shape: readonly number[];
  /** Number of elements (product of `shape`). */
  readonly size: number;
  /** Element type; both kinds are 4 bytes per element. */
  readonly dtype: DType;
  readonly #view: BufferView;
  /** The generation of the buffer when this tensor was made (see `bufferGeneration`). */
  readonly #generation: number;
  /** True when the buffer came from the pool and is released with this tensor. */
  readonly pooled: boolean;
  /** True when gradients (or tangents) flow to or through this tensor. */
  requiresGrad = false;
  /** A name for parameters (PyTorch state_dict key) and error messages. */
  name?: string;

  /** Wraps a buffer range; if `pooled`, {@linkcode Tensor.release} returns it to the pool. */
  constructor(shape: readonly number[], view: BufferView, pooled: boolean, dtype: DType = "f32") {
    this.shape = shape;
    this.size = shape.reduce((a, b) => a * b, 1);
    this.dtype = dtype;
    this.#view = view;
    this.#generation = bufferGeneration(view.buffer);
    this.pooled = pooled;
  }

  /**
   * The byte range of the GPU buffer holding the data. Throws when the buffer has gone back to
   * the pool since this tensor was made (its Ctx was released: the buffer may hold another
   * tensor's values by now) or was destroyed, so a stale tensor is never read, written or bound
   * to a kernel: one host-side comparison, no GPU work.
   */
  get view(): BufferView {
    const generation = bufferGeneration(this.#view.buffer);
    if (generation !== this.#generation) throw this.#staleError(generation);
    return this.#view;
  }

  #staleError(generation: number): Error {
    const what = `tensor ${this.name ? `"${this.name}" ` : ""}[${this.shape}]`;
    return new Error(
      generation === DESTROYED
        ? `${what} used after its buffer was destroyed (destroy() of the Model, StepEngine or ` +
          "optimizer that owns it); use it before destroy()"
        : `${what} used after its Ctx was released (or its owner destroyed), its buffer back ` +
          "in the pool; read it before release, or keep it: ctx.release([out])",
    );
  }

  /** A pooled tensor of the given shape with undefined contents. */
  static empty(gpu: Gpu, shape: readonly number[], dtype: DType = "f32"): Tensor {
    const size = shape.reduce((a, b) => a * b, 1);
    const bytes = Math.max(4, size * 4);
    return new Tensor(shape, { buffer: gpu.alloc(bytes), offset: 0, size: bytes }, true, dtype);
  }

  /** A pooled tensor holding `data`. */
  static from(
    gpu: Gpu,
    data: ArrayLike<number>,
    shape: readonly number[],
    dtype: DType = "f32",
  ): Tensor {
    const t = Tensor.empty(gpu, shape, dtype);
    if (data.length !== t.size) {
      throw new Error(`Tensor.from: ${data.length} values for shape [${shape}]`);
    }
    t.upload(gpu, data);
    return t;
  }

  /** Writes host values into this tensor (submits pending work first, see Gpu.write). */
  upload(gpu: Gpu, data: ArrayLike<number>): void {
    const host = this.dtype === "u32" ? Uint32Array.from(data) : Float32Array.from(data);
    gpu.write(this.view, host);
  }

  /** Reads the values back to the host. */
  async read(gpu: Gpu): Promise<Float32Array> {
    const bytes = await gpu.read({ ...this.view, size: this.size * 4 });
    return this.dtype === "u32"
      ? Float32Array.from(new Uint32Array(bytes))
      : new Float32Array(bytes);
  }

  /** Returns the buffer to the pool (no-op for views of long-lived buffers). */
  release(gpu: Gpu): void {
    if (this.pooled) gpu.release(this.view.buffer);
  }

  /**
   * The same data with another shape of equal size: a raw view sharing the buffer (never
   * pooled), invisible to autograd. Refused for a tensor that requires grad, where the view
   * would silently cut the gradient: use `reshape(ctx, x, shape)` (src/ops/shape.ts) there.
   */
  reshape(shape: readonly number[]): Tensor {
    if (this.requiresGrad) {
      throw new Error(
        `Tensor.reshape: [${this.shape}] -> [${shape}] on a tensor that requires grad would ` +
          `stop its gradient; use reshape(ctx, x, shape) or flatten(ctx, x), which record on the tape`,
      );
    }
    const t = new Tensor(shape, this.view, false, this.dtype);
    if (t.size !== this.size) throw new Error(`reshape: [${this.shape}] -> [${shape}]`);
    return t;
  }
}

/** Byte view of a tensor's exact data (binding size = element count * 4). */
export function bind(t: Tensor): BufferView {
  return { buffer: t.view.buffer, offset: t.view.offset, size: Math.max(4, t.size * 4) };
}
