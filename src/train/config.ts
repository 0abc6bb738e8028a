/**
 * Training configuration: every setting of a run, the presets, and validation with messages
 * that list what is valid (shared by the CLI and {@linkcode train}).
 */
import { DATASET_NAMES, type DatasetName } from "../data/dataset.ts";
import { ConfigError } from "../errors.ts";
import {
  applyRecipeDefaults,
  type RecipeConfig,
  refuseNoEffect,
  validateRecipe,
} from "./recipe.ts";

/** Invalid settings (defined with the other user errors; re-exported for the trainer's API). */
export { ConfigError };

/** Weighting methods (README, Methods): baselines, the paper's method, and its ablations. */
export const METHODS = [
  "ce",
  "cb",
  "focal",
  "cb-focal",
  "ldam",
  "ldam-drw",
  "cb-finetune",
  "l2rw",
  "mwn",
  "meta",
  "l2rw-pretrain",
  "l2rw-init-wy",
  "l2rw-wy-eps",
  "meta-update-wy",
  "meta-eps0",
] as const;
/** A weighting method. */
export type Method = typeof METHODS[number];

/** Loss families. */
export const LOSSES = ["ce", "focal", "ldam"] as const;
/** A loss family. */
export type LossName = typeof LOSSES[number];

/** Models: CIFAR ResNets of depth 6n+2. */
export const MODELS = [
  "resnet8",
  "resnet20",
  "resnet32",
  "resnet44",
  "resnet56",
  "resnet110",
] as const;
/** A model name. */
export type ModelName = typeof MODELS[number];

/** Look-ahead loss reductions. */
export const LOOKAHEADS = ["sum", "mean"] as const;

/**
 * Dev losses of the meta step: "ce", cross-entropy on the logits as the model predicts with
 * them (s * cos for the cosine head of LDAM, the plain logits otherwise); "ce-raw", cross-entropy
 * on the model's raw output (unscaled cosines for LDAM: the engine before this option); "train",
 * the training loss unweighted (LDAM with its scale and margins, focal with its gamma).
 */
export const DEV_LOSSES = ["ce", "ce-raw", "train"] as const;
/** A dev loss of the meta step. */
export type DevLossName = typeof DEV_LOSSES[number];

/** Presets: the main job (`default`, the `small` scale), `medium`, and the paper's recipe. */
export const PRESETS = ["default", "medium", "paper-cifar"] as const;
/** A preset name. */
export type PresetName = typeof PRESETS[number];

/**
 * Every setting of a training run; the baselines' recipe settings ({@linkcode RecipeConfig},
 * src/train/recipe.ts) get per-method defaults in {@linkcode resolveTrainConfig}.
 */
export interface TrainConfig extends RecipeConfig {
  /** The preset the other settings started from. */
  preset: PresetName;
  /** Dataset to train and test on. */
  dataset: DatasetName;
  /** Where to look for the dataset first (see src/data/load.ts); null: default search. */
  dataDir: string | null;
  /** Download the dataset when absent (needs network permission). */
  download: boolean;
  /** Imbalance factor n_max / n_min. */
  imbalance: number;
  /** Cap on n_max of the long-tailed split (small presets); null: no cap. */
  maxPerClass: number | null;
  /** Balanced dev images per class, held out before the long-tailed subsampling. */
  devPerClass: number;
  /** Balanced test subset: the first k test images of each class; null: the whole test set. */
  testPerClass: number | null;
  /** Weighting method. */
  method: Method;
  /** Loss of the meta family (meta, l2rw*, mwn, meta-update-wy, meta-eps0); fixed for others. */
  loss: LossName;
  /** Focal-loss exponent gamma, >= 0. */
  focalGamma: number;
  /** Network: a CIFAR ResNet. */
  model: ModelName;
  /** Number of training epochs, >= 1. */
  epochs: number;
  /** First epoch of stage 2 (meta steps, DRW, fine-tuning); >= epochs: never. */
  metaStart: number;
  /** Training batch size, >= 2. */
  batch: number;
  /** Initial learning rate, > 0. */
  lr: number;
  /** Increasing epochs at which the lr is multiplied by `lrDecayFactor` (see {@linkcode lrAt}). */
  lrDecayEpochs: number[];
  /** Learning-rate multiplier at each decay epoch, > 0. */
  lrDecayFactor: number;
  /** SGD momentum, in [0, 1). */
  momentum: number;
  /** Use Nesterov momentum. */
  nesterov: boolean;
  /** SGD weight decay, >= 0. */
  weightDecay: number;
  /** beta of the effective-number class weights. */
  beta: number;
  /** eps = -tau * d L_dev / d eps. */
  tau: number;
  /** Reduction of the look-ahead loss over the batch: "sum" (reference code) or "mean" (paper). */
  lookahead: "sum" | "mean";
  /** Seed of every random choice, an integer in [0, 2^32 - 1]. */
  seed: number;
  /** Evaluate every k epochs (and always after the last). */
  evalEvery: number;
  /**
   * After the last epoch, evaluate once more on the whole test set (summary.json `final`);
   * the per-epoch evaluations use the `testPerClass` subset.
   */
  finalFullTest: boolean;
  /** Dev loss of the meta step (see {@linkcode DEV_LOSSES}). */
  devLoss: DevLossName;
  /**
   * Start from another run's checkpoint at its epoch (a fork: same data, same recipe up to
   * that epoch, which is at most `metaStart`); null: from scratch. The file is only read.
   */
  initFrom: string | null;
  /** Output directory. */
  out: string;
}

