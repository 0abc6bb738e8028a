/**
 * The training step of any model: forward of the batch onto a tape, per-example losses from any
 * loss function, a backward seeded with per-example weights, and one optimizer update, all
 * recorded into one command encoder and submitted once. Re-weighting rules (the meta step of
 * meta.ts, Meta-Weight-Net) supply the seed of the backward from the same tape.
 *
 * The state a step needs is allocated once (gradients, fixed input tensors), so a warm step
 * creates no GPU objects; losses accumulate in a GPU buffer that is read only when asked.
 */
import { describeError } from "../errors.ts";
import { firstBadLabel } from "../labels.ts";
import { Ctx, Tape } from "../autograd/tape.ts";
import type { Gpu } from "../gpu/runtime.ts";
import { type DType, Tensor } from "../tensor.ts";
import type { Model } from "../nn/model.ts";
import { checkSize, type Noise, TRAIN } from "../nn/module.ts";
import { FlatTensors } from "../nn/params.ts";
import { scale, zero } from "../ops/elementwise.ts";
import type { Optimizer } from "../optim/optimizer.ts";
import { StepValues } from "../optim/step_values.ts";
import { Rng } from "../random.ts";
import { accumulateLoss } from "./kernels.ts";

/**
 * Per-example losses [B] of a batch's outputs and targets. It may throw to refuse the step
 * (the engine drops the step's recorded work unrun) as long as it records only: one that submits
 * (uploads, writes or reads a buffer: `Tensor.from`, `tensor.upload`) runs the work recorded
 * before it, and a refusal after that is reported as leaving the engine partly updated.
 * Upload its constants once, before the steps.
 */
export type LossFn = (ctx: Ctx, output: Tensor, targets: Tensor) => Tensor;

/**
 * The seed [B] of the final backward (each loss_i's multiplier), allocated from `ctx`, computed
 * from the batch's tape and its per-example losses. Like a {@linkcode LossFn}, it may refuse
 * the step by throwing; work it submits (an upload, a write, a read) cannot be taken back, and
 * a refusal after it is reported as leaving the engine partly updated.
 */
export type SeedRule = (ctx: Ctx, tape: Tape, losses: Tensor) => Tensor;

/** Sizes and parts of a {@linkcode StepEngine}. */
export interface StepEngineOptions {
  /** Per-example loss, e.g. `(ctx, y, t) => classificationLoss(ctx, y, t)`. */
  loss: LossFn;
  /** The update rule over the model's parameter layout. */
  optimizer: Optimizer;
  /** Batch size B: every step takes exactly B examples. */
  batch: number;
  /** Shape of one input example, e.g. [1, 28, 28] or [784]. */
  input: readonly number[];
  /** Shape and type of one example's target; default a u32 class label (shape []). */
  target?: { shape?: readonly number[]; dtype?: DType };
  /** Seed of random layers (dropout masks); default 0. */
  seed?: number;
}

/**
 * Steps of one model: the fixed input tensors a data source writes into (`x`, `targets`,
 * `weights`), the gradient buffer, and the running loss. Does not own the model or optimizer.
 */
export class StepEngine {
  /** The GPU everything lives on. */
  readonly gpu: Gpu;
  /** The model trained. */
  readonly model: Model;
  /** The per-example loss. */
  readonly loss: LossFn;
  /** The update rule. */
  readonly optimizer: Optimizer;
  /** Batch size B. */
  readonly batch: number;
  /** Gradients of the last backward of the batch, laid out like the parameters. */
  readonly grads: FlatTensors;
  /** Batch inputs [B, ...input]. */
  readonly x: Tensor;
  /** Batch targets [B, ...target] (u32 labels by default). */
  readonly targets: Tensor;
  /** Per-example weights [B] of the loss (all 1 at construction). */
  readonly weights: Tensor;
  /**
   * Running sums for logging: [0] sum of (unweighted) losses, [1] count of examples; read with
   * {@linkcode StepEngine.readLossSum}, read and reset with {@linkcode StepEngine.takeMeanLoss}
   * (and by `fit` at each epoch's end, {@linkcode StepEngine.takeStepsLoss}), reset with
   * {@linkcode StepEngine.resetLoss} (by `fit` before each epoch's steps).
   */
  readonly lossSum: Tensor;
  /** Seed of random layers: each step's dropout seed derives from (seed, stepIndex). */
  readonly seed: number;
  /**
   * Index of the current step over the run: advanced by every step, and set by the fit loop
   * at each epoch start, so a resumed run draws the same dropout masks.
   */
  stepIndex = 0;
  readonly #noise: StepValues;
  readonly #fixed: Tensor[] = [];
  /** Output width seen at the first forward, when the targets are class labels. */
  #classes: number | null = null;
  /** Labels written before the first forward (checked once the output width is known). */
  #labels = new LabelCheck("batch");
  /** Set by destroy(): a later write or step is refused by name (its buffers are gone). */
  #destroyed = false;
  /** [sum, count] that takeMeanLoss drained since the last takeStepsLoss (host doubles). */
  #drained: [number, number] = [0, 0];

