/**
 * The one-shot GPU check: on a machine with a GPU (and no network), one command reports the
 * adapter with its limits and features, runs the op-correctness tests, then the kernel and step
 * benchmarks at the paper's settings (ResNet-32, batch 100, plain and meta steps), and writes one
 * JSON result, in under 8 minutes. Each phase has its own time limit, and the JSON is rewritten
 * after every phase, so a run cut short still leaves what it measured.
 *
 *   deno task gpu-check                # full check (README "The one-shot GPU check")
 *   deno task gpu-check --quick        # CI-sized: a few tests, small kernels, ResNet-8 at batch 2
 *
 * Flags (`--out FILE` or `--out=FILE`; `--help` lists them): --quick, --out FILE (default
 * bench/results/gpu-check-<adapter>.json), --budget-s N (whole run; default 480), --no-tests.
 * A bad flag or an --out this process may not write is refused before the GPU is taken. Only a
 * result of this command is ever replaced, at --out or at the default path (checked as soon as
 * the adapter names it, before any phase).
 */
import { dirname } from "node:path";
import { Gpu } from "../src/gpu/runtime.ts";
import { ENGINE_LIMITS } from "../src/gpu/device.ts";
import { defaultGemmPolicy, setGemmPolicy } from "../src/ops/gemm.ts";
import {
  adapterSlug,
  convCase,
  flatStateBytes,
  type GemmCase,
  gemmCases,
  matmulCase,
  median,
  memoryLowerBound,
  RESNET32_CONVS,
  stepHarness,
  timeGpu,
} from "../bench/lib.ts";
import { KernelProfiler, summarizeFamilies } from "../bench/profile.ts";
import {
  type FlagTable,
  parseFlags,
  shownValue,
  UsageError,
  usageLines,
} from "../src/cli/flags.ts";
import { reportError } from "../src/errors.ts";

interface Flags {
  quick: boolean;
  out: string | null;
  budgetS: number;
  tests: boolean;
  help: boolean;
}

const DEFAULTS: Flags = { quick: false, out: null, budgetS: 480, tests: true, help: false };

const GPU_CHECK_FLAGS: FlagTable<keyof Flags> = {
  "quick": {
    key: "quick",
    kind: "bool",
    help: "CI-sized: a few tests, small kernels, ResNet-8 at batch 2",
  },
  "out": {
    key: "out",
    kind: "string",
    help: "the JSON result",
    defaultText: "bench/results/gpu-check-<adapter>[-quick].json",
  },
  "budget-s": { key: "budgetS", kind: "number", help: "seconds for the whole run" },
  "tests": { key: "tests", kind: "bool", help: "run the op tests (--no-tests: skip them)" },
  "help": { key: "help", kind: "bool", help: "show this help" },
};

const USAGE = [
  "usage: deno task gpu-check [--quick] [--out FILE] [--budget-s N] [--no-tests]",
  "",
  "flags:",
  ...usageLines(GPU_CHECK_FLAGS, (_, f) => {
    const d = DEFAULTS[f.key];
    return f.key === "help" || d === null ? undefined : shownValue(d);
  }),
].join("\n");

function parseGpuCheckFlags(args: string[]): Flags {
  const { help, values } = parseFlags(args, GPU_CHECK_FLAGS);
  const f = { ...DEFAULTS, ...values, help } as Flags;
  if (!(f.budgetS > 0)) {
    throw new UsageError(`invalid --budget-s ${f.budgetS}: expected seconds > 0`, {
      flag: "--budget-s",
      hint: `pass --budget-s N > 0, or leave it out for ${DEFAULTS.budgetS}`,
    });
  }
  return f;
}

/**
 * Refuses an output this process may not write (or a folder, or a missing folder to write it in)
 * before the GPU is taken: the result is saved after every phase, the first after the adapter.
 */
async function checkOut(out: string | null): Promise<void> {
  const flag = out === null ? undefined : "--out";
  const target = out ?? "bench/results";
  const perm = await Deno.permissions.query({ name: "write", path: target });
  if (perm.state !== "granted") {
    throw new UsageError(
      `${out === null ? "bench/results" : `--out ${out}`}: this process may not write there`,
      {
        flag,
        file: target,
        hint: "the gpu-check task may write only under bench/results/ and /tmp: choose --out " +
          "there (e.g. /tmp/gpu-check.json), or run scripts/gpu_check.ts with a wider --allow-write",
      },
    );
  }
  if (out !== null) await checkReplaceable(out, flag);
  const folder = out === null ? target : dirname(out);
  if ((await Deno.stat(folder).catch(() => null))?.isDirectory !== true) {
    throw new UsageError(`${flag ? `--out ${out}` : target}: the folder ${folder} does not exist`, {
      flag,
      file: folder,
      hint: flag
        ? "create the folder first, or choose another --out"
        : "run from the repository root",
    });
  }
}