/**
 * The default preset (the main job, and the `small` scale of the grid): a complete
 * pretrain-then-meta run on long-tailed Fashion-MNIST (IF 100) sized to finish
 * in about 3 minutes on a 2-core software WebGPU adapter (Mesa lavapipe):
 * at most 200 training images in the head class (492 in all, 2 in the tail), ResNet-8, batch
 * 100, 15 epochs with the paper's schedule shape (meta steps and the first lr decay x0.01 from
 * epoch 12 of 15 = 80%; the second decay at 14, about 90%), and a balanced 1000-image test
 * subset (the first 100 test images of each class), evaluated every epoch.
 */
const DEFAULT_PRESET: TrainConfig = {
  preset: "default",
  dataset: "fashion-mnist",
  dataDir: null,
  download: true,
  imbalance: 100,
  maxPerClass: 200,
  devPerClass: 10,
  testPerClass: 100,
  method: "meta",
  loss: "ce",
  focalGamma: 1,
  model: "resnet8",
  epochs: 15,
  metaStart: 12,
  batch: 100,
  lr: 0.1,
  lrDecayEpochs: [12, 14],
  lrDecayFactor: 0.01,
  momentum: 0.9,
  nesterov: true,
  weightDecay: 5e-4,
  beta: 0.9999,
  tau: 0.01,
  lookahead: "sum",
  seed: 0,
  evalEvery: 1,
  finalFullTest: false,
  devLoss: "ce",
  initFrom: null,
  out: "runs/default",
  // ---- the baselines' recipes (src/train/recipe.ts): the values for the preset's method
  // (meta); resolveTrainConfig fills in the defaults of the chosen method
  reduction: "mean",
  focalForm: "sigmoid",
  classifierInit: "unit-norm",
  biasInit: "torch",
  warmupEpochs: 0,
  warmup: "per-step",
  recipe: "shared",
  lastBatch: "partial",
  lrSchedule: "aligned",
  mwnRecipe: "class-imbalance",
};

/**
 * The `medium` scale: at most 1000 head-class images (2,478 in all at IF 100, 10 in the tail),
 * ResNet-8, batch 100, 30 epochs, stage 2 and the first lr decay (x0.01) at epoch 24, the
 * second at 27 (the paper's 160/180 of 200, scaled); per-epoch evaluation on the balanced
 * 1000-image subset, and the final figures on the whole 10,000-image test set.
 */
const MEDIUM_PRESET: TrainConfig = {
  ...DEFAULT_PRESET,
  preset: "medium",
  maxPerClass: 1000,
  epochs: 30,
  metaStart: 24,
  lrDecayEpochs: [24, 27],
  finalFullTest: true,
  out: "runs/medium",
};

/** The reference recipe of the paper on CIFAR-10-LT (README, Methods: the shared recipe). */
const PAPER_CIFAR: TrainConfig = {
  ...DEFAULT_PRESET,
  preset: "paper-cifar",
  dataset: "cifar10",
  maxPerClass: null,
  testPerClass: null,
  model: "resnet32",
  epochs: 200,
  metaStart: 160,
  lrDecayEpochs: [160, 180],
  out: "runs/paper-cifar",
};

const PRESET_CONFIGS: Record<PresetName, TrainConfig> = {
  "default": DEFAULT_PRESET,
  "medium": MEDIUM_PRESET,
  "paper-cifar": PAPER_CIFAR,
};

/** A copy of a preset's settings. */
export function presetConfig(name: PresetName): TrainConfig {
  const p = PRESET_CONFIGS[name];
  if (!p) {
    // an unknown name from a program (the command line checks its flags first)
    const valid = `one of ${list(PRESETS)}`;
    throw new ConfigError(`invalid --preset ${JSON.stringify(name)}: expected ${valid}`, {
      flag: "--preset",
      hint: settingHint("preset", valid),
    });
  }
  return { ...p, lrDecayEpochs: [...p.lrDecayEpochs] };
}

/** Depth of a model name. */
export function modelDepth(model: ModelName): number {
  return Number(model.slice("resnet".length));
}

