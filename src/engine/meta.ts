/** The paper's meta re-weighting as a component of any step engine: {@linkcode MetaReweighter}. */
import { Ctx, Tape } from "../autograd/tape.ts";
import { Tensor } from "../tensor.ts";
import {
  checkSize,
  EVAL,
  type ForwardMode,
  type Module,
  type ParamScope,
  TRAIN,
  TRAIN_NO_UPDATE,
} from "../nn/module.ts";
import { FlatTensors } from "../nn/params.ts";
import { type BufferView, grid1d } from "../gpu/runtime.ts";
import { StepValues } from "../optim/step_values.ts";
import { Sgd } from "../optim/optimizer.ts";
import { classificationLoss } from "../ops/loss.ts";
import { accumulateLoss, metaWeights } from "./kernels.ts";
import { lookaheadKernel, type MetaWeightRule } from "../../shaders/meta.ts";
import type { SafetensorsFile } from "../checkpoint/safetensors.ts";
import type { CheckpointExtra } from "./fit.ts";
import {
  checkTargetArray,
  isLabels,
  LabelCheck,
  leadingRows,
  type LossFn,
  refusable,
  type StepEngine,
} from "./step.ts";

export type { MetaWeightRule };

/** How the meta step turns the dev-set signal into per-example weights. */
export interface MetaOptions {
  /** Look-ahead learning rate (the current lr in the reference code). */
  eta: number;
  /** eps = -tau * d L_dev / d eps. */
  tau: number;
  /** Look-ahead loss: "sum" (reference code) or "mean" (paper) over the batch. */
  lookahead: "sum" | "mean";
  /** Final weights from the weights w and the meta signal ("meta": w + eps). */
  rule: MetaWeightRule;
  /** Look-ahead per-example weights: the weights w ("w") or zeros (L2RW). */
  lookaheadWeights: "w" | "zero";
}

/** What a meta step leaves behind for reporting (GPU tensors, read on demand). */
export interface MetaStepResult {
  /** eps_i = -tau * d L_dev / d eps_i, [B]. */
  eps: Tensor;
  /** Final per-example weights (before the 1/|B| of the mean), [B]. */
  finalWeights: Tensor;
}

/** Options of {@linkcode MetaReweighter}. */
export interface MetaReweighterOptions {
  /** Dev batch size. */
  devBatch: number;
  /** Mean loss of the dev batch at theta'; default the engine's loss. */
  devLoss?: LossFn;
  /**
   * Classes of `classWeights`, the per-class weights that rule "meta-update-wy" learns: when
   * that rule runs it must be the model's output width (a RangeError at its first step
   * otherwise). Default 1: enough for the other rules, which do not read them.
   */
  numClasses?: number;
  /**
   * Parameters of the look-ahead, the dev gradient and the JVP: "all" (default) or
   * "classifier", the head of a {@linkcode HeadSplit} root module only (the backbone is then
   * trained by the final update, or frozen with `freezeBackbone`).
   */
  params?: "all" | "classifier";
  /**
   * With "classifier": the backbone is not trained; its features are computed in eval mode
   * (running statistics) without a tape, and only the head is updated (SGD only).
   */
  freezeBackbone?: boolean;
}

/**
 * A root module that splits into a feature extractor and a final layer, its child `headName`
 * (whose parameters must be contiguous in the layout): what the classifier-only meta step needs.
 */
export interface HeadSplit extends Module {
  /** Name of the head child (e.g. "fc"). */
  readonly headName: string;
  /** The head: features [N, F] to outputs. */
  readonly head: Module;
  /** Features of `x`: everything before the head. */
  features(ctx: Ctx, x: Tensor, p: ParamScope, mode: ForwardMode): Tensor;
}

/** Whether a module implements {@linkcode HeadSplit}. */
export function isHeadSplit(m: Module): m is HeadSplit {
  const h = m as Partial<HeadSplit>;
  return typeof h.headName === "string" && typeof h.features === "function" && !!h.head;
}

/** The head's parameters: indices in the layout and their contiguous byte range. */
interface HeadRange {
  indices: number[];
  /** Byte offset of the range's first value. */
  offset: number;
  /** Floats in the range (with alignment gaps). */
  length: number;
}

