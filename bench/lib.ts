/**
 * Shared pieces of the benchmarks (bench/*_bench.ts and scripts/bench.ts): the GEMM-family
 * cases (matmul 1024^3 and conv forward / dX / dW at every ResNet-32 shape), the training-step
 * harness, timing helpers, a pipeline-compile timer, and the JPEG benchmarks' test files.
 *
 * FLOP counts are the useful work of the operation, 2 * M * N * K of the mathematical product:
 * for a convolution 2 * batch * Cout * OH * OW * Cin * KH * KW, the same for forward, dX and dW.
 * (A stride-2 dX runs as an implicit GEMM over every input position, so its GEMM does 4x the
 * multiply-adds, three quarters of them on structural zeros; the useful rate shows that cost.)
 */
import process from "node:process";
import { join } from "node:path";
import type { Gpu } from "../src/gpu/runtime.ts";
import { Tensor } from "../src/tensor.ts";
import { matmulInto } from "../src/ops/linear.ts";
import {
  convBackwardInput,
  convBackwardWeight,
  convForwardInto,
  convOutSize,
} from "../src/ops/conv.ts";
import { ResNet } from "../src/nn/resnet.ts";
import { Model } from "../src/nn/model.ts";
import { Sgd } from "../src/optim/optimizer.ts";
import { StepEngine } from "../src/engine/step.ts";
import { crossEntropy, type MetaOptions, MetaReweighter } from "../src/engine/meta.ts";
import type { SgdOptions } from "../src/optim/sgd.ts";
import { encodeJpeg } from "../test/support/jpeg_encoder.ts";
import { testImage } from "../test/support/images.ts";

// ------------------------------------------------------------------ data

/** Deterministic pseudo-random values in [-1, 1) (a 32-bit LCG; benchmarks only). */
export function randomArray(n: number, seed = 1): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2147483648 - 1;
  }
  return out;
}

/**
 * Writes `count` ImageNet-like JPEGs (500x375 test images, quality 90, 4:2:0) into `dir` as
 * img0.jpg, img1.jpg, ... (the JPEG benchmarks' input); returns their paths.
 */
export async function writeTestJpegs(dir: string, count: number): Promise<string[]> {
  const files: string[] = [];
  for (let i = 0; i < count; i++) {
    const path = join(dir, `img${i}.jpg`);
    const rgb = testImage(500, 375, i + 1);
    await Deno.writeFile(path, encodeJpeg(rgb, 500, 375, { quality: 90, sampling: [2, 2] }).bytes);
    files.push(path);
  }
  return files;
}

// ------------------------------------------------------------------ GEMM-family cases

/** One conv layer shape of ResNet-32 (3x3, pad 1). */
export interface ConvShapeSpec {
  /** Short label, e.g. "16->32 s2 @32". */
  label: string;
  C: number;
  O: number;
  /** Input height = width. */
  H: number;
  stride: number;
}

/** Every distinct 3x3 conv shape of a CIFAR ResNet-32 (input 32x32). */
export const RESNET32_CONVS: ConvShapeSpec[] = [
  { label: "conv1 3->16 @32", C: 3, O: 16, H: 32, stride: 1 },
  { label: "16->16 @32", C: 16, O: 16, H: 32, stride: 1 },
  { label: "16->32 s2 @32", C: 16, O: 32, H: 32, stride: 2 },
  { label: "32->32 @16", C: 32, O: 32, H: 16, stride: 1 },
  { label: "32->64 s2 @16", C: 32, O: 64, H: 16, stride: 2 },
  { label: "64->64 @8", C: 64, O: 64, H: 8, stride: 1 },
];

/** What a GEMM-family benchmark runs. */
export type CaseKind = "matmul" | "conv-fwd" | "conv-dx" | "conv-dw";

/** A prepared case: `run` records one instance of the kernel(s); `dispose` frees its buffers. */
export interface PreparedCase {
  run(): void;
  dispose(): void;
}

/** A GEMM-family benchmark case. */
export interface GemmCase {
  /** Unique name, e.g. "conv-dw 16->32 s2 @32 (batch 100)". */
  name: string;
  kind: CaseKind;
  /** Label of the shape (matmul: "1024^3"). */
  shape: string;
  /** Useful floating-point operations of one run. */
  flops: number;
  /** Implicit GEMM dimensions the engine runs. */
  gemm: { M: number; N: number; K: number };
  /** For the TF.js comparison: NHWC input and HWIO filter of the forward conv. */
  conv?: { batch: number; C: number; O: number; H: number; stride: number };
  prepare(gpu: Gpu): PreparedCase;
}

