/**
 * Command-line flags of `deno task train`: parsing into {@linkcode TrainOptions} with errors
 * that list the valid flags or values (the script prints them without a stack trace).
 */
import { DATASET_NAMES } from "../data/dataset.ts";
import {
  DEV_LOSSES,
  LOOKAHEADS,
  LOSSES,
  type LossName,
  type Method,
  methodLoss,
  METHODS,
  methodTakesLoss,
  MODELS,
  presetConfig,
  PRESETS,
  type TrainConfig,
} from "./config.ts";
import type { TrainOptions } from "./trainer.ts";
import {
  BIAS_INITS,
  CLASSIFIER_INITS,
  FOCAL_FORMS,
  LAST_BATCHES,
  LR_SCHEDULES,
  MWN_RECIPES,
  RECIPES,
  REDUCTIONS,
  WARMUPS,
} from "./recipe.ts";
import { type FlagSpec, parseFlags, shownValue, UsageError, usageLines } from "../cli/flags.ts";
import { LARGE_PRESETS } from "../large/config.ts";
import { LARGE_FLAGS } from "../large/cli.ts";

/** How one flag of `deno task train` parses and the {@linkcode TrainOptions} field it sets. */
export type Flag = FlagSpec<keyof TrainOptions | "help">;
export type { FlagKind, FlagSpec } from "../cli/flags.ts";
export { rejectRepeatedFlags, UsageError } from "../cli/flags.ts";

