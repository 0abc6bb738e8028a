/**
 * What a run records: one {@linkcode EpochRecord} per epoch (a line of metrics.jsonl) and the
 * {@linkcode RunSummary} (summary.json, and what {@linkcode train} returns).
 */
import type { TrainConfig } from "./config.ts";
import type { EvalMetrics } from "./eval.ts";

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
  phase: "plain" | "meta" | "mwn";
  lr: number;
  /** Mean unweighted per-example training loss of the epoch. */
  trainLoss: number;
  steps: number;
  images: number;
  test: EpochTest | null;
  meta: PerClassMeta | null;
  timing: { seconds: number; imagesPerSecond: number };
}

/** Test metrics with the epoch they belong to. */
export type EpochMetrics = EvalMetrics & { epoch: number };

/** summary.json. */
export interface RunSummary {
  /** "completed", "stopped" (non-finite loss), or "running" (written during the run). */
  status: "completed" | "stopped" | "running";
  message?: string;
  config: TrainConfig;
  adapter: { description: string; isFallbackAdapter: boolean };
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
  epochsDone: number;
  steps: number;
  last: EpochMetrics | null;
  best: EpochMetrics | null;
  /** Per-class meta statistics over all meta epochs. */
  meta: PerClassMeta | null;
  /** Where a non-finite loss stopped the run. */
  nonFinite: { step: number; epoch: number; stepInEpoch: number } | null;
  /** Training wall time over all (resumed) segments, seconds. */
  wallSeconds: number;
}
