/**
 * The benchmark suite: GEMM-family kernels (matmul 1024^3; conv forward, dX and dW at every
 * ResNet-32 shape, batch 100), ResNet-8 / ResNet-32 training steps at batch 100, and the meta
 * step's cost over a plain step. Medians over a few runs after a first (cold) run that is
 * reported separately, with the pipeline build time. Writes bench/results/<adapter>.json and
 * bench/results/<adapter>.md (adapter = backend + adapter name, e.g.
 * vulkan-llvmpipe-llvm-15-0-6-256-bits); the JSON's layout, the targets and the Markdown page are
 * bench/report.ts's, which renders from the JSON alone.
 *
 *   deno task bench                 # default suite (about 4-5 minutes on 2-core lavapipe)
 *   deno task bench --quick         # kernels (2 samples) and ResNet-8 only (about 1.5 minutes)
 *   deno task bench --tfjs          # also TensorFlow.js 4.22 WebGPU on the same adapter
 *   deno task bench --profile       # per-kernel GPU time of one plain and one meta step
 *   deno task bench --large         # JPEG decode and loader beside the ResNet-50 / meta steps
 *
 * More flags (bench/flags.ts; `--runs 3` or `--runs=3`): --runs N (kernel samples, default 3),
 * --depths 8,32 (plain steps), --meta-depths 8,32, --profile-depth 8, --no-kernels, --no-steps,
 * --out DIR (--large takes only --out). A bad flag or an --out this process may not write is
 * refused before any work.
 *
 * Timing: a sample records the work (several times when it is short) and then waits for the GPU
 * (`gpu.sync()`, about 10 ms in Deno), so it is the wall time of the device doing the work. On
 * a software adapter the CPU is the GPU, and anything else running on the machine slows the
 * numbers: the 1-minute load average and this process's CPU use are recorded beside them.
 */
