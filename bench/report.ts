/**
 * The benchmark suite's result (the JSON `deno task bench` writes, {@linkcode BenchResult}), its
 * acceptance targets ({@linkcode benchTargets}) and its Markdown page
 * ({@linkcode renderMarkdown}). Both functions are pure and read only the result, so a
 * committed bench/results/<adapter>.json renders to its .md again without a GPU
 * (test/bench_report_test.ts checks that byte for byte).
 *
 * JSON writes NaN (a figure that could not be measured) as null; the formatters here print
 * both as "n/a".
 */
import type { BenchFlags } from "./flags.ts";
import type { MemoryBound } from "./lib.ts";
import type { KernelRow } from "./profile.ts";

export type { BenchFlags, KernelRow, MemoryBound };

// ------------------------------------------------------------------ result shapes

/** One GEMM-family kernel (matmul or a conv pass) timed by the suite. */
export interface KernelResult {
  /** Case name, e.g. "conv-dx 16->32 s2 @32 (batch 100)". */
  name: string;
  /** "matmul", "conv-fwd", "conv-dx" or "conv-dw". */
  kind: string;
  /** The case's shape in words, e.g. "1024^3". */
  shape: string;
  /** The engine's GEMM for the case (M x N x K). */
  gemm: { M: number; N: number; K: number };
  /** Useful floating-point operations of one call. */
  flops: number;
  /** The first call: pipeline builds, first-use JIT, pool growth. */
  firstMs: number;
  /** Median ms per call over the samples. */
  medianMs: number;
  /** ms per call of each sample. */
  samplesMs: number[];
  /** Calls per sample. */
  reps: number;
  /** Process CPU ms per call (all of llvmpipe's threads; see Timing.cpuMs in bench/lib.ts). */
  cpuMs: number;
  /** GFLOP per second of wall time. */
  gflops: number;
  /** GFLOP per CPU-second: the rate with other processes' load taken out. */
  gflopsPerCpuS: number;
  /** GFLOP/s over the engine's own matmul 1024^3 GFLOP/s. */
  ratioToMatmul: number;
  /** The same ratio from CPU time (robust to other load on the machine). */
  ratioToMatmulCpu: number;
}

/** GPU objects created during one step, by kind. */
export interface CreatedObjects {
  /** GPU buffers. */
  buffers: number;
  /** Bind groups. */
  bindGroups: number;
  /** Compute pipelines. */
  pipelines: number;
  /** Uniform buffers. */
  uniforms: number;
}

/** GPU memory of one kind of training step against its lower bound. */
export interface StepMemory {
  /** Peak bytes of pooled buffers in use during the step (size classes). */
  poolInUseBytes: number;
  /** Peak bytes held by the pool (in use + free) during the step. */
  poolHeldBytes: number;
  /** Bytes of the flat parameter-layout and BN buffers (not pooled). */
  flatBytes: number;
  /** poolHeldBytes + flatBytes: the GPU memory the step holds. */
  totalBytes: number;
  /** The lower bound and what it counts (bench/lib.ts MemoryBound). */
  bound: MemoryBound;
  /** totalBytes / bound.total. */
  ratio: number;
  /** (poolInUseBytes + flatBytes) / bound.total: the ratio without free pooled buffers. */
  inUseRatio: number;
}

/** One kind of training step (plain or meta) of one ResNet. */
export interface StepResult {
  /** "ResNet-<depth>". */
  model: string;
  /** ResNet depth. */
  depth: number;
  /** A plain SGD step or the meta step (one JVP and a dev-set backward more). */
  kind: "plain" | "meta";
  /** Images per step. */
  batch: number;
  /** First step of this model and kind: pipelines, pool growth, bind groups. */
  firstMs: number;
  /** Pipelines the first step built (0: it was also taken as a sample). */
  firstPipelines: number;
  /** Median ms per step. */
  medianMs: number;
  /** ms of each sampled step. */
  samplesMs: number[];
  /** Median process CPU ms per step. */
  cpuMs: number;
  /** Process CPU ms of each sampled step. */
  samplesCpuMs: number[];
  /** batch / median seconds per step. */
  imagesPerSec: number;
  /** Dispatches of the last sampled step. */
  dispatchesPerStep: number;
  /**
   * GPU memory of this kind of step: the pool's high-water marks over its first step (the plain
   * step's on a trimmed pool; the meta step's after it, so the pool both kinds need), plus the
   * TrainState's flat buffers, against the lower bound from the shapes.
   */
  memory: StepMemory;
  /** GPU objects a warm step created (should all be 0); null when only a first step ran. */
  warmStepCreated: CreatedObjects | null;
}