  /**
   * Allocates the step's buffers for `model`. `batch` and every size of `input` and
   * `target.shape` must be integers >= 1 (a RangeError names the option).
   */
  constructor(model: Model, o: StepEngineOptions) {
    checkOptions(o);
    const gpu = model.gpu;
    this.gpu = gpu;
    this.model = model;
    this.loss = o.loss;
    this.optimizer = o.optimizer;
    this.batch = o.batch;
    this.grads = new FlatTensors(gpu, model.paramLayout, false);
    const B = o.batch;
    this.x = this.fixed([B, ...o.input]);
    this.targets = this.fixed([B, ...(o.target?.shape ?? [])], o.target?.dtype ?? "u32");
    this.weights = this.fixed([B]);
    this.weights.upload(gpu, new Float32Array(B).fill(1));
    this.lossSum = this.fixed([2]);
    zero(gpu, this.lossSum);
    this.seed = o.seed ?? 0;
    this.#noise = new StepValues(gpu, 1, "u32");
  }

  /**
   * Classes C of the targets when they are class labels (u32 of shape [], the default) and the
   * model's output is [B, C]: learned from the output's shape at the first forward (host-side,
   * nothing read back); null before it, and for other targets.
   */
  get numClasses(): number | null {
    return this.#classes;
  }

  /**
   * Writes a batch from host arrays into `x`, `targets` and (when given) `weights`. Class labels
   * are checked against {@linkcode StepEngine.numClasses} (integers in [0, C)); labels written
   * before the first forward are checked by it, before the loss is recorded. `rows` are the
   * examples' indices in the caller's data set, named in the error instead of batch rows.
   * `targets` must be the typed array of the targets' dtype (a TypeError otherwise).
   */
  writeBatch(
    inputs: Float32Array,
    targets: Float32Array | Uint32Array,
    weights?: Float32Array,
    rows?: ArrayLike<number>,
  ): void {
    this.#checkAlive("writeBatch");
    checkTargetArray("StepEngine", "targets", this.targets, targets);
    if (isLabels(this.targets)) this.#labels.written(targets, this.#classes, rows);
    this.gpu.write(this.x.view, inputs);
    this.gpu.write(this.targets.view, targets);
    if (weights) this.gpu.write(this.weights.view, weights);
  }