/** The engine's matmul C[n,n] = A[n,n] B[n,n]. */
export function matmulCase(n = 1024): GemmCase {
  return {
    name: `matmul ${n}^3`,
    kind: "matmul",
    shape: `${n}^3`,
    flops: 2 * n * n * n,
    gemm: { M: n, N: n, K: n },
    prepare(gpu) {
      const a = Tensor.from(gpu, randomArray(n * n, 1), [n, n]);
      const b = Tensor.from(gpu, randomArray(n * n, 2), [n, n]);
      const c = Tensor.empty(gpu, [n, n]);
      return {
        run: () => matmulInto(gpu, a, b, c),
        dispose: () => [a, b, c].forEach((t) => t.release(gpu)),
      };
    },
  };
}

/**
 * Checks the engine's n^3 matmul against float64 products on the CPU at `samples` sampled
 * entries, and that two runs give bit-identical results.
 */
export async function checkMatmul(
  gpu: Gpu,
  n = 1024,
  samples = 64,
): Promise<{ maxRelError: number; deterministic: boolean }> {
  const A = randomArray(n * n, 1), B = randomArray(n * n, 2);
  const a = Tensor.from(gpu, A, [n, n]);
  const b = Tensor.from(gpu, B, [n, n]);
  const c = Tensor.empty(gpu, [n, n]);
  matmulInto(gpu, a, b, c);
  const first = await c.read(gpu);
  matmulInto(gpu, a, b, c);
  const second = await c.read(gpu);
  let deterministic = true;
  for (let i = 0; i < first.length; i++) {
    if (!Object.is(first[i], second[i])) {
      deterministic = false;
      break;
    }
  }
  let maxRelError = 0;
  for (let s = 0; s < samples; s++) {
    const r = (s * 7919 + 13) % n, col = (s * 104729 + 7) % n;
    let want = 0, scale = 0;
    for (let k = 0; k < n; k++) {
      want += A[r * n + k] * B[k * n + col];
      scale += Math.abs(A[r * n + k] * B[k * n + col]);
    }
    maxRelError = Math.max(maxRelError, Math.abs(first[r * n + col] - want) / scale);
  }
  for (const t of [a, b, c]) t.release(gpu);
  return { maxRelError, deterministic };
}

/** Conv forward, dX or dW of one shape at a batch size. */
export function convCase(spec: ConvShapeSpec, kind: CaseKind, batch = 100): GemmCase {
  const { C, O, H, stride } = spec;
  const OH = convOutSize(H, 3, stride, 1);
  const flops = 2 * batch * O * OH * OH * C * 9;
  const gemm = kind === "conv-fwd"
    ? { M: O, N: batch * OH * OH, K: C * 9 }
    : kind === "conv-dx"
    ? { M: C, N: batch * H * H, K: O * 9 }
    : { M: O, N: C * 9, K: batch * OH * OH };
  return {
    name: `${kind} ${spec.label} (batch ${batch})`,
    kind,
    shape: spec.label,
    flops,
    gemm,
    conv: { batch, C, O, H, stride },
    prepare(gpu) {
      const o = { stride, pad: 1 };
      const x = Tensor.from(gpu, randomArray(batch * C * H * H, 3), [batch, C, H, H]);
      const w = Tensor.from(gpu, randomArray(O * C * 9, 4), [O, C, 3, 3]);
      const y = Tensor.from(gpu, randomArray(batch * O * OH * OH, 5), [batch, O, OH, OH]);
      const run = kind === "conv-fwd"
        ? () => convForwardInto(gpu, x, w, o, y)
        : kind === "conv-dx"
        ? () => convBackwardInput(gpu, y, w, x, o).release(gpu)
        : () => convBackwardWeight(gpu, y, x, w, o).release(gpu);
      return { run, dispose: () => [x, w, y].forEach((t) => t.release(gpu)) };
    },
  };
}

/** Matmul 1024^3 first, then forward, dX and dW of every ResNet-32 conv shape. */
export function gemmCases(batch = 100): GemmCase[] {
  const cases = [matmulCase(1024)];
  for (const spec of RESNET32_CONVS) {
    for (const kind of ["conv-fwd", "conv-dx", "conv-dw"] as const) {
      cases.push(convCase(spec, kind, batch));
    }
  }
  return cases;
}

// ------------------------------------------------------------------ training steps

/** Hyper-parameters of the paper preset (stage 2 for the meta step). */
export const SGD: SgdOptions = { lr: 0.1, momentum: 0.9, weightDecay: 5e-4, nesterov: true };
export const META: MetaOptions = {
  eta: 0.1,
  tau: 0.01,
  lookahead: "sum",
  rule: "meta",
  lookaheadWeights: "w",
};

