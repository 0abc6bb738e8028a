/**
 * The long-tail trainer: every method of {@linkcode phaseOf} as one client of the engine's fit
 * loop (src/engine/fit.ts), with evaluation, checkpoints at every epoch end, resume, metrics,
 * summary and report (src/train/run.ts).
 *
 * Reproducibility: all randomness of an epoch comes from generators derived from
 * (seed, epoch) ({@linkcode EpochRandom}), GPU kernels are deterministic, and a checkpoint holds
 * the complete state at an epoch end (parameters, BN buffers, momentum, meta-learned class
 * weights, the Meta-Weight-Net and its Adam state, history and statistics), so a run killed at
 * any point and resumed ends bit-for-bit where an uninterrupted run ends.
 */
import { join } from "node:path";
import { Gpu } from "../gpu/runtime.ts";
import { readCheckpoint, removeStaleTemps, type SafetensorsFile } from "../checkpoint/mod.ts";
import { fit, stopMessage } from "../engine/fit.ts";
import { Progress, type ProgressSink, stdoutSink } from "../engine/progress.ts";
import {
  ConfigError,
  presetConfig,
  type PresetName,
  resolveTrainConfig,
  type TrainConfig,
  validateConfig,
} from "./config.ts";
import { fineTuneSubset, prepareData, type SuppliedData } from "./data.ts";
import { checkBatchFits, checkEpochSteps, LongTailRun, OUTPUT_FILES } from "./run.ts";
import { phaseOf } from "./methods.ts";
import type { RunSummary } from "./summary.ts";
import {
  checkOutDir,
  checkResumeData,
  checkResumeMetadata,
  completedRunLine,
  completedSummary,
  requireCheckpoint,
} from "./validate.ts";
import { openFork } from "./fork.ts";

export { ldamMargins, OUTPUT_FILES } from "./run.ts";

/** Options of {@linkcode train}: any settings (over a preset), plus how to run. */
export interface TrainOptions extends Partial<TrainConfig> {
  /** Base settings; default "default". */
  preset?: PresetName;
  /**
   * Continue from the checkpoint in `out`: `true` requires one (an error naming --resume when
   * there is none, unless `initFrom` gives a fork to start); "if-any" continues it when there is
   * one and starts the run otherwise (jobs that rerun killed runs, as scripts/reproduce.ts).
   */
  resume?: boolean | "if-any";
  /** Train/test data in memory instead of loading `dataset`. */
  data?: SuppliedData;
  /** Progress output; default stdout (a bar on a terminal); null for silence. */
  progress?: ProgressSink | null;
  /** Seconds between plain progress lines when stdout is not a terminal; default 20. */
  progressInterval?: number;
  /** A GPU to use (kept open); default: acquire one and dispose it at the end. */
  gpu?: Gpu;
  /**
   * Train at most this many epochs in this call, then return (status "running"); a later call
   * with `resume` continues. For time-boxed jobs.
   */
  maxEpochs?: number;
  /**
   * Stop once this many epochs are done (checkpointed), e.g. `metaStart` for a shared stage-1
   * run that others fork (`initFrom`); status "running". Default: the whole run.
   */
  untilEpoch?: number;
}

/** What to do about an unreadable checkpoint in --out. */
const OUT_CHECKPOINT_HINT = "move the file away, or choose another --out to start a new run";

/** The format tag of the trainer's checkpoints. */
export const CHECKPOINT_FORMAT = "tailgrad-train-checkpoint/1";
/** Settings that may differ between a run and its resumption. */
const RESUME_FREE: (keyof TrainConfig)[] = ["dataDir", "download", "out"];
const CONFIG_KEYS = Object.keys(presetConfig("default")) as (keyof TrainConfig)[];

/** The settings of a run from a preset and overrides (validated; see resolveTrainConfig). */
export function resolveConfig(options: TrainOptions = {}): TrainConfig {
  return resolveTrainConfig(options);
}