  #checkAlive(what: string): void {
    if (this.#destroyed) {
      throw new Error(`StepEngine used after destroy() (${what}): create a new StepEngine`);
    }
  }

  /** A tensor freed with the engine (for components that extend a step). */
  fixed(shape: number[], dtype: DType = "f32"): Tensor {
    const t = Tensor.empty(this.gpu, shape, dtype);
    this.#fixed.push(t);
    return t;
  }

  /** Frees the engine's buffers (not the model's or the optimizer's). */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.gpu.submit();
    this.#noise.destroy();
    this.grads.destroy();
    for (const t of this.#fixed) t.release(this.gpu);
  }

  /**
   * The randomness of a forward pass of the current step (see {@linkcode Noise}): stream 0 is
   * the batch pass; other passes of the same step (a dev pass) take other streams.
   */
  noise(stream: number): Noise {
    const value = new Rng(this.seed, "dropout-step", this.stepIndex).nextU32();
    return { seed: this.#noise.set([value]), stream };
  }

  /**
   * Per-example losses [n] of the batch's first `n` examples (default all B) at the
   * parameters, recorded on ctx's tape (real pass).
   */
  forwardLosses(ctx: Ctx, n = this.batch): Tensor {
    this.#checkAlive("a step");
    const x = leadingRows(this.x, n); // checks n before anything is written
    const targets = leadingRows(this.targets, n);
    const mode = { ...TRAIN, noise: this.noise(0) };
    const output = this.model.forward(ctx, x, mode);
    this.learnClasses(output, n);
    return this.loss(ctx, output, targets);
  }

  /**
   * Records the output width C of class-label targets from the batch's output [n, C] (once;
   * host-side) and checks the first `n` labels written before it: every step until they pass,
   * so a refused batch is refused again until a new one is written. Every forward of the batch
   * calls it before its loss is recorded: {@linkcode StepEngine.forwardLosses}, and components
   * that run the batch's forward themselves (the classifier-only meta step).
   */
  learnClasses(output: Tensor, n: number): void {
    if (!isLabels(this.targets) || output.shape.length !== 2) return;
    this.#classes ??= output.shape[1];
    this.#labels.known(this.#classes, n);
  }

  /** Backward of `tape` from `root` with `seed`, writing the gradients of `wrt` into `into`. */
  gradients(tape: Tape, root: Tensor, seed: Tensor, wrt: FlatTensors, into: FlatTensors): void {
    tape.backward(this.gpu, root, seed, wrt.tensors, into.tensors);
  }

  /** s * weights of the first `n` examples (default all B), a fresh tensor of `ctx`. */
  scaledWeights(ctx: Ctx, s: number, n = this.batch): Tensor {
    return scale(this.gpu, leadingRows(this.weights, n), s, ctx.empty([n]));
  }

  /**
   * One step at learning rate `lr`: loss = sum_i seed_i * loss_i, with seed = weights / n, or
   * the seed of `rule` (re-weighting from the same tape). `n` (default B) trains on the first n
   * examples of the inputs only (a partial last batch): kernels see [n, ...] views of the
   * fixed buffers, so a second batch size costs its pipelines and bind groups once. A step
   * that throws (a bad label, a loss of the wrong shape) runs nothing of itself, unless its
   * loss or rule submitted work (see {@linkcode LossFn}): the error then says so.
   */
  step(lr: number, rule?: SeedRule, n = this.batch): void {
    const tape = new Tape();
    const ctx = new Ctx(this.gpu, tape);
    // refused (a bad label, a loss of the wrong shape): nothing of it runs, the engine is as it was
    const l = refusable(this.gpu, [ctx], () => {
      const l = this.forwardLosses(ctx, n);
      const seed = rule ? rule(ctx, tape, l) : this.scaledWeights(ctx, 1 / n, n);
      this.gradients(tape, l, seed, this.model.params, this.grads);
      return l;
    });
    this.#update(ctx, l, lr);
  }

  /** One optimizer update from the gradients, loss bookkeeping; submits. */
  #update(ctx: Ctx, l: Tensor, lr: number): void {
    this.optimizer.step(this.model.params, this.grads, lr);
    accumulateLoss(this.gpu, l, this.lossSum);
    ctx.release();
    this.gpu.submit();
    this.stepIndex++;
  }

  /**
   * Reads and resets the running loss: the mean per-example (unweighted) loss since the last
   * call. Within `fit` a hook may call it (per-step or per-k-step losses): the epoch's
   * `trainLoss` still counts every step ({@linkcode StepEngine.takeStepsLoss}). Throws an Error
   * when no loss was recorded since the last call, rather than returning 0/0; a NaN or infinite
   * loss is returned as it is.
   */
  async takeMeanLoss(): Promise<number> {
    const [sum, count] = await this.readLossSum();
    if (count === 0) {
      throw new Error(
        "StepEngine.takeMeanLoss: no loss was recorded since its last call (or since fit took " +
          "the epoch's loss at its end); call it after a step, or read the running sums with " +
          "engine.readLossSum(), which resets nothing",
      );
    }
    zero(this.gpu, this.lossSum);
    this.#drained[0] += sum;
    this.#drained[1] += count;
    return sum / count;
  }

  /**
   * The mean per-example (unweighted) loss of every step since the last call: the running loss
   * plus what {@linkcode StepEngine.takeMeanLoss} took from it meanwhile, so a caller's reads do
   * not change it. Resets both. `fit` takes each epoch's `trainLoss` with it. Without a drain
   * it is the running sum over its count, as takeMeanLoss would return; NaN when no step was
   * recorded.
   */
  async takeStepsLoss(): Promise<number> {
    const [sum, count] = await this.readLossSum();
    const [drainedSum, drainedCount] = this.#drained;
    this.#drained = [0, 0];
    zero(this.gpu, this.lossSum);
    // adding 0 leaves the sum's bits as they are: an epoch without drains reports what it did
    return (sum + drainedSum) / (count + drainedCount);
  }

  /**
   * Forgets the running loss: zeroes {@linkcode StepEngine.lossSum} and what
   * {@linkcode StepEngine.takeMeanLoss} took from it, so {@linkcode StepEngine.takeStepsLoss}
   * counts only the steps after this call. `fit` calls it before each epoch's steps, so the
   * epoch's `trainLoss` counts neither a loss left before the call (a caller's own steps,
   * taken or not) nor an aborted epoch's.
   */
  resetLoss(): void {
    this.#checkAlive("resetLoss");
    zero(this.gpu, this.lossSum);
    this.#drained = [0, 0];
  }

  /**
   * The running loss without resetting it: [sum of per-example (unweighted) losses, count of
   * examples] since the last {@linkcode StepEngine.takeMeanLoss} or
   * {@linkcode StepEngine.takeStepsLoss} (within `fit`, since the epoch's start or a hook's
   * takeMeanLoss). Two reads around a step give its mean loss: (sum1 - sum0) /
   * (count1 - count0). Each call is one readback: a staging buffer, a submit, and a wait until
   * the GPU has finished every step recorded so far, so reading after every step makes each step
   * wait for the last; read every k steps to keep the GPU busy.
   */
  async readLossSum(): Promise<[sum: number, count: number]> {
    const [sum, count] = await this.lossSum.read(this.gpu);
    return [sum, count];
  }
}