import { Gpu } from "../src/gpu/runtime.ts";
import { reportError } from "../src/errors.ts";
import { gitCommit } from "../src/report/provenance.ts";
import { BENCH_USAGE, type BenchFlags, checkBenchOut, parseBenchFlags } from "../bench/flags.ts";
import {
  adapterSlug,
  checkMatmul,
  flatStateBytes,
  type GemmCase,
  gemmCases,
  loadAverage,
  median,
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
import {
  type BenchResult,
  benchTargets,
  type CreatedObjects,
  fmt,
  type KernelResult,
  type MatmulCheck,
  mib,
  type ProfiledStep,
  type ProfileResult,
  renderMarkdown,
  type StepMemory,
  type StepResult,
  type TfjsKernel,
  type TfjsResult,
  type TfjsStep,
} from "../bench/report.ts";

// ------------------------------------------------------------------ flags

let flags: BenchFlags;
try {
  flags = parseBenchFlags(Deno.args);
  if (flags.help) {
    console.log(BENCH_USAGE);
    Deno.exit(0);
  }
  await checkBenchOut(flags.out);
  if (flags.large) {
    // the large-scale pipeline (decode, loader, ResNet-50 and meta steps): bench/large_bench.ts
    const { runLargeBench } = await import("../bench/large_bench.ts");
    await runLargeBench(flags.out);
    Deno.exit(0);
  }
} catch (e) {
  Deno.exit(reportError(e));
}

// ------------------------------------------------------------------ helpers

const log = (s: string) => console.log(s);

interface StepSample {
  ms: number;
  cpuMs: number;
  dispatches: number;
  created: CreatedObjects;
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

// ------------------------------------------------------------------ kernels

/** The GEMM-family kernels, the matmul check, and process CPU over wall time while they ran. */
interface KernelsMeasured {
  kernels: KernelResult[];
  check: MatmulCheck | null;
  cpuOverWall: number;
}

async function measureKernels(gpu: Gpu, runs: number): Promise<KernelsMeasured> {
  log(`\n== GEMM-family kernels (batch 100), median of ${runs} ==`);
  const c0 = processCpuMs(), w0 = performance.now();
  const kernels: KernelResult[] = [];
  let matmulGflops = NaN, matmulCpuRate = NaN;
  for (const c of gemmCases(100) as GemmCase[]) {
    const p = c.prepare(gpu);
    const r = await timeGpu(gpu, p.run, { runs, minSampleMs: 250 });
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
  const check = await checkMatmul(gpu);
  log(
    `check: matmul 1024^3 vs float64 CPU at 64 entries, max |error| / sum|terms| = ` +
      `${check.maxRelError.toExponential(2)}; two runs bit-identical: ${check.deterministic}`,
  );
  const kernelCpu = processCpuMs() - c0;
  const kernelWall = performance.now() - w0;
  return { kernels, check, cpuOverWall: kernelCpu / kernelWall };
}

// ------------------------------------------------------------------ steps

/** The training steps, and the meta step's cost over the plain step by model. */
interface StepsMeasured {
  steps: StepResult[];
  metaRatio: Record<string, number>;
  metaRatioCpu: Record<string, number>;
}

/** Plain steps at flags.depths and meta steps at flags.metaDepths, shallowest model first. */
async function measureAllSteps(gpu: Gpu, flags: BenchFlags): Promise<StepsMeasured> {
  const out: StepsMeasured = { steps: [], metaRatio: {}, metaRatioCpu: {} };
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
    const measured = meta ? [plain, meta] : [plain];
    out.steps.push(...measured);
    measured.forEach(logStep);
    measured.forEach(logStepMemory);
    if (meta) {
      const model = `ResNet-${depth}`;
      out.metaRatio[model] = meta.medianMs / plain.medianMs;
      out.metaRatioCpu[model] = meta.cpuMs / plain.cpuMs;
      log(
        `${model} meta step = ${fmt(out.metaRatio[model])}x a plain step ` +
          `(CPU time: ${fmt(out.metaRatioCpu[model])}x)`,
      );
    }
    h.dispose();
    gpu.trim();
  }
  return out;
}

function logStep(r: StepResult): void {
  log(
    `ResNet-${r.depth} ${r.kind.padEnd(5)}: ${fmt(r.medianMs, 0)} ms/step, ` +
      `${fmt(r.imagesPerSec, 1)} images/s, CPU ${fmt(r.cpuMs, 0)} ms/step (first ` +
      `${fmt(r.firstMs, 0)} ms building ${r.firstPipelines} pipelines; ${r.samplesMs.length} ` +
      `samples; ${r.dispatchesPerStep} dispatches; warm step created ` +
      `${JSON.stringify(r.warmStepCreated)})`,
  );
}

function logStepMemory(r: StepResult): void {
  const m = r.memory;
  log(
    `ResNet-${r.depth} ${r.kind.padEnd(5)} memory: ${mib(m.totalBytes)} MiB held (pool ` +
      `${mib(m.poolHeldBytes)}, of it in use at the peak ${mib(m.poolInUseBytes)}; flat ` +
      `${mib(m.flatBytes)}), lower bound ${mib(m.bound.total)} MiB: ${fmt(m.ratio)}x ` +
      `(in use ${fmt(m.inUseRatio)}x)`,
  );
}

// ------------------------------------------------------------------ profile

/**
 * One model's plain step by phase (synced wall times), and where the device has timestamp
 * queries, every kernel of a plain and a meta step.
 */
async function profileSteps(
  gpu: Gpu,
  depth: number,
  hasTimestamps: boolean,
): Promise<ProfileResult> {
  log(`\n== profile: ResNet-${depth}, batch 100 ==`);
  const h = stepHarness(gpu, depth, 100);
  h.plain();
  await gpu.sync();
  const phases = await phaseWallTimes(gpu, h.engine);
  log(
    `plain step wall time by phase (synced): forward ${fmt(phases.forwardMs, 0)} ms, ` +
      `backward ${fmt(phases.backwardMs, 0)} ms, optimizer ${fmt(phases.optimizerMs, 0)} ms`,
  );
  const profile: ProfileResult = {
    depth,
    plainPhasesWallMs: phases,
    timestampQuery: hasTimestamps,
  };
  if (hasTimestamps) {
    const prof = new KernelProfiler(gpu);
    prof.install();
    try {
      for (const kind of ["plain", "meta"] as const) {
        profile[kind] = await profileStep(gpu, prof, kind, kind === "plain" ? h.plain : h.meta);
      }
    } finally {
      prof.destroy();
    }
  } else {
    log("timestamp-query is not offered by this adapter: per-kernel GPU times unavailable");
  }
  h.dispose();
  gpu.trim();
  return profile;
}

/** Every kernel's GPU time in one warm step (after a warm-up step), logged and summarised. */
async function profileStep(
  gpu: Gpu,
  prof: KernelProfiler,
  kind: "plain" | "meta",
  step: () => void,
): Promise<ProfiledStep> {
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
    `\n${kind} step: ${samples.length} dispatches, GPU ${fmt(gpuMs, 0)} ms (sum of kernels), ` +
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
  return {
    dispatches: samples.length,
    gpuMs,
    wallMs: wall,
    phases: ph,
    families: fam,
    kernels: rows,
  };
}

// ------------------------------------------------------------------ TensorFlow.js

type TfjsModule = typeof import("../bench/tfjs.ts");

/**
 * TF.js's matmul, conv forwards and plain steps beside the engine's figures. A failure (an
 * exception, or validation errors on TF.js's device) is recorded in the result, not thrown.
 */
async function measureTfjs(
  flags: BenchFlags,
  kernels: KernelResult[],
  steps: StepResult[],
): Promise<TfjsResult> {
  log(`\n== TensorFlow.js 4.22 WebGPU on the same adapter ==`);
  const tfjs: TfjsResult = { status: "ok", kernels: [], steps: [] };
  try {
    // a computed specifier: the default suite neither loads nor needs the npm packages
    const spec = ["..", "bench", "tfjs.ts"].join("/");
    const t: TfjsModule = await import(spec);
    const info = await t.initTfjs();
    tfjs.version = info.version;
    tfjs.adapter = info.adapter;
    log(`tfjs ${info.version}, backend ${info.backend}, adapter ${info.adapter}`);
    await timeTfjsKernels(t, flags.runs, kernels, tfjs.kernels);
    for (const depth of flags.depths) {
      const ours = steps.find((x) => x.depth === depth && x.kind === "plain");
      tfjs.steps.push(await timeTfjsStep(t, depth, ours));
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
  return tfjs;
}

/** TF.js's matmul and conv forwards, each pushed to `into` as it is timed. */
async function timeTfjsKernels(
  t: TfjsModule,
  runs: number,
  kernels: KernelResult[],
  into: TfjsKernel[],
): Promise<void> {
  const cases = gemmCases(100).filter((c) => c.kind === "matmul" || c.kind === "conv-fwd");
  for (const c of cases) {
    const p = c.kind === "matmul" ? t.tfMatmul(c.gemm.M) : t.tfConvForward(c.conv!);
    const r = await t.timeTf(p.run, { runs, minSampleMs: 250 });
    p.dispose();
    const gflops = c.flops / r.medianMs / 1e6;
    const ours = kernels.find((k) => k.name === c.name);
    const ratio = ours ? r.medianMs / ours.medianMs : NaN;
    const ratioCpu = ours ? r.cpuMs / ours.cpuMs : NaN;
    into.push({
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
        `(first ${fmt(r.firstMs, 0)} ms); tailgrad/tfjs ${fmt(ratio)} (CPU time ${fmt(ratioCpu)})`,
    );
  }
}

/** TF.js's ResNet training step at batch 100, against the engine's plain step `ours`. */
async function timeTfjsStep(
  t: TfjsModule,
  depth: number,
  ours: StepResult | undefined,
): Promise<TfjsStep> {
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
  const ips = 100_000 / medianMs;
  const ratio = ours ? ours.imagesPerSec / ips : NaN;
  const ratioCpu = ours ? cpuMs / ours.cpuMs : NaN;
  log(
    `ResNet-${depth} step: ${fmt(medianMs, 0)} ms, ${fmt(ips, 1)} images/s, CPU ` +
      `${fmt(cpuMs, 0)} ms (first ${fmt(firstMs, 0)} ms; loss ${fmt(loss, 3)}); ` +
      `tailgrad/tfjs ${fmt(ratio)} (CPU time ${fmt(ratioCpu)})`,
  );
  return {
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
  };
}

// ------------------------------------------------------------------ main

const started = performance.now();
const cpu0 = processCpuMs();
const load0 = loadAverage();
const gpu = await Gpu.create().catch((e) => Deno.exit(reportError(e))); // no GPU: one line
const pipes = pipelineTimer(gpu);
const slug = adapterSlug(gpu);
const hasTimestamps = KernelProfiler.supported(gpu);
log(
  `adapter: ${gpu.adapter.description} (fallback ${gpu.adapter.isFallbackAdapter}), ` +
    `backend ${Deno.env.get("DENO_WEBGPU_BACKEND") ?? "default"}, timestamp-query ${hasTimestamps}`,
);
log(`load average ${fmt(load0)}; results -> ${flags.out}/${slug}.{json,md}`);

const { kernels, check, cpuOverWall: kernelsCpuOverWall }: KernelsMeasured = flags.kernels
  ? await measureKernels(gpu, flags.runs)
  : { kernels: [], check: null, cpuOverWall: NaN };
const { steps, metaRatio, metaRatioCpu }: StepsMeasured = flags.steps
  ? await measureAllSteps(gpu, flags)
  : { steps: [], metaRatio: {}, metaRatioCpu: {} };
const profile = flags.profile ? await profileSteps(gpu, flags.profileDepth, hasTimestamps) : null;
const tfjs = flags.tfjs ? await measureTfjs(flags, kernels, steps) : null;
// issue 12's acceptance figures
const targets = benchTargets({ flags, kernels, steps, metaRatio, metaRatioCpu, tfjs });

const wallS = (performance.now() - started) / 1000;
const cpuS = (processCpuMs() - cpu0) / 1000;
const result: BenchResult = {
  schema: 1,
  date: new Date().toISOString(),
  commit: gitCommit(Deno.cwd())?.slice(0, 12) ?? "unknown",
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
    cpuOverWall: cpuS / wallS,
    kernelsCpuOverWall,
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
  timestampQuery: hasTimestamps,
};

// ------------------------------------------------------------------ write

await Deno.mkdir(flags.out, { recursive: true });
await Deno.writeTextFile(`${flags.out}/${slug}.json`, JSON.stringify(result, null, 2) + "\n");
await Deno.writeTextFile(`${flags.out}/${slug}.md`, renderMarkdown(result));
log(`\n== targets ==`);
for (const t of targets) log(`${t.pass ? "PASS" : "MISS"}  ${t.target}: ${t.measured}`);
log(
  `\nwrote ${flags.out}/${slug}.json and .md in ${fmt(wallS, 0)} s (CPU/wall ${fmt(cpuS / wallS)})`,
);
gpu.dispose();
