/**
 * The paper's meta re-weighting as a component of any {@linkcode StepEngine}: every example's
 * loss is weighted by `w_i + eps_i`, with eps_i the exact meta-gradient of a dev batch's loss
 * computed with one JVP instead of a double backward:
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
import { Ctx, Tape } from "../autograd/tape.ts";
import { Tensor } from "../tensor.ts";
import { TRAIN_NO_UPDATE } from "../nn/module.ts";
import { FlatTensors } from "../nn/params.ts";
import { runMap } from "../ops/elementwise.ts";
import { classificationLoss } from "../ops/loss.ts";
import { metaWeights } from "./kernels.ts";
import type { MetaWeightRule } from "../../shaders/meta.ts";
import { leadingRows, type LossFn, type StepEngine } from "./step.ts";

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

/** Host-side weighting of {@linkcode MetaReweighter.stepHost} (e.g. Meta-Weight-Net). */
export interface HostWeightRule {
  /** Look-ahead per-example weights [B] from the per-example losses [B] at theta. */
  lookahead(losses: Float32Array): Float32Array;
  /** Seed [B] of the final backward from d L_dev / d w_i [B] and the losses. */
  final(dDevDw: Float32Array, losses: Float32Array): Float32Array;
}

/** Options of {@linkcode MetaReweighter}. */
export interface MetaReweighterOptions {
  /** Dev batch size. */
  devBatch: number;
  /** Mean loss of the dev batch at theta'; default the engine's loss. */
  devLoss?: LossFn;
  /** Classes of the per-class weights `classWeights` (rule "meta-update-wy"); default 1. */
  numClasses?: number;
}

/** The meta step over any model and loss of a {@linkcode StepEngine}. */
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
  /** Dev batch inputs [devBatch, ...input], written by the data source. */
  readonly devX: Tensor;
  /** Dev batch targets, as the engine's targets. */
  readonly devTargets: Tensor;
  /** eps of the last meta step, [B]. */
  readonly eps: Tensor;
  /** Final per-example weights [B] of the last meta step. */
  readonly finalWeights: Tensor;
  /** Class weights [numClasses]: meta-learned in place by the "meta-update-wy" rule. */
  readonly classWeights: Tensor;
  readonly #devSeed: Tensor;
  readonly #labels: Tensor;

  /** Allocates the look-ahead state and the dev batch of `engine`. */
  constructor(engine: StepEngine, o: MetaReweighterOptions) {
    const gpu = engine.gpu;
    this.engine = engine;
    this.devBatch = o.devBatch;
    this.devLoss = o.devLoss ?? engine.loss;
    const layout = engine.model.paramLayout;
    this.lookahead = new FlatTensors(gpu, layout, true);
    this.direction = new FlatTensors(gpu, layout, false);
    const B = engine.batch;
    this.devX = engine.fixed([o.devBatch, ...engine.x.shape.slice(1)]);
    this.devTargets = engine.fixed(
      [o.devBatch, ...engine.targets.shape.slice(1)],
      engine.targets.dtype,
    );
    this.eps = engine.fixed([B]);
    this.finalWeights = engine.fixed([B]);
    this.classWeights = engine.fixed([o.numClasses ?? 1]);
    this.#devSeed = engine.fixed([o.devBatch]);
    this.#devSeed.upload(gpu, new Float32Array(o.devBatch).fill(1 / o.devBatch));
    // the weight kernel reads a label per example; targets that are not labels read class 0
    this.#labels = engine.targets.dtype === "u32" && engine.targets.shape.length === 1
      ? engine.targets
      : engine.fixed([B], "u32");
    if (this.#labels !== engine.targets) this.#labels.upload(gpu, new Uint32Array(B));
  }

  /** Frees the look-ahead buffers (the tensors go with the engine). */
  destroy(): void {
    this.lookahead.destroy();
    this.direction.destroy();
  }

  /**
   * One meta step (see the module comment) with update learning rate `lr`, over the first `n`
   * examples of the batch (default all B; a partial last batch): look-ahead and final losses
   * over those n; `eps` and `finalWeights` hold n values.
   */
  step(lr: number, meta: MetaOptions, n = this.engine.batch): MetaStepResult {
    const e = this.engine;
    const lookScale = meta.lookahead === "mean" ? 1 / n : 1;
    e.step(lr, (ctx, tape, l) => {
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
        { c: meta.tau * meta.eta * lookScale, batch: n },
      );
      ldot.release(e.gpu);
      return seed;
    }, n);
    return { eps: this.eps, finalWeights: this.finalWeights };
  }

  /**
   * A meta step whose per-example weights are computed on the host, with the same exact
   * meta-gradient: the losses at theta are read back, `rule.lookahead` gives the look-ahead
   * weights (written to the engine's `weights`), and after the JVP `rule.final` receives
   * d L_dev(theta') / d w_i = -eta * ldot_i (times 1/|B| for a mean look-ahead) and returns the
   * seed of the final backward. Two readbacks per step. `n` (default B): the first n examples
   * of the batch only (a partial last batch).
   */
  stepHost(
    lr: number,
    meta: { eta: number; lookahead: "sum" | "mean" },
    rule: HostWeightRule,
    n = this.engine.batch,
  ): Promise<void> {
    const e = this.engine;
    const lookScale = meta.lookahead === "mean" ? 1 / n : 1;
    return e.stepAsync(lr, async (ctx, tape, l) => {
      const losses = await l.read(e.gpu);
      e.weights.upload(e.gpu, rule.lookahead(losses));
      const ldot = this.signal(tape, l, e.scaledWeights(ctx, lookScale, n), meta.eta);
      const dw = await ldot.read(e.gpu);
      ldot.release(e.gpu);
      for (let i = 0; i < n; i++) dw[i] *= -meta.eta * lookScale;
      const seed = ctx.empty([n]);
      seed.upload(e.gpu, rule.final(dw, losses));
      return seed;
    }, n);
  }

  /**
   * Steps 2-4: theta' = theta - eta * (gradient of the batch tape under `lookaheadSeed`;
   * theta' = theta when null), v = gradient of the dev loss at theta', and ldot = J v, the JVP
   * of the per-example losses `l` along v (a fresh tensor the caller releases).
   */
  signal(tape: Tape, l: Tensor, lookaheadSeed: Tensor | null, eta: number): Tensor {
    const e = this.engine;
    const gpu = e.gpu;
    const params = e.model.params;
    if (lookaheadSeed) {
      e.gradients(tape, l, lookaheadSeed, params, e.grads);
      const axpy = "a[i] - p.s0 * b[i]";
      runMap(gpu, "axpy", axpy, [flat(params), flat(e.grads)], flat(this.lookahead), eta);
    } else {
      this.lookahead.copyFrom(params);
    }
    const devTape = new Tape();
    const devCtx = new Ctx(gpu, devTape);
    const devOut = e.model.forward(devCtx, this.devX, TRAIN_NO_UPDATE, this.lookahead);
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

/** The whole flat buffer as one tensor (for the look-ahead axpy). */
function flat(f: FlatTensors): Tensor {
  return new Tensor([f.layout.length], f.all, false);
}

/** Plain cross-entropy of class logits against u32 labels: the dev loss of the long-tail runs. */
export function crossEntropy(ctx: Ctx, output: Tensor, targets: Tensor): Tensor {
  return classificationLoss(ctx, output, targets, {});
}
