/**
 * Checks a run makes before any work starts (before the GPU is acquired or a file is written):
 * the output folder ({@linkcode checkOutDir}) and, for `--resume`, the checkpoint's metadata
 * ({@linkcode checkResumeMetadata}), the data it was trained on and its tensors against the model
 * ({@linkcode checkResumeData}). Every failure is a {@linkcode UserError} naming the file or
 * flag, what was expected and what to do.
 */
import { join } from "node:path";
import { checkOutFolder, pathKind } from "../cli/flags.ts";
import { problemOf, UserError } from "../errors.ts";
import { ConfigError, methodLoss, modelDepth, type TrainConfig, validateConfig } from "./config.ts";
import type { SafeDType, SafetensorsFile } from "../checkpoint/safetensors.ts";
import { MOMENTUM_PREFIX } from "../checkpoint/checkpoint.ts";
import { resnetSpecs } from "../nn/resnet.ts";
import { MetaWeightNet } from "./mwn.ts";
import { LEGACY_RECIPE } from "./recipe.ts";
import { type EvalMetrics, metricsFromJson } from "../engine/metrics.ts";

/** The name of the meta step's class weights in a run's checkpoint. */
export const CLASS_WEIGHTS_KEY = "train.class_weights";

/** Output files of a run that a new run would overwrite. */
const RUN_OUTPUTS = ["metrics.jsonl", "summary.json", "report.html"];

function outError(message: string, hint: string, out: string): UserError {
  return new ConfigError(message, { flag: "--out", file: out, hint });
}

/**
 * Checks `--out` before a run: the process may write there, it is a folder (or absent, with no
 * file in the way of creating it), and it holds no run outputs without a checkpoint (files a
 * new run would overwrite). Writes nothing but a probe file of its own in an existing folder,
 * removed at once.
 */
export async function checkOutDir(out: string, checkpointName: string): Promise<void> {
  const exists = await checkOutFolder(out, {
    flag: "--out",
    purpose: "for the run's outputs (created if absent)",
    scopeHint: "the train task may write only under runs/ and data/: choose --out there (e.g. " +
      "runs/my-run), or run scripts/train.ts with a wider --allow-write",
  });
  // an absent folder is created later by the run itself (creating it proves it writable)
  if (!exists) return;
  const present = [];
  for (const f of RUN_OUTPUTS) if ((await pathKind(join(out, f))) !== "none") present.push(f);
  if (present.length && (await pathKind(join(out, checkpointName))) === "none") {
    throw outError(
      `--out ${out} holds ${present.join(", ")} but no ${checkpointName}: a new run would ` +
        `overwrite those files, and there is no checkpoint to resume`,
      "choose another --out, or move those files away",
      out,
    );
  }
  try {
    const probe = await Deno.makeTempFile({ dir: out, prefix: ".tailgrad-write-probe-" });
    await Deno.remove(probe);
  } catch (e) {
    throw outError(
      `--out ${out}: cannot write in it (${e instanceof Error ? e.message : e})`,
      "choose a writable --out, or fix the folder's permissions",
      out,
    );
  }
}

/**
 * What `--resume` needs: a checkpoint named `checkpointName` in `out`. Throws a
 * {@linkcode ConfigError} naming --resume and the folder when there is none (a run that should
 * start when there is nothing to continue asks for that explicitly: resume "if-any").
 */
export async function requireCheckpoint(out: string, checkpointName: string): Promise<void> {
  const path = join(out, checkpointName);
  if ((await pathKind(path)) !== "none") return;
  const why = { none: " (the folder does not exist)", file: " (it is a file)", dir: "" };
  throw new ConfigError(`--resume: ${out} holds no ${checkpointName}${why[await pathKind(out)]}`, {
    flag: "--resume",
    file: path,
    hint: "drop --resume to start a new run, or check --out",
  });
}

/**
 * The summary of a finished run (its summary file at `summaryPath`): its checkpoint holds all
 * `epochs` and the summary says "completed". Resuming it trains nothing and rewrites nothing.
 * Null when there is more to do, including a run killed between its last checkpoint and its
 * outputs (the resume writes them).
 */
export async function completedSummary<S extends { status: string; epochsDone: number }>(
  summaryPath: string,
  epochs: number,
  ckpt: SafetensorsFile,
): Promise<S | null> {
  if (Number(ckpt.metadata.epoch) < epochs) return null;
  let summary: S;
  try {
    summary = JSON.parse(await Deno.readTextFile(summaryPath));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof SyntaxError) return null;
    throw e;
  }
  return summary.status === "completed" && summary.epochsDone === epochs ? summary : null;
}