/**
 * Runs `record`, the part of a step that records work and may refuse it, after submitting what
 * was recorded before it. When it throws, the work it recorded is dropped unrun
 * ({@linkcode Gpu.discard}) and `ctxs` are released, so a refused step (a bad label seen at the
 * first forward, a loss of the wrong shape) leaves parameters, running statistics, gradients
 * and the buffer pool as they were, and the next step computes what it would on a fresh engine.
 * Only work not yet submitted can be dropped: when something in `record` submitted (a loss or
 * seed rule that uploads), the error is an Error saying the engine may be partly updated and
 * what to do, with the refusal as its `cause`.
 */
export function refusable<T>(gpu: Gpu, ctxs: readonly Ctx[], record: () => T): T {
  gpu.submit();
  const submits = gpu.stats.submits;
  try {
    return record();
  } catch (e) {
    gpu.discard();
    for (const ctx of ctxs) ctx.release();
    if (gpu.stats.submits === submits) throw e;
    throw new Error(
      `StepEngine: a step was refused (${describeError(e)}) after part of it had run: ` +
        "something it recorded submitted the work recorded before (a loss or seed rule that " +
        "uploads, writes or reads a buffer, e.g. Tensor.from or tensor.upload), so the engine " +
        "may be partly updated (a forward's running statistics, state the seed rule keeps); " +
        "rebuild the model, optimizer and StepEngine, or reload a checkpoint, before training " +
        "on, and upload such constants once, before the steps",
      { cause: e },
    );
  }
}

/** Whether a targets tensor holds one u32 class label per example. */
export function isLabels(t: Tensor): boolean {
  return t.dtype === "u32" && t.shape.length === 1;
}

/** Whose labels {@linkcode checkLabels} checks: the engine's batch or a meta step's dev batch. */
const LABELS_OF = {
  batch: { owner: "StepEngine", example: "example", rows: "the batch" },
  dev: { owner: "MetaReweighter", example: "dev example", rows: "the dev batch" },
} as const;

