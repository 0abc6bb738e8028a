/**
 * The training loop of any model: epochs of steps over a deterministic data source, evaluation,
 * progress, a checkpoint at every epoch end with bit-exact resume (parameters, buffers, optimizer
 * state and scalars, data RNG state, history), and a stop at the first non-finite loss. Small
 * hooks let a client choose the step of each epoch and add its own state and records.
 *
 * Reproducibility: every random choice of an epoch comes from the data source, derived from
 * (seed, epoch); the kernels are deterministic; a checkpoint holds the whole state at an epoch
 * end, so a run killed at any point and resumed ends where an uninterrupted run ends, bit for bit.
 */
import { dirname, resolve } from "node:path";
import { Tensor } from "../tensor.ts";
import { describeError, UserError } from "../errors.ts";
import { addModelState, takeF32, writeCheckpoint } from "../checkpoint/checkpoint.ts";
import type { SafeTensor, SafetensorsFile } from "../checkpoint/safetensors.ts";
import { monitorStep } from "./kernels.ts";
import type { Schedule } from "../optim/schedule.ts";
import type { Progress } from "./progress.ts";
import type { StepEngine } from "./step.ts";

/** The batches of one epoch: `load(step)` writes batch `step` into the engine's inputs. */
export interface EpochBatches {
  /** Steps of the epoch. */
  steps: number;
  /** Writes the inputs of step `step` (in order 0, 1, ...). */
  load(step: number): void | Promise<void>;
}

/** A data source whose epochs are deterministic functions of (seed, epoch). */
export interface DataSource {
  /** The batches of `epoch`; `rngState` (from {@linkcode DataSource.rngState}) on resume. */
  epoch(epoch: number, rngState?: unknown): EpochBatches;
  /** Serialisable generator state at the start of `epoch` (saved in checkpoints). */
  rngState?(epoch: number): unknown;
}

/** The step an epoch runs: `run(lr, step)` after the batch is loaded. */
export interface StepKind {
  /** Name in records and progress ("plain", "meta", ...). */
  name: string;
  /** One training step at learning rate `lr`. */
  run(lr: number, step: number): void | Promise<void>;
}

/** What the loop knows about a finished epoch. */
export interface EpochEnd<M> {
  /** 0-based epoch. */
  epoch: number;
  /** The step kind's name. */
  kind: string;
  /** Learning rate at the epoch's first step. */
  lr: number;
  /** Mean unweighted per-example training loss. */
  trainLoss: number;
  /** Steps of the epoch. */
  steps: number;
  /** Examples of the epoch (`steps * batch`). */
  examples: number;
  /** Wall seconds of the epoch (training and evaluation). */
  seconds: number;
  /** The evaluation's result, or null when not evaluated. */
  metrics: M | null;
}

/** Where a non-finite loss stopped a run. */
export interface NonFiniteAt {
  /** Steps done over the run when it was seen (1-based). */
  step: number;
  /** The epoch (0-based). */
  epoch: number;
  /** Step within the epoch (1-based). */
  stepInEpoch: number;
}

/** Hooks of {@linkcode fit}; all optional. */
export interface FitHooks<R, M> {
  /** The step of `epoch`; default the engine's plain step. */
  stepKind?(epoch: number): StepKind;
  /** Before the steps of an epoch. */
  epochStart?(epoch: number, kind: StepKind): void | Promise<void>;
  /** Before each step, after its batch is loaded. */
  beforeStep?(epoch: number, step: number): void | Promise<void>;
  /** After each step (recorded, not yet synchronised). */
  afterStep?(epoch: number, step: number): void | Promise<void>;
  /** The history record of a finished, finite epoch (default: the {@linkcode EpochEnd}). */
  epochEnd?(end: EpochEnd<M>): R | Promise<R>;
  /** Extra tensors and metadata for the epoch's checkpoint. */
  checkpointState?(): Promise<CheckpointExtra> | CheckpointExtra;
  /** After the epoch's checkpoint is written; `done` at the last epoch. */
  saved?(record: R, done: boolean): void | Promise<void>;
  /** Restores the client's state from the checkpoint being resumed. */
  restore?(file: SafetensorsFile): void | Promise<void>;
}

/** A client's additions to a checkpoint. */
export interface CheckpointExtra {
  /** Extra tensors (under a prefix of their own, e.g. `train.`). */
  tensors?: Map<string, SafeTensor>;
  /** Extra metadata strings. */
  metadata?: Record<string, string>;
}

/**
 * Options of {@linkcode fit}: the run ({@linkcode FitRunOptions}) and its learning rate, either
 * `lr` or `schedule` ({@linkcode FitRate}).
 */