/**
 * Refuses to write the result over a folder or over a file this command did not write: it only
 * ever replaces its own results. `flag` is "--out" when the path came from it; the default path
 * is named after the adapter, so it is checked once the adapter is known, before any phase.
 */
async function checkReplaceable(path: string, flag?: "--out"): Promise<void> {
  const stat = await Deno.stat(path).catch(() => null);
  if (stat === null) return;
  const named = flag ? `--out ${path}` : path;
  if (stat.isDirectory) {
    throw new UsageError(`${named} is a folder; expected the JSON file to write`, {
      flag,
      file: path,
      hint: flag
        ? "name a file, e.g. --out /tmp/gpu-check.json"
        : "move the folder away, or name a file with --out FILE",
    });
  }
  if (!(await isOurResult(path))) {
    throw new UsageError(`${named} exists and is not a gpu-check result; it is left alone`, {
      flag,
      file: path,
      hint: flag
        ? "move the file away, or choose another --out"
        : "move the file away, or name another file with --out FILE",
    });
  }
}

/** Marks a result file as this command's, so a later run may replace it. */
const RESULT_TOOL = "tailgrad-gpu-check";

/** Whether `path` holds a result this command wrote (earlier ones lack the mark: schema 1). */
async function isOurResult(path: string): Promise<boolean> {
  try {
    const r = JSON.parse(await Deno.readTextFile(path));
    return r?.tool === RESULT_TOOL || (r?.schema === 1 && typeof r?.phases === "object");
  } catch {
    return false;
  }
}

/** What every phase records. */
interface PhaseRecord {
  status: "ok" | "failed" | "timeout" | "skipped";
  seconds: number;
  error?: string;
}

let flags: Flags = DEFAULTS;
try {
  flags = parseGpuCheckFlags(Deno.args);
  if (flags.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  await checkOut(flags.out);
} catch (e) {
  Deno.exit(reportError(e));
}
const started = performance.now();
const deadline = started + flags.budgetS * 1000;
// deno-lint-ignore no-explicit-any
const result: Record<string, any> = {
  tool: RESULT_TOOL,
  schema: 1,
  kind: flags.quick ? "quick" : "full",
  date: new Date().toISOString(),
  deno: Deno.version.deno,
  backend: Deno.env.get("DENO_WEBGPU_BACKEND") ?? "default",
  budgetSeconds: flags.budgetS,
  phases: {} as Record<string, PhaseRecord>,
};
let outPath = flags.out ?? "";

async function save(): Promise<void> {
  if (!outPath) return;
  result.elapsedSeconds = (performance.now() - started) / 1000;
  await Deno.writeTextFile(outPath, JSON.stringify(result, null, 2) + "\n");
}

/** The phase running now; a phase that timed out finds it changed and stops (see alive). */
let activePhase: string | null = null;

/** Throws when the phase `name` was abandoned: loops call it between cases. */
function alive(name: string): void {
  if (activePhase !== name) throw new Error(`phase ${name} was abandoned (time limit)`);
}

/**
 * Runs one phase with a time limit (never past the run's deadline): its result under
 * `result[name]`, its status under `result.phases[name]`, and the JSON saved after it. A phase
 * that times out is abandoned: its loops stop at their next case (`alive`), its child process is
 * killed (the body gets the limit in ms), and the next phase starts.
 */
async function phase(
  name: string,
  limitS: number,
  body: (ms: number) => Promise<unknown>,
): Promise<void> {
  const t0 = performance.now();
  const ms = Math.min(limitS * 1000, deadline - t0);
  if (ms <= 0) {
    result.phases[name] = { status: "skipped", seconds: 0, error: "no time left in the budget" };
    await save();
    return;
  }
  console.log(`\n== ${name} (limit ${Math.round(ms / 1000)} s) ==`);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), ms);
  });
  activePhase = name;
  try {
    const r = await Promise.race([body(ms), timeout]);
    if (r === "timeout") {
      result.phases[name] = { status: "timeout", seconds: ms / 1000 };
    } else {
      result[name] = r;
      result.phases[name] = { status: "ok", seconds: (performance.now() - t0) / 1000 };
    }
  } catch (e) {
    result.phases[name] = {
      status: "failed",
      seconds: (performance.now() - t0) / 1000,
      error: e instanceof Error ? `${e.name}: ${e.message}` : String(e),
    };
  } finally {
    clearTimeout(timer);
    activePhase = null;
  }
  console.log(`${name}: ${JSON.stringify(result.phases[name])}`);
  await save();
}

// ------------------------------------------------------------------ phases