/**
 * Trains a model and returns the run's summary (also written to `out/summary.json`). A
 * non-finite loss stops the run: the summary then has status "stopped" and `nonFinite` set, and
 * the checkpoint of the last good epoch is kept. Resuming a completed run returns its summary
 * as it is, without training or rewriting any file.
 */
export async function train(options: TrainOptions = {}): Promise<RunSummary> {
  const sink = options.progress === undefined ? stdoutSink() : options.progress;
  const progress = new Progress(sink ?? { line() {} }, options.progressInterval ?? 20);
  const log = (msg: string) => progress.line(msg);
  // every check before the GPU is acquired or a file written
  const { cfg, ckpt, forking, done } = await openResume(resolveConfig(options), options, log);
  const data = await prepareData(cfg, options.data, log);
  const finetunes = Array.from(
    { length: cfg.epochs },
    (_, e) => phaseOf(cfg.method, e, cfg.metaStart),
  )
    .some((p) => p.images === "balanced-subset");
  checkEpochSteps(cfg, [
    { label: "the long-tailed training set", count: data.trainIndices.length },
    ...(finetunes
      ? [{ label: "the fine-tuning subset", count: fineTuneSubset(data, cfg.seed).length }]
      : []),
  ]);
  checkBatchFits(cfg, data.trainIndices.length);
  const ckptPath = join(cfg.out, OUTPUT_FILES.checkpoint);
  if (ckpt) {
    checkResumeData(ckpt, forking ?? ckptPath, cfg, data, forking ? "--init-from" : "--resume");
  }
  if (done) {
    // checked like any resume (settings, data), then left as it is
    log(completedRunLine(cfg.out, done.epochsDone));
    return done;
  }
  await Deno.mkdir(cfg.out, { recursive: true });
  await removeStaleTemps(ckptPath);
  const gpu = options.gpu ?? await Gpu.create();
  let run: LongTailRun | null = null;
  try {
    run = new LongTailRun(gpu, cfg, data);
    run.log = log;
    run.forking = forking;
    const from = ckpt ? Number(ckpt.metadata.epoch) : 0;
    const until = Math.max(0, (options.untilEpoch ?? Infinity) - from);
    return await runLongTail(run, ckpt, progress, Math.min(options.maxEpochs ?? Infinity, until));
  } finally {
    run?.destroy();
    if (!options.gpu) gpu.dispose();
  }
}

/**
 * The checkpoint a run continues from, and the settings it continues with: the checkpoint's,
 * with only the settings of {@linkcode RESUME_FREE} taken from `options`. Refuses to overwrite a
 * run without `resume`, a file that is not a training checkpoint, and conflicting settings.
 * Without a checkpoint of its own, a run with `initFrom` starts from that checkpoint (a fork,
 * checked by src/train/fork.ts); `forking` is then its path.
 */
