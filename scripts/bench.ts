/**
 * The benchmark suite: GEMM-family kernels (matmul 1024^3; conv forward, dX and dW at every
 * ResNet-32 shape, batch 100), ResNet-8 / ResNet-32 training steps at batch 100, and the meta
 * step's cost over a plain step. Medians over a few runs after a first (cold) run that is
 * reported separately, with the pipeline build time. Writes bench/results/<adapter>.json and
 * bench/results/<adapter>.md (adapter = backend + adapter name, e.g.
 * vulkan-llvmpipe-llvm-15-0-6-256-bits).
 *
 *   deno task bench                 # default suite (about 4-5 minutes on 2-core lavapipe)
 *   deno task bench --quick         # kernels (2 samples) and ResNet-8 only (about 1.5 minutes)
 *   deno task bench --tfjs          # also TensorFlow.js 4.22 WebGPU on the same adapter
 *   deno task bench --profile       # per-kernel GPU time of one plain and one meta step
 *   deno task bench --large         # JPEG decode and loader beside the ResNet-50 / meta steps
 *
 * More flags (bench/flags.ts; `--runs 3` or `--runs=3`): --runs N (kernel samples, default 3),
 * --depths 8,32 (plain steps), --meta-depths 8,32, --profile-depth 8, --no-kernels, --no-steps,
 * --out DIR.
 *
 * Timing: a sample records the work (several times when it is short) and then waits for the GPU
 * (`gpu.sync()`, about 10 ms in Deno), so it is the wall time of the device doing the work. On
 * a software adapter the CPU is the GPU, and anything else running on the machine slows the
 * numbers: the 1-minute load average and this process's CPU use are recorded beside them.
 */
import { Gpu } from "../src/gpu/runtime.ts";
import { reportError } from "../src/errors.ts";
import { BENCH_USAGE, type BenchFlags, parseBenchFlags } from "../bench/flags.ts";
import {
  adapterSlug,
  checkMatmul,
  flatStateBytes,
  type GemmCase,
  gemmCases,
  loadAverage,
  median,
  type MemoryBound,
  memoryLowerBound,
  pipelineTimer,
  processCpuMs,
  stepHarness,
  timeGpu,
} from "../bench/lib.ts";
import {
  KernelProfiler,
  type KernelSample,
  phaseWallTimes,
  summarizeFamilies,
  summarizeKernels,
  summarizePhases,
} from "../bench/profile.ts";

// ------------------------------------------------------------------ flags

if (Deno.args.includes("--large")) {
  // the large-scale pipeline (decode, loader, ResNet-50 and meta steps): bench/large_bench.ts
  await import("../bench/large_bench.ts");
  Deno.exit(0);
}
let flags: BenchFlags;
try {
  flags = parseBenchFlags(Deno.args);
} catch (e) {
  Deno.exit(reportError(e));
}
if (flags.help) {
  console.log(BENCH_USAGE);
  Deno.exit(0);
}

// ------------------------------------------------------------------ result shapes

interface KernelResult {
  name: string;
  kind: string;
  shape: string;
  gemm: { M: number; N: number; K: number };
  flops: number;
  firstMs: number;
  medianMs: number;
  samplesMs: number[];
  reps: number;
  /** Process CPU ms per call (all of llvmpipe's threads; see Timing.cpuMs in bench/lib.ts). */
  cpuMs: number;
  gflops: number;
  /** GFLOP per CPU-second: the rate with other processes' load taken out. */
  gflopsPerCpuS: number;
  /** GFLOP/s over the engine's own matmul 1024^3 GFLOP/s. */
  ratioToMatmul: number;
  /** The same ratio from CPU time (robust to other load on the machine). */
  ratioToMatmulCpu: number;
}

interface StepResult {
  model: string;
  depth: number;
  kind: "plain" | "meta";
  batch: number;
  /** First step of this model and kind: pipelines, pool growth, bind groups. */
  firstMs: number;
  /** Pipelines the first step built (0: it was also taken as a sample). */
  firstPipelines: number;
  medianMs: number;
  samplesMs: number[];
  /** Median process CPU ms per step. */
  cpuMs: number;
  samplesCpuMs: number[];
  imagesPerSec: number;
  dispatchesPerStep: number;
  /**
   * GPU memory of this kind of step: the pool's high-water marks over its first step (the plain
   * step's on a trimmed pool; the meta step's after it, so the pool both kinds need), plus the
   * TrainState's flat buffers, against the lower bound from the shapes.
   */
  memory: StepMemory;
  /** GPU objects a warm step created (should all be 0); null when only a first step ran. */
  warmStepCreated: {
    buffers: number;
    bindGroups: number;
    pipelines: number;
    uniforms: number;
  } | null;
}

