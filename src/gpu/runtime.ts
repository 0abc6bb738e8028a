/**
 * The GPU runtime: buffer pool, pipeline / bind-group / uniform caches, and one command
 * encoder that collects every dispatch until {@linkcode Gpu.submit}.
 *
 * Static shapes per run mean that a steady-state training step allocates and releases the
 * same pooled buffers in the same order every step, so every bind group and uniform buffer it
 * needs is already cached: a warm step creates no GPU objects (test/runtime_test.ts counts them).
 */
import { acquireDevice, type AcquireOptions, type AdapterSummary } from "./device.ts";

/** A byte range of a GPU buffer: what a kernel binds. */
export interface BufferView {
  /** The underlying GPU buffer. */
  buffer: GPUBuffer;
  /** Byte offset, a multiple of the device's storage offset alignment. */
  offset: number;
  /** Byte length. */
  size: number;
}

/** How a kernel uses each binding, in binding order. */
export type BindingKind = "read" | "write" | "uniform";

/**
 * A compiled-once compute kernel: WGSL source plus its binding signature. Programs are made by
 * {@linkcode Kernel} declarations (src/gpu/kernel.ts); the pipeline cache is keyed on `code`.
 */
export interface Program {
  /** Label of the pipeline (kernel name), for debugging and profiles; need not be unique. */
  key: string;
  /** WGSL source of the kernel. */
  code: string;
  /** Kind of each binding in group 0, by binding index. */
  bindings: BindingKind[];
  /** Compute entry point; defaults to "main". */
  entryPoint?: string;
}

/** Counters used by tests and benchmarks to prove a warm step creates nothing. */
export interface GpuStats {
  /** Storage buffers created (pool misses and flat parameter buffers). */
  buffersCreated: number;
  /** Storage buffers destroyed by {@linkcode Gpu.trim} or {@linkcode Gpu.destroy}. */
  buffersDestroyed: number;
  /** Bind groups created (cache misses). */
  bindGroupsCreated: number;
  /** Compute pipelines created (cache misses). */
  pipelinesCreated: number;
  /** Uniform buffers created (content-cache misses). */
  uniformsCreated: number;
  /** Command buffers submitted. */
  submits: number;
  /** Buffer reads back to the host via {@linkcode Gpu.read}. */
  readbacks: number;
  /** Dispatches recorded, including empty ones. */
  dispatches: number;
}

/**
 * Bytes of pooled storage buffers ({@linkcode Gpu.alloc}), as buffer sizes (size classes):
 * in use (taken and not yet released) and held (in use plus free in the pool: what the device
 * holds for the pool), each with its high-water mark since {@linkcode Gpu.resetMemoryPeak}.
 */
export interface PoolMemory {
  /** Bytes of pooled buffers taken and not released. */
  inUseBytes: number;
  /** Bytes of every pooled buffer in existence (in use or free). */
  heldBytes: number;
  /** Highest `inUseBytes` since the last reset. */
  peakInUseBytes: number;
  /** Highest `heldBytes` since the last reset. */
  peakHeldBytes: number;
}

/**
 * Watches the dispatches of a {@linkcode Gpu}: the hook profilers use (bench/profile.ts), set
 * as {@linkcode Gpu.observer}. It sees every dispatch before it is recorded, with the phase
 * label in force (see {@linkcode Gpu.inPhase}), and may ask for that dispatch to get a compute
 * pass of its own with timestamp writes, so its GPU time can be read from a query set.
 */
export interface DispatchObserver {
  /**
   * Called once per dispatch, before it is recorded. Return timestamp writes to record the
   * dispatch alone in a pass timed by them; return undefined to record it as usual.
   */
  dispatch(
    program: Program,
    views: readonly BufferView[],
    workgroups: readonly [number, number?, number?],
    phase: string,
  ): GPUComputePassTimestampWrites | undefined;
}

/** A compiled program: its pipeline, bind-group layout and a process-unique id. */
interface CompiledProgram {
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
  id: number;
}

const STORAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

/** Size classes: round up so buffers of near-equal sizes share a free list. */
function sizeClass(bytes: number): number {
  const b = Math.max(256, bytes);
  if (b <= 4096) return Math.ceil(b / 256) * 256;
  const step = 2 ** Math.max(12, Math.floor(Math.log2(b)) - 3);
  return Math.ceil(b / step) * step;
}