/**
 * The meta step over any model and loss of a {@linkcode StepEngine}, the paper's re-weighting:
 * every example's loss is weighted by `w_i + eps_i`, with eps_i the exact meta-gradient of a dev
 * batch's loss computed with one JVP instead of a double backward:
 *
 *   1. forward batch B at theta (tape T, running stats updated: the real pass);
 *      backward with the look-ahead weights -> g
 *   2. theta' = theta - eta * g                                (one kernel over all params)
 *   3. forward + backward of a dev batch at theta' (batch statistics, running stats untouched)
 *      -> v
 *   4. ldot = J v: the JVP of B's per-example losses along v, replayed on tape T;
 *      d L_dev(theta') / d eps_i = -eta * ldot_i (times 1/|B| for a mean look-ahead)
 *   5. per-example weights from ldot (the rule); backward of the SAME tape T with them; update.
 */
export class MetaReweighter {
  /** The engine whose batch is re-weighted. */
  readonly engine: StepEngine;
  /** Dev batch size. */
  readonly devBatch: number;
  /** The dev loss. */
  readonly devLoss: LossFn;
  /** Look-ahead parameters theta' = theta - eta * g (requiresGrad). */
  readonly lookahead: FlatTensors;
  /** Meta direction v: gradient of the mean dev loss at theta'. */
  readonly direction: FlatTensors;
  /**
   * Dev batch inputs [devBatch, ...input], written by the data source: from host arrays with
   * {@linkcode MetaReweighter.writeDevBatch}, or on the GPU (augmented images).
   */
  readonly devX: Tensor;
  /** Dev batch targets, as the engine's targets (see {@linkcode MetaReweighter.devX}). */
  readonly devTargets: Tensor;
  /** eps of the last meta step, [B]. */
  readonly eps: Tensor;
  /** Final per-example weights [B] of the last meta step. */
  readonly finalWeights: Tensor;
  /**
   * Class weights w_y [numClasses], all 1 at construction: the "meta-update-wy" rule adds each
   * step's eps to them (summed per class) and trains with the result. To start from other
   * weights (the effective-number w_y of the long-tail trainer), upload them before the first
   * step: `meta.classWeights.upload(gpu, w)`. The rule's look-ahead takes the engine's
   * `weights`, which the caller keeps at classWeights[y_i] (the long-tail trainer gathers them
   * on the GPU before each step). A run continued with `fit`'s resume needs them in the
   * checkpoint: see {@linkcode MetaReweighter.checkpointState}.
   */
  readonly classWeights: Tensor;
  /** Name of the class weights in {@linkcode MetaReweighter.checkpointState}'s tensors. */
  static readonly classWeightsKey = "meta.class_weights";
  readonly #devSeed: Tensor;
  /** The look-ahead's eta, per step without a uniform (see {@linkcode StepValues}). */
  readonly #eta: StepValues;
  /** The factor of eps = c * ldot, likewise per step. */
  readonly #c: StepValues;
  readonly #labels: Tensor;
  /** The head's range when the meta step is restricted to it. */
  readonly #head: HeadRange | null;
  readonly #freeze: boolean;
  /** Whether the caller gave numClasses (named in the class count's error). */
  readonly #numClassesGiven: boolean;
  /** Dev labels written before the engine knew its classes (checked at the next meta step). */
  readonly #devLabels = new LabelCheck("dev");