/** The loss a method trains with (`loss` applies to the meta family only). */
export function methodLoss(method: Method, loss: LossName): LossName {
  switch (method) {
    case "ce":
    case "cb":
    case "cb-finetune":
      return "ce";
    case "focal":
    case "cb-focal":
      return "focal";
    case "ldam":
    case "ldam-drw":
      return "ldam";
    default:
      return loss;
  }
}

/** Whether `--loss` has an effect for a method. */
export function methodTakesLoss(method: Method): boolean {
  return !["ce", "cb", "cb-finetune", "focal", "cb-focal", "ldam", "ldam-drw"].includes(method);
}

const list = (xs: readonly string[]) => xs.join(", ");

/** What to do about an invalid setting: give a valid value, or leave the flag out. */
function settingHint(flag: string, valid: string): string {
  return `give --${flag} ${valid}, or leave it out for the preset's value (--help lists them)`;
}

/** The most epochs a run may have (the paper's longest is 200). */
const MAX_EPOCHS = 100_000;

/** Checks every setting; throws {@linkcode ConfigError} naming the setting and valid values. */
export function validateConfig(c: TrainConfig): void {
  const bad = (flag: string, value: unknown, valid: string) => {
    throw new ConfigError(`invalid --${flag} ${JSON.stringify(value)}: expected ${valid}`, {
      flag: `--${flag}`,
      hint: settingHint(flag, valid),
    });
  };
  const oneOf = (flag: string, v: string, xs: readonly string[]) => {
    if (!xs.includes(v)) bad(flag, v, `one of ${list(xs)}`);
  };
  const int = (flag: string, v: number, min: number) => {
    if (!Number.isInteger(v) || v < min) bad(flag, v, `an integer >= ${min}`);
  };
  const num = (flag: string, v: number, ok: (x: number) => boolean, valid: string) => {
    if (typeof v !== "number" || !Number.isFinite(v) || !ok(v)) bad(flag, v, valid);
  };
  oneOf("preset", c.preset, PRESETS);
  oneOf("dataset", c.dataset, DATASET_NAMES);
  oneOf("method", c.method, METHODS);
  oneOf("loss", c.loss, LOSSES);
  oneOf("model", c.model, MODELS);
  oneOf("lookahead", c.lookahead, LOOKAHEADS);
  oneOf("dev-loss", c.devLoss, DEV_LOSSES);
  num("imbalance", c.imbalance, (x) => x >= 1, "a number >= 1");
  if (c.maxPerClass !== null) int("max-per-class", c.maxPerClass, 1);
  int("dev-per-class", c.devPerClass, 1);
  if (c.testPerClass !== null) int("test-per-class", c.testPerClass, 1);
  num("focal-gamma", c.focalGamma, (x) => x >= 0, "a number >= 0");
  int("epochs", c.epochs, 1);
  // the trainer plans every epoch up front: a runaway count is refused, not a RangeError
  if (c.epochs > MAX_EPOCHS) bad("epochs", c.epochs, `an integer in [1, ${MAX_EPOCHS}]`);
  int("meta-start", c.metaStart, 0);
  int("batch", c.batch, 2);
  num("lr", c.lr, (x) => x > 0, "a positive number");
  for (const d of c.lrDecayEpochs) {
    if (!Number.isInteger(d) || d < 0) {
      bad("lr-decay-epochs", c.lrDecayEpochs.join(","), "comma-separated epochs (integers >= 0)");
    }
  }
  if (c.lrDecayEpochs.some((d, i) => i > 0 && d <= c.lrDecayEpochs[i - 1])) {
    bad("lr-decay-epochs", c.lrDecayEpochs.join(","), "increasing epochs, e.g. 160,180");
  }
  num("lr-decay-factor", c.lrDecayFactor, (x) => x > 0, "a positive number");
  num("momentum", c.momentum, (x) => x >= 0 && x < 1, "a number in [0, 1)");
  num("weight-decay", c.weightDecay, (x) => x >= 0, "a number >= 0");
  num("beta", c.beta, (x) => x >= 0 && x < 1, "a number in [0, 1)");
  num("tau", c.tau, (x) => x >= 0, "a number >= 0");
  if (!Number.isInteger(c.seed) || c.seed < 0 || c.seed > 0xffffffff) {
    bad("seed", c.seed, "an integer in [0, 4294967295]");
  }
  int("eval-every", c.evalEvery, 1);
  checkSchedule(c);
  validateRecipe(c);
  if (typeof c.out !== "string" || c.out === "") bad("out", c.out, "a directory path");
  if (typeof c.nesterov !== "boolean") bad("nesterov", c.nesterov, "true or false");
  if (typeof c.finalFullTest !== "boolean") {
    bad("final-full-test", c.finalFullTest, "true or false");
  }
  if (c.initFrom !== null && (typeof c.initFrom !== "string" || c.initFrom === "")) {
    bad("init-from", c.initFrom, "a checkpoint file path");
  }
}

