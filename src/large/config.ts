/**
 * Settings of the large-scale long-tailed runs (ImageNet-LT, Places-LT, iNaturalist 2017/2018):
 * the presets with the paper's settings, and their validation. Where the paper is silent (the
 * number of epochs; when the iNaturalist meta stage starts) the choice is said in the preset.
 */
import { ConfigError } from "../errors.ts";
import { scaleEpoch } from "../train/config.ts";
import { TORCHVISION_DEPTHS, type TorchvisionDepth } from "../nn/torchvision.ts";

/** The large presets. */
export const LARGE_PRESETS = ["imagenet-lt", "places-lt", "inat2017", "inat2018"] as const;
/** A large preset name. */
export type LargePreset = typeof LARGE_PRESETS[number];

/** Whether `name` is a large preset. */
export function isLargePreset(name: unknown): name is LargePreset {
  return (LARGE_PRESETS as readonly unknown[]).includes(name);
}

/** Every setting of a large run. */
export interface LargeConfig {
  /** The preset (dataset layout and paper settings). */
  preset: LargePreset;
  /** Dataset name shown in reports (the preset). */
  dataset: string;
  /** Folder the list / annotation files and image paths are relative to. */
  dataRoot: string;
  /** Training list or annotation file (default: the layout's, inside dataRoot). */
  trainList: string | null;
  /** Evaluation list or annotation file (default: the layout's `evalSplit` file). */
  evalList: string | null;
  /** "val" or "test" (iNaturalist has only "val"). */
  evalSplit: "val" | "test";
  /** Always "meta": CE first, then w_y + eps. */
  method: "meta";
  /** n_max / n_min of the training list (filled in from the data; reports show it). */
  imbalance: number;
  /** torchvision ResNet depth. */
  depth: TorchvisionDepth;
  /** Channels of the first stage (64 = torchvision; smaller for tests). */
  width: number;
  /** torchvision checkpoint (safetensors) to start from, or null (from scratch). */
  pretrained: string | null;
  /** Training epochs. */
  epochs: number;
  /** Batch size. */
  batch: number;
  /** Initial learning rate. */
  lr: number;
  /** Multiply the lr by `lrDecay` every this many epochs (null: never). */
  lrDecayEvery: number | null;
  /** Decay factor. */
  lrDecay: number;
  /** First epoch of the meta stage (epochs before it: cross-entropy). */
  metaStart: number;
  /** Learning rate of the meta stage (null: the schedule's); also the look-ahead's eta. */
  metaLr: number | null;
  /** Parameters of the meta step: "all" or "classifier" (fc only). */
  metaParams: "all" | "classifier";
  /** Freeze the backbone in the meta stage (with metaParams "classifier"). */
  freezeBackbone: boolean;
  /** eps = -tau * d L_dev / d eps. */
  tau: number;
  /** Effective-number beta of the class weights w_y. */
  beta: number;
  /** Balanced dev set images per class, taken from the training list first. */
  devPerClass: number;
  /** Crop side (224). */
  size: number;
  /** Shorter side before the evaluation centre crop (256). */
  resize: number;
  /** SGD momentum. */
  momentum: number;
  /** L2 weight decay. */
  weightDecay: number;
  /** Seed of init, dev split, order and crops. */
  seed: number;
  /** Decode worker threads (null: cores - 1). */
  workers: number | null;
  /** Output folder. */
  out: string;
  /** Evaluate every this many epochs (and at the last). */
  evalEvery: number;
}

const BASE = {
  dataset: "",
  trainList: null,
  evalList: null,
  method: "meta",
  imbalance: 1,
  width: 64,
  pretrained: null,
  lrDecay: 0.1,
  metaLr: null,
  metaParams: "all",
  freezeBackbone: false,
  tau: 1,
  beta: 0.9999,
  devPerClass: 1,
  size: 224,
  resize: 256,
  momentum: 0.9,
  weightDecay: 5e-4,
  seed: 0,
  workers: null,
  evalEvery: 1,
} as const;

/**
 * The presets. ImageNet-LT: ResNet-10 from scratch (the OLTR setting; `--depth 50` for
 * ResNet-50), lr 0.1 x0.1 every 35 epochs, batch 64, meta stage from the first decay, 90 epochs.
 * Places-LT: ResNet-152 from ImageNet weights, lr 0.01 x0.1 every 10 epochs, meta from the first
 * decay, 30 epochs. iNaturalist: ResNet-50 from ImageNet weights, batch 64, lr 0.01, meta stage
 * at lr 0.001 (the paper does not say when: here the last third of 90 epochs).
 */