  /**
   * Allocates the look-ahead state and the dev batch of `engine`; `devBatch` and `numClasses`
   * must be integers >= 1 (a RangeError names the option).
   */
  constructor(engine: StepEngine, o: MetaReweighterOptions) {
    checkSize("MetaReweighter", "devBatch", o.devBatch);
    if (o.numClasses !== undefined) checkSize("MetaReweighter", "numClasses", o.numClasses);
    const gpu = engine.gpu;
    this.engine = engine;
    this.devBatch = o.devBatch;
    this.devLoss = o.devLoss ?? engine.loss;
    const layout = engine.model.paramLayout;
    this.lookahead = new FlatTensors(gpu, layout, true);
    this.direction = new FlatTensors(gpu, layout, false);
    this.#eta = new StepValues(gpu, 1);
    this.#c = new StepValues(gpu, 1);
    const B = engine.batch;
    this.devX = engine.fixed([o.devBatch, ...engine.x.shape.slice(1)]);
    this.devTargets = engine.fixed(
      [o.devBatch, ...engine.targets.shape.slice(1)],
      engine.targets.dtype,
    );
    this.eps = engine.fixed([B]);
    this.finalWeights = engine.fixed([B]);
    const classes = o.numClasses ?? 1;
    this.#numClassesGiven = o.numClasses !== undefined;
    this.classWeights = engine.fixed([classes]);
    this.classWeights.upload(gpu, new Float32Array(classes).fill(1)); // not the pool's last values
    this.#devSeed = engine.fixed([o.devBatch]);
    this.#devSeed.upload(gpu, new Float32Array(o.devBatch).fill(1 / o.devBatch));
    // the weight kernel reads a label per example; targets that are not labels read class 0
    this.#labels = engine.targets.dtype === "u32" && engine.targets.shape.length === 1
      ? engine.targets
      : engine.fixed([B], "u32");
    if (this.#labels !== engine.targets) this.#labels.upload(gpu, new Uint32Array(B));
    this.#head = o.params === "classifier" ? headRange(engine) : null;
    this.#freeze = o.freezeBackbone ?? false;
    if (this.#freeze && !this.#head) {
      throw new Error('MetaReweighter: freezeBackbone needs params: "classifier"');
    }
    if (this.#freeze && !(engine.optimizer instanceof Sgd)) {
      throw new Error("MetaReweighter: freezeBackbone updates the head with SGD only");
    }
  }

  /**
   * Writes a whole dev batch from host arrays into `devX` and `devTargets`. Class labels are
   * checked against the engine's {@linkcode StepEngine.numClasses} (integers in [0, C)); labels
   * written before the engine's first forward are checked by the next meta step, once C is
   * known and before the dev loss is recorded (refused, by every meta step until a new dev batch
   * is written). `rows` are the examples' indices in the caller's
   * dev set, named in the error instead of dev batch rows. Other targets are written unchecked.
   * The arrays must hold exactly one dev batch (a RangeError otherwise), `targets` in the typed
   * array of the targets' dtype (a TypeError otherwise); a refused batch writes nothing.
   */
  writeDevBatch(
    inputs: Float32Array,
    targets: Float32Array | Uint32Array,
    rows?: ArrayLike<number>,
  ): void {
    this.#checkDevSizes(inputs.length, targets.length, rows?.length);
    const t = this.devTargets;
    checkTargetArray("MetaReweighter", "dev targets", t, targets);
    if (isLabels(t)) this.#devLabels.written(targets, this.engine.numClasses, rows);
    const gpu = this.engine.gpu;
    gpu.write(this.devX.view, inputs);
    gpu.write(t.view, targets);
  }

  /** Throws a RangeError unless the sizes given make exactly one dev batch. */
  #checkDevSizes(inputs: number, targets: number, rows?: number): void {
    const B = this.devBatch, x = this.devX.size, t = this.devTargets.size;
    if (inputs === x && targets === t && (rows === undefined || rows === B)) return;
    const sizes = (i: number, n: number, r?: number) =>
      `${i} input values, ${n} targets` + (rows === undefined ? "" : ` and ${r} rows`);
    throw new RangeError(
      `MetaReweighter: writeDevBatch got ${sizes(inputs, targets, rows)}; a dev batch of ${B} ` +
        `examples takes ${sizes(x, t, B)}`,
    );
  }

  /**
   * Checks the dev labels written before the engine knew its classes, once it does (a
   * RangeError naming the first bad one; refused again at every call until a new dev batch is
   * written); does nothing before. {@linkcode MetaReweighter.signal} calls it before it records
   * anything; a seed rule that records work of its own before calling `signal` calls it first,
   * so that a refused step leaves nothing of that work behind.
   */
  checkDevLabels(): void {
    const classes = this.engine.numClasses;
    if (classes !== null) this.#devLabels.known(classes);
  }