/** The engine's matmul 1024^3 checked against float64 products on the CPU. */
export interface MatmulCheck {
  /** Largest |error| / sum |terms| over the sampled entries. */
  maxRelError: number;
  /** Whether two runs gave bit-identical results. */
  deterministic: boolean;
}

/** Wall time of the phases of a plain step, with a GPU sync after each. */
export interface PhaseWallTimes {
  /** Forward and loss. */
  forwardMs: number;
  /** Backward through the tape. */
  backwardMs: number;
  /** Gradient copies and the optimizer. */
  optimizerMs: number;
}

/** Per-kernel GPU time of one step, from timestamp queries. */
export interface ProfiledStep {
  /** Dispatches of the step. */
  dispatches: number;
  /** Sum of the kernels' GPU time. */
  gpuMs: number;
  /** Wall time of the profiled step. */
  wallMs: number;
  /** GPU time per phase ("forward#1", "backward#1", ...), in order of first appearance. */
  phases: { phase: string; ms: number; dispatches: number }[];
  /** GPU time per kernel family, largest first. */
  families: { family: string; ms: number }[];
  /** GPU time per kernel and GEMM shape, largest first. */
  kernels: KernelRow[];
}

/** The `--profile` section: one model's plain step by phase, and per kernel where possible. */
export interface ProfileResult {
  /** ResNet depth profiled. */
  depth: number;
  /** Synced wall time per phase of a plain step. */
  plainPhasesWallMs: PhaseWallTimes;
  /** Whether the device offered timestamp queries (else `plain` and `meta` are absent). */
  timestampQuery: boolean;
  /** The plain step's kernels. */
  plain?: ProfiledStep;
  /** The meta step's kernels. */
  meta?: ProfiledStep;
}

/** A kernel timed in TensorFlow.js beside the engine's. */
export interface TfjsKernel {
  /** The engine's case name. */
  name: string;
  /** The first call. */
  firstMs: number;
  /** Median ms per call. */
  medianMs: number;
  /** Median process CPU ms per call. */
  cpuMs: number;
  /** GFLOP per second of wall time. */
  gflops: number;
  /** TF.js ms over tailgrad ms: how many times faster tailgrad is. */
  tailgradOverTfjs: number;
  /** The same ratio from CPU time. */
  tailgradOverTfjsCpu: number;
}

/** A ResNet training step timed in TensorFlow.js beside the engine's plain step. */
export interface TfjsStep {
  /** "ResNet-<depth>". */
  model: string;
  /** ResNet depth. */
  depth: number;
  /** Images per step. */
  batch: number;
  /** The first step. */
  firstMs: number;
  /** Median ms per step. */
  medianMs: number;
  /** ms of each sampled step. */
  samplesMs: number[];
  /** Median process CPU ms per step. */
  cpuMs: number;
  /** batch / median seconds per step. */
  imagesPerSec: number;
  /** tailgrad images/s over TF.js images/s. */
  tailgradOverTfjs: number;
  /** TF.js CPU ms over tailgrad CPU ms per step. */
  tailgradOverTfjsCpu: number;
}

/** The `--tfjs` section: TensorFlow.js 4.22 WebGPU on the same adapter. */
export interface TfjsResult {
  /** "failed" when TF.js could not run or its device reported validation errors. */
  status: "ok" | "failed";
  /** Why it failed. */
  error?: string;
  /** TF.js version. */
  version?: string;
  /** The adapter TF.js's own device came from. */
  adapter?: string;
  /** WebGPU validation errors on TF.js's device. */
  validationErrors?: string[];
  /** Kernels timed (matmul and the conv forwards). */
  kernels: TfjsKernel[];
  /** Training steps timed. */
  steps: TfjsStep[];
}

/** One acceptance target and what this run measured. */
export interface Target {
  /** The target in words, e.g. "matmul 1024^3 >= 12 GFLOP/s". */
  target: string;
  /** The measured figure(s). */
  measured: string;
  /** Whether the target is met. */
  pass: boolean | null;
}

