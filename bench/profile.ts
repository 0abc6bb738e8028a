/**
 * Profiling of training steps, for `scripts/bench.ts --profile`.
 *
 * - {@linkcode KernelProfiler}: per-dispatch GPU time from timestamp queries, where the adapter
 *   offers the "timestamp-query" feature (Mesa lavapipe does). It is the Gpu's dispatch observer
 *   (`Gpu.observer`): the runtime then records every dispatch in a compute pass of its own with
 *   `timestampWrites` (outside profiling it keeps one pass open for all dispatches). Each
 *   dispatch is attributed to its kernel name, the GEMM's M x N x K (the shape constants that
 *   end a GEMM kernel's name), and the phase of the step: the runtime's phase label
 *   (`Gpu.inPhase`: the tape labels "backward" and "jvp", the bench model "forward"), numbered
 *   by occurrence; dispatches outside any phase are "other".
 * - {@linkcode phaseWallTimes}: without timestamps, wall time of forward, backward and optimizer
 *   of a plain step, synced between phases (the ops of StepEngine.step but its loss sum).
 */
import type { BufferView, DispatchObserver, Gpu, Program } from "../src/gpu/runtime.ts";
import { Ctx, Tape } from "../src/autograd/tape.ts";
import { classificationLoss } from "../src/ops/loss.ts";
import { scale } from "../src/ops/elementwise.ts";
import type { StepEngine } from "../src/engine/step.ts";
import { TRAIN } from "../src/nn/module.ts";
import { SGD } from "./lib.ts";

/** One profiled dispatch. */
export interface KernelSample {
  /** Kernel name (without the shape constants of a shape-specialised GEMM). */
  key: string;
  /** "MxNxK" for GEMM kernels, "" otherwise. */
  dims: string;
  /** Phase of the step and its occurrence, e.g. "backward#2". */
  phase: string;
  /** GPU time of the dispatch in nanoseconds. */
  ns: number;
}

/** A row of the per-kernel summary. */
export interface KernelRow {
  /** Kernel name (see {@linkcode KernelSample}). */
  key: string;
  /** "MxNxK" for GEMM kernels, "" otherwise. */
  dims: string;
  /** Dispatches of this kernel and shape. */
  count: number;
  /** Their GPU time in ms. */
  ms: number;
  /** Their fraction of the step's GPU time. */
  share: number;
}

const QUERIES_PER_SET = 4096; // two per dispatch

/** Per-dispatch GPU timing through timestamp queries (see the module comment). */
export class KernelProfiler implements DispatchObserver {
  readonly gpu: Gpu;
  #sets: GPUQuerySet[] = [];
  #records: { key: string; dims: string; phase: string }[] = [];
  #phaseCounts = new Map<string, number>();
  #lastPhase: string | null = null;

  constructor(gpu: Gpu) {
    this.gpu = gpu;
  }

  /** Whether the device can be profiled this way. */
  static supported(gpu: Gpu): boolean {
    return gpu.device.features.has("timestamp-query");
  }

  /** Starts observing the Gpu's dispatches. */
  install(): void {
    if (this.gpu.observer && this.gpu.observer !== this) {
      throw new Error("KernelProfiler: the Gpu already has a dispatch observer");
    }
    this.gpu.observer = this;
  }

  /** Stops observing. */
  uninstall(): void {
    if (this.gpu.observer === this) this.gpu.observer = null;
  }

  /** The observer hook: a query pair for this dispatch, and its record. */
  dispatch(
    program: Program,
    _views: readonly BufferView[],
    _workgroups: readonly [number, number?, number?],
    phase: string,
  ): GPUComputePassTimestampWrites {
    const index = this.#records.length;
    const setIndex = Math.floor((2 * index) / QUERIES_PER_SET);
    while (this.#sets.length <= setIndex) {
      this.#sets.push(
        this.gpu.device.createQuerySet({ type: "timestamp", count: QUERIES_PER_SET }),
      );
    }
    const label = phase || "other";
    if (label !== this.#lastPhase) {
      this.#phaseCounts.set(label, (this.#phaseCounts.get(label) ?? 0) + 1);
      this.#lastPhase = label;
    }
    let key = program.key;
    let dims = "";
    // shape-specialised GEMM kernels end their name with the shape constants "M,N,K,..."
    const last = key.slice(key.lastIndexOf(":") + 1);
    if (key.startsWith("gemm") && /^\d+(,\d+)+$/.test(last)) {
      const [M, N, K] = last.split(",");
      dims = `${M}x${N}x${K}`;
      key = key.slice(0, key.lastIndexOf(":"));
    }
    this.#records.push({ key, dims, phase: `${label}#${this.#phaseCounts.get(label)}` });
    const q = (2 * index) % QUERIES_PER_SET;
    return {
      querySet: this.#sets[setIndex],
      beginningOfPassWriteIndex: q,
      endOfPassWriteIndex: q + 1,
    };
  }

  /** Starts a new step: clears the records and the phase counters. */
  reset(): void {
    this.#records = [];
    this.#phaseCounts.clear();
    this.#lastPhase = null;
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
