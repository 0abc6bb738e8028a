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
import { describeError, UserError } from "../errors.ts";
import { type ForwardMode, type Module, moduleInit, moduleSpecs, ParamScope } from "./module.ts";
import { FlatLayout, FlatTensors, type ParamSpec } from "./params.ts";

/**
 * Options of {@linkcode Model.save}.
 *
 * @category Core
 */
export interface ModelSaveOptions {
  /** Extra tensors, saved next to the state dict. */
  tensors?: Map<string, SafeTensor>;
  /** Extra metadata strings. */
  metadata?: Record<string, string>;
  /**
   * Replace a file already at the path (one this program wrote); default false: an existing
   * file is refused and left as it is.
   */
  overwrite?: boolean;
}

/**
 * Options of {@linkcode Model.loadStateDict}.
 *
 * @category Core
 */
export interface LoadStateDictOptions {
  /**
   * Refuse entries that are no parameter or buffer of the model (default true, as PyTorch);
   * false ignores them. A batch norm's `num_batches_tracked`, which {@linkcode Model.save}
   * writes for PyTorch, is always accepted. Missing entries are refused either way.
   */
  strict?: boolean;
}

/**
 * A root module and its GPU state.
 *
 * @category Core
 */
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
  /**
   * Number of trainable parameters (floats): the sum of the parameter shapes' sizes, as
   * PyTorch's `sum(p.numel() for p in model.parameters())`. `paramLayout.length` is larger: it
   * counts the alignment gaps between entries of the flat buffer.
   */
  readonly numParams: number;
  readonly #scope: ParamScope;
  readonly #scopes = new Map<FlatTensors, ParamScope>();

  /** Allocates the state of `root` and initialises it from `seed` (stream `(seed, "init")`). */
  constructor(gpu: Gpu, root: M, seed = 0) {
    this.gpu = gpu;
    this.root = root;
    this.specs = moduleSpecs(root);
    this.paramLayout = new FlatLayout(this.specs.params, gpu.offsetAlignment);
    this.numParams = this.paramLayout.count;
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

  /**
   * Uploads every parameter and buffer from `values` (by full name, as {@linkcode stateDict}
   * gives them). Throws before uploading anything when an entry is missing or, with `strict`
   * (the default), when `values` holds one the model does not have, naming them; and naming a
   * mis-sized entry.
   */
  loadStateDict(values: Map<string, Float32Array>, options: LoadStateDictOptions = {}): void {
    const specs = [...this.specs.params, ...this.specs.buffers];
    const names = new Set(specs.map((s) => s.name));
    const listed = (keys: string[]) =>
      keys.slice(0, 5).map((k) => JSON.stringify(k)).join(", ") +
      (keys.length > 5 ? ` and ${keys.length - 5} more` : "");
    const missing = specs.filter((s) => !values.has(s.name)).map((s) => s.name);
    if (missing.length) {
      const values = missing.length > 1 ? "values" : "value";
      throw new Error(`loadStateDict: no ${values} for the model's ${listed(missing)}`);
    }
    const tracked = (k: string) =>
      k.endsWith(".num_batches_tracked") &&
      names.has(k.slice(0, -"num_batches_tracked".length) + "running_var");
    const unexpected = [...values.keys()].filter((k) => !names.has(k) && !tracked(k));
    if ((options.strict ?? true) && unexpected.length) {
      throw new Error(
        `loadStateDict: ${listed(unexpected)} ${unexpected.length > 1 ? "are" : "is"} no ` +
          `parameter or buffer of the model; pass { strict: false } to ignore ` +
          (unexpected.length > 1 ? "them" : "it"),
      );
    }
    this.params.upload(values);
    if (this.specs.buffers.length) this.buffers.upload(values);
  }

  /**
   * Writes the state dict to a safetensors file (plus `num_batches_tracked` per batch norm, so
   * PyTorch's `load_state_dict` takes it), with optional extra tensors and metadata, replaced
   * atomically. A file already at `path` is refused (a {@linkcode UserError} naming it, the
   * file left as it is) unless `options.overwrite`; a missing folder is named likewise.
   */
  async save(path: string, options: ModelSaveOptions = {}): Promise<void> {
    // the path first: a refused one costs no readback
    const placeholder = options.overwrite ? false : await claimPath(path);
    try {
      const tensors = new Map<string, SafeTensor>();
      const [p, b] = await Promise.all([this.params.download(), this.buffers.download()]);
      addModelState(tensors, this.specs, p, b, 0);
      for (const [k, v] of options.tensors ?? []) tensors.set(k, v);
      await writeCheckpoint(path, tensors, options.metadata ?? {});
    } catch (e) {
      if (placeholder) await Deno.remove(path).catch(() => {});
      throw e;
    }
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

/**
 * Creates `path` empty, refusing a file already there, so that {@linkcode Model.save} never
 * replaces a file it was not told to (the write permission alone suffices, and no other writer
 * can slip in between). False when the folder does not exist: the writer names it.
 */
async function claimPath(path: string): Promise<boolean> {
  try {
    (await Deno.open(path, { write: true, createNew: true })).close();
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    if (e instanceof Deno.errors.AlreadyExists) {
      throw new UserError(`Model.save: ${path} already exists; saving would overwrite it`, {
        file: path,
        hint: "pass { overwrite: true } to replace it (a file this program wrote), or choose " +
          "another path",
      });
    }
    throw new UserError(`Model.save: cannot create ${path} (${describeError(e)})`, {
      file: path,
      hint: "let the program write it (deno run --allow-write), or choose another path",
      cause: e,
    });
  }
}