/** The adapter the suite ran on (src/gpu/device.ts AdapterSummary, without its limits). */
export interface BenchAdapter {
  /** Human-readable device name, e.g. "llvmpipe (LLVM 15.0.6, 256 bits)". */
  description: string;
  /** Vendor as reported by the adapter. */
  vendor: string;
  /** Architecture as reported by the adapter. */
  architecture: string;
  /** Device as reported by the adapter. */
  device: string;
  /** True for software adapters such as Mesa's llvmpipe/lavapipe. */
  isFallbackAdapter: boolean;
  /** Supported feature names, sorted. */
  features: string[];
}

/** How busy the machine was: the figures beside the timings on a software adapter. */
export interface BenchMachine {
  /** 1-minute load average before the run (NaN/null without --allow-sys=loadavg). */
  loadAverageBefore: number;
  /** 1-minute load average after the run. */
  loadAverageAfter: number;
  /** Process CPU seconds over wall seconds: about 2 when lavapipe's threads had both cores. */
  cpuOverWall: number;
  /** The same over the kernel timings only (NaN/null when they did not run). */
  kernelsCpuOverWall: number;
  /** Wall seconds of the whole run. */
  wallSeconds: number;
}

/** What `deno task bench` writes to bench/results/<adapter>.json (schema 1). */
export interface BenchResult {
  /** Version of this layout. */
  schema: 1;
  /** ISO time the run ended. */
  date: string;
  /** The commit checked out (12 hex digits) or "unknown". */
  commit: string;
  /** Deno version. */
  deno: string;
  /** DENO_WEBGPU_BACKEND, or "default". */
  backend: string;
  /** The adapter. */
  adapter: BenchAdapter;
  /** The command line's flags. */
  flags: BenchFlags;
  /** Load and CPU use. */
  machine: BenchMachine;
  /** Compute pipelines built over the run and the ms spent building them. */
  pipelines: { created: number; createMs: number };
  /** GEMM-family kernels (empty with --no-kernels). */
  kernels: KernelResult[];
  /** The matmul check (null with --no-kernels). */
  matmulCheck: MatmulCheck | null;
  /** Training steps (empty with --no-steps). */
  steps: StepResult[];
  /** Meta step ms over plain step ms, by model. */
  metaRatio: Record<string, number>;
  /** Meta step CPU ms over plain step CPU ms, by model. */
  metaRatioCpu: Record<string, number>;
  /** The profile (null without --profile). */
  profile: ProfileResult | null;
  /** TF.js beside the engine (null without --tfjs). */
  tfjs: TfjsResult | null;
  /** The acceptance targets ({@linkcode benchTargets}). */
  targets: Target[];
  /**
   * Whether the device has the "timestamp-query" feature. Absent from results written before it
   * was recorded; the device requests every optional feature its adapter offers
   * (src/gpu/device.ts deviceRequest), so the adapter's features tell there.
   */
  timestampQuery?: boolean;
}

// ------------------------------------------------------------------ formatting

/** `x` with `d` decimals, or "n/a" where it is not a finite number (NaN, or JSON's null). */
export const fmt = (x: number, d = 2): string => (Number.isFinite(x) ? x.toFixed(d) : "n/a");

/** Bytes in MiB with one decimal. */
export const mib = (bytes: number): string => fmt(bytes / 2 ** 20, 1);

/** A kernel's name in the tables, where every case is at batch 100. */
const shortName = (name: string) => name.replace(" (batch 100)", "");

// ------------------------------------------------------------------ targets

/** What {@linkcode benchTargets} reads of a result. */
export type TargetInputs =
  & Pick<BenchResult, "kernels" | "steps" | "metaRatio" | "metaRatioCpu" | "tfjs">
  & { flags: Pick<BenchFlags, "depths"> };

/**
 * The acceptance figures (issue 12): matmul 1024^3 at 12 GFLOP/s or more, every conv pass used
 * in training at 60% of matmul's rate or more, each plain step at 14x TF.js's images/s or more,
 * a meta step at most 3x a plain step, and each step's GPU memory within 1.5x (plain) or 2.5x
 * (meta) of its lower bound. Only the figures the run measured have a target.
 */