async function openResume(
  fresh: TrainConfig,
  options: TrainOptions,
  log: (msg: string) => void,
): Promise<{
  cfg: TrainConfig;
  ckpt: SafetensorsFile | null;
  forking: string | null;
  done?: RunSummary;
}> {
  const ckptPath = join(fresh.out, OUTPUT_FILES.checkpoint);
  await checkOutDir(fresh.out, OUTPUT_FILES.checkpoint);
  if (options.resume === true && fresh.initFrom === null) {
    await requireCheckpoint(fresh.out, OUTPUT_FILES.checkpoint);
  }
  const ckpt = await readCheckpoint(ckptPath, { hint: OUT_CHECKPOINT_HINT });
  if (ckpt && !options.resume) {
    throw new ConfigError(`--out ${fresh.out} already holds a run (${OUTPUT_FILES.checkpoint})`, {
      flag: "--out",
      file: ckptPath,
      hint: "pass --resume to continue it, or choose another --out",
    });
  }
  if (!ckpt && fresh.initFrom !== null) {
    const parent = await openFork(fresh, CHECKPOINT_FORMAT);
    log(`forking ${fresh.initFrom} after epoch ${parent.metadata.epoch} into ${fresh.out}`);
    return { cfg: fresh, ckpt: parent, forking: fresh.initFrom };
  }
  if (!ckpt) {
    if (options.resume === "if-any") log(`no checkpoint in ${fresh.out}: starting the run`);
    return { cfg: fresh, ckpt: null, forking: null };
  }
  const saved = checkResumeMetadata(ckpt, ckptPath, CHECKPOINT_FORMAT).config;
  const conflicts = CONFIG_KEYS.filter((k) =>
    !RESUME_FREE.includes(k) && options[k] !== undefined &&
    JSON.stringify(options[k]) !== JSON.stringify(saved[k])
  );
  if (options.preset !== undefined && options.preset !== saved.preset) conflicts.push("preset");
  if (conflicts.length) {
    const flags = conflicts.map((k) => `--${kebab(k)}`).join(", ");
    const values = conflicts.map((k) => `${kebab(k)}=${JSON.stringify(saved[k])}`).join(", ");
    throw new ConfigError(`--resume: ${flags} differ from the checkpoint's settings (${values})`, {
      flag: "--resume",
      file: ckptPath,
      hint: "drop them to continue the run, or choose another --out for a new run",
    });
  }
  const cfg = { ...saved, dataDir: options.dataDir ?? saved.dataDir, out: fresh.out };
  if (options.download !== undefined) cfg.download = options.download;
  validateConfig(cfg);
  const done = await completedSummary<RunSummary>(
    join(cfg.out, OUTPUT_FILES.summary),
    cfg.epochs,
    ckpt,
  );
  if (done) return { cfg, ckpt, forking: null, done };
  log(`resuming ${cfg.out} after epoch ${ckpt.metadata.epoch} (${ckpt.metadata.steps} steps)`);
  return { cfg, ckpt, forking: null };
}

function kebab(k: string): string {
  return k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** The epochs of a run through the fit loop, and its final summary. */
async function runLongTail(
  run: LongTailRun,
  ckpt: SafetensorsFile | null,
  progress: Progress,
  maxEpochs: number,
): Promise<RunSummary> {
  const { cfg, data, gpu } = run;
  run.log(
    `tailgrad: ${cfg.method} (${run.lossName}) on ${cfg.dataset} ` +
      `IF ${cfg.imbalance}, ${cfg.model}, ${cfg.epochs} epochs (stage 2 from ${cfg.metaStart}), ` +
      `batch ${cfg.batch}`,
  );
  run.log(
    `  data: ${data.source}; train ${data.trainIndices.length} [${data.trainCounts.join(", ")}], ` +
      `dev ${data.devIndices.length}, test ${data.testIndices.length}; adapter: ` +
      gpu.adapter.description,
  );
  const result = await fit({
    engine: run.parts.engine,
    data: run.source,
    epochs: cfg.epochs,
    lr: (epoch, step) => run.lr(epoch, step),
    evaluate: (epoch) => run.evaluate(epoch),
    evalEvery: cfg.evalEvery,
    checkpoint: { path: join(cfg.out, OUTPUT_FILES.checkpoint), format: CHECKPOINT_FORMAT },
    resume: ckpt,
    maxEpochs,
    progress,
    hooks: run.hooks(),
  });
  if (result.status === "stopped") {
    const message = stopMessage(result);
    run.log(`stopped: ${message}`);
    return await run.writeOutputs("stopped", {
      message,
      nonFinite: result.nonFinite,
      finalClassWeights: null,
    });
  }
  if (result.status === "running") return await run.summary("running");
  const final = run.completed ?? await run.writeOutputs("completed");
  const pct = (v: number | undefined) => (100 * (v ?? NaN)).toFixed(2);
  run.log(
    `done: ${final.epochsDone} epochs in ${(final.wallSeconds / 60).toFixed(1)} min; last ` +
      `top-1 error ${pct(final.last?.top1Error)}%, best ${pct(final.best?.top1Error)}% (epoch ` +
      `${(final.best?.epoch ?? -1) + 1}); outputs in ${cfg.out}`,
  );
  return final;
}
