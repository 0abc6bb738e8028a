/**
 * The training step on the GPU: a plain weighted step, and the paper's meta step computed
 * exactly with one JVP instead of a double backward (DESIGN.md section 2):
 *
 *   1. forward batch B at theta (tape T, BN running stats updated: this is the real pass);
 *      backward with the look-ahead weights -> g
 *   2. theta' = theta - eta * g                                (one kernel over all params)
 *   3. forward + backward of a dev batch at theta' (BN batch stats, running stats untouched) -> v
 *   4. ldot = J v: the JVP of B's per-example losses along v, replayed on tape T
 *      d L_dev(theta') / d eps_i = -eta * ldot_i (times 1/|B| for a mean look-ahead)
 *   5. per-example weights from ldot (the method's rule); backward of the SAME tape T with them;
 *      SGD-momentum update.
 *
 * Everything stays on the GPU: a step records its dispatches into one command encoder and
 * submits once; losses accumulate in a GPU buffer read only when asked.
 */
import { Ctx, Tape } from "../autograd/tape.ts";
import type { Gpu } from "../gpu/runtime.ts";
import { bind, Tensor } from "../tensor.ts";
import { FlatTensors } from "../nn/params.ts";
import type { ResNet } from "../nn/resnet.ts";
import { classificationLoss, type LossOptions } from "../ops/loss.ts";
import { runMap, scale, zero } from "../ops/elementwise.ts";
import { type SgdOptions, sgdStep } from "../optim/sgd.ts";
import { type MetaWeightRule, metaWeightsKernel } from "../../shaders/meta.ts";
import { lossSumKernel } from "../../shaders/train.ts";

export type { MetaWeightRule };

/** Static sizes of a run: every GPU buffer of a step is sized from these once. */
export interface StepShapes {
  /** Training batch size B. */
  batch: number;
  /** Dev batch size (images per meta-step dev batch). */
  devBatch: number;
  /** [channels, height, width] of one image. */
  image: [number, number, number];
  /** Number of classes. */
  numClasses: number;
}

/** How the meta step turns the dev-set signal into per-example weights. */
export interface MetaOptions {
  /** Look-ahead learning rate (the current lr in the reference code). */
  eta: number;
  /** eps = -tau * d L_dev / d eps. */
  tau: number;
  /** Look-ahead loss: "sum" (reference code) or "mean" (paper) over the batch. */
  lookahead: "sum" | "mean";
  /** Final weights from the class weights w and the meta signal. */
  rule: MetaWeightRule;
  /** Look-ahead per-example weights: the class weights ("w") or zeros (L2RW). */
  lookaheadWeights: "w" | "zero";
}

/** What a meta step leaves behind for reporting (GPU tensors, read on demand). */
export interface MetaStepResult {
  /** eps_i = -tau * d L_dev / d eps_i, [B]. */
  eps: Tensor;
  /** Final per-example weights (before the 1/|B| of the mean), [B]. */
  finalWeights: Tensor;
}

/** Host-side weighting of {@linkcode TrainState.metaStepHost} (e.g. Meta-Weight-Net). */
export interface HostWeightRule {
  /** Look-ahead per-example weights [B] from the per-example losses [B] at theta. */
  lookahead(losses: Float32Array): Float32Array;
  /** Seed [B] of the final backward from d L_dev / d w_i [B] and the losses. */
  final(dDevDw: Float32Array, losses: Float32Array): Float32Array;
}

/**
 * GPU state of one training run: parameters, BN buffers, gradients, momentum, look-ahead
 * parameters, the meta direction, and fixed input tensors that the data pipeline writes into.
 */