/** Every flag: name -> how it parses and what it does. */
export const TRAIN_FLAGS: Record<string, Flag> = {
  "preset": {
    key: "preset",
    kind: "enum",
    values: PRESETS,
    help: "base settings: default (the main job and the grid's small scale: long-tailed " +
      "Fashion-MNIST, 200 head-class images, ResNet-8, 15 epochs: about 3 min on a 2-core " +
      "software adapter), medium (1000 head-class images, 30 epochs, final figures on the " +
      "whole test set: about 30 min for ce) or paper-cifar (the paper's CIFAR-10-LT recipe: " +
      "ResNet-32, 200 epochs); flags override. The large presets " +
      `${LARGE_PRESETS.join(", ")} train torchvision ResNets on JPEG lists with flags of ` +
      "their own (--data-root DIR, ...; --preset NAME --help lists them)",
    expected: `one of ${PRESETS.join(", ")}, or a large preset: ${LARGE_PRESETS.join(", ")} ` +
      "(with --data-root DIR)",
  },
  "dataset": { key: "dataset", kind: "enum", values: DATASET_NAMES, help: "dataset" },
  "data-dir": {
    key: "dataDir",
    kind: "string",
    help: "folder holding the dataset (or its subfolder named after it); the only place " +
      "looked in when given. Without it: $TAILGRAD_DATA/<dataset>, else ./data/<dataset>, " +
      "then system copies (/usr/share/datasets/fashion-mnist)",
  },
  "download": {
    key: "download",
    kind: "bool",
    help: "download the dataset if absent, verified against pinned SHA-256s (--no-download " +
      "to forbid)",
  },
  "imbalance": { key: "imbalance", kind: "number", help: "imbalance factor n_max/n_min (>= 1)" },
  "max-per-class": {
    key: "maxPerClass",
    kind: "int",
    nullable: true,
    help: "cap on the head class's training images (none: no cap)",
  },
  "dev-per-class": { key: "devPerClass", kind: "int", help: "balanced dev images per class" },
  "test-per-class": {
    key: "testPerClass",
    kind: "int",
    nullable: true,
    help: "balanced test subset, first k per class (none: whole test set)",
  },
  "method": { key: "method", kind: "enum", values: METHODS, help: "weighting method" },
  "loss": {
    key: "loss",
    kind: "enum",
    values: LOSSES,
    help: "loss of the meta family (meta, l2rw*, mwn, meta-update-wy, meta-eps0)",
  },
  "focal-gamma": { key: "focalGamma", kind: "number", help: "focal loss exponent" },
  "model": { key: "model", kind: "enum", values: MODELS, help: "CIFAR ResNet" },
  "epochs": {
    key: "epochs",
    kind: "int",
    help: "number of epochs; --meta-start and --lr-decay-epochs, when not given, keep the " +
      "preset's fractions of the run (floor(epoch * epochs / preset epochs))",
  },
  "meta-start": {
    key: "metaStart",
    kind: "int",
    help: "first epoch (from 0) of stage 2: meta steps, DRW, fine-tuning; below --epochs",
  },
  "batch": { key: "batch", kind: "int", help: "batch size" },
  "lr": { key: "lr", kind: "number", help: "initial learning rate" },
  "lr-decay-epochs": {
    key: "lrDecayEpochs",
    kind: "list",
    help: "epochs where the lr is multiplied by the decay factor, e.g. 160,180; below --epochs",
  },
  "lr-decay-factor": { key: "lrDecayFactor", kind: "number", help: "lr decay factor" },
  "momentum": { key: "momentum", kind: "number", help: "SGD momentum" },
  "nesterov": { key: "nesterov", kind: "bool", help: "Nesterov momentum (--no-nesterov: off)" },
  "weight-decay": { key: "weightDecay", kind: "number", help: "weight decay" },
  "beta": { key: "beta", kind: "number", help: "beta of the effective-number class weights" },
  "tau": { key: "tau", kind: "number", help: "eps = -tau * dL_dev/deps" },
  "lookahead": {
    key: "lookahead",
    kind: "enum",
    values: LOOKAHEADS,
    help: "look-ahead loss over the batch: sum (reference code) or mean (paper)",
  },
  // ---- the baselines' recipes (src/train/recipe.ts; README "Methods"): per-method defaults
  "recipe": {
    key: "recipe",
    kind: "enum",
    values: RECIPES,
    help: "shared: one batch, weight decay and Nesterov for every method; authors: LDAM's and " +
      "Cui's own (batch 128, weight decay 2e-4, no Nesterov) for ldam, ldam-drw, ce, cb, " +
      "focal, cb-focal (--batch, --weight-decay, --nesterov still override)",
  },
  "reduction": {
    key: "reduction",
    kind: "enum",
    values: REDUCTIONS,
    help: "normalisation of a plain step's weighted loss: mean (sum w l / B, Cui's and the " +
      "paper's) or weighted-mean (sum w l / sum w, LDAM-DRW's)",
    defaultText: "weighted-mean for ldam, ldam-drw; mean otherwise",
  },
  "focal-form": {
    key: "focalForm",
    kind: "enum",
    values: FOCAL_FORMS,
    help: "focal loss: sigmoid (Cui et al.: one sigmoid per class, the paper's focal rows) or " +
      "softmax (-(1 - p_y)^gamma log p_y); for focal, cb-focal and --loss focal",
    defaultText: "sigmoid",
  },
  "classifier-init": {
    key: "classifierInit",
    kind: "enum",
    values: CLASSIFIER_INITS,
    help: "class vectors of the cosine classifier (LDAM): unit-norm (LDAM's) or kaiming",
    defaultText: "unit-norm",
  },
  "bias-init": {
    key: "biasInit",
    kind: "enum",
    values: BIAS_INITS,
    help: "bias of the linear classifier: torch (PyTorch's U(-1/8, 1/8)), zero, or prior " +
      "(-log(C - 1), Cui's); with the sigmoid focal form the bias is also exempt from weight " +
      "decay",
    defaultText: "prior with the sigmoid focal form; torch otherwise",
  },
  "warmup-epochs": {
    key: "warmupEpochs",
    kind: "number",
    help: "learning-rate warm-up length in epochs (0: none; whole epochs for per-epoch)",
    defaultText: "5/200 of --epochs for ldam, ldam-drw, ce, cb, focal, cb-focal (5 at " +
      "paper-cifar, 0.375 at default; per-epoch rounded down), 0 otherwise",
  },
  "warmup": {
    key: "warmup",
    kind: "enum",
    values: WARMUPS,
    help: "warm-up shape: per-epoch (LDAM: lr (e + 1) / W in epoch e) or per-step (Cui: a " +
      "linear ramp from 0)",
    defaultText: "per-epoch for ldam, ldam-drw; per-step otherwise",
  },
  "last-batch": {
    key: "lastBatch",
    kind: "enum",
    values: LAST_BATCHES,
    help: "last batch of an epoch: partial (the N mod B images left, as PyTorch's loaders), " +
      "wrap (refilled from the epoch's start) or drop",
  },
  "lr-schedule": {
    key: "lrSchedule",
    kind: "enum",
    values: LR_SCHEDULES,
    help: "aligned: the optimiser's and the look-ahead's lr decay at --lr-decay-epochs; " +
      "reference: the optimiser's one epoch earlier, as the paper's released code",
  },
  "mwn-recipe": {
    key: "mwnRecipe",
    kind: "enum",
    values: MWN_RECIPES,
    help: "Meta-Weight-Net's step (mwn only): class-imbalance (its authors' long-tail code: " +
      "look-ahead sum V l / sum V through the loss input, VNet SGD lr 1e-5, momentum 0.9, " +
      "Nesterov, wd 5e-4) or noisy-label (mean look-ahead, detached loss, VNet Adam 1e-3)",
  },
  // ---- end of the recipe block
  "seed": { key: "seed", kind: "int", help: "seed of every random choice" },
  "eval-every": { key: "evalEvery", kind: "int", help: "evaluate every k epochs (and the last)" },
  "final-full-test": {
    key: "finalFullTest",
    kind: "bool",
    help: "after the last epoch, evaluate once on the whole test set (summary.json `final`; " +
      "--no-final-full-test: off)",
  },
  "dev-loss": {
    key: "devLoss",
    kind: "enum",
    values: DEV_LOSSES,
    help: "dev loss of the meta step: ce (cross-entropy on the logits the model predicts " +
      "with: s*cos for LDAM's cosine head), ce-raw (on the raw output: unscaled cosines), " +
      "train (the training loss, unweighted: LDAM margins, focal gamma)",
  },
  "init-from": {
    key: "initFrom",
    kind: "string",
    nullable: true,
    help: "start from another run's checkpoint.safetensors at its epoch (a fork, e.g. of a " +
      "shared stage 1): same data and seed, same recipe up to that epoch, epoch <= " +
      "--meta-start; the file is only read (none: from scratch)",
  },
  "out": {
    key: "out",
    kind: "string",
    help: "output folder (created if absent); `deno task train` may write only under runs/ " +
      "and data/",
  },
  "resume": { key: "resume", kind: "bool", help: "continue the run in --out from its checkpoint" },
  "help": { key: "help", kind: "bool", help: "show this help" },
};

