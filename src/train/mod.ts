/**
 * The long-tail trainer: every weighting method as a client of the engine's fit loop, its
 * configuration and presets, evaluation, checkpoints with resume, metrics, summary and report.
 *
 * @example
 * ```ts
 * import { train } from "./src/train/mod.ts";
 * const summary = await train({ method: "meta", epochs: 2, maxPerClass: 20, out: "runs/try" });
 * console.log(summary.last?.top1Error);
 * ```
 *
 * @module
 */
export { ldamMargins, OUTPUT_FILES, resolveConfig, train } from "./trainer.ts";
export type { TrainOptions } from "./trainer.ts";
export * from "./config.ts";
export { phaseOf, usesDevSet } from "./methods.ts";
export type { Phase } from "./methods.ts";
export { balancedSubset, EpochRandom, fineTuneSubset, prepareData } from "./data.ts";
export type { RunData, SuppliedData } from "./data.ts";
export { evaluate } from "./eval.ts";
export { MetaWeightNet } from "./mwn.ts";
export type { MwnOptions } from "./mwn.ts";
export type { EpochMetrics, EpochRecord, EpochTest, PerClassMeta, RunSummary } from "./summary.ts";
export { parseTrainArgs, TRAIN_FLAGS, UsageError } from "./cli.ts";
export type { Flag, FlagKind, FlagSpec, ParsedArgs } from "./cli.ts";
export * from "./recipe.ts";
