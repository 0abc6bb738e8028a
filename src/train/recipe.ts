/**
 * The baselines' recipes as their authors run them (README, "Methods"): the settings where
 * an author's released code departs from the shared recipe, each a named option with a
 * per-method default that an explicit setting overrides, and the learning rate they give.
 *
 * | setting          | values                          | default                                  |
 * |------------------|---------------------------------|------------------------------------------|
 * | `reduction`      | mean, weighted-mean             | weighted-mean for ldam, ldam-drw; mean   |
 * | `focalForm`      | sigmoid, softmax                | sigmoid (Cui et al.'s focal loss)        |
 * | `classifierInit` | unit-norm, kaiming              | unit-norm (cosine classifier)            |
 * | `biasInit`       | torch, zero, prior              | prior with the sigmoid form; torch       |
 * | `warmupEpochs`   | a number of epochs >= 0         | 5/200 of the run for LDAM's and Cui's    |
 * | `warmup`         | per-epoch, per-step             | per-epoch for LDAM, per-step otherwise   |
 * | `recipe`         | shared, authors                 | shared                                   |
 * | `lastBatch`      | partial, wrap, drop             | partial                                  |
 * | `lrSchedule`     | aligned, reference              | aligned                                  |
 * | `mwnRecipe`      | noisy-label, class-imbalance    | class-imbalance (mwn only)               |
 */
import { ConfigError } from "../errors.ts";
import type { ConfigOverrides, LossName, TrainConfig } from "./config.ts";
import { phaseOf } from "./methods.ts";

/** Normalisations of a plain step's weighted loss: sum w l / B, or sum w l / sum w. */
export const REDUCTIONS = ["mean", "weighted-mean"] as const;
/** Forms of the focal loss: Cui et al.'s per-class sigmoids, or one softmax. */
export const FOCAL_FORMS = ["sigmoid", "softmax"] as const;
/** Initial class vectors of the cosine classifier. */
export const CLASSIFIER_INITS = ["unit-norm", "kaiming"] as const;
/** Initial bias of the linear classifier. */
export const BIAS_INITS = ["torch", "zero", "prior"] as const;
/** How the learning-rate warm-up rises: a staircase per epoch, or a ramp per step. */
export const WARMUPS = ["per-epoch", "per-step"] as const;
/** Batch size, weight decay and Nesterov: one recipe for every method, or each author's. */
export const RECIPES = ["shared", "authors"] as const;
/** The last batch of an epoch when the batch does not divide the images. */
export const LAST_BATCHES = ["partial", "wrap", "drop"] as const;
/** When the optimiser's lr decays relative to the look-ahead's. */
export const LR_SCHEDULES = ["aligned", "reference"] as const;
/**
 * Meta-Weight-Net's step (src/train/mwn.ts): the noisy-label code's (mean look-ahead, detached
 * loss input, Adam) or the class-imbalance code's (sum-normalised look-ahead through the loss
 * input, VNet SGD 1e-5).
 */
export const MWN_RECIPES = ["noisy-label", "class-imbalance"] as const;

/** The settings of {@linkcode RECIPE_OPTIONS} (part of every TrainConfig). */
export interface RecipeConfig {
  /** Normalisation of a plain step's weighted loss: "mean" (/ B) or "weighted-mean" (/ sum w). */
  reduction: typeof REDUCTIONS[number];
  /** Focal loss form: "sigmoid" (Cui et al.) or "softmax". */
  focalForm: typeof FOCAL_FORMS[number];
  /** Initial class vectors of the cosine classifier (LDAM): "unit-norm" or "kaiming". */
  classifierInit: typeof CLASSIFIER_INITS[number];
  /** Initial bias of the linear classifier: "torch" (U(+-1/8)), "zero" or "prior" (-log(C-1)). */
  biasInit: typeof BIAS_INITS[number];
  /** Learning-rate warm-up length in epochs, >= 0 (0: none; an integer for "per-epoch"). */
  warmupEpochs: number;
  /** Warm-up shape: "per-epoch" (LDAM: lr (e + 1) / W) or "per-step" (Cui: a ramp from 0). */
  warmup: typeof WARMUPS[number];
  /** "shared" (one recipe for every method) or "authors" (LDAM's and Cui's batch, wd, Nesterov). */
  recipe: typeof RECIPES[number];
  /** The epoch's last batch: "partial" (N mod B images), "wrap" (refilled from the start), "drop". */
  lastBatch: typeof LAST_BATCHES[number];
  /** "aligned" (both lrs decay at the decay epochs) or "reference" (the optimiser one epoch early). */
  lrSchedule: typeof LR_SCHEDULES[number];
  /** Meta-Weight-Net's step: "noisy-label" (the hybrid before this option) or "class-imbalance". */
  mwnRecipe: typeof MWN_RECIPES[number];
}

