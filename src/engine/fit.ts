/**
 * The training loop of any model: epochs of steps over a deterministic data source, evaluation,
 * progress, a checkpoint at every epoch end with bit-exact resume (parameters, buffers, optimizer
 * state and scalars, data RNG state, history), and a stop at the first non-finite loss. Small
 * hooks let a client choose the step of each epoch and add its own state and records.
 *
 * Reproducibility: every random choice of an epoch comes from the data source, derived from
 * (seed, epoch); the kernels are deterministic; a checkpoint holds the whole state at an epoch
 * end, so a run killed at any point and resumed ends where an uninterrupted run ends, bit for bit.
 * The checkpoint also records what that needs of the resuming call (the engine's batch, the
 * steps of the data's epochs, its random state and the run's epochs), and a resume that differs
 * is refused naming the setting.
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

/**
 * The batches of one epoch: `load(step)` writes batch `step` into the engine's inputs.
 *
 * @category Core
 */
export interface EpochBatches {
  /** Steps of the epoch. */
  steps: number;
  /**
   * Distinct examples the epoch's steps visit, an integer in [1, steps * batch]; default
   * `steps * batch` (each step a batch of examples not seen before in the epoch). A source
   * whose last batch wraps round to the epoch's first examples gives its size here
   * (`ArraySource`: 600 examples in batches of 32 are 19 steps and 608 rows, 600
   * examples).
   */
  examples?: number;
  /** Writes the inputs of step `step` (in order 0, 1, ...). */
  load(step: number): void | Promise<void>;
}

/**
 * A data source whose epochs are deterministic functions of (seed, epoch). On a resume,
 * {@linkcode fit} also asks for the last completed epoch (its `steps` only, no batch is loaded)
 * to check that the data's epochs have the length the checkpoint recorded.
 *
 * @category Core
 */
export interface DataSource {
  /** The batches of `epoch`; `rngState` (from {@linkcode DataSource.rngState}) on resume. */
  epoch(epoch: number, rngState?: unknown): EpochBatches;
  /** Serialisable generator state at the start of `epoch` (saved in checkpoints). */
  rngState?(epoch: number): unknown;
}

/**
 * The step an epoch runs: `run(lr, step)` after the batch is loaded.
 *
 * @category Core
 */
export interface StepKind {
  /** Name in records and progress ("plain", "meta", ...). */
  name: string;
  /** One training step at learning rate `lr`. */
  run(lr: number, step: number): void | Promise<void>;
}

/**
 * What the loop knows about a finished epoch.
 *
 * @category Core
 */
export interface EpochEnd<M> {
  /** 0-based epoch. */
  epoch: number;
  /** The step kind's name. */
  kind: string;
  /** Learning rate at the epoch's first step. */
  lr: number;
  /**
   * Mean unweighted per-example training loss over every step of the epoch and no other (a
   * hook that takes the running loss with `engine.takeMeanLoss()` does not change it; a loss
   * left before the epoch is reset, {@linkcode StepEngine.resetLoss}).
   */
  trainLoss: number;
  /** Steps of the epoch. */
  steps: number;
  /**
   * Distinct examples the epoch trained on: the data source's
   * {@linkcode EpochBatches.examples}, else `steps * batch`. Steps whose last batch wraps round
   * see a few of them twice, which `trainLoss` counts (its mean is over `steps * batch` rows).
   */
  examples: number;
  /** Wall seconds of the epoch (training and evaluation). */
  seconds: number;
  /** The evaluation's result, or null when not evaluated. */
  metrics: M | null;
}

/**
 * Where a non-finite loss stopped a run.
 *
 * @category Core
 */
export interface NonFiniteAt {
  /** Steps done over the run when it was seen (1-based). */
  step: number;
  /** The epoch (0-based). */
  epoch: number;
  /** Step within the epoch (1-based). */
  stepInEpoch: number;
}

/**
 * Hooks of {@linkcode fit}; all optional.
 *
 * @category Core
 */
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
  /**
   * After each completed epoch (its record kept, its checkpoint written, `saved` called): true
   * ends the call there (early stopping), with status "running" unless it was the last epoch;
   * with a `checkpoint`, the run can be resumed from that epoch later.
   */
  stopAfter?(record: R, epoch: number): boolean | Promise<boolean>;
}

/**
 * A client's additions to a checkpoint.
 *
 * @category Core
 */
export interface CheckpointExtra {
  /** Extra tensors (under a prefix of their own, e.g. `train.`). */
  tensors?: Map<string, SafeTensor>;
  /** Extra metadata strings. */
  metadata?: Record<string, string>;
}

/**
 * Options of {@linkcode fit}: the run ({@linkcode FitRunOptions}) and its learning rate, either
 * `lr` or `schedule` ({@linkcode FitRate}).
 *
 * @category Core
 */