export function largePreset(preset: LargePreset): Omit<LargeConfig, "dataRoot" | "out"> {
  switch (preset) {
    case "imagenet-lt":
      return {
        ...BASE,
        preset,
        dataset: preset,
        evalSplit: "test",
        depth: 10,
        epochs: 90,
        batch: 64,
        lr: 0.1,
        lrDecayEvery: 35,
        metaStart: 35,
      };
    case "places-lt":
      return {
        ...BASE,
        preset,
        dataset: preset,
        evalSplit: "test",
        depth: 152,
        epochs: 30,
        batch: 64,
        lr: 0.01,
        lrDecayEvery: 10,
        metaStart: 10,
        metaParams: "classifier",
      };
    case "inat2017":
    case "inat2018":
      return {
        ...BASE,
        preset,
        dataset: preset,
        evalSplit: "val",
        depth: 50,
        epochs: 90,
        batch: 64,
        lr: 0.01,
        lrDecayEvery: null,
        metaStart: 60,
        metaLr: 0.001,
      };
  }
}

/** Settings a command line gives over a preset; what it leaves out is the preset's. */
export type LargeOverrides = Partial<Omit<LargeConfig, "preset">>;

/**
 * The settings of a large run: `preset`'s (out: runs/<preset>), then `overrides` (not
 * validated: {@linkcode validateLargeConfig}). The schedule follows the run's length as the small
 * presets' does (src/train/config.ts): when `epochs` differs from the preset's and `metaStart` or
 * `lrDecayEvery` is not given, it keeps the preset's fraction of the run, floor(epoch * epochs /
 * presetEpochs), the decay interval at least 1 epoch. Values given are kept as they are.
 */
export function resolveLargeConfig(preset: LargePreset, overrides: LargeOverrides): LargeConfig {
  const base = largePreset(preset);
  const cfg: LargeConfig = { ...base, dataRoot: "", out: `runs/${preset}`, ...overrides, preset };
  const E = cfg.epochs;
  if (Number.isInteger(E) && E >= 1 && E !== base.epochs) {
    if (overrides.metaStart === undefined) {
      cfg.metaStart = scaleEpoch(base.metaStart, base.epochs, E);
    }
    if (overrides.lrDecayEvery === undefined && base.lrDecayEvery !== null) {
      cfg.lrDecayEvery = Math.max(1, scaleEpoch(base.lrDecayEvery, base.epochs, E));
    }
  }
  return cfg;
}

/** Learning rate of `epoch`: the step schedule, or `metaLr` in the meta stage when set. */
export function largeLr(cfg: LargeConfig, epoch: number): number {
  if (epoch >= cfg.metaStart && cfg.metaLr !== null) return cfg.metaLr;
  const decays = cfg.lrDecayEvery === null ? 0 : Math.floor(epoch / cfg.lrDecayEvery);
  return cfg.lr * Math.pow(cfg.lrDecay, decays);
}

/** Throws the {@linkcode ConfigError} of a bad setting: the flag, what is wrong, what to do. */
type Bad = (flag: string, msg: string, hint: string) => never;

const bad: Bad = (flag, msg, hint) => {
  throw new ConfigError(`--${flag}: ${msg}`, { flag: `--${flag}`, exitCode: 2, hint });
};

/** ", or leave it out for <preset>'s <value>" (nothing when the preset does not set `key`). */
function orDefault(c: LargeConfig, key: keyof LargeConfig): string {
  if (!isLargePreset(c.preset)) return "";
  const preset: Record<string, unknown> = largePreset(c.preset);
  if (!(key in preset)) return "";
  if (key === "metaStart" || key === "lrDecayEvery") {
    return preset[key] === null
      ? `, or leave it out for ${c.preset}'s none`
      : `, or leave it out for ${c.preset}'s fraction of the run`;
  }
  return `, or leave it out for ${c.preset}'s ${preset[key]}`;
}

/** The most epochs a run may have (the presets have 30 to 90). */
const MAX_EPOCHS = 100_000;

/** The most decode workers a run may start (each is a thread with its own decoder). */
const MAX_WORKERS = 256;

/** Throws a {@linkcode ConfigError} naming the first bad setting and what to pass instead. */
export function validateLargeConfig(c: LargeConfig): void {
  if (!c.dataRoot) {
    bad(
      "data-root",
      "the dataset folder is required",
      "pass --data-root DIR, the folder holding the preset's list or annotation files and the " +
        'images (README: "Laying out the datasets")',
    );
  }
  if (!(TORCHVISION_DEPTHS as readonly number[]).includes(c.depth)) {
    bad(
      "depth",
      `expected one of ${TORCHVISION_DEPTHS.join(", ")}, got ${c.depth}`,
      `pass one of those depths${orDefault(c, "depth")}`,
    );
  }
  checkCounts(c);
  checkRates(c);
  checkSchedule(c);
  if (c.freezeBackbone && c.metaParams !== "classifier") {
    bad(
      "freeze-backbone",
      "needs --meta-params classifier",
      "add --meta-params classifier, or drop --freeze-backbone",
    );
  }
  if (c.preset.startsWith("inat") && c.evalSplit === "test") {
    bad(
      "eval-split",
      "iNaturalist's test annotations are not public; use val",
      "pass --eval-split val, or leave it out",
    );
  }
}

