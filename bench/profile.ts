/**
 * Profiling of training steps, for `scripts/bench.ts --profile`.
 *
 * - {@linkcode KernelProfiler}: per-dispatch GPU time from timestamp queries, where the adapter
 *   offers the "timestamp-query" feature (Mesa lavapipe does). It replaces `gpu.dispatch` on one
 *   Gpu instance by a version that gives every dispatch its own compute pass with
 *   `timestampWrites` (the runtime keeps one pass open for all dispatches, which is what we want
 *   outside profiling). Pipelines are built again here, so the profiled step is warm only
 *   after one profiled run. Each dispatch is attributed to its program key, the GEMM's M x N x K
 *   (read from the uniform it binds), and the phase of the step (forward, backward, JVP: the
 *   tape's and the model's methods are wrapped while profiling).
 * - {@linkcode phaseWallTimes}: without timestamps, wall time of forward, backward and optimizer
 *   of a plain step, synced between phases (the ops of StepEngine.step but its loss sum).
 */
import type { BufferView, Gpu, Program } from "../src/gpu/runtime.ts";
import { Ctx, Tape } from "../src/autograd/tape.ts";
import { ResNet } from "../src/nn/resnet.ts";
import { classificationLoss } from "../src/ops/loss.ts";
import { scale } from "../src/ops/elementwise.ts";
import type { StepEngine } from "../src/engine/step.ts";
import { TRAIN } from "../src/nn/module.ts";
import { SGD } from "./lib.ts";

/** One profiled dispatch. */
export interface KernelSample {
  /** Program key (without the shape constants of a shape-specialised GEMM). */
  key: string;
  /** "MxNxK" for GEMM programs, "" otherwise. */
  dims: string;
  phase: string;
  ns: number;
}

/** A row of the per-kernel summary. */
export interface KernelRow {
  key: string;
  dims: string;
  count: number;
  ms: number;
  share: number;
}

const QUERIES_PER_SET = 4096; // two per dispatch

/** Per-dispatch GPU timing through timestamp queries (see the module comment). */
export class KernelProfiler {
  readonly gpu: Gpu;
  /** Label given to dispatches recorded from now on. */
  phase = "other";
  #sets: GPUQuerySet[] = [];
  #records: { key: string; dims: string; phase: string }[] = [];
  #pipelines = new Map<string, { pipeline: GPUComputePipeline; layout: GPUBindGroupLayout }>();
  #groups = new Map<string, GPUBindGroup>();
  #ids = new WeakMap<GPUBuffer, number>();
  #nextId = 1;
  #uniformData = new WeakMap<GPUBuffer, Uint32Array>();
  #restore: (() => void)[] = [];

  constructor(gpu: Gpu) {
    this.gpu = gpu;
  }

  /** Whether the device can be profiled this way. */
  static supported(gpu: Gpu): boolean {
    return gpu.device.features.has("timestamp-query");
  }