export class TrainState {
  /** The GPU everything lives on. */
  readonly gpu: Gpu;
  /** The network whose layouts size the flat buffers. */
  readonly model: ResNet;
  /** The static sizes of the run. */
  readonly shapes: StepShapes;
  /** Trainable parameters theta (requiresGrad). */
  readonly params: FlatTensors;
  /** BN running statistics. */
  readonly buffers: FlatTensors;
  /** Parameter gradients of the last backward of the batch. */
  readonly grads: FlatTensors;
  /** SGD momentum buffers, zeroed at construction. */
  readonly momentum: FlatTensors;
  /** Look-ahead parameters theta' = theta - eta * g of the meta step (requiresGrad). */
  readonly lookahead: FlatTensors;
  /** Meta direction v: gradient of the mean dev loss at theta'. */
  readonly direction: FlatTensors;
  /** Batch inputs: images [B,C,H,W], u32 labels [B], per-example class weights w [B]. */
  readonly x: Tensor;
  /** Labels of the batch, u32 [B]. */
  readonly labels: Tensor;
  /** Per-example weights w [B] of the batch ({@linkcode TrainState.metaStepHost} overwrites it). */
  readonly weights: Tensor;
  /** Dev batch inputs. */
  readonly devX: Tensor;
  /** Labels of the dev batch, u32 [devBatch]. */
  readonly devLabels: Tensor;
  /** Running sums for logging: [0] sum of losses, [1] count of examples. */
  readonly lossSum: Tensor;
  /** Per-example eps and final weights of the last meta step. */
  readonly eps: Tensor;
  /** Final per-example weights [B] of the last meta step. */
  readonly finalWeights: Tensor;
  /** Class weights [numClasses]: meta-learned in place by the "meta-update-wy" rule. */
  readonly classWeights: Tensor;
  readonly #fixed: Tensor[] = [];
  #devSeed: Tensor;

  /** Allocates every buffer of the run; momentum and the loss sums start at zero. */
  constructor(gpu: Gpu, model: ResNet, shapes: StepShapes) {
    this.gpu = gpu;
    this.model = model;
    this.shapes = shapes;
    this.params = new FlatTensors(gpu, model.paramLayout, true);
    this.buffers = new FlatTensors(gpu, model.bufferLayout, false);
    this.grads = new FlatTensors(gpu, model.paramLayout, false);
    this.momentum = new FlatTensors(gpu, model.paramLayout, false);
    this.lookahead = new FlatTensors(gpu, model.paramLayout, true);
    this.direction = new FlatTensors(gpu, model.paramLayout, false);
    const [C, H, W] = shapes.image;
    const fixed = (shape: number[], dtype: "f32" | "u32" = "f32") => {
      const t = Tensor.empty(gpu, shape, dtype);
      this.#fixed.push(t);
      return t;
    };
    this.x = fixed([shapes.batch, C, H, W]);
    this.labels = fixed([shapes.batch], "u32");
    this.weights = fixed([shapes.batch]);
    this.devX = fixed([shapes.devBatch, C, H, W]);
    this.devLabels = fixed([shapes.devBatch], "u32");
    this.lossSum = fixed([2]);
    this.eps = fixed([shapes.batch]);
    this.finalWeights = fixed([shapes.batch]);
    this.classWeights = fixed([shapes.numClasses]);
    this.#devSeed = fixed([shapes.devBatch]);
    this.#devSeed.upload(gpu, new Float32Array(shapes.devBatch).fill(1 / shapes.devBatch));
    this.momentum.clear();
    zero(gpu, this.lossSum);
  }

  /** Frees every GPU buffer of the state. */
  destroy(): void {
    for (
      const f of [
        this.params,
        this.buffers,
        this.grads,
        this.momentum,
        this.lookahead,
        this.direction,
      ]
    ) {
      f.destroy();
    }
    for (const t of this.#fixed) t.release(this.gpu);
  }

  /** Forward of the training batch at theta, recording onto `tape`; returns per-example losses. */
  #forwardBatch(ctx: Ctx, loss: LossOptions): Tensor {
    const logits = this.model.forward(ctx, this.x, this.params, this.buffers, {
      bn: "train",
      updateRunningStats: true,
    });
    return classificationLoss(ctx, logits, this.labels, loss);
  }