/** Sizes, counts, the seed and the decode threads: integers in range. */
function checkCounts(c: LargeConfig): void {
  const posInt = (flag: string, key: keyof LargeConfig) => {
    const v = c[key];
    if (!(Number.isInteger(v) && (v as number) >= 1)) {
      bad(
        flag,
        `expected a positive integer, got ${v}`,
        `pass --${flag} N >= 1${orDefault(c, key)}`,
      );
    }
  };
  posInt("epochs", "epochs");
  // as the small datasets' trainer: a runaway count (a typo) is refused, not started
  if (c.epochs > MAX_EPOCHS) {
    bad(
      "epochs",
      `expected at most ${MAX_EPOCHS}, got ${c.epochs}`,
      `pass --epochs from 1 to ${MAX_EPOCHS}${orDefault(c, "epochs")}`,
    );
  }
  posInt("batch", "batch");
  posInt("width", "width");
  posInt("dev-per-class", "devPerClass");
  posInt("size", "size");
  posInt("eval-every", "evalEvery");
  if (c.resize < c.size) {
    bad(
      "resize",
      `must be at least --size ${c.size}, got ${c.resize}`,
      `pass --resize >= ${c.size}, or a smaller --size`,
    );
  }
  if (!(Number.isInteger(c.seed) && c.seed >= 0 && c.seed <= 0xffffffff)) {
    bad(
      "seed",
      `expected an integer in [0, 4294967295], got ${c.seed}`,
      `pass --seed in [0, 4294967295]${orDefault(c, "seed")}`,
    );
  }
  // --workers 9999 started 9999 decode workers and hung before the first log line
  const okWorkers = Number.isInteger(c.workers) && c.workers! >= 0 && c.workers! <= MAX_WORKERS;
  if (c.workers !== null && !okWorkers) {
    bad(
      "workers",
      `expected an integer in [0, ${MAX_WORKERS}] (0: decode on the main thread) or none, ` +
        `got ${c.workers}`,
      `pass --workers from 0 to ${MAX_WORKERS} (at most the cores: more only add memory), or ` +
        "none for all cores but one",
    );
  }
}

/** Learning rates and the other real-valued settings: finite numbers in their ranges. */
function checkRates(c: LargeConfig): void {
  const num = (flag: string, key: keyof LargeConfig, ok: (x: number) => boolean, range: string) => {
    const v = c[key];
    if (typeof v !== "number" || !Number.isFinite(v) || !ok(v)) {
      bad(
        flag,
        `expected a number ${range}, got ${v}`,
        `pass --${flag} ${range}${orDefault(c, key)}`,
      );
    }
  };
  num("lr", "lr", (x) => x > 0, "> 0");
  if (c.metaLr !== null) num("meta-lr", "metaLr", (x) => x > 0, "> 0");
  num("momentum", "momentum", (x) => x >= 0 && x < 1, "in [0, 1)");
  num("weight-decay", "weightDecay", (x) => x >= 0, ">= 0");
  num("tau", "tau", (x) => x >= 0, ">= 0");
  num("beta", "beta", (x) => x >= 0 && x < 1, "in [0, 1)");
  // no flag sets the decay factor (x0.1); a program's config may
  if (!(Number.isFinite(c.lrDecay) && c.lrDecay > 0)) {
    throw new ConfigError(`lrDecay: expected a number > 0, got ${c.lrDecay}`, {
      hint: "set lrDecay > 0 (the presets' 0.1)",
    });
  }
}

/** The meta stage's start and the decay interval: whole epochs (the run's length: no meta). */
function checkSchedule(c: LargeConfig): void {
  if (!(Number.isInteger(c.metaStart) && c.metaStart >= 0 && c.metaStart <= c.epochs)) {
    bad(
      "meta-start",
      `expected an epoch in [0, ${c.epochs}] (${c.epochs}: no meta stage), got ${c.metaStart}`,
      `pass a --meta-start from 0 to ${c.epochs}${orDefault(c, "metaStart")}, or more --epochs`,
    );
  }
  if (c.lrDecayEvery !== null && !(Number.isInteger(c.lrDecayEvery) && c.lrDecayEvery >= 1)) {
    bad(
      "lr-decay-every",
      `expected a whole number of epochs >= 1, or none (never decay), got ${c.lrDecayEvery}`,
      `pass --lr-decay-every N >= 1, or none for a constant learning rate` +
        orDefault(c, "lrDecayEvery"),
    );
  }
}