// no adapter, or one without the engine's limits: one line naming what is missing, no stack trace
const gpu = await Gpu.create().catch((e) => Deno.exit(reportError(e)));
if (!outPath) {
  outPath = `bench/results/gpu-check-${adapterSlug(gpu)}${flags.quick ? "-quick" : ""}.json`;
  await checkReplaceable(outPath).catch((e) => {
    gpu.dispose();
    Deno.exit(reportError(e));
  });
}

await phase("adapter", 30, () => {
  const limits = gpu.device.limits as unknown as Record<string, number>;
  const engine: Record<string, { device: number; needed: number }> = {};
  for (const [key, { min }] of Object.entries(ENGINE_LIMITS)) {
    engine[key] = { device: limits[key], needed: min };
  }
  const policy = defaultGemmPolicy(gpu);
  console.log(`${gpu.adapter.description} (${gpu.adapter.vendor} ${gpu.adapter.architecture})`);
  console.log(`features: ${gpu.adapter.features.join(", ")}`);
  return Promise.resolve({
    ...gpu.adapter,
    deviceFeatures: [...gpu.device.features].sort(),
    engineLimits: engine,
    gemmPolicy: policy,
  });
});

/** The op-correctness tests: `deno test` in a child process, killed after `limitMs`. */
async function runTests(limitMs: number): Promise<unknown> {
  const files = flags.quick ? ["test/kernel_test.ts", "test/runtime_test.ts"] : [
    "test/kernel_test.ts",
    "test/runtime_test.ts",
    "test/ops_test.ts",
    "test/nn_ops_test.ts",
    "test/optim_test.ts",
    "test/resnet_test.ts",
  ];
  const cmd = new Deno.Command(Deno.execPath(), {
    args: [
      "test",
      "--allow-read",
      "--allow-write=/tmp",
      "--allow-env",
      "--allow-net=127.0.0.1",
      "--allow-run",
      ...files,
    ],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(limitMs),
  });
  const out = await cmd.output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  const summary = text.match(/(ok|FAILED) \| (\d+) passed(?: \((\d+) steps?\))? \| (\d+) failed/);
  const failedNames = [...text.matchAll(/^(.+) => .+$/gm)].map((m) => m[1].trim());
  const r = {
    files,
    exitCode: out.code,
    passed: summary ? Number(summary[2]) : 0,
    failed: summary ? Number(summary[4]) : NaN,
    failedTests: [...new Set(failedNames)].slice(0, 20),
    outputTail: text.slice(-3000),
  };
  console.log(`tests: ${r.passed} passed, ${r.failed} failed (exit ${r.exitCode})`);
  if (out.code !== 0) {
    throw new Error(`tests failed (exit ${out.code}): ${r.failedTests.join("; ")}`);
  }
  return r;
}

if (flags.tests) {
  await phase("tests", flags.quick ? 60 : 200, runTests);
} else result.phases.tests = { status: "skipped", seconds: 0, error: "--no-tests" };

/** Kernel timings: GFLOP/s of each case and its ratio to the matmul. */
async function runKernels(
  phaseName: string,
  cases: GemmCase[],
  runs: number,
  rows: Record<string, unknown>[] = [],
) {
  let matmul = NaN;
  for (const c of cases) {
    alive(phaseName);
    const p = c.prepare(gpu);
    const r = await timeGpu(gpu, p.run, { runs, minSampleMs: flags.quick ? 1 : 100 });
    p.dispose();
    const gflops = c.flops / r.medianMs / 1e6;
    if (c.kind === "matmul" && Number.isNaN(matmul)) matmul = gflops;
    rows.push({
      name: c.name,
      gemm: c.gemm,
      ms: r.medianMs,
      gflops,
      ratioToMatmul: gflops / matmul,
    });
    await save(); // partial rows stay in the JSON if the phase is cut short
    console.log(`${c.name.padEnd(40)} ${r.medianMs.toFixed(3)} ms ${gflops.toFixed(1)} GFLOP/s`);
  }
  return rows;
}

const quickCases = () => [
  matmulCase(64),
  ...(["conv-fwd", "conv-dx", "conv-dw"] as const).map((k) => convCase(RESNET32_CONVS[2], k, 1)),
];
await phase("kernels", flags.quick ? 60 : 90, async () => {
  const partial = { batch: flags.quick ? 1 : 100, cases: [] as Record<string, unknown>[] };
  result.kernels = partial;
  const cases = flags.quick ? quickCases() : gemmCases(100);
  await runKernels("kernels", cases, flags.quick ? 2 : 5, partial.cases);
  return partial;
});