export type FitOptions<R, M> = FitRunOptions<R, M> & FitRate;

/**
 * The learning rate of {@linkcode fit}, exactly one of: `lr`, a function of (epoch, step within
 * the epoch); or `schedule`, a {@linkcode Schedule} (`cosineLr`, `linearWarmup`, ...), called
 * with the steps of each epoch's data (`stepsPerEpoch`) filled in.
 */
export type FitRate =
  | { lr: (epoch: number, step: number) => number; schedule?: undefined }
  | { schedule: Schedule; lr?: undefined };

/** Everything of {@linkcode FitOptions} but the learning rate. */
export interface FitRunOptions<R, M> {
  /** The model, loss and optimizer. */
  engine: StepEngine;
  /** The batches of each epoch. */
  data: DataSource;
  /** Total epochs of the run: an integer >= 1, at least the resumed checkpoint's epoch. */
  epochs: number;
  /** Evaluation at an epoch's end (default none). */
  evaluate?: (epoch: number) => Promise<M>;
  /** Evaluate every this many epochs and at the last (an integer >= 1, default 1). */
  evalEvery?: number;
  /**
   * Checkpoint file written at every epoch end, and its format tag. Its folder must exist, and
   * a file already at `path` is refused unless `resume` is that file (fit never overwrites a
   * file it was not asked to continue).
   */
  checkpoint?: { path: string; format: string };
  /**
   * A checkpoint of this run to continue from (written by `fit` with the same settings,
   * usually read from `checkpoint.path` with `readCheckpoint`; another file forks that run).
   */
  resume?: SafetensorsFile | null;
  /**
   * Train at most this many epochs in this call: an integer >= 0, or Infinity (the default, all
   * the epochs left); 0 restores the checkpoint and returns.
   */
  maxEpochs?: number;
  /** Progress bar / lines (default none). */
  progress?: Progress | null;
  /** Hooks. */
  hooks?: FitHooks<R, M>;
}

/** What {@linkcode fit} returns. */
export interface FitResult<R> {
  /** "completed", "running" (maxEpochs reached), or "stopped" (non-finite loss). */
  status: "completed" | "running" | "stopped";
  /** Epochs completed (and checkpointed). */
  epochsDone: number;
  /** Steps completed over the run, up to the last checkpoint. */
  steps: number;
  /** One record per completed epoch. */
  history: R[];
  /** Where a non-finite loss stopped the run. */
  nonFinite: NonFiniteAt | null;
}

/**
 * The sentence a stopped run reports: where the non-finite loss appeared and which checkpoint
 * was kept. For a result with status "stopped".
 */
export function stopMessage(result: FitResult<unknown>): string {
  const at = result.nonFinite!;
  const kept = result.epochsDone > 0
    ? `kept the checkpoint of epoch ${result.epochsDone}`
    : "no checkpoint was written";
  return `non-finite loss at step ${at.step} (epoch ${at.epoch + 1}, step ` +
    `${at.stepInEpoch} of the epoch); stopped, ${kept}`;
}

/** Loop state carried between epochs (and through checkpoints). */
interface LoopState<R> {
  epochsDone: number;
  steps: number;
  history: R[];
  /** Seconds of the last epoch of each step kind (progress estimates). */
  kindSeconds: Record<string, number>;
  rng: unknown;
}

/**
 * Trains `engine` over `data` for the epochs left; see the module comment. Throws before any
 * work: a RangeError or TypeError on a bad `epochs`, `maxEpochs`, `evalEvery` or learning rate
 * (naming the option); a {@linkcode UserError} naming the file on a `checkpoint.path` whose
 * folder does not exist or that holds a file this call does not resume; an Error naming the
 * file on a checkpoint this run cannot continue. It throws at an epoch whose data source has
 * no steps.
 *
 * Type parameters: M is what `evaluate` returns; R, the history record, is what
 * `hooks.epochEnd` returns, by default the {@linkcode EpochEnd} whose `metrics` are M.
 */
export async function fit<M = unknown, R = EpochEnd<M>>(
  o: FitOptions<R, M>,
): Promise<FitResult<R>> {
  checkFitOptions(o);
  const state: LoopState<R> = o.resume
    ? await restoreFit(o, o.resume)
    : { epochsDone: 0, steps: 0, history: [], kindSeconds: {}, rng: undefined };
  const gpu = o.engine.gpu;
  const monitor = Tensor.empty(gpu, [4]);
  try {
    const start = state.epochsDone;
    const end = Math.min(o.epochs, start + (o.maxEpochs ?? Infinity));
    for (let epoch = start; epoch < end; epoch++) {
      const stopped = await runEpoch(o, state, epoch, monitor);
      if (stopped) {
        return { ...result(state, "stopped"), nonFinite: stopped };
      }
    }
    return result(state, state.epochsDone === o.epochs ? "completed" : "running");
  } finally {
    monitor.release(gpu);
  }
}

