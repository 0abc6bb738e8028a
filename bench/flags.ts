/**
 * Command-line flags of `deno task bench` (scripts/bench.ts), parsed by the shared flag parser
 * (src/cli/flags.ts): `--runs 3` or `--runs=3`; an unknown, repeated or malformed flag is a
 * {@linkcode UsageError} that lists what is valid. {@linkcode checkBenchOut} refuses an --out
 * the process may not write, before the benchmark runs rather than after it.
 */
import { checkOutFolder, type FlagTable, parseFlags, UsageError } from "../src/cli/flags.ts";

/** What the benchmark runs and where it writes. */
export interface BenchFlags {
  /** Also time TensorFlow.js 4.22 WebGPU (loads its npm packages). */
  tfjs: boolean;
  /** Per-kernel GPU time of one plain and one meta step. */
  profile: boolean;
  /** Fewer samples and ResNet-8 only. */
  quick: boolean;
  /** Time the GEMM-family kernels. */
  kernels: boolean;
  /** Time training steps. */
  steps: boolean;
  /** The large-scale pipeline instead (bench/large_bench.ts): takes only --out. */
  large: boolean;
  /** Kernel samples. */
  runs: number;
  /** ResNet depths of the plain-step timings. */
  depths: number[];
  /** ResNet depths of the meta-step timings. */
  metaDepths: number[];
  /** ResNet depth of the profile. */
  profileDepth: number;
  /** Output folder. */
  out: string;
  /** Show the usage and exit. */
  help: boolean;
}

/** The usage line. */
export const BENCH_USAGE = "usage: deno task bench [--quick] [--tfjs] [--profile] [--runs N] " +
  "[--depths 8,32] [--meta-depths 8,32] [--profile-depth 8] [--no-kernels] [--no-steps] " +
  "[--out DIR]\n" +
  "       deno task bench --large [--out DIR]   (JPEG decode, loader, ResNet-50 and meta " +
  "steps)\n" +
  "  defaults: --runs 3 (--quick: 2), --depths 8,32 and --meta-depths 8,32 (--quick: 8), " +
  "--profile-depth 8, --out bench/results";

/** Every bench flag; switches also take their --no- form (--no-kernels, --no-steps). */
const BENCH_FLAGS: FlagTable<keyof BenchFlags> = {
  "quick": { key: "quick", kind: "bool", help: "fewer samples and ResNet-8 only" },
  "tfjs": { key: "tfjs", kind: "bool", help: "also time TensorFlow.js WebGPU" },
  "profile": { key: "profile", kind: "bool", help: "per-kernel GPU time of one step" },
  "runs": { key: "runs", kind: "int", help: "kernel samples" },
  // depths stay text here: depthList checks them and quotes them as given
  "depths": { key: "depths", kind: "string", help: "ResNet depths of the plain steps" },
  "meta-depths": { key: "metaDepths", kind: "string", help: "ResNet depths of the meta steps" },
  "profile-depth": { key: "profileDepth", kind: "string", help: "ResNet depth of the profile" },
  "kernels": { key: "kernels", kind: "bool", help: "time the GEMM-family kernels" },
  "steps": { key: "steps", kind: "bool", help: "time training steps" },
  "large": { key: "large", kind: "bool", help: "the large-scale pipeline instead" },
  "out": { key: "out", kind: "string", help: "output folder" },
  "help": { key: "help", kind: "bool", help: "show the usage" },
};

const HINT = "run deno task bench --help";

function bad(message: string): never {
  throw new UsageError(`${message}\n${BENCH_USAGE}`, { hint: HINT });
}

function depthList(flag: string, v: string): number[] {
  const parts = v.split(",").map((s) => s.trim());
  if (parts.some((p) => !/^[0-9]+$/.test(p) || Number(p) < 8 || (Number(p) - 2) % 6 !== 0)) {
    bad(`invalid --${flag} ${JSON.stringify(v)}: expected ResNet depths 6n+2 >= 8, e.g. 8,32`);
  }
  return parts.map(Number);
}

/** Parses the bench flags (see the module doc). */
export function parseBenchFlags(args: string[]): BenchFlags {
  const { help, values: v } = parseFlags(
    args.map((a) => (a === "--h" ? "--help" : a)),
    BENCH_FLAGS,
    { hint: HINT, usage: BENCH_USAGE },
  );
  if (v.large === true) {
    // the large benchmark has its own fixed cases: a flag of the suite would be ignored
    const given = (key: keyof BenchFlags) => v[key as keyof typeof v];
    const ignored = Object.entries(BENCH_FLAGS)
      .filter(([, f]) => !["large", "out", "help"].includes(f.key) && given(f.key) !== undefined)
      .map(([name, f]) => given(f.key) === false ? `--no-${name}` : `--${name}`);
    if (ignored.length) {
      bad(
        `--large runs the large pipeline only, which takes no ${ignored.join(", ")} (only --out)`,
      );
    }
  }
  const quick = v.quick === true;
  const f: BenchFlags = {
    tfjs: v.tfjs === true,
    profile: v.profile === true,
    quick,
    kernels: v.kernels !== false,
    steps: v.steps !== false,
    large: v.large === true,
    runs: quick ? 2 : 3,
    depths: quick ? [8] : [8, 32],
    metaDepths: quick ? [8] : [8, 32],
    profileDepth: 8,
    out: "bench/results",
    help,
  };
  if (v.runs !== undefined) {
    if ((v.runs as number) < 1) bad(`invalid --runs "${v.runs}": expected an integer >= 1`);
    f.runs = v.runs as number;
  }
  if (v.depths !== undefined) f.depths = depthList("depths", v.depths as string);
  if (v.metaDepths !== undefined) f.metaDepths = depthList("meta-depths", v.metaDepths as string);
  if (v.profileDepth !== undefined) {
    f.profileDepth = depthList("profile-depth", v.profileDepth as string)[0];
  }
  if (v.out !== undefined) f.out = v.out as string;
  return f;
}

/** Refuses an --out the benchmark could not write at its end (a UsageError naming --out). */
export async function checkBenchOut(out: string): Promise<void> {
  await checkOutFolder(out, {
    flag: "--out",
    purpose: "for the results",
    scopeHint: "the bench task may write only under bench/results/: choose --out there (e.g. " +
      "bench/results/mine), or run scripts/bench.ts with a wider --allow-write",
    error: UsageError,
  });
}
