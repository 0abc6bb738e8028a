/**
 * What a run records: one {@linkcode EpochRecord} per epoch (a line of metrics.jsonl) and the
 * {@linkcode RunSummary} (summary.json, and what {@linkcode train} returns).
 */
import type { TrainConfig } from "./config.ts";
import type { EvalMetrics } from "../engine/metrics.ts";
import { META_STATS_FIELDS, MetaStat } from "./kernels.ts";

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
  /** Training images of the epoch (`steps * batch`). */
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

/** summary.json. */
export interface RunSummary {
  /** "completed", "stopped" (non-finite loss), or "running" (written during the run). */
  status: "completed" | "stopped" | "running";
  /** Why the run stopped (status "stopped" only). */
  message?: string;
  /** The resolved settings of the run. */
  config: TrainConfig;
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
  /** Per-class meta statistics over all meta epochs. */
  meta: PerClassMeta | null;
  /** Where a non-finite loss stopped the run. */
  nonFinite: { step: number; epoch: number; stepInEpoch: number } | null;
  /** Training wall time over all (resumed) segments, seconds. */
  wallSeconds: number;
}

/** Cumulative per-class sums of meta statistics (float64). */
export interface MetaSums {
  sumEps: number[];
  sumEpsOverW: number[];
  count: number[];
  min: number[];
  sumFinal: number[];
  /** Classes seen with w = 0 (eps / w undefined). */
  zeroW: boolean[];
  /** Whether eps exists (false for MWN). */
  hasEps: boolean;
}

/** Empty sums for C classes. */
export function emptySums(C: number, hasEps: boolean): MetaSums {
  return {
    sumEps: new Array(C).fill(0),
    sumEpsOverW: new Array(C).fill(0),
    count: new Array(C).fill(0),
    min: new Array(C).fill(Infinity),
    sumFinal: new Array(C).fill(0),
    zeroW: new Array(C).fill(false),
    hasEps,
  };
}

/** Adds `s` into `into`. */
export function addSums(into: MetaSums, s: MetaSums): void {
  for (let c = 0; c < into.count.length; c++) {
    into.sumEps[c] += s.sumEps[c];
    into.sumEpsOverW[c] += s.sumEpsOverW[c];
    into.count[c] += s.count[c];
    into.min[c] = Math.min(into.min[c], s.min[c]);
    into.sumFinal[c] += s.sumFinal[c];
    into.zeroW[c] ||= s.zeroW[c];
  }
  into.hasEps &&= s.hasEps;
}

/** Per-class means of the sums. */
export function perClassMeta(s: MetaSums): PerClassMeta {
  const C = s.count.length;
  const mean = (sum: number[], ok: (c: number) => boolean) =>
    Array.from({ length: C }, (_, c) => (s.count[c] > 0 && ok(c) ? sum[c] / s.count[c] : null));
  return {
    meanEps: mean(s.sumEps, () => s.hasEps),
    meanEpsOverW: mean(s.sumEpsOverW, (c) => s.hasEps && !s.zeroW[c]),
    minWPlusEps: Array.from(
      { length: C },
      (_, c) => (s.hasEps && s.count[c] > 0 && Number.isFinite(s.min[c]) ? s.min[c] : null),
    ),
    meanFinalWeight: mean(s.sumFinal, () => true),
    count: [...s.count],
  };
}

/** JSON form (checkpoint metadata; infinite minima as null). */
export function sumsToJson(s: MetaSums | null): unknown {
  if (!s) return null;
  return { ...s, min: s.min.map((v) => (Number.isFinite(v) ? v : null)) };
}

/** Inverse of {@linkcode sumsToJson}. */
export function sumsFromJson(j: unknown): MetaSums | null {
  if (!j) return null;
  const s = j as MetaSums & { min: (number | null)[] };
  return { ...s, min: s.min.map((v) => (v === null ? Infinity : v)) };
}

/** Sums of one epoch from the GPU meta statistics (src/train/kernels.ts layout). */
export function sumsFromStats(v: Float32Array, C: number, zeroW: boolean): MetaSums {
  const sums = emptySums(C, true);
  for (let c = 0; c < C; c++) {
    const b = c * META_STATS_FIELDS;
    sums.sumEps[c] = v[b + MetaStat.sumEps];
    sums.sumEpsOverW[c] = v[b + MetaStat.sumEpsOverW];
    sums.count[c] = v[b + MetaStat.count];
    sums.min[c] = v[b + MetaStat.count] > 0 ? v[b + MetaStat.minWPlusEps] : Infinity;
    sums.sumFinal[c] = v[b + MetaStat.sumFinal];
    sums.zeroW[c] = zeroW;
  }
  return sums;
}