let nextBufferId = 1;
const bufferIds = new WeakMap<GPUBuffer, number>();
/** How many times each pooled buffer went back to the pool; {@linkcode DESTROYED} once destroyed. */
const generations = new WeakMap<GPUBuffer, number>();

/** The generation of a buffer that has been destroyed (see {@linkcode bufferGeneration}). */
export const DESTROYED = -1;

/**
 * The generation of `buffer`: 0 when created, one more each time it goes back to the pool
 * ({@linkcode Gpu.release}), {@linkcode DESTROYED} once destroyed. A tensor remembers the
 * generation of its buffer when it is made, so a use after its buffer was released or destroyed
 * is caught on the host (src/tensor.ts) instead of reading whatever the buffer holds by then.
 */
export function bufferGeneration(buffer: GPUBuffer): number {
  return generations.get(buffer) ?? 0;
}
function idOf(buffer: GPUBuffer): number {
  let id = bufferIds.get(buffer);
  if (id === undefined) {
    id = nextBufferId++;
    bufferIds.set(buffer, id);
  }
  return id;
}

/** The engine's handle on one GPU device. */
export class Gpu {
  /** The WebGPU device all work runs on. */
  readonly device: GPUDevice;
  /** Summary of the adapter the device came from. */
  readonly adapter: AdapterSummary;
  /** Alignment of storage-binding offsets, in bytes. */
  readonly offsetAlignment: number;
  /** Object-creation and work counters since construction. */
  readonly stats: GpuStats = {
    buffersCreated: 0,
    buffersDestroyed: 0,
    bindGroupsCreated: 0,
    pipelinesCreated: 0,
    uniformsCreated: 0,
    submits: 0,
    readbacks: 0,
    dispatches: 0,
  };

  /** Pool memory and its high-water marks (see {@linkcode PoolMemory}). */
  readonly memory: PoolMemory = {
    inUseBytes: 0,
    heldBytes: 0,
    peakInUseBytes: 0,
    peakHeldBytes: 0,
  };

  #free = new Map<number, GPUBuffer[]>();
  #taken = new Set<GPUBuffer>();
  #live = new Set<GPUBuffer>();
  #pipelines = new Map<string, CompiledProgram>();
  #bindGroups = new Map<string, GPUBindGroup>();
  #uniforms = new Map<string, GPUBuffer>();
  #encoder: GPUCommandEncoder | null = null;
  #pass: GPUComputePassEncoder | null = null;
  #disposed = false;

  /** Validation errors reported by the device, oldest first (see {@linkcode Gpu.sync}). */
  readonly errors: string[] = [];

  /**
   * Sees every dispatch and may time it (see {@linkcode DispatchObserver}); null outside
   * profiling. Timed dispatches each end the shared compute pass, so leave it null otherwise.
   */
  observer: DispatchObserver | null = null;
  #phase = "";

  /** Wraps an existing device; listens for its uncaptured validation errors. */
  constructor(device: GPUDevice, adapter: AdapterSummary) {
    this.device = device;
    this.adapter = adapter;
    this.offsetAlignment = device.limits.minStorageBufferOffsetAlignment;
    // WebGPU reports invalid commands asynchronously and drops the whole command buffer:
    // collect the messages so the next sync or read fails loudly instead of computing nothing.
    device.addEventListener("uncapturederror", (event) => {
      this.errors.push((event as GPUUncapturedErrorEvent).error.message);
    });
  }

  /** Whether {@linkcode Gpu.dispose} has run: then every use but freeing throws. */
  get disposed(): boolean {
    return this.#disposed;
  }