export function benchTargets(r: TargetInputs): Target[] {
  const targets: Target[] = [...kernelTargets(r.kernels)];
  for (const depth of r.flags.depths) {
    const ts = r.tfjs?.steps.find((s) => s.depth === depth);
    if (ts && r.tfjs?.status === "ok") {
      targets.push({
        target: `ResNet-${depth} step >= 14x TF.js images/s`,
        measured: `${fmt(ts.tailgradOverTfjs)}x (CPU time ${fmt(ts.tailgradOverTfjsCpu)}x)`,
        pass: ts.tailgradOverTfjs >= 14,
      });
    }
  }
  for (const [model, ratio] of Object.entries(r.metaRatio)) {
    targets.push({
      target: `${model} meta step <= 3.0x plain step`,
      measured: `${fmt(ratio)}x (CPU time ${fmt(r.metaRatioCpu[model])}x)`,
      pass: ratio <= 3.0,
    });
  }
  for (const s of r.steps) {
    const limit = s.kind === "plain" ? 1.5 : 2.5;
    targets.push({
      target: `${s.model} ${s.kind} step GPU memory <= ${limit}x the lower bound`,
      measured: `${fmt(s.memory.ratio)}x (${mib(s.memory.totalBytes)} / ${
        mib(s.memory.bound.total)
      } MiB)`,
      pass: s.memory.ratio <= limit,
    });
  }
  return targets;
}

/** The matmul rate and the convs' rate relative to it (none without a matmul). */
function kernelTargets(kernels: KernelResult[]): Target[] {
  const mm = kernels.find((k) => k.kind === "matmul");
  if (!mm) return [];
  // conv1's dX never runs in training (images need no gradient)
  const convs = kernels.filter((k) => k.kind !== "matmul" && !/conv-dx conv1/.test(k.name));
  const worst = convs.reduce((a, b) => (b.ratioToMatmul < a.ratioToMatmul ? b : a), convs[0]);
  const below = convs.filter((k) => k.ratioToMatmul < 0.6);
  const belowCpu = convs.filter((k) => k.ratioToMatmulCpu < 0.6).length;
  return [{
    target: "matmul 1024^3 >= 12 GFLOP/s",
    measured: `${fmt(mm.gflops)} GFLOP/s (${fmt(mm.gflopsPerCpuS)} per CPU-second)`,
    pass: mm.gflops >= 12,
  }, {
    target: "every conv fwd/dX/dW used in training >= 60% of matmul GFLOP/s",
    measured:
      `${convs.length - below.length}/${convs.length} pass (by CPU time ${
        convs.length - belowCpu
      }/${convs.length}); worst ${worst.name} at ${fmt(100 * worst.ratioToMatmul, 0)}%` +
      (below.length ? `; below: ${below.map((k) => shortName(k.name)).join(", ")}` : ""),
    pass: below.length === 0,
  }];
}

// ------------------------------------------------------------------ Markdown

/**
 * The Markdown page of a result (bench/results/<adapter>.md): the run's header, then a section
 * for each part the run measured (kernels, matmul check, steps, memory, TF.js, profile,
 * targets). Reads nothing but `result`.
 */
export function renderMarkdown(result: BenchResult): string {
  const lines = header(result);
  for (
    const section of [
      kernelsSection(result),
      matmulCheckSection(result),
      stepsSection(result),
      memorySection(result),
      tfjsSection(result),
      profileSection(result),
      targetsSection(result),
    ]
  ) {
    if (section.length) lines.push("", ...section);
  }
  lines.push("");
  return lines.join("\n");
}

/** The adapter, commit, load, pipelines and run time, and how to read the tables. */
function header(r: BenchResult): string[] {
  const m = r.machine;
  const timestamps = r.timestampQuery ?? r.adapter.features.includes("timestamp-query");
  return [
    `# tailgrad benchmarks: ${r.adapter.description}`,
    "",
    `${r.date}, commit ${r.commit}, Deno ${r.deno}, backend ${r.backend}, ` +
    `fallback adapter ${r.adapter.isFallbackAdapter}, timestamp-query ${timestamps}. ` +
    `Load average ${fmt(m.loadAverageBefore)} before, ${fmt(m.loadAverageAfter)} after; process ` +
    `CPU/wall ${fmt(m.cpuOverWall)} (kernels ${fmt(m.kernelsCpuOverWall)}). ` +
    `Pipelines: ${r.pipelines.created} built in ${fmt(r.pipelines.createMs, 0)} ms. ` +
    `Run time ${fmt(m.wallSeconds, 0)} s.`,
    "",
    "Generated by `deno task bench` (scripts/bench.ts). Medians; first runs (pipeline builds, " +
    "first-use JIT) reported separately. FLOPs are the operation's useful work (2*M*N*K of the " +
    "matmul; 2*batch*Cout*OH*OW*Cin*9 for each conv pass). On a software adapter the CPU is the " +
    "GPU: the (CPU) columns use this process's CPU time instead of wall time, which other " +
    "processes on the machine do not inflate; where wall and CPU ratios differ, the machine " +
    "was busy.",
  ];
}

