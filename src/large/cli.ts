/**
 * `deno task train --preset imagenet-lt|places-lt|inat2017|inat2018 --data-root DIR [flags]`:
 * the large-scale runs' command line (scripts/train.ts routes these presets here).
 */
import { parseArgs } from "node:util";
import { reportError } from "../errors.ts";
import { GpuUnavailableError } from "../gpu/device.ts";
import { UserError } from "../errors.ts";
import { ConfigError } from "../train/config.ts";
import { rejectRepeatedFlags } from "../train/cli.ts";
import {
  isLargePreset,
  LARGE_PRESETS,
  type LargeConfig,
  largePreset,
  validateLargeConfig,
} from "./config.ts";
import { trainLarge } from "./trainer.ts";

type Kind = "string" | "int" | "number" | "bool" | "enum" | "nullable-number";

/** Flag -> config key, kind and help. */
const FLAGS: Record<
  string,
  { key: keyof LargeConfig; kind: Kind; help: string; values?: string[] }
> = {
  "data-root": { key: "dataRoot", kind: "string", help: "folder of the list files and images" },
  "train-list": {
    key: "trainList",
    kind: "string",
    help: "training list / JSON (default: the layout's)",
  },
  "eval-list": {
    key: "evalList",
    kind: "string",
    help: "evaluation list / JSON (default: the layout's)",
  },
  "eval-split": {
    key: "evalSplit",
    kind: "enum",
    values: ["val", "test"],
    help: "evaluation split",
  },
  "depth": { key: "depth", kind: "int", help: "ResNet depth: 10, 18, 34, 50, 101, 152" },
  "width": { key: "width", kind: "int", help: "first-stage channels (64: torchvision)" },
  "pretrained": { key: "pretrained", kind: "string", help: "torchvision checkpoint (safetensors)" },
  "epochs": { key: "epochs", kind: "int", help: "training epochs" },
  "batch": { key: "batch", kind: "int", help: "batch size" },
  "lr": { key: "lr", kind: "number", help: "initial learning rate" },
  "lr-decay-every": {
    key: "lrDecayEvery",
    kind: "nullable-number",
    help: "x0.1 every N epochs (none: never)",
  },
  "meta-start": { key: "metaStart", kind: "int", help: "first epoch of the meta stage" },
  "meta-lr": {
    key: "metaLr",
    kind: "nullable-number",
    help: "learning rate of the meta stage (none: the schedule's)",
  },
  "meta-params": {
    key: "metaParams",
    kind: "enum",
    values: ["all", "classifier"],
    help: "parameters of the meta step",
  },
  "freeze-backbone": {
    key: "freezeBackbone",
    kind: "bool",
    help: "freeze the backbone in the meta stage (classifier)",
  },
  "tau": { key: "tau", kind: "number", help: "eps = -tau * dL_dev/deps" },
  "beta": { key: "beta", kind: "number", help: "effective-number beta of w_y" },
  "dev-per-class": {
    key: "devPerClass",
    kind: "int",
    help: "dev images per class, taken from the training list",
  },
  "size": { key: "size", kind: "int", help: "crop side (224)" },
  "resize": {
    key: "resize",
    kind: "int",
    help: "shorter side before the evaluation centre crop (256)",
  },
  "momentum": { key: "momentum", kind: "number", help: "SGD momentum" },
  "weight-decay": { key: "weightDecay", kind: "number", help: "L2 weight decay" },
  "seed": { key: "seed", kind: "int", help: "seed" },
  "workers": { key: "workers", kind: "int", help: "decode threads (default cores - 1)" },
  "out": { key: "out", kind: "string", help: "output folder (default runs/<preset>)" },
  "eval-every": { key: "evalEvery", kind: "int", help: "evaluate every N epochs" },
};