/**
 * The host-side check of the class labels written to a targets tensor: against the class count
 * C at once when C is known, else on a copy (callers reuse their arrays) once it is. The engine
 * keeps one for its batch, a meta step one for its dev batch. Labels kept are dropped only when
 * they pass or are overwritten: while refused labels are on the GPU, every step is refused.
 */
export class LabelCheck {
  #pending: { labels: number[]; rows?: number[] } | null = null;

  /** Whose labels: named in the errors of {@linkcode checkLabels}. */
  constructor(readonly of: keyof typeof LABELS_OF) {}

  /**
   * Labels about to be written: checked now with `classes`, or kept while it is null. Refused,
   * they are not written, so what was kept stays kept.
   */
  written(labels: ArrayLike<number>, classes: number | null, rows?: ArrayLike<number>): void {
    if (classes !== null) {
      checkLabels(labels, labels.length, classes, rows, this.of);
      this.#pending = null; // what was kept is overwritten
    } else this.#pending = { labels: Array.from(labels), rows: rows && Array.from(rows) };
  }

  /**
   * Checks the first `n` (default all) of the labels kept, now that C is `classes`; they stay
   * kept when refused, and when the rows after `n` are still unchecked (a partial step).
   */
  known(classes: number, n?: number): void {
    const p = this.#pending;
    if (!p) return;
    const count = n ?? p.labels.length;
    checkLabels(p.labels, count, classes, p.rows, this.of);
    if (count >= p.labels.length) this.#pending = null;
  }
}

/**
 * Throws a RangeError naming the first of the first `n` labels that is not an integer in
 * [0, classes), by its row of the (dev) batch or, with `rows`, by the caller's example index.
 */
function checkLabels(
  labels: ArrayLike<number>,
  n: number,
  classes: number,
  rows?: ArrayLike<number>,
  of: keyof typeof LABELS_OF = "batch",
): void {
  const k = firstBadLabel(labels, classes, n);
  if (k < 0) return;
  const o = LABELS_OF[of];
  const y = labels[k];
  const at = rows ? `${o.example} ${rows[k]}` : `row ${k} of ${o.rows}`;
  // one output is more likely a regression run with the default (label) targets
  const regression = classes === 1
    ? '; a model with one output is a regression: pass target: { shape: [1], dtype: "f32" } ' +
      "to StepEngine, or give the last layer one output per class"
    : "";
  throw new RangeError(
    `${o.owner}: the label of ${at} is ${y}, not a class in [0, ${classes}) ` +
      `(the model outputs ${classes} class${classes === 1 ? "" : "es"})${regression}`,
  );
}

/**
 * Throws a TypeError when host `data` is not the typed array of tensor `t`'s dtype: the bytes
 * are written as they are, so float labels would reach a u32 tensor as their bit patterns.
 */
export function checkTargetArray(
  owner: string,
  name: string,
  t: Tensor,
  data: ArrayBufferView,
): void {
  const want = t.dtype === "u32" ? Uint32Array : Float32Array;
  if (data instanceof want) return;
  throw new TypeError(
    `${owner}: ${name} must be a ${want.name} for ${t.dtype} targets, got a ` +
      `${data.constructor.name} (its bytes would be read as ${t.dtype})`,
  );
}

/** Throws a RangeError naming the first bad size of `o` (see the constructor). */
function checkOptions(o: StepEngineOptions): void {
  checkSize("StepEngine", "batch", o.batch);
  o.input.forEach((d, i) => checkSize("StepEngine", `input[${i}]`, d));
  o.target?.shape?.forEach((d, i) => checkSize("StepEngine", `target.shape[${i}]`, d));
}

/**
 * The first `n` rows of a fixed tensor as a [n, ...] view of its buffer (the tensor itself when
 * n is all of it): how a step trains on fewer examples than its buffers hold.
 */
export function leadingRows(t: Tensor, n: number): Tensor {
  const rows = t.shape[0];
  if (n === rows) return t;
  if (!Number.isInteger(n) || n < 1 || n > rows) {
    throw new RangeError(`leadingRows: ${n} rows of a [${t.shape}] tensor; expected 1..${rows}`);
  }
  const shape = [n, ...t.shape.slice(1)];
  const size = (t.size / rows) * n * 4;
  return new Tensor(shape, { ...t.view, size }, false, t.dtype);
}