export type FitOptions<R, M> = FitRunOptions<R, M> & FitRate;

/**
 * The learning rate of {@linkcode fit}, exactly one of: `lr`, a function of (epoch, step within
 * the epoch); or `schedule`, a {@linkcode Schedule} (`cosineLr`, `linearWarmup`, ...), called
 * with the steps of each epoch's data (`stepsPerEpoch`) filled in.
 *
 * @category Core
 */
export type FitRate =
  | { lr: (epoch: number, step: number) => number; schedule?: undefined }
  | { schedule: Schedule; lr?: undefined };

/**
 * Everything of {@linkcode FitOptions} but the learning rate.
 *
 * @category Core
 */
export interface FitRunOptions<R, M> {
  /** The model, loss and optimizer. */
  engine: StepEngine;
  /** The batches of each epoch. */
  data: DataSource;
  /**
   * Total epochs of the run: an integer >= 1, at least the resumed checkpoint's epoch. Resuming
   * the checkpoint being written (`resume` read from `checkpoint.path`) takes the epochs it was
   * started with (a schedule over the epochs would change); resuming another file forks that
   * run, and may train it longer.
   */
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
   * A checkpoint of this run to continue from, as `readCheckpoint` returns it (usually read
   * from `checkpoint.path`; another file forks that run). It must come from `fit` with the same
   * engine batch, optimizer, data (its epochs' steps and random state) and format; a mismatch is
   * refused naming the setting and the file, before any work.
   */
  resume?: SafetensorsFile | null;
  /**
   * Train at most this many epochs in this call: an integer >= 0, or Infinity (the default, all
   * the epochs left); 0 restores the checkpoint and returns. Stopping before the last epoch
   * needs `checkpoint` (the run is continued from it: without one a later call would start
   * again at epoch 0), and is refused without one.
   */
  maxEpochs?: number;
  /** Progress bar / lines (default none). */
  progress?: Progress | null;
  /** Hooks. */
  hooks?: FitHooks<R, M>;
}

/**
 * What {@linkcode fit} returns.
 *
 * @category Core
 */
export interface FitResult<R> {
  /**
   * "completed", "running" (maxEpochs reached, or `hooks.stopAfter` said stop), or "stopped"
   * (non-finite loss).
   */
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
 *
 * @category Core
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
 * Trains `engine` over `data` for the epochs left and returns how far it got.
 *
 * Each epoch takes its batches from `data.epoch(epoch)`; each step loads its batch and runs the
 * epoch's step (default the engine's plain step) at the rate of `lr` or `schedule`. At the
 * epoch's end the mean training loss is read, `evaluate` runs when due, the record joins the
 * history and, with `checkpoint`, the whole state is written to the file, replaced atomically:
 * parameters, buffers, optimizer state and scalars, the data's random state, the history, and
 * what a resume must match (engine batch, steps of the data's epochs, epochs). A run resumed
 * from that file ends bit for bit where an uninterrupted run ends. A non-finite loss or state
 * stops the run at that epoch (status "stopped", the last checkpoint kept; see
 * {@linkcode stopMessage}).
 *
 * Throws before any work: a TypeError on an option of the wrong type (a number for `lr`, a
 * path for `resume`, ...); a RangeError on a bad `epochs`, `maxEpochs`, `evalEvery` or learning
 * rate, or a `maxEpochs` that stops early without `checkpoint` (naming the option); a
 * {@linkcode UserError} naming the file on a `checkpoint.path` whose folder does not exist or
 * that holds a file this call does not resume, and on a resume with another batch, data or
 * epochs than its checkpoint's; an Error naming the file on a checkpoint of another format or
 * optimizer. It throws at an epoch whose data source has no steps, or more examples than its
 * steps hold.
 *
 * Type parameters: M is what `evaluate` returns; R, the history record, is what
 * `hooks.epochEnd` returns, by default the {@linkcode EpochEnd} whose `metrics` are M.
 *
 * @example Train 10 epochs, checkpointing each; a second call continues the run
 * ```ts ignore
 * const path = "run/checkpoint.safetensors";
 * const result = await fit({
 *   engine,
 *   data: new ArraySource({ engine, inputs, targets, seed: 0 }),
 *   epochs: 10,
 *   schedule: cosineLr(0.1, { epochs: 10 }),
 *   checkpoint: { path, format: "my-run/1" },
 *   resume: await readCheckpoint(path), // null at first: a new run
 * });
 * ```
 *
 * @category Core
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
      if (await o.hooks?.stopAfter?.(state.history.at(-1)!, epoch)) break;
    }
    return result(state, state.epochsDone === o.epochs ? "completed" : "running");
  } finally {
    monitor.release(gpu);
  }
}

