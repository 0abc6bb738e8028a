/**
 * What a run records and a report reads: one {@linkcode EpochRecord} per epoch (a line of
 * metrics.jsonl) and the {@linkcode RunRecord} (summary.json). Plain data types over the
 * trainer's config type, so a report depends on these and not on the trainer
 * (src/train/summary.ts fixes the config type).
 */

import type { EvalMetrics } from "../engine/metrics.ts";
export type { EvalMetrics };

/** Per-class statistics of the meta weights over a set of meta steps (null: no example). */
export interface PerClassMeta {
  /** Mean eps_i over the examples of the class. */
  meanEps: (number | null)[];
  /** Mean eps_i / w_y (null where w_y = 0). */
  meanEpsOverW: (number | null)[];
  /** Minimum of w_y + eps_i. */
  minWPlusEps: (number | null)[];
  /** Mean final weight (w + eps for the paper's rule; normalised for L2RW; MWN's output). */
  meanFinalWeight: (number | null)[];
  /** Examples seen. */
  count: number[];
}

/** Test metrics of an epoch in metrics.jsonl (the confusion matrix lives in the summary). */
export type EpochTest = Omit<EvalMetrics, "confusion">;

/** One epoch: a line of metrics.jsonl. Fields under `timing` vary between identical runs. */
export interface EpochRecord {
  /** 0-based epoch index. */
  epoch: number;
  /** Step kind of the epoch. */
  phase: "plain" | "meta" | "mwn";
  /** Learning rate of the epoch. */
  lr: number;
  /** Mean unweighted per-example training loss of the epoch. */
  trainLoss: number;
  /** Training steps of the epoch. */
  steps: number;
  /** Training images of the epoch: rows trained on (with --last-batch wrap, its refill twice). */
  images: number;
  /** Test metrics, or null when the epoch was not evaluated. */
  test: EpochTest | null;
  /** Per-class meta statistics of the epoch's meta or MWN steps; null for plain epochs. */
  meta: PerClassMeta | null;
  /** Wall time of the epoch in seconds, and training images per second. */
  timing: { seconds: number; imagesPerSecond: number };
}

/** Test metrics with the epoch they belong to. */
export type EpochMetrics = EvalMetrics & { epoch: number };

/**
 * The settings of a run a report shows by name; the report lists every other field of the
 * config as it is.
 */
export interface RunConfigBase {
  /** Dataset name. */
  dataset: string;
  /** Imbalance factor of the training split. */
  imbalance: number;
  /** Weighting method. */
  method: string;
  /** Number of training epochs. */
  epochs: number;
}

/** summary.json, over the config type of the trainer that wrote it. */
export interface RunRecord<Config extends RunConfigBase = RunConfigBase> {
  /** "completed", "stopped" (non-finite loss), or "running" (written during the run). */
  status: "completed" | "stopped" | "running";
  /** Why the run stopped (status "stopped" only). */
  message?: string;
  /** The resolved settings of the run. */
  config: Config;
  /** The GPU adapter the run used. */
  adapter: { description: string; isFallbackAdapter: boolean };
  /** The data of the run: source, image shape `[C, H, W]`, split sizes and per-class counts. */
  data: {
    source: string;
    numClasses: number;
    image: number[];
    nMax: number;
    trainCounts: number[];
    devCounts: number[];
    testCounts: number[];
    trainTotal: number;
    testTotal: number;
  };
  /** Effective-number class weights w_y (sum C). */
  classWeights: number[];
  /** LDAM margins, when the loss is LDAM. */
  margins: number[] | null;
  /** The meta-learned class weights at the end (meta-update-wy). */
  finalClassWeights: number[] | null;
  /** Epochs completed so far. */
  epochsDone: number;
  /** Training steps completed so far, over all epochs. */
  steps: number;
  /** Metrics of the most recent evaluation, or null before the first. */
  last: EpochMetrics | null;
  /** Metrics of the evaluation with the lowest top-1 error, or null before the first. */
  best: EpochMetrics | null;
  /**
   * The evaluation on the whole test set after the last epoch (with `finalFullTest`; null
   * before it or without it; absent in summaries written before it existed).
   */
  final?: EpochMetrics | null;
  /**
   * The checkpoint a forked run started from (`initFrom`): its path, epoch and wall seconds
   * (included in `wallSeconds`); null for a run trained from scratch.
   */
  initFrom?: { checkpoint: string; epoch: number; wallSeconds: number } | null;
  /** Per-class meta statistics over all meta epochs. */
  meta: PerClassMeta | null;
  /** Where a non-finite loss stopped the run. */
  nonFinite: { step: number; epoch: number; stepInEpoch: number } | null;
  /** Training wall time over all (resumed) segments, seconds. */
  wallSeconds: number;
}