/** The usage text, with each flag's default (and medium's and paper-cifar's, where they differ). */
export function usage(): string {
  const base = presetConfig("default");
  const others = (["medium", "paper-cifar"] as const).map((p) => [p, presetConfig(p)] as const);
  const lines = [
    "usage: deno task train [flags]",
    "",
    "Trains on a long-tailed dataset and writes metrics.jsonl, summary.json, " +
    "checkpoint.safetensors and report.html to --out.",
    "",
    "flags (default: the default preset's value; medium's and paper-cifar's where they differ):",
  ];
  lines.push(...usageLines(TRAIN_FLAGS, (_, f) => {
    if (f.key === "preset") return "default";
    if (f.key === "resume") return "off";
    if (f.key === "help" || !(f.key in base)) return undefined;
    const k = f.key as keyof TrainConfig;
    const a = shownValue(base[k]);
    const differ = others.filter(([, c]) => shownValue(c[k]) !== a).map(([p, c]) =>
      `; ${p}: ${shownValue(c[k])}`
    );
    return `${a}${differ.join("")}`;
  }));
  lines.push(
    "",
    `large presets: deno task train --preset ${LARGE_PRESETS.join("|")} --data-root DIR ` +
      "[flags]",
    "  (ImageNet-LT, Places-LT, iNaturalist 2017/2018 from their list or annotation files; " +
      "--preset NAME --help lists their flags and defaults)",
    "",
    "environment:",
    "  TAILGRAD_DATA   folder holding one subfolder per dataset (fashion-mnist/, mnist/, " +
      "cifar10/, cifar100/), used when --data-dir is not given",
    "  TAILGRAD_DEBUG  set to 1 to print the stack trace of an error",
    "",
    "exit status: 0 done, 1 failed (data, checkpoint, GPU, non-finite loss), 2 bad command line",
  );
  return lines.join("\n");
}

/** Parsed command line: options for {@linkcode train}, or a request for help. */
export interface ParsedArgs {
  /** True when --help was given. */
  help: boolean;
  /** The options the flags set; fields of flags not given are absent. */
  options: TrainOptions;
}

/** Parses flags; throws {@linkcode UsageError} with the valid flags or values. */
export function parseTrainArgs(args: string[]): ParsedArgs {
  rejectLargeOnlyFlags(args);
  // "all" reads as null too: --test-per-class all is the whole test set
  const { help, values } = parseFlags(args, TRAIN_FLAGS, { nullWords: ["none", "all"] });
  const opts = values as TrainOptions;
  if (opts.loss !== undefined && opts.method !== undefined && !methodTakesLoss(opts.method)) {
    const fixed = methodLoss(opts.method as Method, opts.loss as LossName);
    if (fixed !== opts.loss) {
      throw new UsageError(
        `--loss ${opts.loss} does not apply to --method ${opts.method} (it trains with ${fixed}); ` +
          `--loss applies to ${METHODS.filter(methodTakesLoss).join(", ")}`,
      );
    }
  }
  return { help, options: opts };
}

/**
 * A flag only the large presets take (--data-root, --depth, ...) given without one: named as
 * such, rather than as an unknown flag.
 */
function rejectLargeOnlyFlags(args: readonly string[]): void {
  for (const arg of args) {
    const name = /^--(?:no-)?([a-z][a-z-]*)/.exec(arg)?.[1];
    if (!name || name in TRAIN_FLAGS || !(name in LARGE_FLAGS)) continue;
    const presets = LARGE_PRESETS.join(", ");
    throw new UsageError(
      `--${name} needs one of the large presets (${presets}); without one, deno task train ` +
        "trains the small datasets (--dataset), which do not take it",
      {
        flag: `--${name}`,
        hint: `add --preset NAME (one of ${presets}) for a large run` +
          (name === "data-root" ? ", or give the small datasets' folder with --data-dir" : "") +
          "; --preset NAME --help lists a large preset's flags",
      },
    );
  }
}