  /** Throws unless the Gpu is usable: the check of each method that creates, records or reads. */
  #checkUsable(): void {
    if (this.#disposed) {
      throw new Error(
        "Gpu used after dispose(): its device and every buffer on it are gone; create a new " +
          "Gpu (Gpu.create()) and build the model, engine and tensors on it",
      );
    }
  }

  /** Throws if the device has reported a validation error since the last check. */
  throwIfFailed(): void {
    if (this.errors.length === 0) return;
    const messages = this.errors.splice(0);
    throw new Error(`GPU validation failed: ${messages.join("\n")}`);
  }

  /** Acquires the default adapter's device (see {@linkcode acquireDevice}). */
  static async create(options: AcquireOptions = {}): Promise<Gpu> {
    const { device, summary } = await acquireDevice(options);
    return new Gpu(device, summary);
  }

  /** Number of GPU buffers currently alive (pooled, in use, or cached uniforms). */
  get liveBuffers(): number {
    return this.#live.size + this.#uniforms.size;
  }

  // ---------------------------------------------------------------- buffers

  /** Takes a storage buffer of at least `bytes` bytes from the pool. */
  alloc(bytes: number): GPUBuffer {
    this.#checkUsable();
    const cls = sizeClass(bytes);
    const list = this.#free.get(cls);
    let buffer = list?.pop();
    if (!buffer) {
      buffer = this.device.createBuffer({ label: `pool ${cls} B`, size: cls, usage: STORAGE });
      idOf(buffer); // ids follow creation order (see release)
      this.stats.buffersCreated++;
      this.#live.add(buffer);
      this.memory.heldBytes += cls;
      this.memory.peakHeldBytes = Math.max(this.memory.peakHeldBytes, this.memory.heldBytes);
    }
    this.#taken.add(buffer);
    this.memory.inUseBytes += cls;
    this.memory.peakInUseBytes = Math.max(this.memory.peakInUseBytes, this.memory.inUseBytes);
    return buffer;
  }

  /**
   * A long-lived storage buffer of `bytes` bytes outside the pool (flat parameter and optimizer
   * state), labelled with its owner so the device's validation messages name it; freed by
   * {@linkcode Gpu.destroy}. Counted in `stats.buffersCreated`, not in the pool's memory.
   */
  createStorage(bytes: number, label: string): GPUBuffer {
    this.#checkUsable();
    const buffer = this.device.createBuffer({ label, size: bytes, usage: STORAGE });
    idOf(buffer);
    this.stats.buffersCreated++;
    return buffer;
  }

  /** Starts new high-water marks of pool memory from the current values. */
  resetMemoryPeak(): void {
    this.memory.peakInUseBytes = this.memory.inUseBytes;
    this.memory.peakHeldBytes = this.memory.heldBytes;
  }

  /**
   * Returns a buffer from {@linkcode alloc} to the pool (its generation moves on, so tensors
   * over it are stale). After {@linkcode Gpu.dispose} it does nothing: everything is freed.
   */
  release(buffer: GPUBuffer): void {
    if (this.#disposed) return;
    if (!this.#taken.delete(buffer)) {
      throw new Error("Gpu.release: the buffer is not a pooled buffer in use (released twice?)");
    }
    this.memory.inUseBytes -= buffer.size;
    generations.set(buffer, bufferGeneration(buffer) + 1);
    const cls = buffer.size;
    let list = this.#free.get(cls);
    if (!list) this.#free.set(cls, list = []);
    // Keep each free list sorted by descending id so alloc() pops the oldest free buffer: then
    // which buffer an allocation gets depends only on the current step's own alloc/release
    // sequence, not on what earlier steps (plain or meta) left behind, and bind groups repeat.
    const id = idOf(buffer);
    let i = list.length;
    while (i > 0 && idOf(list[i - 1]) < id) i--;
    list.splice(i, 0, buffer);
  }

  /**
   * Destroys every pooled (free) buffer and forgets bind groups that used them. Recorded work is
   * submitted first: a buffer released after recording may still be bound by it.
   */
  trim(): void {
    if (this.#disposed) return;
    this.submit();
    for (const list of this.#free.values()) {
      for (const b of list) this.#destroyBuffer(b);
    }
    this.#free.clear();
  }

  #destroyBuffer(buffer: GPUBuffer): void {
    const id = `#${idOf(buffer)}@`;
    for (const key of this.#bindGroups.keys()) {
      if (key.includes(id)) this.#bindGroups.delete(key);
    }
    if (this.#live.delete(buffer)) this.memory.heldBytes -= buffer.size;
    if (this.#taken.delete(buffer)) this.memory.inUseBytes -= buffer.size;
    generations.set(buffer, DESTROYED);
    buffer.destroy();
    this.stats.buffersDestroyed++;
  }

  /**
   * Destroys a buffer now (not back to the pool): for long-lived buffers being replaced or
   * freed. Recorded work is submitted first, so work that still binds the buffer runs (a
   * destroyed buffer would make the device drop the whole command buffer). After
   * {@linkcode Gpu.dispose} it does nothing: everything is freed.
   */
  destroy(buffer: GPUBuffer): void {
    if (this.#disposed) return;
    this.submit();
    this.#destroyBuffer(buffer);
  }

  /**
   * Writes host data into a buffer at a byte offset. Work recorded so far is submitted first:
   * queue writes take effect before any later submit, so a write into a buffer that recorded
   * work still reads would otherwise be seen by that work.
   */
  write(view: BufferView, data: ArrayBufferView, byteOffset = 0): void {
    this.#checkUsable();
    this.submit();
    this.device.queue.writeBuffer(
      view.buffer,
      view.offset + byteOffset,
      data.buffer as ArrayBuffer,
      data.byteOffset,
      data.byteLength,
    );
  }

  // ---------------------------------------------------------------- kernels

  #pipeline(program: Program): CompiledProgram {
    this.#checkUsable();
    // Keyed on the code itself: equal code compiles once, and no two kernels can share a
    // pipeline because their names collide.
    let entry = this.#pipelines.get(program.code);
    if (entry) return entry;
    const storage = program.bindings.filter((kind) => kind !== "uniform").length;
    const allowed = this.device.limits.maxStorageBuffersPerShaderStage;
    if (storage > allowed) {
      throw new Error(
        `${program.key}: binds ${storage} storage buffers, the device allows ${allowed} ` +
          "(maxStorageBuffersPerShaderStage; see ENGINE_LIMITS in src/gpu/device.ts)",
      );
    }
    const module = this.device.createShaderModule({ label: program.key, code: program.code });
    const layout = this.device.createBindGroupLayout({
      label: program.key,
      entries: program.bindings.map((kind, binding) => ({
        binding,
        visibility: GPUShaderStage.COMPUTE,
        buffer: {
          type: kind === "uniform" ? "uniform" : kind === "read" ? "read-only-storage" : "storage",
        },
      })),
    });
    const pipeline = this.device.createComputePipeline({
      label: program.key,
      layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: program.entryPoint ?? "main" },
    });
    this.stats.pipelinesCreated++;
    entry = { pipeline, layout, id: this.#pipelines.size + 1 };
    this.#pipelines.set(program.code, entry);
    return entry;
  }

  /** Builds (once) the pipeline of a program, e.g. to warm caches before timing. */
  prepare(program: Program): void {
    this.#pipeline(program);
  }

  /**
   * A uniform buffer holding `data`, cached by content: shape constants repeat every step,
   * so steady state creates none.
   */
  uniform(data: ArrayBuffer | ArrayBufferView): BufferView {
    this.#checkUsable();
    const bytes = data instanceof ArrayBuffer
      ? new Uint8Array(data)
      : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    let key = "";
    for (let i = 0; i < bytes.length; i++) key += String.fromCharCode(bytes[i]);
    let buffer = this.#uniforms.get(key);
    if (!buffer) {
      const size = Math.max(16, Math.ceil(bytes.length / 16) * 16);
      buffer = this.device.createBuffer({
        label: "uniform",
        size,
        usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      });
      const padded = new Uint8Array(size);
      padded.set(bytes);
      this.device.queue.writeBuffer(buffer, 0, padded);
      this.#uniforms.set(key, buffer);
      this.stats.uniformsCreated++;
    }
    return { buffer, offset: 0, size: buffer.size };
  }

  #bindGroup(compiled: CompiledProgram, views: BufferView[]): GPUBindGroup {
    let key = `${compiled.id}`;
    for (const v of views) key += `|#${idOf(v.buffer)}@${v.offset}:${v.size}`;
    let group = this.#bindGroups.get(key);
    if (!group) {
      group = this.device.createBindGroup({
        layout: compiled.layout,
        entries: views.map((v, binding) => ({
          binding,
          resource: { buffer: v.buffer, offset: v.offset, size: v.size },
        })),
      });
      this.stats.bindGroupsCreated++;
      this.#bindGroups.set(key, group);
    }
    return group;
  }

  /**
   * Label of the work being recorded ("" outside any phase), set by {@linkcode Gpu.inPhase};
   * observers receive it with each dispatch.
   */
  get phase(): string {
    return this.#phase;
  }

  /** Runs `record` with `label` as the phase of the dispatches it records (nests). */
  inPhase<T>(label: string, record: () => T): T {
    const outer = this.#phase;
    this.#phase = label;
    try {
      return record();
    } finally {
      this.#phase = outer;
    }
  }

  /** Records one dispatch into the current command encoder. */
  dispatch(program: Program, views: BufferView[], workgroups: [number, number?, number?]): void {
    if (views.length !== program.bindings.length) {
      throw new Error(
        `${program.key}: expected ${program.bindings.length} bindings, got ${views.length}`,
      );
    }
    const compiled = this.#pipeline(program);
    const group = this.#bindGroup(compiled, views);
    const timestampWrites = this.observer?.dispatch(program, views, workgroups, this.#phase);
    let pass: GPUComputePassEncoder;
    if (timestampWrites) pass = this.encoder().beginComputePass({ timestampWrites });
    else {
      this.#encoder ??= this.device.createCommandEncoder();
      pass = this.#pass ??= this.#encoder.beginComputePass();
    }
    pass.setPipeline(compiled.pipeline);
    pass.setBindGroup(0, group);
    const [x, y = 1, z = 1] = workgroups;
    if (x > 0 && y > 0 && z > 0) pass.dispatchWorkgroups(x, y, z);
    if (timestampWrites) pass.end();
    this.stats.dispatches++;
  }

  /** The open command encoder, with any compute pass closed, for copies. */
  encoder(): GPUCommandEncoder {
    this.#checkUsable();
    if (this.#pass) {
      this.#pass.end();
      this.#pass = null;
    }
    this.#encoder ??= this.device.createCommandEncoder();
    return this.#encoder;
  }

  /** Records a buffer-to-buffer copy. */
  copy(src: BufferView, dst: BufferView, bytes: number = Math.min(src.size, dst.size)): void {
    this.encoder().copyBufferToBuffer(src.buffer, src.offset, dst.buffer, dst.offset, bytes);
  }

  /**
   * Drops the work recorded since the last submit without running it: how a step refused after
   * it began recording (a bad label seen at its first forward) leaves every buffer as it was.
   * Work recorded before the step must be submitted first (see `refusable` in
   * src/engine/step.ts); work already submitted cannot be taken back.
   */
  discard(): void {
    if (this.#pass) {
      this.#pass.end();
      this.#pass = null;
    }
    this.#encoder = null; // never finished: its commands never reach the queue
  }

  /** Submits everything recorded so far as one command buffer. */
  submit(): void {
    // nothing is ever pending after dispose() (recording throws), so owners' destroy() may call it
    if (!this.#encoder && !this.#pass) return;
    const encoder = this.encoder();
    this.device.queue.submit([encoder.finish()]);
    this.#encoder = null;
    this.stats.submits++;
  }

  /** Submits pending work and reads `view` back (the one place the host waits for the GPU). */
  async read(view: BufferView): Promise<ArrayBuffer> {
    this.#checkUsable();
    const staging = this.device.createBuffer({
      label: "readback",
      size: Math.ceil(view.size / 4) * 4,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    this.encoder().copyBufferToBuffer(view.buffer, view.offset, staging, 0, staging.size);
    this.submit();
    await staging.mapAsync(GPUMapMode.READ);
    this.throwIfFailed();
    const out = staging.getMappedRange().slice(0, view.size);
    staging.unmap();
    staging.destroy();
    this.stats.readbacks++;
    return out;
  }

  /** Waits until the GPU has finished all submitted work. */
  async sync(): Promise<void> {
    this.#checkUsable();
    this.submit();
    await this.device.queue.onSubmittedWorkDone();
    this.throwIfFailed();
  }

  /**
   * Submits pending work, then destroys every buffer and the device. Afterwards every method
   * that creates, records, submits or reads throws ("Gpu used after dispose()"); releasing and
   * destroying do nothing, and a second dispose() is a no-op.
   */
  dispose(): void {
    if (this.#disposed) return;
    this.submit();
    this.#disposed = true;
    for (const b of this.#live) b.destroy();
    for (const b of this.#uniforms.values()) b.destroy();
    this.#live.clear();
    this.#uniforms.clear();
    this.#bindGroups.clear();
    this.#free.clear();
    this.#taken.clear();
    this.device.destroy();
  }
}

/** Splits a 1-D dispatch of `groups` workgroups into x/y so neither exceeds the device limit. */
export function grid1d(groups: number, maxPerDim = 65535): [number, number] {
  if (groups <= maxPerDim) return [Math.max(1, groups), 1];
  const y = Math.ceil(groups / maxPerDim);
  return [Math.ceil(groups / y), y];
}