/** The checks of the run length (see {@linkcode fit}). */
function checkFitOptions<R, M>(o: FitOptions<R, M>): void {
  const check = (option: string, v: number | undefined, ok: boolean, expected: string) => {
    if (!ok) throw new RangeError(`fit: ${option} = ${v}, expected ${expected}`);
  };
  const isCount = (v: number, min: number) => Number.isInteger(v) && v >= min;
  if ((o.lr === undefined) === (o.schedule === undefined)) {
    throw new TypeError("fit: give the learning rate as exactly one of lr and schedule");
  }
  check("epochs", o.epochs, isCount(o.epochs, 1), "an integer >= 1");
  const max = o.maxEpochs ?? Infinity;
  check("maxEpochs", max, max === Infinity || isCount(max, 0), "an integer >= 0 or Infinity");
  const every = o.evalEvery ?? 1;
  check("evalEvery", every, isCount(every, 1), "an integer >= 1");
  if (o.checkpoint) checkCheckpointPath(o.checkpoint.path, o.resume?.path, !!o.resume);
}

/**
 * The checkpoint file, before any work: its folder exists, and a file already at `path` is the
 * one being resumed. Without a resume, or resuming another file (a fork), an existing file
 * would be overwritten by the first epoch's checkpoint: refused, as files fit did not write.
 */
function checkCheckpointPath(path: string, resumed: string | undefined, resuming: boolean): void {
  const kind = (p: string): "file" | "folder" | "none" => {
    try {
      return Deno.statSync(p).isDirectory ? "folder" : "file";
    } catch (e) {
      if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) {
        return "none";
      }
      throw new UserError(`fit: checkpoint ${path}: cannot look at ${p} (${describeError(e)})`, {
        file: path,
        hint: "let the program read it (deno run --allow-read), or choose another checkpoint path",
        cause: e,
      });
    }
  };
  const dir = dirname(path);
  const folder = kind(dir);
  if (folder !== "folder") {
    throw new UserError(
      `fit: checkpoint ${path}: ${dir} ${folder === "none" ? "does not exist" : "is a file"}`,
      { file: path, hint: `create the folder ${dir} first, or choose another checkpoint path` },
    );
  }
  const here = kind(path);
  if (here === "folder") {
    throw new UserError(`fit: checkpoint ${path} is a folder; expected a file path`, {
      file: path,
      hint: "choose a file path for the checkpoint, e.g. run/checkpoint.safetensors",
    });
  }
  const continues = resuming && (resumed === undefined || resolve(resumed) === resolve(path));
  if (here === "file" && !continues) {
    const why = resuming
      ? `holds a file, and the run resumes another one (${resumed})`
      : "already exists, and no resume was given";
    throw new UserError(`fit: checkpoint ${path} ${why}: the run would overwrite it`, {
      file: path,
      hint: "pass resume: await readCheckpoint(path) to continue the run it holds, or choose " +
        "another checkpoint path (or move the file away)",
    });
  }
}

/**
 * The learning rate at `step` of `epoch`, whose data has `stepsPerEpoch` steps; a rate that is
 * not a finite number >= 0 (a schedule's NaN) is refused before the step, not trained on.
 */
function rateAt<R, M>(
  o: FitOptions<R, M>,
  epoch: number,
  step: number,
  stepsPerEpoch: number,
): number {
  const lr = o.schedule ? o.schedule({ epoch, step, stepsPerEpoch }) : o.lr(epoch, step);
  if (!(Number.isFinite(lr) && lr >= 0)) {
    const which = o.schedule ? `schedule at epoch ${epoch}, step ${step}` : `lr(${epoch}, ${step})`;
    throw new RangeError(`fit: ${which} = ${lr}, expected a finite number >= 0`);
  }
  return lr;
}

function result<R>(s: LoopState<R>, status: FitResult<R>["status"]): FitResult<R> {
  return { status, epochsDone: s.epochsDone, steps: s.steps, history: s.history, nonFinite: null };
}

/** The plain step of the engine. */
function plainKind(engine: StepEngine): StepKind {
  return { name: "plain", run: (lr) => engine.step(lr) };
}

