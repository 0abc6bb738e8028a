/**
 * `deno task train --preset imagenet-lt|places-lt|inat2017|inat2018 --data-root DIR [flags]`:
 * the large-scale runs' command line (scripts/train.ts routes these presets here).
 */
import { ConfigError, reportError } from "../errors.ts";
import { type FlagTable, parseFlags, shownValue, UsageError, usageLines } from "../cli/flags.ts";
import {
  isLargePreset,
  LARGE_PRESETS,
  type LargeConfig,
  type LargeOverrides,
  type LargePreset,
  largePreset,
  resolveLargeConfig,
  validateLargeConfig,
} from "./config.ts";
import { trainLarge } from "./trainer.ts";

/** The keys the flags set: config fields, and the run options of this call. */
type LargeKey = keyof LargeConfig | "resume" | "maxEpochs" | "help";

/** Every flag of a large run: name -> how it parses and the setting it sets. */
export const LARGE_FLAGS: FlagTable<LargeKey> = {
  "preset": { key: "preset", kind: "enum", values: LARGE_PRESETS, help: "dataset and settings" },
  "data-root": { key: "dataRoot", kind: "string", help: "folder of the list files and images" },
  "train-list": {
    key: "trainList",
    kind: "string",
    help: "training list / JSON",
    defaultText: "the layout's",
  },
  "eval-list": {
    key: "evalList",
    kind: "string",
    help: "evaluation list / JSON",
    defaultText: "the layout's",
  },
  "eval-split": {
    key: "evalSplit",
    kind: "enum",
    values: ["val", "test"],
    help: "evaluation split",
  },
  "depth": { key: "depth", kind: "int", help: "ResNet depth: 10, 18, 34, 50, 101, 152" },
  "width": { key: "width", kind: "int", help: "first-stage channels (64: torchvision)" },
  "pretrained": {
    key: "pretrained",
    kind: "string",
    nullable: true,
    help: "torchvision checkpoint (safetensors) to start from (none: from scratch)",
  },
  "epochs": { key: "epochs", kind: "int", help: "training epochs" },
  "batch": { key: "batch", kind: "int", help: "batch size" },
  "lr": { key: "lr", kind: "number", help: "initial learning rate" },
  "lr-decay-every": {
    key: "lrDecayEvery",
    kind: "number",
    nullable: true,
    help: "x0.1 every N epochs (none: never)",
  },
  "meta-start": {
    key: "metaStart",
    kind: "int",
    help: "first epoch of the meta stage",
  },
  "meta-lr": {
    key: "metaLr",
    kind: "number",
    nullable: true,
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
  "size": { key: "size", kind: "int", help: "crop side" },
  "resize": { key: "resize", kind: "int", help: "shorter side before the evaluation centre crop" },
  "momentum": { key: "momentum", kind: "number", help: "SGD momentum" },
  "weight-decay": { key: "weightDecay", kind: "number", help: "L2 weight decay" },
  "seed": { key: "seed", kind: "int", help: "seed" },
  "workers": {
    key: "workers",
    kind: "int",
    nullable: true,
    help: "JPEG decode threads (0: decode on the main thread; none: cores - 1)",
  },
  "out": { key: "out", kind: "string", help: "output folder" },
  "eval-every": { key: "evalEvery", kind: "int", help: "evaluate every N epochs" },
  "resume": { key: "resume", kind: "bool", help: "continue the run in --out" },
  "max-epochs": { key: "maxEpochs", kind: "int", help: "stop after N epochs in this call" },
  "help": { key: "help", kind: "bool", help: "show this help" },
};

/** Whether `args` ask for a large preset (`--preset NAME` or `--preset=NAME`). */
export function wantsLargePreset(args: string[]): boolean {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--preset" && isLargePreset(args[i + 1])) return true;
    if (args[i].startsWith("--preset=") && isLargePreset(args[i].slice(9))) return true;
  }
  return false;
}

/** The usage text of the large presets, with `preset`'s defaults when given. */
export function largeUsage(preset?: LargePreset): string {
  const cfg: Record<string, unknown> | undefined = preset &&
    { ...largePreset(preset), out: `runs/${preset}` };
  const lines = usageLines(LARGE_FLAGS, (_, f) => {
    if (f.key === "resume") return "off";
    if (f.key === "preset" || f.key === "dataRoot" || !cfg || !(f.key in cfg)) return undefined;
    const v = cfg[f.key];
    if ((f.key === "metaStart" || f.key === "lrDecayEvery") && v !== null) {
      // the schedule follows --epochs (resolveLargeConfig)
      const scaled = `floor(${v} * epochs / ${cfg.epochs})`;
      const rule = f.key === "lrDecayEvery" ? `max(1, ${scaled})` : scaled;
      return `${v} of ${cfg.epochs} epochs; ${rule} at other --epochs`;
    }
    return shownValue(v);
  });
  return [
    `usage: deno task train --preset ${LARGE_PRESETS.join("|")} --data-root DIR [flags]`,
    "",
    `flags${preset ? ` (default: ${preset}'s value)` : ""}:`,
    ...lines,
  ].join("\n");
}

/** Parses a large run's command line into its config and run options. */
export function parseLargeArgs(
  args: string[],
): { cfg: LargeConfig; resume: boolean; maxEpochs?: number; help: boolean } {
  const { help, values } = parseFlags(args, LARGE_FLAGS);
  const { preset, resume, maxEpochs, ...settings } = values;
  if (!isLargePreset(preset)) {
    throw new UsageError(`--preset is required: one of ${LARGE_PRESETS.join(", ")}`, {
      flag: "--preset",
    });
  }
  const cfg = resolveLargeConfig(preset, settings as LargeOverrides);
  if (help) return { cfg, resume: false, help };
  validateLargeConfig(cfg);
  if (maxEpochs !== undefined && !((maxEpochs as number) >= 1)) {
    throw new ConfigError(`--max-epochs: expected a positive integer, got ${maxEpochs}`, {
      flag: "--max-epochs",
      hint: "pass --max-epochs N >= 1, or leave it out to train up to --epochs",
    });
  }
  return { cfg, resume: resume === true, maxEpochs: maxEpochs as number | undefined, help };
}

/** Runs a large preset's command line; returns the exit status. */
export async function largeMain(args: string[]): Promise<number> {
  try {
    const parsed = parseLargeArgs(args);
    if (parsed.help) {
      console.log(largeUsage(parsed.cfg.preset));
      return 0;
    }
    const summary = await trainLarge(parsed.cfg, {
      resume: parsed.resume,
      maxEpochs: parsed.maxEpochs,
    });
    return summary.status === "stopped" ? 1 : 0;
  } catch (e) {
    return reportError(e); // a missing GPU (GpuUnavailableError) is a UserError: one line
  }
}
