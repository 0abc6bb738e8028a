/**
 * The engine over the ops: a step of any model and loss ({@linkcode StepEngine}), the meta
 * re-weighting of its per-example losses ({@linkcode MetaReweighter}), a training loop with
 * checkpoints and resume ({@linkcode fit}), in-memory data ({@linkcode ArraySource}),
 * classification metrics and progress output.
 *
 * @module
 */
export { StepEngine } from "./step.ts";
export type { LossFn, SeedRule, StepEngineOptions } from "./step.ts";
export { crossEntropy, isHeadSplit, MetaReweighter } from "./meta.ts";
export type {
  HeadSplit,
  MetaOptions,
  MetaReweighterOptions,
  MetaStepResult,
  MetaWeightRule,
} from "./meta.ts";
export { fit } from "./fit.ts";
export type {
  CheckpointExtra,
  DataSource,
  EpochBatches,
  EpochEnd,
  FitHooks,
  FitOptions,
  FitRate,
  FitResult,
  FitRunOptions,
  NonFiniteAt,
  StepKind,
} from "./fit.ts";
export { ArraySource } from "./data.ts";
export type { ArraySourceOptions } from "./data.ts";
export {
  evaluateClassifier,
  MetricAccumulator,
  metricsFromJson,
  SHOT_THRESHOLDS,
  shotGroups,
  withShots,
} from "./metrics.ts";
export type { EvalMetrics, ShotGroups } from "./metrics.ts";
export {
  canonicalConfusion,
  checkConfusion,
  confusionClasses,
  confusionRowTotals,
  DENSE_CONFUSION_CLASSES,
  denseConfusion,
  isSparseConfusion,
  recordedConfusion,
  sparseConfusion,
} from "./confusion.ts";
export type { Confusion, SparseConfusion } from "./confusion.ts";
export { formatDuration, Progress, stdoutSink } from "./progress.ts";
export type { ProgressSink } from "./progress.ts";