/** The line a trainer prints for a completed run it was asked to resume. */
export function completedRunLine(out: string, epochsDone: number): string {
  return `${out} holds a completed run (${epochsDone} of ${epochsDone} epochs): nothing ` +
    "to train, and its files are left as they are (choose another --out for a new run)";
}

/** The checked metadata of a training checkpoint. */
export interface CheckpointMeta {
  /** The run's settings as saved. */
  config: TrainConfig;
  /** Epochs completed, 1..config.epochs. */
  epoch: number;
  /** Steps taken. */
  steps: number;
}

function badCheckpoint(path: string, what: string, hint?: string): UserError {
  return new UserError(`checkpoint ${path}: ${what}`, {
    file: path,
    hint: hint ??
      "the file is damaged or was not written by tailgrad's trainer; move it away or choose " +
        "another --out to start a new run",
  });
}

function parseJson(path: string, m: Record<string, string>, key: string): unknown {
  if (m[key] === undefined) throw badCheckpoint(path, `metadata lacks "${key}"`);
  try {
    return JSON.parse(m[key]);
  } catch {
    throw badCheckpoint(path, `metadata "${key}" is not valid JSON`);
  }
}

/**
 * Checks the metrics a checkpoint's metadata holds under `keys` (JSON, null or metrics with a
 * confusion matrix in either form, src/engine/confusion.ts), so that restoring them cannot fail
 * once the run has started. "final" may be absent (checkpoints from before it); the others not.
 */
export function checkSavedMetrics(
  m: Record<string, string>,
  path: string,
  keys: readonly string[],
): void {
  for (const key of keys) {
    if (key === "final" && m[key] === undefined) continue;
    const v = parseJson(path, m, key);
    try {
      metricsFromJson(v as EvalMetrics | null);
    } catch (e) {
      throw badCheckpoint(path, `metadata "${key}": ${(e as Error).message}`);
    }
  }
}

/**
 * Checks a checkpoint's metadata: its format, a valid config (JSON, every setting valid),
 * epoch and step counts that are integers in range, and the JSON state a resume reads.
 */
export function checkResumeMetadata(
  ckpt: SafetensorsFile,
  path: string,
  format: string,
): CheckpointMeta {
  const m = ckpt.metadata;
  if (m.format !== format) {
    throw badCheckpoint(
      path,
      `not a tailgrad training checkpoint (format ${JSON.stringify(m.format ?? null)}, ` +
        `expected ${JSON.stringify(format)})`,
    );
  }
  const parsed = parseJson(path, m, "config");
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw badCheckpoint(path, `metadata "config" is not a JSON object`);
  }
  // a run saved before the recipe settings existed continues with the recipe it ran, and
  // settings added later take the behaviour it was trained with
  const config: Partial<TrainConfig> = { ...LEGACY_RECIPE, ...parsed };
  config.finalFullTest ??= false;
  config.devLoss ??= "ce-raw";
  config.initFrom ??= null;
  try {
    validateConfig(config as TrainConfig);
  } catch (e) {
    throw badCheckpoint(path, `its saved config is invalid: ${problemOf(e)}`);
  }
  const cfg = config as TrainConfig;
  const int = (key: string, min: number, max: number) => {
    const v = m[key];
    if (v === undefined || !/^[0-9]+$/.test(v) || Number(v) < min || Number(v) > max) {
      throw badCheckpoint(
        path,
        `metadata "${key}" is ${JSON.stringify(v ?? null)}, expected an integer in ` +
          `[${min}, ${max}]`,
      );
    }
    return Number(v);
  };
  const epoch = int("epoch", 1, cfg.epochs);
  const steps = int("steps", 0, Number.MAX_SAFE_INTEGER);
  const history = parseJson(path, m, "history");
  if (!Array.isArray(history) || history.length !== epoch) {
    throw badCheckpoint(path, `metadata "history" does not hold ${epoch} epoch records`);
  }
  const rng = parseJson(path, m, "rng") as Record<string, unknown> | null;
  if (!rng || ["shuffle", "augment", "dev"].some((k) => !rng[k])) {
    throw badCheckpoint(path, `metadata "rng" lacks the generator states`);
  }
  parseJson(path, m, "meta_sums");
  checkSavedMetrics(m, path, ["last", "best", "final"]);
  const wall = Number(m.wall_seconds ?? 0);
  if (!Number.isFinite(wall) || wall < 0) {
    throw badCheckpoint(path, `metadata "wall_seconds" is not a time in seconds`);
  }
  return { config: cfg, epoch, steps };
}

/** Fingerprints of the data a run trains on (see src/data/validate.ts). */
export interface DataFingerprints {
  /** SHA-256 of the training split. */
  train: string;
  /** SHA-256 of the test split. */
  test: string;
}