/** Every recipe setting, with its flag and valid values (validation and --help). */
export const RECIPE_OPTIONS: Record<keyof RecipeConfig, readonly string[] | null> = {
  reduction: REDUCTIONS,
  focalForm: FOCAL_FORMS,
  classifierInit: CLASSIFIER_INITS,
  biasInit: BIAS_INITS,
  warmupEpochs: null,
  warmup: WARMUPS,
  recipe: RECIPES,
  lastBatch: LAST_BATCHES,
  lrSchedule: LR_SCHEDULES,
  mwnRecipe: MWN_RECIPES,
};

/**
 * What runs wrote before these settings existed: a checkpoint without them continues with
 * these, bit for bit as it started.
 */
export const LEGACY_RECIPE: RecipeConfig = {
  reduction: "mean",
  focalForm: "softmax",
  classifierInit: "kaiming",
  biasInit: "zero",
  warmupEpochs: 0,
  warmup: "per-step",
  recipe: "shared",
  lastBatch: "wrap",
  lrSchedule: "aligned",
  mwnRecipe: "noisy-label",
};

/** Methods trained with LDAM's recipe (kaidic/LDAM-DRW). */
const LDAM_METHODS = ["ldam", "ldam-drw"];
/** Methods whose paper rows come from Cui et al.'s code (richardaecn/class-balanced-loss). */
const CUI_METHODS = ["ce", "cb", "focal", "cb-focal"];
/** The authors' warm-up: 5 of their 200 epochs. */
const AUTHORS_WARMUP = 5 / 200;
/** LDAM's and Cui's optimiser and batch (cifar_train.py; cifar_main.py). */
const AUTHORS_OPTIMIZER = { batch: 128, weightDecay: 2e-4, nesterov: false };

/** Warm-up length: `fraction` of `epochs`, in whole epochs for the per-epoch staircase. */
function warmupLength(fraction: number, epochs: number, warmup: RecipeConfig["warmup"]): number {
  const length = fraction * epochs;
  return warmup === "per-epoch" ? Math.floor(length) : length;
}

