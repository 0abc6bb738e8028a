/**
 * A model: a root module with its parameters and buffers in two flat GPU buffers, initialised
 * from a seed, with PyTorch-style `stateDict` / `loadStateDict` and safetensors files.
 */
import type { Ctx } from "../autograd/tape.ts";
import type { Gpu } from "../gpu/runtime.ts";
import { Rng } from "../random.ts";
import type { Tensor } from "../tensor.ts";
import {
  addModelState,
  readCheckpoint,
  takeF32,
  writeCheckpoint,
} from "../checkpoint/checkpoint.ts";
import type { SafeTensor, SafetensorsFile } from "../checkpoint/safetensors.ts";
import { type ForwardMode, type Module, moduleInit, moduleSpecs, ParamScope } from "./module.ts";
import { FlatLayout, FlatTensors, type ParamSpec } from "./params.ts";

/** A root module and its GPU state. */
export class Model<M extends Module = Module> {
  /** The GPU the state lives on. */
  readonly gpu: Gpu;
  /** The network. */
  readonly root: M;
  /** Every parameter and buffer with its full name, in state_dict order. */
  readonly specs: { params: ParamSpec[]; buffers: ParamSpec[] };
  /** Layout of the trainable parameters (also of gradients, optimizer state, look-ahead). */
  readonly paramLayout: FlatLayout;
  /** Layout of the buffers. */
  readonly bufferLayout: FlatLayout;
  /** The parameters (requiresGrad). */
  readonly params: FlatTensors;
  /** The buffers (running statistics). */
  readonly buffers: FlatTensors;
  readonly #scope: ParamScope;
  readonly #scopes = new Map<FlatTensors, ParamScope>();

  /** Allocates the state of `root` and initialises it from `seed` (stream `(seed, "init")`). */
  constructor(gpu: Gpu, root: M, seed = 0) {
    this.gpu = gpu;
    this.root = root;
    this.specs = moduleSpecs(root);
    this.paramLayout = new FlatLayout(this.specs.params, gpu.offsetAlignment);
    this.bufferLayout = new FlatLayout(this.specs.buffers, gpu.offsetAlignment);
    this.params = new FlatTensors(gpu, this.paramLayout, true);
    this.buffers = new FlatTensors(gpu, this.bufferLayout, false);
    this.#scope = new ParamScope(this.params, this.buffers);
    this.init(seed);
  }

  /** Re-draws every parameter and buffer from the stream `(seed, "init")`. */
  init(seed: number): void {
    this.loadStateDict(moduleInit(this.root, Rng.derive(seed, "init")));
  }

  /**
   * Output of the root module for `x`, over the model's parameters or any other flat set of the
   * same layout (look-ahead parameters).
   */
  forward(ctx: Ctx, x: Tensor, mode: ForwardMode, params: FlatTensors = this.params): Tensor {
    return this.root.forward(ctx, x, this.scope(params), mode);
  }

  /** The root scope over `params` and the model's buffers (cached per parameter set). */
  scope(params: FlatTensors = this.params): ParamScope {
    if (params === this.params) return this.#scope;
    let s = this.#scopes.get(params);
    if (!s) {
      s = new ParamScope(params, this.buffers);
      this.#scopes.set(params, s);
    }
    return s;
  }

  /** Parameters and buffers by full name (read back from the GPU). */
  async stateDict(): Promise<Map<string, Float32Array>> {
    const [p, b] = await Promise.all([this.params.download(), this.buffers.download()]);
    return new Map([...p, ...b]);
  }

  /** Uploads every parameter and buffer; throws naming a missing or mis-sized entry. */
  loadStateDict(values: Map<string, Float32Array>): void {
    this.params.upload(values);
    if (this.specs.buffers.length) this.buffers.upload(values);
  }

  /**
   * Writes the state dict to a safetensors file (plus `num_batches_tracked` per batch norm, so
   * PyTorch's `load_state_dict` takes it), with optional extra tensors and metadata.
   */
  async save(
    path: string,
    extra: { tensors?: Map<string, SafeTensor>; metadata?: Record<string, string> } = {},
  ): Promise<void> {
    const tensors = new Map<string, SafeTensor>();
    const [p, b] = await Promise.all([this.params.download(), this.buffers.download()]);
    addModelState(tensors, this.specs, p, b, 0);
    for (const [k, v] of extra.tensors ?? []) tensors.set(k, v);
    await writeCheckpoint(path, tensors, extra.metadata ?? {});
  }

  /** Loads parameters and buffers from a safetensors file; returns the whole file. */
  async load(path: string): Promise<SafetensorsFile> {
    const file = await readCheckpoint(path);
    if (!file) throw new Error(`${path}: no such file`);
    this.loadFile(file);
    return file;
  }

  /** Loads parameters and buffers from a decoded safetensors file (checking names and shapes). */
  loadFile(file: SafetensorsFile): void {
    this.params.upload(takeF32(file, this.specs.params));
    if (this.specs.buffers.length) this.buffers.upload(takeF32(file, this.specs.buffers));
  }

  /** Frees the flat buffers. */
  destroy(): void {
    this.params.destroy();
    this.buffers.destroy();
  }
}