/** Stage 2 and the lr decays must fall inside the run, or they would silently do nothing. */
function checkSchedule(c: TrainConfig): void {
  if (hasStage2(c.method) && c.metaStart >= c.epochs) {
    throw new ConfigError(
      `--meta-start ${c.metaStart} is not below --epochs ${c.epochs}: --method ${c.method} ` +
        `would never reach stage 2 (its meta steps, DRW or fine-tuning)`,
      {
        flag: "--meta-start",
        hint: `pass a --meta-start below ${c.epochs}, or leave it out to keep the preset's ` +
          `fraction of the run`,
      },
    );
  }
  const late = c.lrDecayEpochs.find((d) => d >= c.epochs);
  if (late !== undefined) {
    throw new ConfigError(
      `--lr-decay-epochs ${c.lrDecayEpochs.join(",")}: epoch ${late} is not below --epochs ` +
        `${c.epochs}, so that decay would never apply`,
      {
        flag: "--lr-decay-epochs",
        hint: `give decay epochs below ${c.epochs}, or leave the flag out to keep the preset's ` +
          `fractions of the run`,
      },
    );
  }
}

/** Settings a preset fills in and {@linkcode resolveTrainConfig} overrides. */
export type ConfigOverrides = Partial<TrainConfig>;

const CONFIG_KEYS = Object.keys(DEFAULT_PRESET) as (keyof TrainConfig)[];

/** An epoch of a preset's schedule moved to a run of `epochs`: the same fraction of the run. */
export function scaleEpoch(epoch: number, presetEpochs: number, epochs: number): number {
  return Math.floor((epoch * epochs) / presetEpochs);
}

/**
 * The settings of a run: a preset, then `overrides` (validated). The stage schedule follows the
 * run's length: when `epochs` differs from the preset's and `metaStart` or `lrDecayEpochs` is
 * not given, it keeps the preset's fractions of the run, floor(epoch * epochs / presetEpochs)
 * (the default preset: stage 2 and the first decay at 80% of the run, the second at 14/15;
 * paper-cifar: 80% and 90%). Explicit values are kept as given and must fall inside the run.
 * The recipe settings the overrides leave out take the method's defaults (src/train/recipe.ts;
 * the warm-up, a schedule point too, is a fraction of the run).
 *
 * An override the method cannot read (`tau` with `ce`, `beta` with `focal`, ...) is refused
 * unless it equals what the run takes without it or the preset's own value (src/train/recipe.ts
 * `refuseNoEffect`): the command line and {@linkcode train} follow the same rule.
 */
export function resolveTrainConfig(overrides: ConfigOverrides = {}): TrainConfig {
  const base = presetConfig(overrides.preset ?? "default");
  const cfg = presetConfig(base.preset);
  for (const k of CONFIG_KEYS) {
    const v = overrides[k];
    // deno-lint-ignore no-explicit-any
    if (v !== undefined && k !== "preset") (cfg as any)[k] = Array.isArray(v) ? [...v] : v;
  }
  // what the run takes for a setting not given: the preset's value, its schedule scaled
  const unset = presetConfig(base.preset);
  const E = cfg.epochs;
  if (Number.isInteger(E) && E >= 1 && E !== base.epochs) {
    unset.metaStart = scaleEpoch(base.metaStart, base.epochs, E);
    const scaled = base.lrDecayEpochs.map((d) => scaleEpoch(d, base.epochs, E));
    unset.lrDecayEpochs = [...new Set(scaled)].filter((d) => d < E);
  }
  if (overrides.metaStart === undefined) cfg.metaStart = unset.metaStart;
  if (overrides.lrDecayEpochs === undefined) cfg.lrDecayEpochs = [...unset.lrDecayEpochs];
  const loss = methodLoss(cfg.method, cfg.loss);
  const recipeDefaults = applyRecipeDefaults(cfg, overrides, loss);
  validateConfig(cfg);
  refuseNoEffect(cfg, overrides, loss, [{ ...unset, ...recipeDefaults }, base]);
  return cfg;
}

/** Whether a method changes at `metaStart` (stage 2: meta steps, DRW, fine-tuning). */
export function hasStage2(method: Method): boolean {
  return !["ce", "cb", "focal", "cb-focal", "ldam", "l2rw", "mwn"].includes(method);
}

/**
 * Learning rate of an epoch: lr * factor^(number of decay epochs <= epoch), before the warm-up
 * and the decay offset of `lrSchedule` (the trainer's rates: optimizerLr and lookaheadLr of
 * src/train/recipe.ts).
 */
export function lrAt(c: TrainConfig, epoch: number): number {
  let lr = c.lr;
  for (const d of c.lrDecayEpochs) if (epoch >= d) lr *= c.lrDecayFactor;
  return lr;
}