/** A CIFAR-shaped training step with random images and labels. */
export interface StepHarness {
  /** The ResNet with its parameters. */
  model: Model<ResNet>;
  /** The step engine (SGD, cross-entropy). */
  engine: StepEngine;
  /** The meta re-weighting of the engine. */
  reweighter: MetaReweighter;
  plain(): void;
  meta(): void;
  dispose(): void;
}

/** A ResNet whose forward passes run in the runtime phase "forward" (for profiles). */
class PhasedResNet extends ResNet {
  override forward(...args: Parameters<ResNet["forward"]>): Tensor {
    return args[0].gpu.inPhase("forward", () => super.forward(...args));
  }
}

/** Builds a ResNet-(depth) step at `batch` (dev batch the same) on 3x32x32 inputs. */
export function stepHarness(gpu: Gpu, depth: number, batch = 100, classes = 10): StepHarness {
  const model = new Model(gpu, new PhasedResNet({ depth, inChannels: 3, numClasses: classes }), 7);
  const { momentum, weightDecay, nesterov } = SGD;
  const optimizer = new Sgd(gpu, model.paramLayout, { momentum, weightDecay, nesterov });
  const engine = new StepEngine(model, {
    loss: crossEntropy,
    optimizer,
    batch,
    input: [3, 32, 32],
  });
  const reweighter = new MetaReweighter(engine, { devBatch: batch, numClasses: classes });
  engine.x.upload(gpu, randomArray(batch * 3 * 32 * 32, 11));
  reweighter.devX.upload(gpu, randomArray(batch * 3 * 32 * 32, 12));
  const labels = Array.from({ length: batch }, (_, i) => (i * 7 + 3) % classes);
  engine.targets.upload(gpu, labels);
  reweighter.devTargets.upload(gpu, labels.map((l) => (l + 1) % classes));
  reweighter.classWeights.upload(gpu, new Float32Array(classes).fill(1));
  return {
    model,
    engine,
    reweighter,
    plain: () => engine.step(SGD.lr),
    meta: () => void reweighter.step(SGD.lr, META),
    dispose: () => {
      reweighter.destroy();
      engine.destroy();
      optimizer.destroy();
      model.destroy();
    },
  };
}

// ------------------------------------------------------------------ memory

/**
 * The least GPU memory a training step of a CIFAR ResNet can hold, in bytes (float32 and u32
 * values, 4 bytes each), from the shapes alone:
 * - parameters, their gradients and the SGD momentum (3 x P); a meta step adds the look-ahead
 *   parameters and the meta direction (2 x P more);
 * - the BN running statistics;
 * - inputs: images, labels and per-example weights of the batch (and of the dev batch, meta);
 * - the activations the tape must keep for the backward: every conv output, every BN output
 *   (the next conv's input; the block output where BN, residual add and relu are one op), the
 *   BN statistics, the pooled features, logits and per-example losses; for a meta step twice
 *   over (the batch's tape is kept for the JVP and the final backward while the dev batch's
 *   forward and backward run). Gradients in flight, the shortcut's padded copy and scratch are
 *   not counted: the bound is below what any implementation of this step can hold.
 */
export interface MemoryBound {
  /** Parameters + gradients + momentum (+ look-ahead + direction for meta). */
  parameterState: number;
  /** BN running mean and variance. */
  bnBuffers: number;
  /** Batch (and dev batch) images, labels and weights. */
  inputs: number;
  /** Activations the tape(s) must keep. */
  activations: number;
  /** The sum. */
  total: number;
}

/** Floats of the activations one ResNet forward must keep for its backward (see MemoryBound). */
export function resnetActivationFloats(depth: number, batch: number, classes = 10): number {
  const n = (depth - 2) / 6;
  let floats = 2 * batch * 16 * 32 * 32 + 2 * 2 * 16; // stem conv and BN outputs, BN stats
  let size = 32;
  [16, 32, 64].forEach((planes, stage) => {
    for (let b = 0; b < n; b++) {
      if (stage > 0 && b === 0) size /= 2;
      // conv1, bn1 + relu, conv2, bn2 + add + relu outputs; two BN statistics
      floats += 4 * batch * planes * size * size + 2 * 2 * planes;
    }
  });
  return floats + batch * 64 + batch * classes + batch;
}

/** The memory lower bound of a plain or meta step (see {@linkcode MemoryBound}). */
export function memoryLowerBound(
  model: Model<ResNet>,
  batch: number,
  kind: "plain" | "meta",
  devBatch = batch,
): MemoryBound {
  const P = model.paramLayout.count;
  const { depth, numClasses } = model.root.config;
  const image = 3 * 32 * 32;
  const meta = kind === "meta";
  const parameterState = 4 * P * (meta ? 5 : 3);
  const bnBuffers = 4 * model.bufferLayout.count;
  const inputs = 4 * (batch * (image + 2) + (meta ? devBatch * (image + 1) : 0));
  const activations = 4 * (resnetActivationFloats(depth, batch, numClasses) +
    (meta ? resnetActivationFloats(depth, devBatch, numClasses) : 0));
  return {
    parameterState,
    bnBuffers,
    inputs,
    activations,
    total: parameterState + bnBuffers + inputs + activations,
  };
}

