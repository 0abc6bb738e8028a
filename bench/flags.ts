/**
 * Command-line flags of `deno task bench` (scripts/bench.ts). Each flag takes its value as
 * `--runs 3` or `--runs=3`; an unknown, repeated or malformed flag is a {@linkcode UsageError}
 * that lists what is valid.
 */
import { UsageError } from "../src/train/cli.ts";

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
  "  defaults: --runs 3 (--quick: 2), --depths 8,32 and --meta-depths 8,32 (--quick: 8), " +
  "--profile-depth 8, --out bench/results";

const SWITCHES = ["tfjs", "profile", "quick", "no-kernels", "no-steps", "help"];
const VALUED = ["runs", "depths", "meta-depths", "profile-depth", "out"];

function bad(message: string): never {
  throw new UsageError(`${message}\n${BENCH_USAGE}`, { hint: "run deno task bench --help" });
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
  const values = new Map<string, string | true>();
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const m = /^--([a-z-]+)(?:=(.*))?$/s.exec(a);
    if (!m) bad(`unexpected argument ${JSON.stringify(a)}: every setting is a flag`);
    const name = m[1] === "h" ? "help" : m[1];
    let value: string | true;
    if (SWITCHES.includes(name)) {
      if (m[2] !== undefined) bad(`--${name} takes no value`);
      value = true;
    } else if (VALUED.includes(name)) {
      value = m[2] ?? args[++i];
      if (value === undefined || value === "" || (m[2] === undefined && value.startsWith("--"))) {
        bad(`--${name} needs a value`);
      }
    } else {
      bad(
        `unknown flag --${name}; valid flags: ${
          [...SWITCHES, ...VALUED].map((f) => `--${f}`).join(", ")
        }`,
      );
    }
    if (values.has(name)) bad(`--${name} is given more than once`);
    values.set(name, value);
  }
  const quick = values.has("quick");
  const f: BenchFlags = {
    tfjs: values.has("tfjs"),
    profile: values.has("profile"),
    quick,
    kernels: !values.has("no-kernels"),
    steps: !values.has("no-steps"),
    runs: quick ? 2 : 3,
    depths: quick ? [8] : [8, 32],
    metaDepths: quick ? [8] : [8, 32],
    profileDepth: 8,
    out: "bench/results",
    help: values.has("help"),
  };
  const v = (k: string) => values.get(k) as string | undefined;
  if (v("runs") !== undefined) {
    if (!/^[0-9]+$/.test(v("runs")!) || Number(v("runs")) < 1) {
      bad(`invalid --runs ${JSON.stringify(v("runs"))}: expected an integer >= 1`);
    }
    f.runs = Number(v("runs"));
  }
  if (v("depths") !== undefined) f.depths = depthList("depths", v("depths")!);
  if (v("meta-depths") !== undefined) f.metaDepths = depthList("meta-depths", v("meta-depths")!);
  if (v("profile-depth") !== undefined) {
    f.profileDepth = depthList("profile-depth", v("profile-depth")!)[0];
  }
  if (v("out") !== undefined) f.out = v("out")!;
  return f;
}