/** Flag spelling of a setting name. */
function flagOf(key: string): string {
  return "--" + key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/**
 * Fills the recipe settings `given` leaves out with the method's defaults (see the module
 * comment; the warm-up keeps its fraction of the run as --epochs changes) and applies
 * `recipe: "authors"`. Returns those defaults: what the run takes for a recipe setting not
 * given ({@linkcode refuseNoEffect} compares an explicit setting with them).
 */
export function applyRecipeDefaults(
  cfg: TrainConfig,
  given: ConfigOverrides,
  loss: LossName,
): Partial<RecipeConfig> {
  const m = cfg.method;
  const defaults: Partial<RecipeConfig> = {};
  const recipe: RecipeConfig = cfg;
  const fill = <K extends keyof RecipeConfig>(key: K, value: RecipeConfig[K]) => {
    defaults[key] = value;
    recipe[key] = given[key] ?? value;
  };
  fill("reduction", LDAM_METHODS.includes(m) ? "weighted-mean" : "mean");
  fill("focalForm", "sigmoid");
  // MWN's long-tail results come from its class-imbalance code
  fill("mwnRecipe", "class-imbalance");
  fill("classifierInit", "unit-norm");
  fill("biasInit", loss === "focal" && cfg.focalForm === "sigmoid" ? "prior" : "torch");
  const authorsWarmup = LDAM_METHODS.includes(m) || CUI_METHODS.includes(m);
  fill("warmup", LDAM_METHODS.includes(m) ? "per-epoch" : "per-step");
  fill(
    "warmupEpochs",
    authorsWarmup && Number.isInteger(cfg.epochs)
      ? warmupLength(AUTHORS_WARMUP, cfg.epochs, cfg.warmup)
      : 0,
  );
  if (cfg.recipe === "authors" && authorsWarmup) {
    cfg.batch = given.batch ?? AUTHORS_OPTIMIZER.batch;
    cfg.weightDecay = given.weightDecay ?? AUTHORS_OPTIMIZER.weightDecay;
    cfg.nesterov = given.nesterov ?? AUTHORS_OPTIMIZER.nesterov;
  }
  return defaults;
}

/** The stage 1 of every two-stage method (plain, w = 1, all images: src/train/methods.ts). */
const SHARED_STAGE_ONE = JSON.stringify(phaseOf("meta", 0, 1));

/**
 * Refuses a setting given explicitly that the run of `cfg` (validated) never reads, naming the
 * flag, the method and why, with `to fix: drop --flag`. What a method reads follows from its two
 * stages (src/train/methods.ts `phaseOf`) and its `loss`: tau and the look-ahead only a meta
 * step, the dev loss a meta or MWN step, beta class-balanced weights, the focal settings the
 * focal loss, `metaStart` a stage 2.
 *
 * The rule, the same for the command line and the library: an explicit value is refused only
 * when it differs from every value in `taken`, what the run takes without it (the method's recipe
 * default; the preset's value, its schedule scaled to the run) and the preset's own value: those
 * ask for nothing the run drops, so options spread from a preset or a summary resolve. A setting
 * read indirectly is taken: `metaStart` bounds the epoch of an `--init-from` fork, and for ce,
 * focal and ldam, whose epochs are the two-stage methods' stage 1, it is where they share it
 * (scripts/reproduce.ts `stageOneOf`).
 */
export function refuseNoEffect(
  cfg: TrainConfig,
  given: ConfigOverrides,
  loss: LossName,
  taken: Partial<TrainConfig>[],
): void {
  const m = cfg.method;
  const noEffect = (key: keyof TrainConfig, why: string) => {
    const v = given[key];
    if (v === undefined || taken.some((t) => JSON.stringify(t[key]) === JSON.stringify(v))) {
      return;
    }
    throw new ConfigError(`${flagOf(key)} ${v} has no effect with --method ${m}: ${why}`, {
      flag: flagOf(key),
      hint: `drop ${flagOf(key)}`,
    });
  };
  if (loss !== "focal") noEffect("focalForm", `it trains with ${loss}, not the focal loss`);
  if (loss !== "focal") noEffect("focalGamma", `it trains with ${loss}, not the focal loss`);
  if (loss === "ldam") noEffect("biasInit", "its cosine classifier has no bias");
  if (loss !== "ldam") noEffect("classifierInit", "it has a linear classifier, not a cosine one");
  if (["l2rw", "mwn"].includes(m)) {
    noEffect("reduction", "it runs no plain step (its weights are normalised by its rule)");
  }
  if (m !== "mwn") noEffect("mwnRecipe", "it runs no Meta-Weight-Net step");
  if (cfg.warmupEpochs === 0) noEffect("warmup", "its warm-up is 0 epochs (see --warmup-epochs)");
  const stages = [phaseOf(m, 0, 1), phaseOf(m, 1, 1)];
  const kinds = new Set(stages.map((p) => p.kind));
  if (!kinds.has("meta")) {
    const why = kinds.has("mwn")
      ? "its Meta-Weight-Net step sets the look-ahead itself and has no eps to scale"
      : "it runs no meta step";
    noEffect("tau", why);
    noEffect("lookahead", why);
  }
  if (kinds.size === 1 && kinds.has("plain")) {
    noEffect("devLoss", "it runs no meta step, so it never takes a dev loss");
  }
  if (!stages.some((p) => p.weights === "cb")) {
    noEffect("beta", "it never uses the class-balanced weights");
  }
  const [one, two] = stages.map((p) => JSON.stringify(p));
  if (one === two && one !== SHARED_STAGE_ONE && cfg.initFrom === null) {
    noEffect(
      "metaStart",
      "it has no stage 2 (every epoch trains alike) and no stage 1 that a two-stage method shares",
    );
  }
}

/** Checks the recipe settings (called by validateConfig); throws ConfigError naming the flag. */
export function validateRecipe(c: TrainConfig): void {
  for (const [key, values] of Object.entries(RECIPE_OPTIONS)) {
    const v = c[key as keyof RecipeConfig];
    if (values && !values.includes(v as string)) {
      const valid = `one of ${values.join(", ")}`;
      throw new ConfigError(`invalid ${flagOf(key)} ${JSON.stringify(v)}: expected ${valid}`, {
        flag: flagOf(key),
        hint: `give ${flagOf(key)} ${valid}, or leave it out for the method's default`,
      });
    }
  }
  const w = c.warmupEpochs;
  if (typeof w !== "number" || !Number.isFinite(w) || w < 0 || w > c.epochs) {
    throw new ConfigError(
      `invalid --warmup-epochs ${
        JSON.stringify(w)
      }: expected a number in [0, --epochs ${c.epochs}]`,
      {
        flag: "--warmup-epochs",
        hint: "give --warmup-epochs within the run, or leave it out for the method's default",
      },
    );
  }
  if (c.warmup === "per-epoch" && !Number.isInteger(w)) {
    throw new ConfigError(
      `--warmup-epochs ${w} with --warmup per-epoch: the per-epoch staircase needs whole epochs`,
      { flag: "--warmup-epochs", hint: "give an integer, or --warmup per-step" },
    );
  }
}

/** The warm-up multiplier at step `step` (from 0) of `epoch` with `stepsPerEpoch` steps. */
export function warmupFactor(
  c: TrainConfig,
  epoch: number,
  step: number,
  stepsPerEpoch: number,
): number {
  const W = c.warmupEpochs;
  if (W === 0) return 1;
  // LDAM cifar_train.py: lr * epoch / 5 for the 1-based epochs 1..5
  if (c.warmup === "per-epoch") return epoch < W ? (epoch + 1) / W : 1;
  // Cui cifar_main.py: lr * (global step / steps per epoch) / 5, from 0
  const total = W * stepsPerEpoch;
  const at = epoch * stepsPerEpoch + step;
  return at < total ? at / total : 1;
}

/** lr * factor^(number of decay epochs <= epoch), before any warm-up. */
function decayed(c: TrainConfig, epoch: number): number {
  let lr = c.lr;
  for (const d of c.lrDecayEpochs) if (epoch >= d) lr *= c.lrDecayFactor;
  return lr;
}

/**
 * The optimiser's learning rate at step `step` of `epoch`: the decays (with
 * `lrSchedule: "reference"` those of the next epoch, as the paper's code calls
 * `adjust_learning_rate(epoch + 1)`), times the warm-up factor.
 */
export function optimizerLr(
  c: TrainConfig,
  epoch: number,
  step: number,
  stepsPerEpoch: number,
): number {
  const e = c.lrSchedule === "reference" ? epoch + 1 : epoch;
  return decayed(c, e) * warmupFactor(c, epoch, step, stepsPerEpoch);
}

/** The meta step's look-ahead learning rate eta: the decays of `epoch`, times the warm-up. */
export function lookaheadLr(
  c: TrainConfig,
  epoch: number,
  step: number,
  stepsPerEpoch: number,
): number {
  return decayed(c, epoch) * warmupFactor(c, epoch, step, stepsPerEpoch);
}