/** One epoch: steps, evaluation, checkpoint. Returns where a non-finite loss stopped it. */
async function runEpoch<R, M>(
  o: FitOptions<R, M>,
  state: LoopState<R>,
  epoch: number,
  monitor: Tensor,
): Promise<NonFiniteAt | null> {
  const t0 = performance.now();
  const { engine } = o;
  const kind = o.hooks?.stepKind?.(epoch) ?? plainKind(engine);
  const batches = o.data.epoch(epoch, epoch === state.epochsDone ? state.rng : undefined);
  if (!Number.isInteger(batches.steps) || batches.steps < 1) {
    throw new Error(
      `fit: epoch ${epoch} of the data source has ${batches.steps} steps, expected at least 1 ` +
        `(a source with fewer examples than the batch of ${engine.batch} that drops its last ` +
        `partial batch has none); use a smaller batch or more examples`,
    );
  }
  await o.hooks?.epochStart?.(epoch, kind);
  monitor.upload(engine.gpu, [state.steps, -1, 0, 0]);
  o.progress?.epochStart(
    epoch,
    o.epochs,
    batches.steps,
    kind.name,
    laterSeconds(o, state, epoch),
  );
  engine.stepIndex = state.steps; // the dropout seeds continue the run's sequence on resume
  const stopped = await runSteps(o, epoch, kind, batches, monitor);
  if (stopped) return stopped;
  const trainLoss = await engine.takeMeanLoss();
  const evalEvery = o.evalEvery ?? 1;
  const evalDue = o.evaluate && ((epoch + 1) % evalEvery === 0 || epoch === o.epochs - 1);
  const metrics = evalDue ? await o.evaluate!(epoch) : null;
  state.steps += batches.steps;
  const saved = await downloadState(engine);
  if (!Number.isFinite(trainLoss) || !allFinite(saved)) {
    return { step: state.steps, epoch, stepInEpoch: batches.steps };
  }
  const seconds = (performance.now() - t0) / 1000;
  state.kindSeconds[kind.name] = seconds;
  const end: EpochEnd<M> = {
    epoch,
    kind: kind.name,
    lr: rateAt(o, epoch, 0, batches.steps),
    trainLoss,
    steps: batches.steps,
    examples: batches.steps * engine.batch,
    seconds,
    metrics,
  };
  const record = o.hooks?.epochEnd ? await o.hooks.epochEnd(end) : end as unknown as R;
  state.history.push(record);
  state.epochsDone = epoch + 1;
  state.rng = o.data.rngState?.(state.epochsDone);
  if (o.checkpoint) await writeFitCheckpoint(o, state, saved);
  await o.hooks?.saved?.(record, state.epochsDone === o.epochs);
  return null;
}

/** The steps of an epoch, synchronising with the GPU about twice a second for progress. */
async function runSteps<R, M>(
  o: FitOptions<R, M>,
  epoch: number,
  kind: StepKind,
  batches: EpochBatches,
  monitor: Tensor,
): Promise<NonFiniteAt | null> {
  const { engine } = o;
  let syncEvery = 1, sinceSync = 0, lastSync = performance.now();
  for (let s = 0; s < batches.steps; s++) {
    await batches.load(s);
    await o.hooks?.beforeStep?.(epoch, s);
    await kind.run(rateAt(o, epoch, s, batches.steps), s);
    await o.hooks?.afterStep?.(epoch, s);
    monitorStep(engine.gpu, engine.lossSum, monitor);
    sinceSync++;
    if (sinceSync < syncEvery && s < batches.steps - 1) continue;
    const mon = await monitor.read(engine.gpu);
    const now = performance.now();
    const perStep = (now - lastSync) / 1000 / sinceSync;
    syncEvery = Math.max(1, Math.min(10, Math.round(0.5 / Math.max(perStep, 1e-6))));
    sinceSync = 0;
    lastSync = now;
    if (mon[1] >= 0) return { step: mon[1], epoch, stepInEpoch: mon[1] - (mon[0] - (s + 1)) };
    o.progress?.update(s + 1, (s + 1) * engine.batch, mon[2] / mon[3]);
  }
  return null;
}

/** Estimated seconds of the epochs after `epoch`, from the last epoch of each step kind. */
function laterSeconds<R, M>(o: FitOptions<R, M>, state: LoopState<R>, epoch: number): number {
  if (!o.hooks?.stepKind || !o.progress) return 0;
  const plain = state.kindSeconds.plain ?? 0;
  let later = 0;
  for (let e = epoch + 1; e < o.epochs; e++) {
    const k = o.hooks.stepKind(e).name;
    later += state.kindSeconds[k] ?? plain * (k === "plain" ? 1 : 4);
  }
  return later;
}

