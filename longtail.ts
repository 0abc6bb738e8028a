/**
 * The long-tail experiment of tailgrad, built on the engine of `./mod.ts`: every method of the
 * paper's comparison (class-balanced weights, focal, LDAM-DRW, L2RW, Meta-Weight-Net and the
 * meta-learned `w_y + eps_i`) as one client of the fit loop, its configuration, presets and
 * command line, long-tailed splits with balanced dev sets, and run reports.
 *
 * The large-scale runs (ImageNet-LT, Places-LT, iNaturalist 2017/2018 from JPEG files) have
 * their own entry point, {@linkcode trainLarge}, over a {@linkcode LargeConfig} that
 * {@linkcode largePreset} fills with a preset's settings; the list readers (`readList`,
 * `readInat`, `checkImages`, `listCounts`, `devSplit`) are exported here too.
 *
 * @example Train a model from a script
 * ```ts
 * import { train } from "./longtail.ts";
 * const summary = await train({ preset: "default", method: "meta", out: "runs/meta" });
 * console.log(summary.last?.top1Error);
 * ```
 *
 * @example A large-scale run
 * ```ts
 * import { largePreset, trainLarge } from "./longtail.ts";
 * const cfg = { ...largePreset("imagenet-lt"), dataRoot: "/data/imagenet", out: "runs/in-lt" };
 * const summary = await trainLarge(cfg, { resume: "if-any" });
 * console.log(summary.last?.top1Error);
 * ```
 *
 * @module
 */
export * from "./src/train/mod.ts";
export * from "./src/data/split.ts";
export * from "./src/data/weights.ts";
export * from "./src/data/sampler.ts";
export * from "./src/data/lists.ts";
export * from "./src/data/inat.ts";
export * from "./src/report/mod.ts";
export { LARGE_CHECKPOINT_FORMAT, trainLarge } from "./src/large/trainer.ts";
export type {
  LargeRunOptions,
  LargeStepInspector,
  LargeSummary,
  MetaStepTensors,
} from "./src/large/trainer.ts";
export {
  isLargePreset,
  LARGE_PRESETS,
  largeLr,
  largePreset,
  validateLargeConfig,
} from "./src/large/config.ts";
export type { LargeConfig, LargePreset } from "./src/large/config.ts";