/** What {@linkcode checkResumeData} compares with the checkpoint. */
export interface ResumeData {
  /** Fingerprints of the data this run would read. */
  fingerprints: DataFingerprints;
  /** Where that data comes from, for messages. */
  source: string;
  /** Image shape [channels, height, width]. */
  image: readonly number[];
  /** Number of classes. */
  numClasses: number;
}

/**
 * Checks that a checkpoint was trained on the same data this run reads (the fingerprints it
 * recorded) and holds exactly the tensors of this run's model and optimizer state: every name,
 * dtype and shape, none missing and none extra.
 */
export function checkResumeData(
  ckpt: SafetensorsFile,
  path: string,
  cfg: TrainConfig,
  data: ResumeData,
  flag: "--resume" | "--init-from" | "--checkpoint" = "--resume",
): void {
  const raw = ckpt.metadata.data_fingerprint;
  if (raw === undefined) {
    throw badCheckpoint(
      path,
      "it was written by an earlier version of tailgrad that did not record which data it was " +
        "trained on, so resuming it on this data cannot be checked",
      "start a new run (choose another --out); the checkpoint still loads in PyTorch",
    );
  }
  let saved: DataFingerprints;
  try {
    saved = JSON.parse(raw);
  } catch {
    throw badCheckpoint(path, `metadata "data_fingerprint" is not valid JSON`);
  }
  for (const split of ["train", "test"] as const) {
    if (saved?.[split] !== data.fingerprints[split]) {
      throw new UserError(
        `${flag}: checkpoint ${path} was trained on other data: the ${split} split it ` +
          `recorded has fingerprint ${
            String(saved?.[split]).slice(0, 16)
          }..., but ${data.source} ` +
          `gives ${data.fingerprints[split].slice(0, 16)}...`,
        {
          file: path,
          flag,
          hint: OTHER_DATA_HINT[flag],
        },
      );
    }
  }
  checkTensors(ckpt, path, expectedTensors(cfg, data), cfg.model);
}

/** What to do about a checkpoint trained on other data, by the flag that gave it. */
const OTHER_DATA_HINT = {
  "--resume": "resume with the data of the original run (its --data-dir), or choose another " +
    "--out to start a new run on this data",
  "--init-from": "fork with the data of the original run (its --data-dir), or choose another " +
    "--out to start a new run on this data",
  "--checkpoint": "pass --data-dir with the data the run was trained on",
};

/** name -> "DTYPE [shape]" of every tensor a checkpoint of this run holds. */
export function expectedTensors(cfg: TrainConfig, data: ResumeData): Map<string, string> {
  const modelCfg = {
    depth: modelDepth(cfg.model),
    inChannels: data.image[0],
    numClasses: data.numClasses,
    cosine: methodLoss(cfg.method, cfg.loss) === "ldam",
  };
  const specs = resnetSpecs(modelCfg);
  const out = new Map<string, string>();
  const put = (name: string, dtype: SafeDType, shape: readonly number[]) =>
    out.set(name, `${dtype} [${shape.join(", ")}]`);
  for (const s of specs.params) {
    put(s.name, "F32", s.shape);
    put(MOMENTUM_PREFIX + s.name, "F32", s.shape);
  }
  for (const s of specs.buffers) {
    put(s.name, "F32", s.shape);
    if (s.name.endsWith(".running_var")) {
      put(`${s.name.slice(0, -".running_var".length)}.num_batches_tracked`, "I64", []);
    }
  }
  put(CLASS_WEIGHTS_KEY, "F32", [data.numClasses]);
  if (cfg.method === "mwn") {
    for (const [name, dtype, shape] of MetaWeightNet.stateSpecs({ recipe: cfg.mwnRecipe })) {
      put(name, dtype, shape);
    }
  }
  return out;
}

function checkTensors(
  ckpt: SafetensorsFile,
  path: string,
  want: Map<string, string>,
  model: string,
): void {
  const problems: string[] = [];
  for (const [name, desc] of want) {
    const t = ckpt.tensors.get(name);
    if (!t) problems.push(`lacks ${name} (${desc})`);
    else {
      const have = `${t.dtype} [${t.shape.join(", ")}]`;
      if (have !== desc) problems.push(`${name} is ${have}, expected ${desc}`);
    }
  }
  for (const name of ckpt.tensors.keys()) {
    if (!want.has(name)) problems.push(`holds ${name}, which this model does not have`);
  }
  if (problems.length) {
    const shown = problems.slice(0, 6).map((p) => `  - ${p}`).join("\n");
    const more = problems.length > 6 ? `\n  - ... and ${problems.length - 6} more` : "";
    throw new UserError(
      `checkpoint ${path} does not match the model of this run (--model ${model}):\n` +
        shown + more,
      {
        file: path,
        hint: "the checkpoint belongs to another model or was damaged; move it away or choose " +
          "another --out to start a new run",
      },
    );
  }
}