interface StepMemory {
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

interface TfjsResult {
  status: "ok" | "failed";
  error?: string;
  version?: string;
  adapter?: string;
  validationErrors?: string[];
  kernels: {
    name: string;
    firstMs: number;
    medianMs: number;
    cpuMs: number;
    gflops: number;
    tailgradOverTfjs: number;
    tailgradOverTfjsCpu: number;
  }[];
  steps: {
    model: string;
    depth: number;
    batch: number;
    firstMs: number;
    medianMs: number;
    samplesMs: number[];
    cpuMs: number;
    imagesPerSec: number;
    tailgradOverTfjs: number;
    tailgradOverTfjsCpu: number;
  }[];
}

interface Target {
  target: string;
  measured: string;
  pass: boolean | null;
}

// ------------------------------------------------------------------ helpers

const fmt = (x: number, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : "n/a");
const mib = (bytes: number) => fmt(bytes / 2 ** 20, 1);
const log = (s: string) => console.log(s);

/** The commit checked out (HEAD), read from .git without running git; also in a worktree. */
async function gitCommit(): Promise<string> {
  try {
    let gitDir = ".git";
    if ((await Deno.stat(gitDir)).isFile) {
      // a worktree: .git names its git dir, whose "commondir" holds the shared refs
      gitDir = (await Deno.readTextFile(".git")).trim().replace(/^gitdir: /, "");
    }
    let common = gitDir;
    try {
      common = `${gitDir}/${(await Deno.readTextFile(`${gitDir}/commondir`)).trim()}`;
    } catch { /* not a worktree */ }
    const head = (await Deno.readTextFile(`${gitDir}/HEAD`)).trim();
    if (!head.startsWith("ref: ")) return head.slice(0, 12);
    const ref = head.slice(5);
    try {
      return (await Deno.readTextFile(`${common}/${ref}`)).trim().slice(0, 12);
    } catch {
      const packed = await Deno.readTextFile(`${common}/packed-refs`);
      const line = packed.split("\n").find((l) => l.endsWith(` ${ref}`));
      return line ? line.slice(0, 12) : "unknown";
    }
  } catch {
    return "unknown";
  }
}

interface StepSample {
  ms: number;
  cpuMs: number;
  dispatches: number;
  created: { buffers: number; bindGroups: number; pipelines: number; uniforms: number };
}

async function stepSample(gpu: Gpu, step: () => void): Promise<StepSample> {
  const s0 = { ...gpu.stats };
  const c0 = processCpuMs();
  const t = performance.now();
  step();
  await gpu.sync();
  const ms = performance.now() - t;
  const cpuMs = processCpuMs() - c0;
  const s = gpu.stats;
  return {
    ms,
    cpuMs,
    dispatches: s.dispatches - s0.dispatches,
    created: {
      buffers: s.buffersCreated - s0.buffersCreated,
      bindGroups: s.bindGroupsCreated - s0.bindGroupsCreated,
      pipelines: s.pipelinesCreated - s0.pipelinesCreated,
      uniforms: s.uniformsCreated - s0.uniformsCreated,
    },
  };
}

/**
 * Plain and meta steps of one model, samples interleaved (plain, meta, plain, ...) so that load
 * from other processes falls on both alike. The first step of each kind builds pipelines and
 * grows the buffer pool; when it builds no pipeline (a deeper ResNet after ResNet-8: the same
 * layer shapes, so the same kernels) it is also taken as a sample, since a ResNet-32 meta step
 * is long enough that one sample is all the time budget allows.
 */
async function measureSteps(
  gpu: Gpu,
  depth: number,
  h: ReturnType<typeof stepHarness>,
  want: { plain: number; meta: number },
): Promise<StepResult[]> {
  const kinds = want.meta > 0 ? (["plain", "meta"] as const) : (["plain"] as const);
  const first = new Map<string, StepSample>();
  const samples = new Map<string, StepSample[]>(kinds.map((k) => [k, []]));
  const run = (kind: "plain" | "meta") => stepSample(gpu, kind === "plain" ? h.plain : h.meta);
  const memory = new Map<string, StepMemory>();
  // the plain step's first step grows a trimmed pool to what it needs; the meta step's then
  // grows it further (no trim between: that would make the next plain step create bind
  // groups), so the meta figure is the pool both kinds need, an upper bound of meta's own
  gpu.trim();
  for (const kind of kinds) {
    gpu.resetMemoryPeak();
    const s = await run(kind);
    first.set(kind, s);
    if (s.created.pipelines === 0) samples.get(kind)!.push(s);
    const bound = memoryLowerBound(h.model, h.engine.batch, kind);
    const flatBytes = flatStateBytes(h.model);
    const m = gpu.memory;
    memory.set(kind, {
      poolInUseBytes: m.peakInUseBytes,
      poolHeldBytes: m.peakHeldBytes,
      flatBytes,
      totalBytes: m.peakHeldBytes + flatBytes,
      bound,
      ratio: (m.peakHeldBytes + flatBytes) / bound.total,
      inUseRatio: (m.peakInUseBytes + flatBytes) / bound.total,
    });
  }
  while (kinds.some((k) => samples.get(k)!.length < want[k])) {
    for (const kind of kinds) {
      if (samples.get(kind)!.length < want[kind]) samples.get(kind)!.push(await run(kind));
    }
  }
  return kinds.map((kind) => {
    const list = samples.get(kind)!;
    const last = list[list.length - 1];
    const medianMs = median(list.map((x) => x.ms));
    return {
      model: `ResNet-${depth}`,
      depth,
      kind,
      batch: h.engine.batch,
      firstMs: first.get(kind)!.ms,
      firstPipelines: first.get(kind)!.created.pipelines,
      medianMs,
      samplesMs: list.map((x) => x.ms),
      cpuMs: median(list.map((x) => x.cpuMs)),
      samplesCpuMs: list.map((x) => x.cpuMs),
      imagesPerSec: (h.engine.batch * 1000) / medianMs,
      dispatchesPerStep: last.dispatches,
      memory: memory.get(kind)!,
      // the first step grows the pool: only a later one says whether warm steps create objects
      warmStepCreated: last === first.get(kind) ? null : last.created,
    };
  });
}

// ------------------------------------------------------------------ main

const started = performance.now();
const cpu0 = processCpuMs();
const load0 = loadAverage();
const gpu = await Gpu.create();
const pipes = pipelineTimer(gpu);
const slug = adapterSlug(gpu);
const hasTimestamps = KernelProfiler.supported(gpu);
log(
  `adapter: ${gpu.adapter.description} (fallback ${gpu.adapter.isFallbackAdapter}), ` +
    `backend ${Deno.env.get("DENO_WEBGPU_BACKEND") ?? "default"}, timestamp-query ${hasTimestamps}`,
);
log(`load average ${fmt(load0)}; results -> ${flags.out}/${slug}.{json,md}`);

// kernels
const kernels: KernelResult[] = [];
let kernelCpu = NaN, kernelWall = NaN;
let check: { maxRelError: number; deterministic: boolean } | null = null;
if (flags.kernels) {
  log(`\n== GEMM-family kernels (batch 100), median of ${flags.runs} ==`);
  const c0 = processCpuMs(), w0 = performance.now();
  let matmulGflops = NaN, matmulCpuRate = NaN;
  for (const c of gemmCases(100) as GemmCase[]) {
    const p = c.prepare(gpu);
    const r = await timeGpu(gpu, p.run, { runs: flags.runs, minSampleMs: 250 });
    p.dispose();
    const gflops = c.flops / r.medianMs / 1e6;
    const gflopsPerCpuS = c.flops / r.cpuMs / 1e6;
    if (c.kind === "matmul") {
      matmulGflops = gflops;
      matmulCpuRate = gflopsPerCpuS;
    }
    const k: KernelResult = {
      name: c.name,
      kind: c.kind,
      shape: c.shape,
      gemm: c.gemm,
      flops: c.flops,
      ...r,
      gflops,
      gflopsPerCpuS,
      ratioToMatmul: gflops / matmulGflops,
      ratioToMatmulCpu: gflopsPerCpuS / matmulCpuRate,
    };
    kernels.push(k);
    log(
      `${c.name.padEnd(36)} ${fmt(r.medianMs, 1).padStart(8)} ms ${
        fmt(gflops).padStart(6)
      } GFLOP/s ` +
        `x${fmt(k.ratioToMatmul)} of matmul (CPU-time ratio x${fmt(k.ratioToMatmulCpu)}; ` +
        `first ${fmt(r.firstMs, 0)} ms, ${r.reps}/sample)`,
    );
  }
  check = await checkMatmul(gpu);
  log(
    `check: matmul 1024^3 vs float64 CPU at 64 entries, max |error| / sum|terms| = ` +
      `${check.maxRelError.toExponential(2)}; two runs bit-identical: ${check.deterministic}`,
  );
  kernelCpu = processCpuMs() - c0;
  kernelWall = performance.now() - w0;
}

// steps
const steps: StepResult[] = [];
const metaRatio: Record<string, number> = {};
const metaRatioCpu: Record<string, number> = {};
if (flags.steps) {
  log(`\n== training steps (batch 100) ==`);
  const depths = [...new Set([...flags.depths, ...flags.metaDepths])].sort((a, b) => a - b);
  for (const depth of depths) {
    const h = stepHarness(gpu, depth, 100);
    // ResNet-8 runs first and builds every pipeline, so deeper models take fewer samples
    const small = depth <= 8;
    const want = {
      plain: small ? 3 : 2,
      meta: flags.metaDepths.includes(depth) ? (small ? 2 : 1) : 0,
    };
    const [plain, meta] = await measureSteps(gpu, depth, h, want);
    for (const r of [plain, meta]) {
      if (!r) continue;
      steps.push(r);
      log(
        `ResNet-${depth} ${r.kind.padEnd(5)}: ${fmt(r.medianMs, 0)} ms/step, ` +
          `${fmt(r.imagesPerSec, 1)} images/s, CPU ${fmt(r.cpuMs, 0)} ms/step (first ` +
          `${fmt(r.firstMs, 0)} ms building ${r.firstPipelines} pipelines; ${r.samplesMs.length} ` +
          `samples; ${r.dispatchesPerStep} dispatches; warm step created ` +
          `${JSON.stringify(r.warmStepCreated)})`,
      );
    }
    for (const r of [plain, meta]) {
      if (!r) continue;
      const m = r.memory;
      log(
        `ResNet-${depth} ${r.kind.padEnd(5)} memory: ${mib(m.totalBytes)} MiB held (pool ` +
          `${mib(m.poolHeldBytes)}, of it in use at the peak ${mib(m.poolInUseBytes)}; flat ` +
          `${mib(m.flatBytes)}), lower bound ${mib(m.bound.total)} MiB: ${fmt(m.ratio)}x ` +
          `(in use ${fmt(m.inUseRatio)}x)`,
      );
    }
    if (meta) {
      metaRatio[`ResNet-${depth}`] = meta.medianMs / plain.medianMs;
      metaRatioCpu[`ResNet-${depth}`] = meta.cpuMs / plain.cpuMs;
      log(
        `ResNet-${depth} meta step = ${fmt(metaRatio[`ResNet-${depth}`])}x a plain step ` +
          `(CPU time: ${fmt(metaRatioCpu[`ResNet-${depth}`])}x)`,
      );
    }
    h.dispose();
    gpu.trim();
  }
}

// profile
// deno-lint-ignore no-explicit-any
let profile: any = null;
if (flags.profile) {
  const depth = flags.profileDepth;
  log(`\n== profile: ResNet-${depth}, batch 100 ==`);
  const h = stepHarness(gpu, depth, 100);
  h.plain();
  await gpu.sync();
  const phases = await phaseWallTimes(gpu, h.engine);
  log(
    `plain step wall time by phase (synced): forward ${fmt(phases.forwardMs, 0)} ms, ` +
      `backward ${fmt(phases.backwardMs, 0)} ms, optimizer ${fmt(phases.optimizerMs, 0)} ms`,
  );
  profile = { depth, plainPhasesWallMs: phases, timestampQuery: hasTimestamps };
  if (hasTimestamps) {
    const prof = new KernelProfiler(gpu);
    prof.install();
    try {
      for (const kind of ["plain", "meta"] as const) {
        const step = kind === "plain" ? h.plain : h.meta;
        step(); // warm-up: first-use pipelines and the query sets
        await gpu.sync();
        await prof.collect();
        prof.reset();
        const t = performance.now();
        step();
        const samples: KernelSample[] = await prof.collect();
        const wall = performance.now() - t;
        prof.reset();
        const gpuMs = samples.reduce((s, x) => s + x.ns, 0) / 1e6;
        const rows = summarizeKernels(samples);
        const fam = summarizeFamilies(samples);
        const ph = summarizePhases(samples);
        log(
          `\n${kind} step: ${samples.length} dispatches, GPU ${
            fmt(gpuMs, 0)
          } ms (sum of kernels), ` +
            `wall ${fmt(wall, 0)} ms`,
        );
        log("  by phase: " + ph.map((p) => `${p.phase} ${fmt(p.ms, 0)} ms`).join(", "));
        log(
          "  by family: " + fam.slice(0, 10).map((f) => `${f.family} ${fmt(f.ms, 0)}`).join(", "),
        );
        log("  top kernels:");
        for (const r of rows.slice(0, 15)) {
          log(
            `    ${fmt(r.ms, 1).padStart(8)} ms ${
              fmt(100 * r.share, 1).padStart(5)
            }%  x${r.count}  ${r.key} ${r.dims}`,
          );
        }
        profile[kind] = {
          dispatches: samples.length,
          gpuMs,
          wallMs: wall,
          phases: ph,
          families: fam,
          kernels: rows,
        };
      }
    } finally {
      prof.destroy();
    }
  } else {
    log("timestamp-query is not offered by this adapter: per-kernel GPU times unavailable");
  }
  h.dispose();
  gpu.trim();
}

// tfjs
let tfjs: TfjsResult | null = null;
if (flags.tfjs) {
  log(`\n== TensorFlow.js 4.22 WebGPU on the same adapter ==`);
  tfjs = { status: "ok", kernels: [], steps: [] };
  try {
    // a computed specifier: the default suite neither loads nor needs the npm packages
    const spec = ["..", "bench", "tfjs.ts"].join("/");
    const t: typeof import("../bench/tfjs.ts") = await import(spec);
    const info = await t.initTfjs();
    tfjs.version = info.version;
    tfjs.adapter = info.adapter;
    log(`tfjs ${info.version}, backend ${info.backend}, adapter ${info.adapter}`);
    const cases = gemmCases(100).filter((c) => c.kind === "matmul" || c.kind === "conv-fwd");
    for (const c of cases) {
      const p = c.kind === "matmul" ? t.tfMatmul(c.gemm.M) : t.tfConvForward(c.conv!);
      const r = await t.timeTf(p.run, { runs: flags.runs, minSampleMs: 250 });
      p.dispose();
      const gflops = c.flops / r.medianMs / 1e6;
      const ours = kernels.find((k) => k.name === c.name);
      const ratio = ours ? r.medianMs / ours.medianMs : NaN;
      const ratioCpu = ours ? r.cpuMs / ours.cpuMs : NaN;
      tfjs.kernels.push({
        name: c.name,
        firstMs: r.firstMs,
        medianMs: r.medianMs,
        cpuMs: r.cpuMs,
        gflops,
        tailgradOverTfjs: ratio,
        tailgradOverTfjsCpu: ratioCpu,
      });
      log(
        `${c.name.padEnd(36)} ${fmt(r.medianMs, 1).padStart(8)} ms ${
          fmt(gflops).padStart(6)
        } GFLOP/s ` +
          `(first ${fmt(r.firstMs, 0)} ms); tailgrad/tfjs ${fmt(ratio)} (CPU time ${
            fmt(ratioCpu)
          })`,
      );
    }
    for (const depth of flags.depths) {
      const s = t.tfResnetStep(depth, 100);
      const runs = depth <= 8 ? 2 : 1;
      let w = performance.now();
      s.run();
      await t.tfSync();
      const firstMs = performance.now() - w;
      const samplesMs: number[] = [], cpu: number[] = [];
      for (let r = 0; r < runs; r++) {
        const c0 = processCpuMs();
        w = performance.now();
        s.run();
        await t.tfSync();
        samplesMs.push(performance.now() - w);
        cpu.push(processCpuMs() - c0);
      }
      const loss = await s.loss();
      s.dispose();
      const medianMs = median(samplesMs);
      const cpuMs = median(cpu);
      const ours = steps.find((x) => x.depth === depth && x.kind === "plain");
      const ips = 100_000 / medianMs;
      const ratio = ours ? ours.imagesPerSec / ips : NaN;
      const ratioCpu = ours ? cpuMs / ours.cpuMs : NaN;
      tfjs.steps.push({
        model: `ResNet-${depth}`,
        depth,
        batch: 100,
        firstMs,
        medianMs,
        samplesMs,
        cpuMs,
        imagesPerSec: ips,
        tailgradOverTfjs: ratio,
        tailgradOverTfjsCpu: ratioCpu,
      });
      log(
        `ResNet-${depth} step: ${fmt(medianMs, 0)} ms, ${fmt(ips, 1)} images/s, CPU ` +
          `${fmt(cpuMs, 0)} ms (first ${fmt(firstMs, 0)} ms; loss ${fmt(loss, 3)}); ` +
          `tailgrad/tfjs ${fmt(ratio)} (CPU time ${fmt(ratioCpu)})`,
      );
    }
    tfjs.validationErrors = [...t.tfjsErrors];
    if (t.tfjsErrors.length) {
      tfjs.status = "failed";
      tfjs.error = `WebGPU validation errors on tfjs's device: ${
        t.tfjsErrors.slice(0, 3).join("; ")
      }`;
    }
  } catch (e) {
    tfjs.status = "failed";
    tfjs.error = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
    log(`TF.js could not run: ${tfjs.error}`);
  }
}

// targets (issue 12's acceptance figures)
const targets: Target[] = [];
const mm = kernels.find((k) => k.kind === "matmul");
if (mm) {
  targets.push({
    target: "matmul 1024^3 >= 12 GFLOP/s",
    measured: `${fmt(mm.gflops)} GFLOP/s (${fmt(mm.gflopsPerCpuS)} per CPU-second)`,
    pass: mm.gflops >= 12,
  });
  // conv1's dX never runs in training (images need no gradient)
  const convs = kernels.filter((k) => k.kind !== "matmul" && !/conv-dx conv1/.test(k.name));
  const worst = convs.reduce((a, b) => (b.ratioToMatmul < a.ratioToMatmul ? b : a), convs[0]);
  const below = convs.filter((k) => k.ratioToMatmul < 0.6);
  const belowCpu = convs.filter((k) => k.ratioToMatmulCpu < 0.6).length;
  targets.push({
    target: "every conv fwd/dX/dW used in training >= 60% of matmul GFLOP/s",
    measured:
      `${convs.length - below.length}/${convs.length} pass (by CPU time ${
        convs.length - belowCpu
      }/${convs.length}); worst ${worst.name} at ${fmt(100 * worst.ratioToMatmul, 0)}%` +
      (below.length
        ? `; below: ${below.map((k) => k.name.replace(" (batch 100)", "")).join(", ")}`
        : ""),
    pass: below.length === 0,
  });
}
for (const depth of flags.depths) {
  const ts = tfjs?.steps.find((s) => s.depth === depth);
  if (ts && tfjs?.status === "ok") {
    targets.push({
      target: `ResNet-${depth} step >= 14x TF.js images/s`,
      measured: `${fmt(ts.tailgradOverTfjs)}x (CPU time ${fmt(ts.tailgradOverTfjsCpu)}x)`,
      pass: ts.tailgradOverTfjs >= 14,
    });
  }
}
for (const [model, ratio] of Object.entries(metaRatio)) {
  targets.push({
    target: `${model} meta step <= 3.0x plain step`,
    measured: `${fmt(ratio)}x (CPU time ${fmt(metaRatioCpu[model])}x)`,
    pass: ratio <= 3.0,
  });
}
for (const s of steps) {
  const limit = s.kind === "plain" ? 1.5 : 2.5;
  targets.push({
    target: `${s.model} ${s.kind} step GPU memory <= ${limit}x the lower bound`,
    measured: `${fmt(s.memory.ratio)}x (${mib(s.memory.totalBytes)} / ${
      mib(s.memory.bound.total)
    } MiB)`,
    pass: s.memory.ratio <= limit,
  });
}

const wallS = (performance.now() - started) / 1000;
const cpuS = (processCpuMs() - cpu0) / 1000;
const result = {
  schema: 1,
  date: new Date().toISOString(),
  commit: await gitCommit(),
  deno: Deno.version.deno,
  backend: Deno.env.get("DENO_WEBGPU_BACKEND") ?? "default",
  adapter: {
    description: gpu.adapter.description,
    vendor: gpu.adapter.vendor,
    architecture: gpu.adapter.architecture,
    device: gpu.adapter.device,
    isFallbackAdapter: gpu.adapter.isFallbackAdapter,
    features: gpu.adapter.features,
  },
  flags,
  machine: {
    loadAverageBefore: load0,
    loadAverageAfter: loadAverage(),
    /** Process CPU seconds over wall seconds: about 2 when lavapipe's threads had both cores. */
    cpuOverWall: cpuS / wallS,
    kernelsCpuOverWall: kernelCpu / kernelWall,
    wallSeconds: wallS,
  },
  pipelines: { created: pipes.count, createMs: pipes.ms },
  kernels,
  matmulCheck: check,
  steps,
  metaRatio,
  metaRatioCpu,
  profile,
  tfjs,
  targets,
};

// ------------------------------------------------------------------ write

function markdown(): string {
  const L: string[] = [];
  L.push(`# tailgrad benchmarks: ${gpu.adapter.description}`);
  L.push("");
  L.push(
    `${result.date}, commit ${result.commit}, Deno ${result.deno}, backend ${result.backend}, ` +
      `fallback adapter ${gpu.adapter.isFallbackAdapter}, timestamp-query ${hasTimestamps}. ` +
      `Load average ${fmt(load0)} before, ${fmt(result.machine.loadAverageAfter)} after; process ` +
      `CPU/wall ${fmt(result.machine.cpuOverWall)} (kernels ${
        fmt(result.machine.kernelsCpuOverWall)
      }). ` +
      `Pipelines: ${pipes.count} built in ${fmt(pipes.ms, 0)} ms. Run time ${fmt(wallS, 0)} s.`,
  );
  L.push("");
  L.push(
    "Generated by `deno task bench` (scripts/bench.ts). Medians; first runs (pipeline builds, " +
      "first-use JIT) reported separately. FLOPs are the operation's useful work (2*M*N*K of the " +
      "matmul; 2*batch*Cout*OH*OW*Cin*9 for each conv pass). On a software adapter the CPU is the " +
      "GPU: the (CPU) columns use this process's CPU time instead of wall time, which other " +
      "processes on the machine do not inflate; where wall and CPU ratios differ, the machine " +
      "was busy.",
  );
  if (kernels.length) {
    L.push("");
    L.push("## Kernels (batch 100)");
    L.push("");
    const tf = tfjs?.status === "ok" ? tfjs : null;
    L.push(
      `| kernel | engine GEMM MxNxK | ms | GFLOP/s | x matmul | GFLOP/CPU-s | x matmul (CPU) | first ms |${
        tf ? " TF.js GFLOP/s | tailgrad/TF.js | (CPU) |" : ""
      }`,
    );
    L.push(`|---|---|--:|--:|--:|--:|--:|--:|${tf ? "--:|--:|--:|" : ""}`);
    for (const k of kernels) {
      const t = tf?.kernels.find((x) => x.name === k.name);
      L.push(
        `| ${k.name.replace(" (batch 100)", "")} | ${k.gemm.M}x${k.gemm.N}x${k.gemm.K} | ${
          fmt(k.medianMs, 1)
        } | ` +
          `${fmt(k.gflops)} | ${fmt(k.ratioToMatmul)} | ${fmt(k.gflopsPerCpuS)} | ` +
          `${fmt(k.ratioToMatmulCpu)} | ${fmt(k.firstMs, 0)} |` +
          (tf
            ? ` ${t ? fmt(t.gflops) : ""} | ${t ? fmt(t.tailgradOverTfjs) : ""} | ${
              t ? fmt(t.tailgradOverTfjsCpu) : ""
            } |`
            : ""),
      );
    }
  }
  if (check) {
    L.push("");
    L.push(
      `Check: matmul 1024^3 against float64 on the CPU at 64 entries, max |error| / sum|terms| ` +
        `${check.maxRelError.toExponential(2)}; two runs bit-identical: ${check.deterministic}.`,
    );
  }
  if (steps.length) {
    L.push("");
    L.push("## Training steps (batch 100, 3x32x32, 10 classes)");
    L.push("");
    const tf = tfjs?.status === "ok" ? tfjs : null;
    L.push(
      `| model | step | ms/step | images/s | CPU ms/step | first ms (pipelines built) | samples | dispatches | warm-step GPU objects created |${
        tf ? " TF.js images/s | tailgrad/TF.js | (CPU) |" : ""
      }`,
    );
    L.push(`|---|---|--:|--:|--:|--:|--:|--:|---|${tf ? "--:|--:|--:|" : ""}`);
    for (const s of steps) {
      const t = s.kind === "plain" ? tf?.steps.find((x) => x.depth === s.depth) : undefined;
      const c = s.warmStepCreated;
      L.push(
        `| ${s.model} | ${s.kind} | ${fmt(s.medianMs, 0)} | ${fmt(s.imagesPerSec, 1)} | ${
          fmt(s.cpuMs, 0)
        } | ${fmt(s.firstMs, 0)} (${s.firstPipelines}) | ${s.samplesMs.length} | ` +
          `${s.dispatchesPerStep} | ${
            c ? c.buffers + c.bindGroups + c.pipelines + c.uniforms : "n/a (first step only)"
          } |` +
          (tf
            ? ` ${t ? fmt(t.imagesPerSec, 1) : ""} | ${t ? fmt(t.tailgradOverTfjs) : ""} | ${
              t ? fmt(t.tailgradOverTfjsCpu) : ""
            } |`
            : ""),
      );
    }
    if (Object.keys(metaRatio).length) {
      L.push("");
      L.push(
        "Meta step cost over a plain step (wall time, samples interleaved with plain steps): " +
          Object.entries(metaRatio).map(([m, r]) =>
            `${m} ${fmt(r)}x (CPU time ${fmt(metaRatioCpu[m])}x)`
          ).join(", ") + ".",
      );
    }
  }
  if (steps.length) {
    L.push("");
    L.push("## GPU memory of a step (batch 100)");
    L.push("");
    L.push(
      "Held = the pool's high-water mark during the kind's first step (buffers in use plus free " +
        "ones, at their size classes; plain on a trimmed pool, meta after it, so meta's figure is " +
        "the pool both kinds need) + the TrainState's flat buffers (five of " +
        "the parameter layout, one of BN statistics). Lower bound (bench/lib.ts MemoryBound): " +
        "parameters, gradients and momentum (+ look-ahead parameters and meta direction for " +
        "meta), BN running statistics, the batch's (and dev batch's) images, labels and " +
        "weights, and the activations the tape must keep (every conv output, every BN output, " +
        "BN statistics, features, logits, losses; twice for meta: the batch tape and the dev " +
        "tape live together). MiB:",
    );
    L.push("");
    L.push(
      "| model | step | held | pool held | pool in use at peak | flat | bound: params+state | BN | inputs | activations | bound | held / bound | in use / bound |",
    );
    L.push("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for (const s of steps) {
      const m = s.memory, b = m.bound;
      L.push(
        `| ${s.model} | ${s.kind} | ${mib(m.totalBytes)} | ${mib(m.poolHeldBytes)} | ` +
          `${mib(m.poolInUseBytes)} | ${mib(m.flatBytes)} | ${mib(b.parameterState)} | ` +
          `${mib(b.bnBuffers)} | ${mib(b.inputs)} | ${mib(b.activations)} | ${mib(b.total)} | ` +
          `${fmt(m.ratio)}x | ${fmt(m.inUseRatio)}x |`,
      );
    }
  }
  if (tfjs) {
    L.push("");
    L.push("## TensorFlow.js");
    L.push("");
    L.push(
      tfjs.status === "ok"
        ? `TF.js ${tfjs.version} (tfjs-core + tfjs-backend-webgpu; gradients registered by the @tensorflow/tfjs ` +
          `bundle) on adapter "${tfjs.adapter}", same process, its own device. Conv: NHWC, explicit pad 1. ` +
          `Step: tf.variableGrads over a conv/BN/ReLU ResNet in tfjs-core ops, SGD-Nesterov with weight decay.`
        : `TF.js could not run: ${tfjs.error}`,
    );
  }
  if (profile) {
    L.push("");
    L.push(`## Profile (ResNet-${profile.depth}, batch 100)`);
    L.push("");
    const p = profile.plainPhasesWallMs;
    L.push(
      `Plain step, wall time per phase with syncs: forward ${fmt(p.forwardMs, 0)} ms, backward ` +
        `${fmt(p.backwardMs, 0)} ms, optimizer ${fmt(p.optimizerMs, 0)} ms.`,
    );
    for (const kind of ["plain", "meta"]) {
      const q = profile[kind];
      if (!q) continue;
      L.push("");
      L.push(
        `${kind} step: ${q.dispatches} dispatches, ${fmt(q.gpuMs, 0)} ms of kernel time ` +
          `(timestamp queries), ${fmt(q.wallMs, 0)} ms wall. By phase: ` +
          // deno-lint-ignore no-explicit-any
          q.phases.map((x: any) => `${x.phase} ${fmt(x.ms, 0)} ms`).join(", ") + ".",
      );
      L.push("");
      L.push("| kernel | GEMM MxNxK | calls | ms | share |");
      L.push("|---|---|--:|--:|--:|");
      for (const r of q.kernels.slice(0, 20)) {
        L.push(
          `| ${r.key} | ${r.dims} | ${r.count} | ${fmt(r.ms, 1)} | ${fmt(100 * r.share, 1)}% |`,
        );
      }
    }
  }
  if (targets.length) {
    L.push("");
    L.push("## Targets");
    L.push("");
    L.push("| target | measured | pass |");
    L.push("|---|---|---|");
    for (const t of targets) L.push(`| ${t.target} | ${t.measured} | ${t.pass ? "yes" : "no"} |`);
  }
  L.push("");
  return L.join("\n");
}

await Deno.mkdir(flags.out, { recursive: true });
await Deno.writeTextFile(`${flags.out}/${slug}.json`, JSON.stringify(result, null, 2) + "\n");
await Deno.writeTextFile(`${flags.out}/${slug}.md`, markdown());
log(`\n== targets ==`);
for (const t of targets) log(`${t.pass ? "PASS" : "MISS"}  ${t.target}: ${t.measured}`);
log(
  `\nwrote ${flags.out}/${slug}.json and .md in ${fmt(wallS, 0)} s (CPU/wall ${fmt(cpuS / wallS)})`,
);
gpu.dispose();