/**
 * Bytes of the flat (non-pooled) buffers of a step: five of the parameter layout (parameters,
 * gradients, momentum, look-ahead parameters, meta direction), one of BN buffers.
 */
export function flatStateBytes(model: Model<ResNet>): number {
  return 4 * (5 * model.paramLayout.length + model.bufferLayout.length);
}

// ------------------------------------------------------------------ timing

/** Median of a list of numbers. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Timings of one benchmark case (ms per call). */
export interface Timing {
  /** The first call: pipeline builds, first-use JIT, pool growth. */
  firstMs: number;
  samplesMs: number[];
  medianMs: number;
  /**
   * Process CPU time per call (median over samples): all of llvmpipe's threads plus the host.
   * Other processes on the machine slow the wall time but not this, so ratios of CPU times stay
   * meaningful on a busy machine (on a hardware GPU it is only host time).
   */
  cpuMs: number;
  /** Calls per sample. */
  reps: number;
}

/**
 * Times `record` (which records GPU work, or queues it in another library) followed by `wait`
 * (a GPU sync): the first call separately, then `runs` samples, each of `reps` calls and one
 * wait, reps chosen so a sample lasts at least `minSampleMs`. Returns ms per call.
 */
export async function timeCalls(
  record: () => void,
  wait: () => Promise<void>,
  o: { runs: number; minSampleMs: number; maxReps?: number },
): Promise<Timing> {
  let t = performance.now();
  record();
  await wait();
  const firstMs = performance.now() - t;
  // one warm call to size the samples
  t = performance.now();
  record();
  await wait();
  const warmMs = performance.now() - t;
  const reps = Math.max(1, Math.min(o.maxReps ?? 16, Math.ceil(o.minSampleMs / warmMs)));
  const samplesMs: number[] = [];
  const cpu: number[] = [];
  for (let r = 0; r < o.runs; r++) {
    const c = processCpuMs();
    t = performance.now();
    for (let i = 0; i < reps; i++) record();
    await wait();
    samplesMs.push((performance.now() - t) / reps);
    cpu.push((processCpuMs() - c) / reps);
  }
  return { firstMs, samplesMs, medianMs: median(samplesMs), cpuMs: median(cpu), reps };
}

/**
 * Calls per second of `fn` (awaited) over at least `minCalls` calls and `seconds` seconds,
 * after one warm call.
 */
export async function callsPerSecond(
  fn: () => unknown,
  minCalls: number,
  seconds: number,
): Promise<number> {
  await fn();
  let n = 0;
  const t0 = performance.now();
  while (n < minCalls || performance.now() - t0 < seconds * 1000) {
    await fn();
    n++;
  }
  return (n * 1000) / (performance.now() - t0);
}

/** {@linkcode timeCalls} with the engine's `gpu.sync()` as the wait. */
export function timeGpu(
  gpu: Gpu,
  record: () => void,
  o: { runs: number; minSampleMs: number; maxReps?: number },
): Promise<Timing> {
  return timeCalls(record, () => gpu.sync(), o);
}

/**
 * Counts time spent inside `device.createComputePipeline` (the synchronous pipeline build;
 * llvmpipe may still JIT a shader variant at its first dispatch, which shows in first-run time).
 */
export function pipelineTimer(gpu: Gpu): { ms: number; count: number } {
  const acc = { ms: 0, count: 0 };
  const device = gpu.device;
  const original = device.createComputePipeline.bind(device);
  device.createComputePipeline = (desc: GPUComputePipelineDescriptor) => {
    const t = performance.now();
    const p = original(desc);
    acc.ms += performance.now() - t;
    acc.count++;
    return p;
  };
  return acc;
}

/** A file-name-safe name of the adapter and backend, e.g. "vulkan-llvmpipe-llvm-15-0-6-256-bits". */
export function adapterSlug(gpu: Gpu, backend = Deno.env.get("DENO_WEBGPU_BACKEND") ?? ""): string {
  const name = `${backend} ${gpu.adapter.description}`.toLowerCase();
  return name.replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "") || "unknown-adapter";
}

/** CPU time (user + system) of this process in ms (node:process cpuUsage; no permission). */
export function processCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** The 1-minute load average (needs --allow-sys=loadavg); NaN without it. */
export function loadAverage(): number {
  try {
    return Deno.loadavg()[0];
  } catch {
    return NaN;
  }
}
