/**
 * Parameters live in one flat GPU buffer, each at an offset aligned for binding. The same
 * layout over other flat buffers gives gradients, momentum, look-ahead parameters and tangent
 * directions, so every "for all parameters" operation is a single kernel.
 */
import { bufferGeneration, type BufferView, DESTROYED, type Gpu } from "../gpu/runtime.ts";
import { Tensor } from "../tensor.ts";

/** Name and shape of one parameter or buffer, in PyTorch state_dict order. */
export interface ParamSpec {
  /** PyTorch state_dict key, e.g. "layer1.0.conv1.weight". */
  name: string;
  /** Tensor shape, PyTorch order (conv weights [out, in, kh, kw]). */
  shape: number[];
}

/** Where each named tensor sits in a flat buffer. */
export class FlatLayout {
  /** The entries, in buffer order. */
  readonly specs: ParamSpec[];
  /** Offsets in floats. */
  readonly offsets: number[];
  /** Total floats, including alignment gaps. */
  readonly length: number;
  /** Index into `specs` of each entry name. */
  readonly byName: Map<string, number>;

  /** Lays `specs` out in order, each entry at a byte offset that is a multiple of `alignBytes`. */
  constructor(specs: ParamSpec[], alignBytes: number) {
    this.specs = specs;
    const align = Math.max(1, alignBytes / 4);
    let at = 0;
    this.offsets = specs.map((s) => {
      const o = at;
      const size = s.shape.reduce((a, b) => a * b, 1);
      at = Math.ceil((at + size) / align) * align;
      return o;
    });
    this.length = Math.max(at, 1);
    this.byName = new Map(specs.map((s, i) => [s.name, i]));
  }

  /** Number of real values (no gaps). */
  get count(): number {
    return this.specs.reduce((n, s) => n + s.shape.reduce((a, b) => a * b, 1), 0);
  }
}

/** A flat GPU buffer laid out by a {@linkcode FlatLayout}, with a tensor view per entry. */
export class FlatTensors {
  /** The layout of `buffer`. */
  readonly layout: FlatLayout;
  /** The flat buffer, `layout.length * 4` bytes; not pooled. */
  readonly buffer: GPUBuffer;
  /** One named view per entry, in `layout.specs` order. */
  readonly tensors: Tensor[];
  /** Its first and last entry's names: the buffer's GPU label and its name in errors. */
  readonly label: string;
  readonly #gpu: Gpu;

  /** Creates the buffer (zero-filled, labelled) and its views, each with `requiresGrad`. */
  constructor(gpu: Gpu, layout: FlatLayout, requiresGrad = false) {
    this.#gpu = gpu;
    this.layout = layout;
    const names = layout.specs.map((s) => s.name);
    this.label = names.length > 1
      ? `tensors ${names[0]} ... ${names.at(-1)}`
      : names.length === 1
      ? `tensor ${names[0]}`
      : "empty flat tensors";
    this.buffer = gpu.createStorage(layout.length * 4, this.label);
    this.tensors = layout.specs.map((s, i) => {
      const size = s.shape.reduce((a, b) => a * b, 1);
      const t = new Tensor(s.shape, {
        buffer: this.buffer,
        offset: layout.offsets[i] * 4,
        size: size * 4,
      }, false);
      t.name = s.name;
      t.requiresGrad = requiresGrad;
      return t;
    });
  }

  /** Throws when {@linkcode FlatTensors.destroy} has run: the buffer is gone. */
  #checkLive(): void {
    if (bufferGeneration(this.buffer) === DESTROYED) {
      throw new Error(
        `${this.label} used after destroy() (of the Model, StepEngine, optimizer or meta step ` +
          "that owns them): use them before destroying their owner",
      );
    }
  }

  /** The whole buffer as one binding. */
  get all(): BufferView {
    this.#checkLive();
    return { buffer: this.buffer, offset: 0, size: this.layout.length * 4 };
  }

  /** Tensor of a named entry; throws when there is none. */
  get(name: string): Tensor {
    const t = this.find(name);
    if (!t) throw new Error(`no entry named ${name} in ${this.label}`);
    return t;
  }

  /** Tensor of a named entry, or undefined when there is none (for the caller's own error). */
  find(name: string): Tensor | undefined {
    this.#checkLive();
    const i = this.layout.byName.get(name);
    return i === undefined ? undefined : this.tensors[i];
  }

  /** Uploads host values for every entry, gaps zero. */
  upload(values: Map<string, Float32Array>): void {
    this.#checkLive();
    const host = new Float32Array(this.layout.length);
    this.layout.specs.forEach((s, i) => {
      const v = values.get(s.name);
      if (!v) throw new Error(`missing value for ${s.name}`);
      const size = s.shape.reduce((a, b) => a * b, 1);
      if (v.length !== size) throw new Error(`${s.name}: ${v.length} values for [${s.shape}]`);
      host.set(v, this.layout.offsets[i]);
    });
    this.#gpu.write(this.all, host);
  }

  /** Reads every entry back, by name. */
  async download(): Promise<Map<string, Float32Array>> {
    this.#checkLive();
    const host = new Float32Array(await this.#gpu.read(this.all));
    const out = new Map<string, Float32Array>();
    this.layout.specs.forEach((s, i) => {
      const size = s.shape.reduce((a, b) => a * b, 1);
      out.set(s.name, host.slice(this.layout.offsets[i], this.layout.offsets[i] + size));
    });
    return out;
  }

  /** Sets every value to zero (recorded on the command encoder). */
  clear(): void {
    this.#checkLive();
    this.#gpu.encoder().clearBuffer(this.buffer);
  }

  /** Copies all values from another flat buffer of the same layout (recorded). */
  copyFrom(other: FlatTensors): void {
    this.#checkLive();
    this.#gpu.copy(other.all, this.all);
  }

  /**
   * Frees the GPU buffer; afterwards every use throws naming `label` (so do the entries' tensors,
   * see `Tensor.view`). A second call does nothing.
   */
  destroy(): void {
    if (bufferGeneration(this.buffer) === DESTROYED) return;
    this.#gpu.destroy(this.buffer);
  }
}