  /** Backward of `tape` with per-example seed, writing the parameter gradients into `into`. */
  #backward(tape: Tape, root: Tensor, seed: Tensor, wrt: FlatTensors, into: FlatTensors): void {
    const grads = tape.backward(this.gpu, root, seed, wrt.tensors);
    wrt.tensors.forEach((p, i) => {
      const g = grads.get(p)!;
      this.gpu.copy(g.view, into.tensors[i].view, p.size * 4);
      g.release(this.gpu);
    });
  }

  /** seed = s * weights (a fresh tensor of `ctx`). */
  #scaledWeights(ctx: Ctx, s: number): Tensor {
    return scale(this.gpu, this.weights, s, ctx.empty([this.shapes.batch]));
  }

  /** Backward of the batch tape with `seed`, one SGD update, loss bookkeeping; submits. */
  #update(ctx: Ctx, tape: Tape, l: Tensor, seed: Tensor, sgd: SgdOptions): void {
    this.#backward(tape, l, seed, this.params, this.grads);
    const n = this.params.layout.length;
    sgdStep(this.gpu, this.params.all, this.grads.all, this.momentum.all, n, sgd);
    accumulateLoss(this.gpu, l, this.lossSum);
    ctx.release();
    this.gpu.submit();
  }

  /**
   * Steps 2-4 of the meta step: theta' = theta - eta * (gradient of the batch tape under
   * `lookaheadSeed`; theta' = theta when null), v = grad of the dev loss at theta', and
   * ldot = J v, the JVP of the per-example losses `l` along v (a fresh tensor).
   */
  #metaSignal(tape: Tape, l: Tensor, lookaheadSeed: Tensor | null, eta: number): Tensor {
    const gpu = this.gpu;
    if (lookaheadSeed) {
      this.#backward(tape, l, lookaheadSeed, this.params, this.grads);
      const axpy = "a[i] - p.s0 * b[i]";
      runMap(gpu, "axpy", axpy, [flat(this.params), flat(this.grads)], flat(this.lookahead), eta);
    } else {
      this.lookahead.copyFrom(this.params);
    }
    const devTape = new Tape();
    const devCtx = new Ctx(gpu, devTape);
    const devLogits = this.model.forward(devCtx, this.devX, this.lookahead, this.buffers, {
      bn: "train",
      updateRunningStats: false,
    });
    const devLoss = classificationLoss(devCtx, devLogits, this.devLabels, {});
    this.#backward(devTape, devLoss, this.#devSeed, this.lookahead, this.direction);
    devCtx.release();
    const tangents = new Map<Tensor, Tensor>();
    this.params.tensors.forEach((p, i) => tangents.set(p, this.direction.tensors[i]));
    const ldot = tape.jvp(gpu, tangents, l);
    if (!ldot) throw new Error("meta step: the loss does not depend on the parameters");
    return ldot;
  }

  /**
   * A plain step: loss = sum_i seed_i * loss_i with seed = weights / |B|, one SGD update.
   * `weights` must hold the per-example weights (1 for plain cross-entropy).
   */
  plainStep(loss: LossOptions, sgd: SgdOptions): void {
    const tape = new Tape();
    const ctx = new Ctx(this.gpu, tape);
    const l = this.#forwardBatch(ctx, loss);
    this.#update(ctx, tape, l, this.#scaledWeights(ctx, 1 / this.shapes.batch), sgd);
  }

  /** One meta step (see the module comment); updates the real model once. */
  metaStep(loss: LossOptions, sgd: SgdOptions, meta: MetaOptions): MetaStepResult {
    const B = this.shapes.batch;
    const lookScale = meta.lookahead === "mean" ? 1 / B : 1;
    const tape = new Tape();
    const ctx = new Ctx(this.gpu, tape);
    // 1. the real forward, kept on the tape for steps 2, 4 and 5
    const l = this.#forwardBatch(ctx, loss);
    // 2-4. theta', v, ldot_i = <v, grad loss_i(theta)>
    const lookaheadSeed = meta.lookaheadWeights === "w"
      ? this.#scaledWeights(ctx, lookScale)
      : null;
    const ldot = this.#metaSignal(tape, l, lookaheadSeed, meta.eta);
    // 5. final weights from eps = tau * eta * ldot (* 1/|B|), backward of the same tape, update
    const seed = ctx.empty([B]);
    metaWeights(
      this.gpu,
      meta.rule,
      this.weights,
      ldot,
      this.labels,
      this.classWeights,
      this.eps,
      this.finalWeights,
      seed,
      { c: meta.tau * meta.eta * lookScale, batch: B },
    );
    ldot.release(this.gpu);
    this.#update(ctx, tape, l, seed, sgd);
    return { eps: this.eps, finalWeights: this.finalWeights };
  }

  /**
   * A meta step whose per-example weights are computed on the host (Meta-Weight-Net), with the
   * same exact meta-gradient as {@linkcode metaStep}: the per-example losses at theta are read
   * back, `rule.lookahead` turns them into look-ahead weights w (uploaded to `weights`), and
   * after the JVP `rule.final` receives d L_dev(theta') / d w_i = -eta * ldot_i (times 1/|B|
   * for a mean look-ahead) and returns the seed of the final backward (the exact multiplier of
   * each loss_i). Two readbacks per step: use it only where the rule needs the host.
   */
  async metaStepHost(
    loss: LossOptions,
    sgd: SgdOptions,
    meta: { eta: number; lookahead: "sum" | "mean" },
    rule: HostWeightRule,
  ): Promise<void> {
    const gpu = this.gpu;
    const B = this.shapes.batch;
    const lookScale = meta.lookahead === "mean" ? 1 / B : 1;
    const tape = new Tape();
    const ctx = new Ctx(gpu, tape);
    const l = this.#forwardBatch(ctx, loss);
    const losses = await l.read(gpu);
    this.weights.upload(gpu, rule.lookahead(losses));
    const ldot = this.#metaSignal(tape, l, this.#scaledWeights(ctx, lookScale), meta.eta);
    const dw = await ldot.read(gpu);
    ldot.release(gpu);
    for (let i = 0; i < B; i++) dw[i] *= -meta.eta * lookScale;
    const seed = ctx.empty([B]);
    seed.upload(gpu, rule.final(dw, losses));
    this.#update(ctx, tape, l, seed, sgd);
  }

  /** Reads and resets the running loss: mean per-example (unweighted) loss since the last call. */
  async takeMeanLoss(): Promise<number> {
    const [sum, count] = await this.lossSum.read(this.gpu);
    zero(this.gpu, this.lossSum);
    return count > 0 ? sum / count : NaN;
  }
}

/** The whole flat buffer as one tensor (for the look-ahead axpy). */
function flat(f: FlatTensors): Tensor {
  return new Tensor([f.layout.length], f.all, false);
}

/** lossSum[0] += sum(loss), lossSum[1] += |B|, in index order (one thread). */
function accumulateLoss(gpu: Gpu, loss: Tensor, into: Tensor): void {
  lossSumKernel.dispatch(gpu, [bind(loss), bind(into)], { n: loss.size }, [1]);
}

/**
 * eps_i = c * ldot_i; final weights by rule; seed = final / |B| (or the normalised weights
 * for L2RW-style rules, whose loss is a weighted sum).
 */
function metaWeights(
  gpu: Gpu,
  rule: MetaWeightRule,
  w: Tensor,
  ldot: Tensor,
  labels: Tensor,
  classW: Tensor,
  eps: Tensor,
  final: Tensor,
  seed: Tensor,
  o: { c: number; batch: number },
): void {
  metaWeightsKernel(rule).dispatch(
    gpu,
    [bind(w), bind(ldot), bind(labels), bind(classW), bind(eps), bind(final), bind(seed)],
    { B: o.batch, c: o.c },
    [1],
  );
}
