/**
 * What a run records: one {@linkcode EpochRecord} per epoch (a line of metrics.jsonl) and the
 * {@linkcode RunSummary} (summary.json, and what {@linkcode train} returns). The record types
 * live with the report that reads them (src/report/summary.ts); this fixes their config type.
 */
import type { TrainConfig } from "./config.ts";
import type { RunRecord } from "../report/summary.ts";

export type {
  EpochMetrics,
  EpochRecord,
  EpochTest,
  EvalMetrics,
  PerClassMeta,
} from "../report/summary.ts";

/** summary.json of a training run. */
export type RunSummary = RunRecord<TrainConfig>;