/** The checks of the options before any work (see {@linkcode fit}). */
function checkFitOptions<R, M>(o: FitOptions<R, M>): void {
  checkOptionTypes(o);
  const check = (option: string, v: number | undefined, ok: boolean, expected: string) => {
    if (!ok) throw new RangeError(`fit: ${option} = ${v}, expected ${expected}`);
  };
  const isCount = (v: number, min: number) => Number.isInteger(v) && v >= min;
  check("epochs", o.epochs, isCount(o.epochs, 1), "an integer >= 1");
  const max = o.maxEpochs ?? Infinity;
  check("maxEpochs", max, max === Infinity || isCount(max, 0), "an integer >= 0 or Infinity");
  const every = o.evalEvery ?? 1;
  check("evalEvery", every, isCount(every, 1), "an integer >= 1");
  const left = o.epochs - Number(o.resume?.metadata.epoch ?? 0);
  if (!o.checkpoint && max > 0 && max < left) {
    const upTo = o.epochs - left + max;
    throw new RangeError(
      `fit: maxEpochs = ${max} stops the run after ${max} of the ${left} epochs left, but ` +
        `without checkpoint it cannot be continued (another fit would start again at epoch ` +
        `0); pass checkpoint: { path, format } to resume it later, or epochs: ${upTo}`,
    );
  }
  if (o.checkpoint) checkCheckpointPath(o.checkpoint.path, o.resume?.path, !!o.resume);
}

/**
 * The types of the options, for a caller in plain JavaScript (or with `any`): each mistake is
 * a TypeError naming the option, instead of a failure deep in the first step.
 */
function checkOptionTypes<R, M>(o: FitOptions<R, M>): void {
  const what = (v: unknown) => {
    if (v === null || v === undefined) return String(v);
    if (typeof v === "string") return JSON.stringify(v);
    if (typeof v === "object") {
      const name = v.constructor?.name ?? "Object";
      return name === "Object" ? "an object" : `${/^[AEIOU]/.test(name) ? "an" : "a"} ${name}`;
    }
    return typeof v === "function" ? "a function" : `the ${typeof v} ${String(v)}`;
  };
  const need = (option: string, ok: boolean, expected: string, v: unknown, hint = "") => {
    if (!ok) throw new TypeError(`fit: ${option} must be ${expected}, got ${what(v)}${hint}`);
  };
  const fn = (v: unknown) => typeof v === "function";
  const optional = (v: unknown, ok: (v: unknown) => boolean) => v === undefined || ok(v);
  need("engine", typeof o.engine?.step === "function", "a StepEngine", o.engine);
  need(
    "data",
    typeof o.data?.epoch === "function",
    "a DataSource (epoch(e) gives its batches)",
    o.data,
  );
  if ((o.lr === undefined) === (o.schedule === undefined)) {
    throw new TypeError("fit: give the learning rate as exactly one of lr and schedule");
  }
  const lr: unknown = o.lr;
  const constant = typeof lr === "number" ? `; for a constant rate pass lr: () => ${lr}` : "";
  need("lr", optional(o.lr, fn), "a function (epoch, step) => rate", o.lr, constant);
  need("schedule", optional(o.schedule, fn), "a Schedule (e.g. cosineLr(...))", o.schedule);
  need("evaluate", optional(o.evaluate, fn), "a function (epoch) => metrics", o.evaluate);
  for (const option of ["epochs", "maxEpochs", "evalEvery"] as const) {
    need(option, optional(o[option], (v) => typeof v === "number"), "a number", o[option]);
  }
  const c: { path?: unknown; format?: unknown } | undefined = o.checkpoint;
  const isCheckpoint = typeof c?.path === "string" && typeof c.format === "string";
  need("checkpoint", c === undefined || isCheckpoint, "{ path: string, format: string }", c);
  const r: unknown = o.resume;
  const isFile = r === undefined || r === null ||
    (typeof r === "object" && typeof (r as SafetensorsFile).metadata === "object");
  const read = typeof r === "string"
    ? `; read it with resume: await readCheckpoint(${what(r)})`
    : "";
  need("resume", isFile, "a checkpoint from readCheckpoint(path), or null", r, read);
  for (const [name, hook] of Object.entries(o.hooks ?? {})) {
    need(`hooks.${name}`, optional(hook, fn), "a function", hook);
  }
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
  const continues = resuming && isSameFile(resumed, path);
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
  const examples = epochExamples(batches, engine.batch, epoch);
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
  engine.resetLoss(); // the epoch's loss is its steps' only (not a caller's, an aborted epoch's)
  const stopped = await runSteps(o, epoch, kind, batches, monitor);
  if (stopped) return stopped;
  const trainLoss = await engine.takeStepsLoss(); // every step's, whatever a hook drained
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
    examples,
    seconds,
    metrics,
  };
  const record = o.hooks?.epochEnd ? await o.hooks.epochEnd(end) : end as unknown as R;
  state.history.push(record);
  state.epochsDone = epoch + 1;
  state.rng = o.data.rngState?.(state.epochsDone);
  if (o.checkpoint) await writeFitCheckpoint(o, state, saved, batches.steps);
  await o.hooks?.saved?.(record, state.epochsDone === o.epochs);
  return null;
}