/** Whether `args` ask for a large preset (`--preset NAME` or `--preset=NAME`). */
export function wantsLargePreset(args: string[]): boolean {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--preset" && isLargePreset(args[i + 1])) return true;
    if (args[i].startsWith("--preset=") && isLargePreset(args[i].slice(9))) return true;
  }
  return false;
}

/** The usage text of the large presets. */
export function largeUsage(): string {
  const lines = Object.entries(FLAGS).map(([f, d]) =>
    `  --${f}${d.values ? ` ${d.values.join("|")}` : ""}  ${d.help}`
  );
  return `deno task train --preset ${LARGE_PRESETS.join("|")} --data-root DIR [flags]\n` +
    `${lines.join("\n")}\n  --resume  continue the run in --out\n  --max-epochs N  stop after N ` +
    "epochs in this call";
}

/** Parses a large run's command line into its config and run options. */
export function parseLargeArgs(
  args: string[],
): { cfg: LargeConfig; resume: boolean; maxEpochs?: number; help: boolean } {
  const options: Record<string, { type: "string" | "boolean" }> = {
    preset: { type: "string" },
    resume: { type: "boolean" },
    "max-epochs": { type: "string" },
    help: { type: "boolean" },
  };
  for (const [f, d] of Object.entries(FLAGS)) {
    options[f] = { type: d.kind === "bool" ? "boolean" : "string" };
  }
  let values: Record<string, string | boolean | undefined>;
  try {
    const parsed = parseArgs({
      args,
      options,
      strict: true,
      allowPositionals: false,
      tokens: true,
    });
    values = parsed.values;
    rejectRepeatedFlags(parsed.tokens); // as every other entry point: no silent last-wins
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new ConfigError((e as Error).message, { hint: "run with --help to see every flag" });
  }
  const preset = values.preset as string;
  if (!isLargePreset(preset)) throw new ConfigError(`--preset ${preset} is not a large preset`);
  const base = largePreset(preset);
  const cfg = { ...base, dataRoot: "", out: `runs/${preset}` } as LargeConfig;
  const set = cfg as unknown as Record<string, unknown>;
  for (const [f, d] of Object.entries(FLAGS)) {
    const v = values[f];
    if (v === undefined) continue;
    set[d.key] = parseValue(f, d.kind, v, d.values);
  }
  const maxEpochs = values["max-epochs"] === undefined
    ? undefined
    : parseValue("max-epochs", "int", values["max-epochs"]) as number;
  if (!values.help) validateLargeConfig(cfg);
  return { cfg, resume: values.resume === true, maxEpochs, help: values.help === true };
}

function parseValue(flag: string, kind: Kind, v: string | boolean, values?: string[]): unknown {
  if (kind === "bool") return v === true;
  const s = String(v);
  const bad = (what: string) =>
    new ConfigError(`--${flag}: expected ${what}, got "${s}"`, { flag: `--${flag}` });
  switch (kind) {
    case "string":
      return s;
    case "enum":
      if (!values!.includes(s)) throw bad(`one of ${values!.join(", ")}`);
      return s;
    case "int":
      if (!/^\d+$/.test(s)) throw bad("a non-negative integer");
      return Number(s);
    case "number":
    case "nullable-number":
      if (kind === "nullable-number" && s === "none") return null;
      if (!Number.isFinite(Number(s)) || s.trim() === "") throw bad("a number");
      return Number(s);
  }
}

/** Runs a large preset's command line; returns the exit status. */
export async function largeMain(args: string[]): Promise<number> {
  try {
    const parsed = parseLargeArgs(args);
    if (parsed.help) {
      console.log(largeUsage());
      return 0;
    }
    const summary = await trainLarge(parsed.cfg, {
      resume: parsed.resume,
      maxEpochs: parsed.maxEpochs,
    });
    return summary.status === "stopped" ? 1 : 0;
  } catch (e) {
    if (e instanceof GpuUnavailableError) {
      return reportError(new UserError(e.message, { cause: e }));
    }
    return reportError(e);
  }
}