/** Host copies of everything a checkpoint saves from the GPU. */
interface SavedState {
  params: Map<string, Float32Array>;
  buffers: Map<string, Float32Array>;
  optimizer: Map<string, Map<string, Float32Array>>;
}

async function downloadState(engine: StepEngine): Promise<SavedState> {
  const { model, optimizer } = engine;
  const optimizerState = new Map<string, Map<string, Float32Array>>();
  const [params, buffers] = await Promise.all([model.params.download(), model.buffers.download()]);
  for (const [prefix, flat] of optimizer.stateBuffers()) {
    optimizerState.set(prefix, await flat.download());
  }
  return { params, buffers, optimizer: optimizerState };
}

function allFinite(s: SavedState): boolean {
  for (const m of [s.params, s.buffers, ...s.optimizer.values()]) {
    for (const v of m.values()) {
      for (let i = 0; i < v.length; i++) if (!Number.isFinite(v[i])) return false;
    }
  }
  return true;
}

async function writeFitCheckpoint<R, M>(
  o: FitOptions<R, M>,
  state: LoopState<R>,
  saved: SavedState,
): Promise<void> {
  const { model, optimizer } = o.engine;
  const tensors = new Map<string, SafeTensor>();
  addModelState(tensors, model.specs, saved.params, saved.buffers, state.steps);
  for (const [prefix, values] of saved.optimizer) {
    for (const s of model.specs.params) {
      tensors.set(prefix + s.name, {
        dtype: "F32",
        shape: [...s.shape],
        data: values.get(s.name)!,
      });
    }
  }
  const extra = await o.hooks?.checkpointState?.() ?? {};
  for (const [k, v] of extra.tensors ?? []) tensors.set(k, v);
  await writeCheckpoint(o.checkpoint!.path, tensors, {
    format: o.checkpoint!.format,
    epoch: String(state.epochsDone),
    steps: String(state.steps),
    history: JSON.stringify(state.history),
    rng: JSON.stringify(state.rng ?? null),
    optimizer: JSON.stringify({ name: optimizer.name, scalars: optimizer.scalars() }),
    epoch_seconds: JSON.stringify(state.kindSeconds),
    ...extra.metadata,
  });
}

/**
 * Restores the model, optimizer and loop state from a checkpoint written by {@linkcode fit},
 * after checking that it is one, of this format and optimizer, and within `epochs`.
 */
async function restoreFit<R, M>(
  o: FitOptions<R, M>,
  file: SafetensorsFile,
): Promise<LoopState<R>> {
  const { model, optimizer } = o.engine;
  const m = file.metadata;
  const where = file.path ? `checkpoint ${file.path}` : "the checkpoint";
  const json = (k: string) => {
    try {
      return JSON.parse(m[k] ?? "null");
    } catch (e) {
      throw new Error(`fit: ${where}: metadata "${k}" is not JSON (${(e as Error).message})`);
    }
  };
  const epochsDone = Number(m.epoch), steps = Number(m.steps);
  if (m.epoch === undefined) {
    throw new Error(
      `fit: ${where} holds no training state (no "epoch" metadata): it is a weights file such ` +
        `as Model.save writes; load it with model.load, or resume from the file that fit's ` +
        `checkpoint option writes`,
    );
  }
  if (o.checkpoint && m.format !== o.checkpoint.format) {
    throw new Error(`fit: ${where} has format ${m.format}, expected ${o.checkpoint.format}`);
  }
  const saved = json("optimizer")?.name;
  if (saved !== undefined && saved !== optimizer.name) {
    throw new Error(
      `fit: ${where} was written by optimizer ${saved}, but this engine's optimizer is ` +
        `${optimizer.name}; resume with ${saved}, or start a new run`,
    );
  }
  if (!Number.isInteger(epochsDone) || epochsDone < 0 || !Number.isInteger(steps) || steps < 0) {
    throw new Error(`fit: ${where}: epoch ${m.epoch} and steps ${m.steps} must be integers >= 0`);
  }
  if (epochsDone > o.epochs) {
    throw new RangeError(
      `fit: ${where} holds ${epochsDone} epochs, more than epochs = ${o.epochs}; resume with ` +
        `epochs >= ${epochsDone}, or start a new run`,
    );
  }
  model.loadFile(file);
  for (const [prefix, flat] of optimizer.stateBuffers()) {
    flat.upload(takeF32(file, model.specs.params, prefix));
  }
  optimizer.loadScalars(json("optimizer")?.scalars ?? {});
  await o.hooks?.restore?.(file);
  return {
    epochsDone,
    steps,
    history: json("history") ?? [],
    kindSeconds: json("epoch_seconds") ?? {},
    rng: json("rng") ?? undefined,
  };
}