/**
 * The distinct examples of an epoch's batches (see {@linkcode EpochBatches.examples}); throws
 * naming the epoch when the source gives a count its steps cannot hold.
 */
function epochExamples(batches: EpochBatches, batch: number, epoch: number): number {
  const rows = batches.steps * batch;
  const n = batches.examples ?? rows;
  if (!Number.isInteger(n) || n < 1 || n > rows) {
    throw new Error(
      `fit: epoch ${epoch} of the data source has ${n} examples, expected an integer in ` +
        `[1, ${rows}] (its ${batches.steps} steps of ${batch} examples)`,
    );
  }
  return n;
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
    // before the hook, which may drain the running loss (takeMeanLoss): a NaN is still seen
    monitorStep(engine.gpu, engine.lossSum, monitor);
    await o.hooks?.afterStep?.(epoch, s);
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

/** What a resume must match, recorded in a checkpoint's metadata "fit" (JSON). */
interface ResumeSettings {
  /** The engine's batch. */
  batch: number;
  /** The run's epochs. */
  epochs: number;
  /** Steps of the last completed epoch. */
  epochSteps: number;
}

/** Writes the checkpoint of the epoch just completed, whose data had `epochSteps` steps. */
async function writeFitCheckpoint<R, M>(
  o: FitOptions<R, M>,
  state: LoopState<R>,
  saved: SavedState,
  epochSteps: number,
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
    fit: JSON.stringify({ batch: o.engine.batch, epochs: o.epochs, epochSteps } as ResumeSettings),
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
  const settings = json("fit") as ResumeSettings | null; // null: written before it was recorded
  if (settings !== null) {
    const counts = [settings?.batch, settings?.epochs, settings?.epochSteps];
    if (!counts.every((v) => Number.isInteger(v) && v >= 1)) {
      throw new Error(
        `fit: ${where}: metadata "fit" is ${m.fit}, expected {"batch", "epochs", "epochSteps"} ` +
          `of integers >= 1`,
      );
    }
    checkResumeSettings(o, file, settings, epochsDone);
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

/**
 * Whether a resumed checkpoint read from `resumed` is the file `path` being written (a run
 * continued, not forked); one read without a path counts as that file.
 */
function isSameFile(resumed: string | undefined, path: string): boolean {
  return resumed === undefined || resolve(resumed) === resolve(path);
}

/**
 * Refuses a resume whose engine batch, data (steps of the last completed epoch, random state
 * at the next) or epochs differ from the checkpoint's `saved` settings: the run would not go
 * on as it started. The epochs may differ in a fork (resuming a file other than the one being
 * written), which may train the run longer.
 */
function checkResumeSettings<R, M>(
  o: FitOptions<R, M>,
  file: SafetensorsFile,
  saved: ResumeSettings,
  epochsDone: number,
): void {
  const where = file.path ? `checkpoint ${file.path}` : "the checkpoint";
  const refuse = (what: string, hint: string) => {
    throw new UserError(`fit: ${where}: ${what}`, {
      file: file.path,
      hint: `${hint}, or start a new run (another checkpoint path)`,
    });
  };
  if (saved.batch !== o.engine.batch) {
    refuse(
      `written with batch ${saved.batch}, but this engine's batch is ${o.engine.batch}`,
      `resume with an engine of batch ${saved.batch}`,
    );
  }
  const continues = o.checkpoint !== undefined && isSameFile(file.path, o.checkpoint.path);
  if (continues && saved.epochs !== o.epochs) {
    refuse(
      `a run of ${saved.epochs} epochs, but epochs = ${o.epochs}`,
      `resume with epochs: ${saved.epochs}; to train it longer, fork it (resume from it with ` +
        `checkpoint.path set to a new file)`,
    );
  }
  if (epochsDone === 0) return;
  const steps = o.data.epoch(epochsDone - 1).steps;
  if (steps !== saved.epochSteps) {
    refuse(
      `epoch ${epochsDone} of its data had ${saved.epochSteps} steps, but the data source's ` +
        `has ${steps} (other data?)`,
      "resume with the data the run was started with",
    );
  }
  const rng = JSON.stringify(o.data.rngState?.(epochsDone) ?? null);
  if (file.metadata.rng !== undefined && rng !== file.metadata.rng) {
    refuse(
      `the data source's random state at epoch ${epochsDone + 1} is not the checkpoint's ` +
        `(another seed?)`,
      "resume with the data source (and seed) the run was started with",
    );
  }
}