/** TF.js's figures when it ran without failing; its columns are left out otherwise. */
const tfjsOk = (r: BenchResult) => (r.tfjs?.status === "ok" ? r.tfjs : null);

/**
 * The three TF.js cells of a table row: its rate (already formatted) and tailgrad's speed-up
 * over it by wall and CPU time; empty where TF.js did not time that row.
 */
function tfjsCells(
  rate: string,
  t: { tailgradOverTfjs: number; tailgradOverTfjsCpu: number } | undefined,
): string {
  return ` ${rate} | ${t ? fmt(t.tailgradOverTfjs) : ""} | ${
    t ? fmt(t.tailgradOverTfjsCpu) : ""
  } |`;
}

/** Each kernel's time and rate, against matmul and (with --tfjs) TF.js. */
function kernelsSection(r: BenchResult): string[] {
  if (!r.kernels.length) return [];
  const tf = tfjsOk(r);
  const lines = [
    "## Kernels (batch 100)",
    "",
    "| kernel | engine GEMM MxNxK | ms | GFLOP/s | x matmul | GFLOP/CPU-s | x matmul (CPU) | " +
    `first ms |${tf ? " TF.js GFLOP/s | tailgrad/TF.js | (CPU) |" : ""}`,
    `|---|---|--:|--:|--:|--:|--:|--:|${tf ? "--:|--:|--:|" : ""}`,
  ];
  for (const k of r.kernels) {
    const t = tf?.kernels.find((x) => x.name === k.name);
    lines.push(
      `| ${shortName(k.name)} | ${k.gemm.M}x${k.gemm.N}x${k.gemm.K} | ${fmt(k.medianMs, 1)} | ` +
        `${fmt(k.gflops)} | ${fmt(k.ratioToMatmul)} | ${fmt(k.gflopsPerCpuS)} | ` +
        `${fmt(k.ratioToMatmulCpu)} | ${fmt(k.firstMs, 0)} |` +
        (tf ? tfjsCells(t ? fmt(t.gflops) : "", t) : ""),
    );
  }
  return lines;
}

/** The matmul's error against float64 and its determinism. */
function matmulCheckSection(r: BenchResult): string[] {
  const check = r.matmulCheck;
  if (!check) return [];
  return [
    `Check: matmul 1024^3 against float64 on the CPU at 64 entries, max |error| / sum|terms| ` +
    `${check.maxRelError.toExponential(2)}; two runs bit-identical: ${check.deterministic}.`,
  ];
}

/** Each step's time, dispatches and warm-step objects, and the meta step's cost. */
function stepsSection(r: BenchResult): string[] {
  if (!r.steps.length) return [];
  const tf = tfjsOk(r);
  const lines = [
    "## Training steps (batch 100, 3x32x32, 10 classes)",
    "",
    "| model | step | ms/step | images/s | CPU ms/step | first ms (pipelines built) | samples | " +
    `dispatches | warm-step GPU objects created |${
      tf ? " TF.js images/s | tailgrad/TF.js | (CPU) |" : ""
    }`,
    `|---|---|--:|--:|--:|--:|--:|--:|---|${tf ? "--:|--:|--:|" : ""}`,
  ];
  for (const s of r.steps) {
    const t = s.kind === "plain" ? tf?.steps.find((x) => x.depth === s.depth) : undefined;
    const c = s.warmStepCreated;
    lines.push(
      `| ${s.model} | ${s.kind} | ${fmt(s.medianMs, 0)} | ${fmt(s.imagesPerSec, 1)} | ` +
        `${fmt(s.cpuMs, 0)} | ${fmt(s.firstMs, 0)} (${s.firstPipelines}) | ` +
        `${s.samplesMs.length} | ${s.dispatchesPerStep} | ` +
        `${c ? c.buffers + c.bindGroups + c.pipelines + c.uniforms : "n/a (first step only)"} |` +
        (tf ? tfjsCells(t ? fmt(t.imagesPerSec, 1) : "", t) : ""),
    );
  }
  const ratios = Object.entries(r.metaRatio);
  if (ratios.length) {
    lines.push(
      "",
      "Meta step cost over a plain step (wall time, samples interleaved with plain steps): " +
        ratios.map(([m, x]) => `${m} ${fmt(x)}x (CPU time ${fmt(r.metaRatioCpu[m])}x)`)
          .join(", ") +
        ".",
    );
  }
  return lines;
}

