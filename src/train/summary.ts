/**
 * What a run records: one {@linkcode EpochRecord} per epoch (a line of metrics.jsonl) and the
 * {@linkcode RunSummary} (summary.json, and what {@linkcode train} returns). The record types
 * live with the report that reads them (src/report/summary.ts); this fixes their config type.
 */
import type { TrainConfig } from "./config.ts";
import type { PerClassMeta, RunRecord } from "../report/summary.ts";
import { META_STATS_FIELDS, MetaStat } from "./kernels.ts";

export type {
  EpochMetrics,
  EpochRecord,
  EpochTest,
  EvalMetrics,
  PerClassMeta,
} from "../report/summary.ts";

/** summary.json of a training run. */
export type RunSummary = RunRecord<TrainConfig>;

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