  /**
   * Throws when `rule` indexes `classWeights` by label ("meta-update-wy") and they do not fit
   * the model: targets that are not class labels (an Error), or a count that is not the model's
   * output width (a RangeError naming numClasses; the kernel would read and write past them
   * silently). Host-side, nothing read back: called before a step records anything, and, at the
   * engine's first forward, right after it gives the width (before the look-ahead).
   */
  #checkClassWeights(rule: MetaWeightRule): void {
    if (rule !== "meta-update-wy") return;
    const e = this.engine;
    if (!isLabels(e.targets)) {
      throw new Error(
        `MetaReweighter: rule "${rule}" learns a weight per class and needs class-label ` +
          `targets (u32, one per example); this engine's targets are ${e.targets.dtype} ` +
          `[${e.targets.shape}]`,
      );
    }
    const C = e.numClasses, n = this.classWeights.size;
    if (C === null || n === C) return;
    const given = this.#numClassesGiven ? `numClasses: ${n}` : "numClasses not given: 1";
    throw new RangeError(
      `MetaReweighter: rule "${rule}" learns one weight per class, but classWeights has ${n} ` +
        `(${given}) and the model outputs ${C} classes; construct the MetaReweighter with ` +
        `numClasses: ${C}`,
    );
  }

  /**
   * The reweighter's state for a checkpoint of `fit`: the class weights, which the
   * "meta-update-wy" rule learns (everything else is recomputed each step), as an F32 tensor
   * `name` (default {@linkcode MetaReweighter.classWeightsKey}). Reads them back (waits for the
   * GPU). Plug it into fit's hooks with {@linkcode MetaReweighter.restore}:
   * `checkpointState: () => meta.checkpointState(), restore: (file) => meta.restore(file)`
   * (merge its tensors with a client's own, under names of their own).
   */
  async checkpointState(name = MetaReweighter.classWeightsKey): Promise<CheckpointExtra> {
    const data = await this.classWeights.read(this.engine.gpu);
    return { tensors: new Map([[name, { dtype: "F32", shape: [data.length], data }]]) };
  }

  /**
   * Restores the class weights from a checkpoint written with
   * {@linkcode MetaReweighter.checkpointState} (`fit`'s `restore` hook). Throws an Error naming
   * the file when it holds no F32 tensor `name`, or one of another class count.
   */
  restore(file: SafetensorsFile, name = MetaReweighter.classWeightsKey): void {
    const where = file.path ? `checkpoint ${file.path}` : "the checkpoint";
    const t = file.tensors.get(name), n = this.classWeights.size;
    if (!t || t.dtype !== "F32") {
      throw new Error(
        `MetaReweighter: ${where} holds ${t ? `a ${t.dtype} tensor` : "no tensor"} ${name}, ` +
          `expected the F32 class weights: it was written without the reweighter's ` +
          `checkpointState in fit's hooks; resume a checkpoint written with them, or start a ` +
          `new run`,
      );
    }
    if (t.data.length !== n) {
      throw new Error(
        `MetaReweighter: ${where} holds ${t.data.length} class weights in ${name}, but this ` +
          `reweighter has ${n} (numClasses); construct it with numClasses: ${t.data.length}`,
      );
    }
    this.classWeights.upload(this.engine.gpu, t.data as Float32Array);
  }

  /** Frees the look-ahead buffers (the tensors go with the engine). */
  destroy(): void {
    this.#eta.destroy();
    this.#c.destroy();
    this.lookahead.destroy();
    this.direction.destroy();
  }

  /**
   * One meta step (the five passes above) with update learning rate `lr`, over the first `n`
   * examples of the batch (default all B; a partial last batch): look-ahead and final losses
   * over those n; `eps` and `finalWeights` hold n values.
   */
  step(lr: number, meta: MetaOptions, n = this.engine.batch): MetaStepResult {
    this.#checkClassWeights(meta.rule); // before anything is recorded, once C is known
    if (this.#head) {
      if (n !== this.engine.batch) {
        throw new Error(
          `classifier-only meta step: a partial batch (${n} of ${this.engine.batch})`,
        );
      }
      return this.#headStep(lr, meta, this.#head);
    }
    const e = this.engine;
    const lookScale = meta.lookahead === "mean" ? 1 / n : 1;
    e.step(lr, (ctx, tape, l) => {
      this.#checkClassWeights(meta.rule); // the first forward has just given C
      const lookaheadSeed = meta.lookaheadWeights === "w"
        ? e.scaledWeights(ctx, lookScale, n)
        : null;
      const ldot = this.signal(tape, l, lookaheadSeed, meta.eta);
      const seed = ctx.empty([n]);
      metaWeights(
        e.gpu,
        meta.rule,
        leadingRows(e.weights, n),
        ldot,
        leadingRows(this.#labels, n),
        this.classWeights,
        leadingRows(this.eps, n),
        leadingRows(this.finalWeights, n),
        seed,
        this.#c.set([meta.tau * meta.eta * lookScale]),
        n,
      );
      ldot.release(e.gpu);
      return seed;
    }, n);
    return { eps: this.eps, finalWeights: this.finalWeights };
  }

  /** The head's range of a flat buffer, as one binding. */
  #range(flat: FlatTensors | GPUBuffer, h: HeadRange): BufferView {
    const buffer = flat instanceof FlatTensors ? flat.buffer : flat;
    return { buffer, offset: h.offset, size: h.length * 4 };
  }

  /**
   * The meta step restricted to the head: the batch features f (on tape T, or without a tape
   * when the backbone is frozen), the head on its own tape H over f, the look-ahead, dev
   * gradient and JVP over the head's parameters only, then the final backward through H (and on
   * through T from f's gradient, unless frozen) and the update (the head's range when frozen).
   */
  #headStep(lr: number, meta: MetaOptions, h: HeadRange): MetaStepResult {
    const e = this.engine, gpu = e.gpu, B = e.batch, model = e.model;
    const root = model.root as HeadSplit;
    const lookScale = meta.lookahead === "mean" ? 1 / B : 1;
    const frozen = this.#freeze;
    const pick = (flat: FlatTensors) => h.indices.map((i) => flat.tensors[i]);
    const [params, grads, look, dir] = [model.params, e.grads, this.lookahead, this.direction]
      .map(pick);
    const tapeT = frozen ? null : new Tape();
    const ctxT = new Ctx(gpu, tapeT);
    const tapeH = new Tape(), ctxH = new Ctx(gpu, tapeH);
    // refused after the forwards (a bad label): they never run, as in the engine's step
    const { f, fHead, l } = refusable(gpu, [ctxT, ctxH], () => {
      const backboneMode = frozen ? EVAL : { ...TRAIN, noise: e.noise(0) };
      const f = root.features(ctxT, e.x, model.scope(), backboneMode);
      const fHead = new Tensor(f.shape, f.view, false); // the head's input, its own tape's leaf
      fHead.requiresGrad = !frozen;
      const headMode = { ...TRAIN, noise: e.noise(0) };
      const out = root.head.forward(ctxH, fHead, model.scope().child(root.headName), headMode);
      e.learnClasses(out, B);
      this.checkDevLabels();
      this.#checkClassWeights(meta.rule);
      return { f, fHead, l: e.loss(ctxH, out, e.targets) };
    });
    if (meta.lookaheadWeights === "w") {
      tapeH.backward(gpu, l, e.scaledWeights(ctxH, lookScale), params, grads);
      lookaheadKernel.dispatch(
        gpu,
        [
          this.#range(model.params, h),
          this.#range(e.grads, h),
          this.#eta.set([meta.eta]),
          this.#range(this.lookahead, h),
        ],
        { n: h.length },
        grid1d(Math.ceil(h.length / 256)),
      );
    } else {
      gpu.copy(this.#range(model.params, h), this.#range(this.lookahead, h));
    }
    this.#headDevGradient(root, frozen, look, dir);
    const ldot = tapeH.jvp(gpu, new Map(params.map((p, k) => [p, dir[k]])), l);
    if (!ldot) throw new Error("meta step: the loss does not depend on the head");
    const seed = ctxH.empty([B]);
    metaWeights(
      gpu,
      meta.rule,
      e.weights,
      ldot,
      this.#labels,
      this.classWeights,
      this.eps,
      this.finalWeights,
      seed,
      this.#c.set([meta.tau * meta.eta * lookScale]),
      B,
    );
    ldot.release(gpu);
    if (frozen) {
      tapeH.backward(gpu, l, seed, params, grads);
      const sgd = e.optimizer as Sgd;
      sgd.stepRange(model.params, e.grads, h.offset / 4, h.length, lr);
    } else {
      const fGrad = ctxT.empty(f.shape);
      tapeH.backward(gpu, l, seed, [...params, fHead], [...grads, fGrad]);
      const rest = model.params.tensors.filter((_, i) => !h.indices.includes(i));
      const restGrads = e.grads.tensors.filter((_, i) => !h.indices.includes(i));
      tapeT!.backward(gpu, f, fGrad, rest, restGrads);
      e.optimizer.step(model.params, e.grads, lr);
    }
    accumulateLoss(gpu, l, e.lossSum);
    ctxH.release();
    ctxT.release();
    gpu.submit();
    e.stepIndex++;
    return { eps: this.eps, finalWeights: this.finalWeights };
  }

  /**
   * v = gradient of the dev loss w.r.t. the head at theta' (written into `dir`): the dev
   * features at the backbone's parameters without a tape (eval mode when frozen, else batch
   * statistics), the head at the look-ahead parameters on a tape.
   */
  #headDevGradient(root: HeadSplit, frozen: boolean, look: Tensor[], dir: Tensor[]): void {
    const e = this.engine, gpu = e.gpu;
    const featCtx = new Ctx(gpu, null);
    const mode = frozen ? EVAL : { ...TRAIN_NO_UPDATE, noise: e.noise(1) };
    const fDev = root.features(featCtx, this.devX, e.model.scope(), mode);
    const devTape = new Tape(), devCtx = new Ctx(gpu, devTape);
    const headScope = e.model.scope(this.lookahead).child(root.headName);
    const out = root.head.forward(devCtx, fDev, headScope, {
      ...TRAIN_NO_UPDATE,
      noise: e.noise(1),
    });
    const devLoss = this.devLoss(devCtx, out, this.devTargets);
    devTape.backward(gpu, devLoss, this.#devSeed, look, dir);
    devCtx.release();
    featCtx.release();
  }

  /**
   * Steps 2-4: theta' = theta - eta * (gradient of the batch tape under `lookaheadSeed`;
   * theta' = theta when null), v = gradient of the dev loss at theta', and ldot = J v, the JVP
   * of the per-example losses `l` along v (a fresh tensor the caller releases).
   */
  signal(tape: Tape, l: Tensor, lookaheadSeed: Tensor | null, eta: number): Tensor {
    this.checkDevLabels();
    const e = this.engine;
    const gpu = e.gpu;
    const params = e.model.params;
    if (lookaheadSeed) {
      e.gradients(tape, l, lookaheadSeed, params, e.grads);
      const n = params.layout.length;
      lookaheadKernel.dispatch(
        gpu,
        [params.all, e.grads.all, this.#eta.set([eta]), this.lookahead.all],
        { n },
        grid1d(Math.ceil(n / 256)),
      );
    } else {
      this.lookahead.copyFrom(params);
    }
    const devTape = new Tape();
    const devCtx = new Ctx(gpu, devTape);
    const mode = { ...TRAIN_NO_UPDATE, noise: e.noise(1) };
    const devOut = e.model.forward(devCtx, this.devX, mode, this.lookahead);
    const devLoss = this.devLoss(devCtx, devOut, this.devTargets);
    e.gradients(devTape, devLoss, this.#devSeed, this.lookahead, this.direction);
    devCtx.release();
    const tangents = new Map<Tensor, Tensor>();
    params.tensors.forEach((p, i) => tangents.set(p, this.direction.tensors[i]));
    const ldot = tape.jvp(gpu, tangents, l);
    if (!ldot) throw new Error("meta step: the loss does not depend on the parameters");
    return ldot;
  }
}

/** The head's parameter range of an engine's model (checked to be a {@linkcode HeadSplit}). */
function headRange(engine: StepEngine): HeadRange {
  const root = engine.model.root;
  if (!isHeadSplit(root)) {
    throw new Error(
      'MetaReweighter: params "classifier" needs a root module with headName, head and ' +
        "features() (a HeadSplit, e.g. TorchvisionResNet)",
    );
  }
  const layout = engine.model.paramLayout;
  const prefix = root.headName + ".";
  const indices = layout.specs.flatMap((s, i) => (s.name.startsWith(prefix) ? [i] : []));
  if (!indices.length || indices.some((k, j) => k !== indices[0] + j)) {
    throw new Error(`MetaReweighter: the head ${root.headName} has no contiguous parameters`);
  }
  const first = indices[0], next = indices[indices.length - 1] + 1;
  const end = next < layout.specs.length ? layout.offsets[next] : layout.length;
  return { indices, offset: layout.offsets[first] * 4, length: end - layout.offsets[first] };
}

/** Plain cross-entropy of class logits against u32 labels: the dev loss of the long-tail runs. */
export function crossEntropy(ctx: Ctx, output: Tensor, targets: Tensor): Tensor {
  return classificationLoss(ctx, output, targets, {});
}