/** Each step's GPU memory, its parts and its lower bound. */
function memorySection(r: BenchResult): string[] {
  if (!r.steps.length) return [];
  const lines = [
    "## GPU memory of a step (batch 100)",
    "",
    "Held = the pool's high-water mark during the kind's first step (buffers in use plus free " +
    "ones, at their size classes; plain on a trimmed pool, meta after it, so meta's figure is " +
    "the pool both kinds need) + the TrainState's flat buffers (five of " +
    "the parameter layout, one of BN statistics). Lower bound (bench/lib.ts MemoryBound): " +
    "parameters, gradients and momentum (+ look-ahead parameters and meta direction for " +
    "meta), BN running statistics, the batch's (and dev batch's) images, labels and " +
    "weights, and the activations the tape must keep (every conv output, every BN output, " +
    "BN statistics, features, logits, losses; twice for meta: the batch tape and the dev " +
    "tape live together). MiB:",
    "",
    "| model | step | held | pool held | pool in use at peak | flat | bound: params+state | BN | " +
    "inputs | activations | bound | held / bound | in use / bound |",
    "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
  ];
  for (const s of r.steps) {
    const m = s.memory, b = m.bound;
    lines.push(
      `| ${s.model} | ${s.kind} | ${mib(m.totalBytes)} | ${mib(m.poolHeldBytes)} | ` +
        `${mib(m.poolInUseBytes)} | ${mib(m.flatBytes)} | ${mib(b.parameterState)} | ` +
        `${mib(b.bnBuffers)} | ${mib(b.inputs)} | ${mib(b.activations)} | ${mib(b.total)} | ` +
        `${fmt(m.ratio)}x | ${fmt(m.inUseRatio)}x |`,
    );
  }
  return lines;
}

/** How TF.js ran, or why it could not. */
function tfjsSection(r: BenchResult): string[] {
  const tfjs = r.tfjs;
  if (!tfjs) return [];
  return [
    "## TensorFlow.js",
    "",
    tfjs.status === "ok"
      ? `TF.js ${tfjs.version} (tfjs-core + tfjs-backend-webgpu; gradients registered by the ` +
        `@tensorflow/tfjs bundle) on adapter "${tfjs.adapter}", same process, its own device. ` +
        `Conv: NHWC, explicit pad 1. Step: tf.variableGrads over a conv/BN/ReLU ResNet in ` +
        `tfjs-core ops, SGD-Nesterov with weight decay.`
      : `TF.js could not run: ${tfjs.error}`,
  ];
}

/** The plain step's phases, and each profiled step's top 20 kernels. */
function profileSection(r: BenchResult): string[] {
  const profile = r.profile;
  if (!profile) return [];
  const p = profile.plainPhasesWallMs;
  const lines = [
    `## Profile (ResNet-${profile.depth}, batch 100)`,
    "",
    `Plain step, wall time per phase with syncs: forward ${fmt(p.forwardMs, 0)} ms, backward ` +
    `${fmt(p.backwardMs, 0)} ms, optimizer ${fmt(p.optimizerMs, 0)} ms.`,
  ];
  for (const kind of ["plain", "meta"] as const) {
    const q = profile[kind];
    if (!q) continue;
    lines.push(
      "",
      `${kind} step: ${q.dispatches} dispatches, ${fmt(q.gpuMs, 0)} ms of kernel time ` +
        `(timestamp queries), ${fmt(q.wallMs, 0)} ms wall. By phase: ` +
        q.phases.map((x) => `${x.phase} ${fmt(x.ms, 0)} ms`).join(", ") + ".",
      "",
      "| kernel | GEMM MxNxK | calls | ms | share |",
      "|---|---|--:|--:|--:|",
    );
    for (const k of q.kernels.slice(0, 20)) {
      lines.push(
        `| ${k.key} | ${k.dims} | ${k.count} | ${fmt(k.ms, 1)} | ${fmt(100 * k.share, 1)}% |`,
      );
    }
  }
  return lines;
}

/** Each target, its measured figure and whether it passes. */
function targetsSection(r: BenchResult): string[] {
  if (!r.targets.length) return [];
  return [
    "## Targets",
    "",
    "| target | measured | pass |",
    "|---|---|---|",
    ...r.targets.map((t) => `| ${t.target} | ${t.measured} | ${t.pass ? "yes" : "no"} |`),
  ];
}