  /** Starts intercepting dispatches (and labelling phases). */
  install(): void {
    const gpu = this.gpu;
    const dispatch = gpu.dispatch;
    const uniform = gpu.uniform;
    gpu.dispatch = (program, views, workgroups) => this.#dispatch(program, views, workgroups);
    gpu.uniform = (data) => {
      const view = uniform.call(gpu, data);
      if (!this.#uniformData.has(view.buffer)) {
        const bytes = data instanceof ArrayBuffer ? data : data.buffer.slice(
          data.byteOffset,
          data.byteOffset + data.byteLength,
        );
        this.#uniformData.set(view.buffer, new Uint32Array(bytes.slice(0, 12)));
      }
      return view;
    };
    this.#restore.push(() => {
      gpu.dispatch = dispatch;
      gpu.uniform = uniform;
    });
    const counts = new Map<string, number>();
    this.#restore.push(() => counts.clear());
    const wrap = <T extends object>(proto: T, name: keyof T & string, label: string) => {
      const original = proto[name] as unknown as (...a: unknown[]) => unknown;
      // deno-lint-ignore no-this-alias
      const self = this;
      (proto as Record<string, unknown>)[name] = function (this: unknown, ...args: unknown[]) {
        const n = (counts.get(label) ?? 0) + 1;
        counts.set(label, n);
        const outer = self.phase;
        self.phase = `${label}#${n}`;
        try {
          return original.apply(this, args);
        } finally {
          self.phase = outer;
        }
      };
      this.#restore.push(() => {
        (proto as Record<string, unknown>)[name] = original;
      });
    };
    wrap(ResNet.prototype, "forward", "forward");
    wrap(Tape.prototype, "backward", "backward");
    wrap(Tape.prototype, "jvp", "jvp");
    this.#phaseCounts = counts;
  }

  #phaseCounts = new Map<string, number>();

  /** Restores the Gpu's own dispatch and the wrapped methods. */
  uninstall(): void {
    for (const r of this.#restore.reverse()) r();
    this.#restore = [];
  }

  #id(buffer: GPUBuffer): number {
    let id = this.#ids.get(buffer);
    if (id === undefined) this.#ids.set(buffer, id = this.#nextId++);
    return id;
  }

  #dispatch(program: Program, views: BufferView[], workgroups: [number, number?, number?]): void {
    const gpu = this.gpu;
    const device = gpu.device;
    let entry = this.#pipelines.get(program.key);
    if (!entry) {
      const module = device.createShaderModule({ code: program.code });
      const layout = device.createBindGroupLayout({
        entries: program.bindings.map((kind, binding) => ({
          binding,
          visibility: GPUShaderStage.COMPUTE,
          buffer: {
            type: kind === "uniform"
              ? "uniform"
              : kind === "read"
              ? "read-only-storage"
              : "storage",
          },
        })),
      });
      const pipeline = device.createComputePipeline({
        layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
        compute: { module, entryPoint: program.entryPoint ?? "main" },
      });
      this.#pipelines.set(program.key, entry = { pipeline, layout });
    }
    let gkey = program.key;
    for (const v of views) gkey += `|${this.#id(v.buffer)}@${v.offset}:${v.size}`;
    let group = this.#groups.get(gkey);
    if (!group) {
      group = device.createBindGroup({
        layout: entry.layout,
        entries: views.map((v, binding) => ({
          binding,
          resource: { buffer: v.buffer, offset: v.offset, size: v.size },
        })),
      });
      this.#groups.set(gkey, group);
    }
    const index = this.#records.length;
    const setIndex = Math.floor((2 * index) / QUERIES_PER_SET);
    while (this.#sets.length <= setIndex) {
      this.#sets.push(device.createQuerySet({ type: "timestamp", count: QUERIES_PER_SET }));
    }
    const q = (2 * index) % QUERIES_PER_SET;
    const encoder = gpu.encoder();
    const pass = encoder.beginComputePass({
      timestampWrites: {
        querySet: this.#sets[setIndex],
        beginningOfPassWriteIndex: q,
        endOfPassWriteIndex: q + 1,
      },
    });
    pass.setPipeline(entry.pipeline);
    pass.setBindGroup(0, group);
    const [x, y = 1, z = 1] = workgroups;
    if (x > 0 && y > 0 && z > 0) pass.dispatchWorkgroups(x, y, z);
    pass.end();
    gpu.stats.dispatches++;
    let dims = "";
    let key = program.key;
    if (key.startsWith("gemm")) {
      // shape-specialised pipelines end their key with the shape constants "M,N,K,..."
      const last = key.slice(key.lastIndexOf(":") + 1);
      if (/^\d+(,\d+)+$/.test(last)) {
        const [M, N, K] = last.split(",");
        dims = `${M}x${N}x${K}`;
        key = key.slice(0, key.lastIndexOf(":"));
      } else {
        const u = this.#uniformData.get(views[views.length - 1].buffer);
        if (u) dims = `${u[0]}x${u[1]}x${u[2]}`;
      }
    }
    this.#records.push({ key, dims, phase: this.phase });
  }

  /** Starts a new step: clears the records and the phase counters. */
  reset(): void {
    this.#records = [];
    this.#phaseCounts.clear();
    this.phase = "other";
  }

  /** Waits for the GPU, reads every timestamp recorded since {@linkcode reset}. */
  async collect(): Promise<KernelSample[]> {
    const gpu = this.gpu;
    const n = this.#records.length;
    const out: KernelSample[] = [];
    if (n === 0) return out;
    const sets = Math.ceil((2 * n) / QUERIES_PER_SET);
    const resolve = gpu.device.createBuffer({
      size: sets * QUERIES_PER_SET * 8,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
    const encoder = gpu.encoder();
    for (let s = 0; s < sets; s++) {
      const count = Math.min(QUERIES_PER_SET, 2 * n - s * QUERIES_PER_SET);
      encoder.resolveQuerySet(this.#sets[s], 0, count, resolve, s * QUERIES_PER_SET * 8);
    }
    const bytes = await gpu.read({ buffer: resolve, offset: 0, size: 2 * n * 8 });
    resolve.destroy();
    const t = new BigUint64Array(bytes);
    this.#records.forEach((r, i) => {
      out.push({ ...r, ns: Number(t[2 * i + 1] - t[2 * i]) });
    });
    return out;
  }

  /** Destroys the query sets. */
  destroy(): void {
    this.uninstall();
    for (const s of this.#sets) s.destroy();
    this.#sets = [];
  }
}

/** Per-kernel (program key and GEMM shape) totals, largest first. */
export function summarizeKernels(samples: KernelSample[]): KernelRow[] {
  const total = samples.reduce((s, x) => s + x.ns, 0) || 1;
  const rows = new Map<string, KernelRow>();
  for (const s of samples) {
    const id = `${s.key}|${s.dims}`;
    let r = rows.get(id);
    if (!r) rows.set(id, r = { key: s.key, dims: s.dims, count: 0, ms: 0, share: 0 });
    r.count++;
    r.ms += s.ns / 1e6;
  }
  for (const r of rows.values()) r.share = (r.ms * 1e6) / total;
  return [...rows.values()].sort((a, b) => b.ms - a.ms);
}

/** Per-phase totals in ms, in order of first appearance. */
export function summarizePhases(
  samples: KernelSample[],
): { phase: string; ms: number; dispatches: number }[] {
  const rows = new Map<string, { phase: string; ms: number; dispatches: number }>();
  for (const s of samples) {
    let r = rows.get(s.phase);
    if (!r) rows.set(s.phase, r = { phase: s.phase, ms: 0, dispatches: 0 });
    r.ms += s.ns / 1e6;
    r.dispatches++;
  }
  return [...rows.values()];
}

/** Per-family totals (conv-fwd, conv-dx, conv-dw, gemm reduce, batchnorm, map, ...). */
export function summarizeFamilies(samples: KernelSample[]): { family: string; ms: number }[] {
  const rows = new Map<string, number>();
  for (const s of samples) {
    const parts = s.key.split(":");
    const family = parts[0] === "gemm" || parts[0] === "gemm-reduce"
      ? `${parts[0]}:${parts[1]}`
      : parts[0];
    rows.set(family, (rows.get(family) ?? 0) + s.ns / 1e6);
  }
  return [...rows.entries()].map(([family, ms]) => ({ family, ms })).sort((a, b) => b.ms - a.ms);
}

/**
 * Wall time of the phases of a plain step (forward + loss, backward, optimizer and gradient
 * copies), with a GPU sync after each: the fallback where timestamps are missing, and a
 * cross-check where they exist. Runs the ops of StepEngine.step except the loss sum.
 */
export async function phaseWallTimes(
  gpu: Gpu,
  engine: StepEngine,
): Promise<{ forwardMs: number; backwardMs: number; optimizerMs: number }> {
  await gpu.sync();
  const tape = new Tape();
  const ctx = new Ctx(gpu, tape);
  let t = performance.now();
  const { model } = engine;
  const logits = model.forward(ctx, engine.x, TRAIN);
  const l = classificationLoss(ctx, logits, engine.targets, {});
  await gpu.sync();
  const forwardMs = performance.now() - t;
  t = performance.now();
  const seed = scale(gpu, engine.weights, 1 / engine.batch, ctx.empty([engine.batch]));
  const grads = tape.backward(gpu, l, seed, model.params.tensors);
  await gpu.sync();
  const backwardMs = performance.now() - t;
  t = performance.now();
  model.params.tensors.forEach((p, i) => {
    const g = grads.get(p)!;
    gpu.copy(g.view, engine.grads.tensors[i].view, p.size * 4);
    g.release(gpu);
  });
  engine.optimizer.step(model.params, engine.grads, SGD.lr);
  await gpu.sync();
  const optimizerMs = performance.now() - t;
  ctx.release();
  return { forwardMs, backwardMs, optimizerMs };
}