/** The default GEMM policy against the other kernel family, on the matmul and two convs. */
await phase("families", 60, async () => {
  const base = defaultGemmPolicy(gpu);
  const other = base.family === "workgroup" ? "register" : "workgroup";
  const cases = flags.quick ? [matmulCase(64)] : [
    matmulCase(1024),
    convCase(RESNET32_CONVS[1], "conv-fwd", 100),
    convCase(RESNET32_CONVS[5], "conv-dw", 100),
  ];
  const out: Record<string, unknown> = {};
  try {
    for (const family of [base.family ?? "register", other] as const) {
      setGemmPolicy(gpu, { ...base, family });
      out[family] = await runKernels("families", cases, flags.quick ? 1 : 3);
    }
  } finally {
    setGemmPolicy(gpu, base);
  }
  return { default: base.family ?? "register", ...out };
});

/** Plain and meta steps of one model: times, the meta/plain ratio, memory, warm-step objects. */
async function runSteps(depth: number, batch: number, samples: number) {
  const h = stepHarness(gpu, depth, batch);
  const res: Record<string, unknown> = { model: `ResNet-${depth}`, batch };
  const times: Record<string, number[]> = { plain: [], meta: [] };
  try {
    for (const kind of ["plain", "meta"] as const) {
      alive("steps");
      gpu.trim();
      gpu.resetMemoryPeak();
      const t = performance.now();
      h[kind]();
      await gpu.sync();
      const bound = memoryLowerBound(h.model, batch, kind);
      const held = gpu.memory.peakHeldBytes + flatStateBytes(h.model);
      res[`${kind}First`] = { ms: performance.now() - t };
      res[`${kind}Memory`] = {
        heldBytes: held,
        boundBytes: bound.total,
        ratio: held / bound.total,
      };
    }
    // one untimed round: the pool now holds what both kinds need, bind groups are made
    h.plain();
    h.meta();
    await gpu.sync();
    const s0 = { ...gpu.stats };
    for (let i = 0; i < samples; i++) {
      for (const kind of ["plain", "meta"] as const) {
        alive("steps");
        const t = performance.now();
        h[kind]();
        await gpu.sync();
        times[kind].push(performance.now() - t);
      }
    }
    const created = gpu.stats.buffersCreated - s0.buffersCreated +
      gpu.stats.bindGroupsCreated - s0.bindGroupsCreated +
      gpu.stats.pipelinesCreated - s0.pipelinesCreated +
      gpu.stats.uniformsCreated - s0.uniformsCreated;
    for (const kind of ["plain", "meta"] as const) {
      const ms = median(times[kind]);
      res[kind] = { ms, samplesMs: times[kind], imagesPerSec: (batch * 1000) / ms };
    }
    res.metaOverPlain = median(times.meta) / median(times.plain);
    res.warmStepsGpuObjectsCreated = created;
    console.log(
      `ResNet-${depth} batch ${batch}: plain ${median(times.plain).toFixed(1)} ms, meta ` +
        `${median(times.meta).toFixed(1)} ms (${(res.metaOverPlain as number).toFixed(2)}x); ` +
        `warm steps created ${created} GPU objects`,
    );
    if (KernelProfiler.supported(gpu) && !flags.quick) {
      const prof = new KernelProfiler(gpu);
      prof.install();
      try {
        h.plain();
        await gpu.sync();
        await prof.collect();
        prof.reset();
        h.plain();
        const fam = summarizeFamilies(await prof.collect());
        res.plainProfileFamiliesMs = fam;
      } finally {
        prof.destroy();
      }
    }
  } finally {
    h.dispose();
    gpu.trim();
  }
  return res;
}

/** Each model's results join `result.steps` (and the JSON) as soon as they exist. */
async function stepsPhase(models: [depth: number, batch: number, samples: number][]) {
  const out: unknown[] = [];
  result.steps = out;
  for (const [depth, batch, samples] of models) {
    out.push(await runSteps(depth, batch, samples));
    await save();
  }
  return out;
}

if (flags.quick) {
  // generous limit: a CI machine may be busy; the work itself takes about 15 s on llvmpipe
  await phase("steps", 120, () => stepsPhase([[8, 2, 1]]));
} else {
  await phase("steps", 240, () => stepsPhase([[32, 100, 3], [8, 100, 3]]));
}

const failed = Object.entries(result.phases as Record<string, PhaseRecord>)
  .filter(([, p]) => p.status !== "ok" && p.status !== "skipped").map(([n]) => n);
result.ok = failed.length === 0;
await save();
console.log(
  `\ngpu-check ${result.ok ? "passed" : `FAILED (${failed.join(", ")})`} in ` +
    `${((performance.now() - started) / 1000).toFixed(0)} s; wrote ${outPath}`,
);
gpu.dispose();
Deno.exit(result.ok ? 0 : 1);
