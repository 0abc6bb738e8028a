/**
 * Meta-Weight-Net (Shu et al., NeurIPS 2019) on the GPU through the engine itself: an MLP 1-100-1
 * (Linear, ReLU, Linear, Sigmoid: a {@linkcode Model} of its own) maps a per-example loss to a
 * weight, and is meta-learned on the dev set at every step, with no readback. Two recipes, from
 * the authors' two released codes (phi: the MLP's parameters, V_i = V(loss_i; phi), eta: the
 * look-ahead learning rate):
 *
 * "noisy-label" (Meta-weight-net), the loss entering the MLP detached:
 *   theta'   = theta - eta * grad (1/|B|) sum_i V_i loss_i           (MetaReweighter.signal)
 *   g_i      = d L_dev(theta') / d V_i = -(eta/|B|) <grad L_dev(theta'), grad loss_i(theta)>
 *              (the engine's one JVP)
 *   grad_phi = sum_i g_i dV_i/dphi: a backward of the MLP's tape seeded with g
 *   phi     <- Adam(phi, grad_phi), lr 1e-3, L2 weight decay 1e-4    (the fused Adam kernel)
 *
 * "class-imbalance" (Meta-weight-net_class-imbalance), the loss entering the MLP undetached:
 *   theta'   = theta - eta * grad L,  L = sum_i V_i loss_i / sum_j V_j, whose gradient is
 *              sum_i s_i grad loss_i with s_i = dL/dloss_i = (V_i + V'_i (loss_i - L)) / sum_j V_j
 *              (V'_i = dV/dloss at loss_i: the term a detached input drops)
 *   g_i      = d L_dev(theta') / d s_i = -eta <grad L_dev(theta'), grad loss_i(theta)>
 *   grad_phi = sum_i g_i ds_i/dphi, second derivatives of the MLP included (shaders/mwn.ts)
 *   phi     <- SGD(phi, grad_phi), lr 1e-5, momentum 0.9, Nesterov, weight decay 5e-4
 *
 * then, in both, the final weights V(loss_i; phi') / sum_j V(loss_j; phi') (detached, one
 * fixed-order kernel), loss = sum_i w_i loss_i, backward of the batch's tape, the model's update.
 * Deviation: the reference codes differentiate through the look-ahead with a double backward at
 * every step; here the identical meta-gradient comes from the engine's single JVP. Everything
 * runs in float32 (an earlier version ran the MLP on the host in float64, with two readbacks per
 * step).
 */
import { Ctx, Tape } from "../autograd/tape.ts";
import { bind, type Tensor } from "../tensor.ts";
import { grid1d } from "../gpu/runtime.ts";
import { StepValues } from "../optim/step_values.ts";
import { scaleBySlotKernel } from "../../shaders/meta.ts";
import { mwnGradientKernel, mwnLookaheadKernel, mwnSeedsKernel } from "../../shaders/mwn.ts";
import { Linear, ReLU, Sequential, Sigmoid } from "../nn/layers.ts";
import { Model } from "../nn/model.ts";
import { EVAL, moduleInit, moduleSpecs } from "../nn/module.ts";
import { FlatTensors } from "../nn/params.ts";
import { scale } from "../ops/elementwise.ts";
import { Adam } from "../optim/adam.ts";
import { Sgd } from "../optim/optimizer.ts";
import { Rng } from "../random.ts";
import type { MetaReweighter } from "../engine/meta.ts";
import { leadingRows } from "../engine/step.ts";
import { normalizeBySum } from "../engine/kernels.ts";
import type { SafeDType, SafeTensor } from "../checkpoint/safetensors.ts";
import type { MWN_RECIPES } from "./recipe.ts";

/** The recipe, hyper-parameters of the MLP and its optimiser. */
export interface MwnOptions {
  /** "noisy-label" (default) or "class-imbalance": see the module comment. */
  recipe?: (typeof MWN_RECIPES)[number];
  /** Hidden units of the 1-H-1 MLP; default 100. */
  hidden?: number;
  /** The MLP's learning rate; default 1e-3 (Adam, noisy-label) or 1e-5 (SGD, class-imbalance). */
  lr?: number;
  /** L2 weight decay added to the MLP's gradient; default 1e-4 or 5e-4 (class-imbalance). */
  weightDecay?: number;
}

/**
 * Each recipe's optimiser of the MLP: noisy-label `MW-Net.py`, Adam(vnet.params(), 1e-3,
 * weight_decay=1e-4); class-imbalance `meta-weight-net-class-imbalance.py`, SGD(vnet.params(),
 * 1e-5, momentum, nesterov, weight_decay) with the script's defaults 0.9, True, 5e-4.
 */
const RECIPE_OPTIMIZERS = {
  "noisy-label": { lr: 1e-3, weightDecay: 1e-4 },
  "class-imbalance": { lr: 1e-5, weightDecay: 5e-4, momentum: 0.9, nesterov: true },
} as const;

/** Checkpoint prefixes of each recipe's optimiser state (PyTorch's state names). */
const STATE_PREFIXES = {
  "noisy-label": ["mwn.adam.exp_avg.", "mwn.adam.exp_avg_sq."],
  "class-imbalance": ["mwn.sgd.momentum_buffer."],
} as const;

/** The MLP 1-H-1 with PyTorch's names: fc1, relu, fc2, sigmoid. */
export function mwnModule(hidden: number): Sequential {
  return new Sequential(
    ["fc1", new Linear(1, hidden)],
    ["relu", new ReLU()],
    ["fc2", new Linear(hidden, 1)],
    ["sigmoid", new Sigmoid()],
  );
}

/** The MLP, its optimiser and the MWN step of a {@linkcode MetaReweighter}'s engine. */
export class MetaWeightNet {
  /** The recipe of the step. */
  readonly recipe: (typeof MWN_RECIPES)[number];
  /** Hidden units H of the MLP. */
  readonly hidden: number;
  /** The MLP's learning rate (constant: neither code decays it). */
  readonly lr: number;
  /** The MLP: fc1.weight [H,1], fc1.bias [H], fc2.weight [1,H], fc2.bias [1]. */
  readonly model: Model<Sequential>;
  /** Adam (noisy-label) or SGD (class-imbalance) over the MLP's parameters. */
  readonly optimizer: Adam | Sgd;
  /** Gradients of the MLP's parameters. */
  readonly grads: FlatTensors;
  /** V(loss_i; phi') of the last step, before normalisation, [B] (for statistics). */
  readonly lastWeights: Tensor;
  readonly #meta: MetaReweighter;
  readonly #losses: Tensor;
  /** -eta (/ n) of the current step, in a storage slot (it follows the learning rate). */
  readonly #factor: StepValues;
  /** Class-imbalance: [1 / sum V, 1, the look-ahead loss] of the step ([1, 0, 0] if sum V = 0). */
  readonly #stats: Tensor;
  /** Class-imbalance: the seeds of the MLP's gradient [2B] (d/du, then d/d(du/dloss)). */
  readonly #mlpSeeds: Tensor;

  /**
   * An MLP initialised like PyTorch's Linear from the stream `(seed, "mwn-init")`, zeroed
   * optimiser state, for the batch of `meta`'s engine.
   */
  constructor(meta: MetaReweighter, seed: number, options: MwnOptions = {}) {
    const e = meta.engine;
    this.#meta = meta;
    this.recipe = options.recipe ?? "noisy-label";
    this.hidden = options.hidden ?? 100;
    const defaults = RECIPE_OPTIMIZERS[this.recipe];
    this.lr = options.lr ?? defaults.lr;
    const weightDecay = options.weightDecay ?? defaults.weightDecay;
    const net = mwnModule(this.hidden);
    this.model = new Model(e.gpu, net);
    this.model.loadStateDict(moduleInit(net, Rng.derive(seed, "mwn-init")));
    const layout = this.model.paramLayout;
    const sgd = RECIPE_OPTIMIZERS["class-imbalance"];
    this.optimizer = this.recipe === "class-imbalance"
      ? new Sgd(e.gpu, layout, { momentum: sgd.momentum, nesterov: sgd.nesterov, weightDecay })
      : new Adam(e.gpu, layout, { weightDecay });
    this.grads = new FlatTensors(e.gpu, layout, false);
    this.lastWeights = e.fixed([e.batch]);
    this.#losses = e.fixed([e.batch, 1]);
    this.#factor = new StepValues(e.gpu, 1);
    this.#stats = e.fixed([3]);
    this.#mlpSeeds = e.fixed([2 * e.batch]);
  }

  /** Frees the MLP, its gradients and optimiser state (the tensors go with the engine). */
  destroy(): void {
    this.optimizer.destroy(); // submits recorded work first
    this.#factor.destroy();
    this.grads.destroy();
    this.model.destroy();
  }

  /**
   * One training step of the engine at learning rate `lr`, with look-ahead learning rate `eta`
   * (default `lr`), over the first `n` examples of the batch (default all; a partial batch).
   */
  step(lr: number, eta: number = lr, n: number = this.#meta.engine.batch): void {
    const e = this.#meta.engine;
    const gpu = e.gpu;
    e.step(lr, (ctx, tape, l) => {
      this.#meta.checkDevLabels(); // a refusal before the MLP records anything of its own
      const losses = leadingRows(this.#losses, n);
      const weights = leadingRows(this.lastWeights, n);
      gpu.copy(l.view, losses.view, n * 4);
      if (this.recipe === "class-imbalance") this.#imbalanceGradient(ctx, tape, l, losses, eta, n);
      else this.#noisyLabelGradient(ctx, tape, l, losses, eta, n);
      this.optimizer.step(this.model.params, this.grads, this.lr);
      this.weigh(losses, weights);
      const seed = ctx.empty([n]);
      normalizeBySum(gpu, weights, seed);
      return seed;
    }, n);
  }

  /** Noisy-label: the MLP's gradient through its tape, on the detached losses [n, 1]. */
  #noisyLabelGradient(ctx: Ctx, tape: Tape, l: Tensor, losses: Tensor, eta: number, n: number) {
    const gpu = ctx.gpu;
    const mlpCtx = new Ctx(gpu, new Tape());
    try { // the step's refusable releases only its own ctx: a throw here gives mlpCtx's back too
      const v = this.model.forward(mlpCtx, losses, EVAL);
      const ldot = this.#meta.signal(tape, l, scale(gpu, v, 1 / n, ctx.empty([n])), eta);
      const dv = mlpCtx.empty([n, 1]); // d L_dev / d V_i = -eta / n * ldot_i
      scaleBySlotKernel.dispatch(
        gpu,
        [bind(ldot), this.#factor.set([-eta / n]), bind(dv)],
        { n },
        grid1d(Math.ceil(n / 256)),
      );
      ldot.release(gpu);
      mlpCtx.tape!.backward(gpu, v, dv, this.model.params.tensors, this.grads.tensors);
    } finally {
      mlpCtx.release();
    }
  }

  /**
   * Class-imbalance: the look-ahead seed s_i = dL/dloss_i, the signal, and the MLP's gradient
   * of sum_i g_i s_i (three small kernels of shaders/mwn.ts, nothing taped).
   */
  #imbalanceGradient(ctx: Ctx, tape: Tape, l: Tensor, losses: Tensor, eta: number, n: number) {
    const gpu = ctx.gpu, H = this.hidden;
    const phi = this.model.params.all;
    const [oA, oB, oC, oD] = this.model.paramLayout.offsets;
    const shape = { n, H, oA, oB, oC, oD };
    const seed = ctx.empty([n]);
    const stats = bind(this.#stats);
    mwnLookaheadKernel.dispatch(gpu, [bind(losses), phi, bind(seed), stats], shape, [1]);
    const ldot = this.#meta.signal(tape, l, seed, eta);
    const seeds = leadingRows(this.#mlpSeeds, 2 * n);
    mwnSeedsKernel.dispatch(
      gpu,
      [bind(losses), bind(ldot), this.#factor.set([-eta]), stats, phi, bind(seeds)],
      shape,
      [1],
    );
    ldot.release(gpu);
    mwnGradientKernel.dispatch(
      gpu,
      [bind(losses), phi, bind(seeds), this.grads.all],
      shape,
      [Math.ceil((H + 1) / 64)],
    );
  }

  /** V(loss; phi) of `losses` [B, 1] into `out` [B] (recorded, nothing taped). */
  weigh(losses: Tensor, out: Tensor): void {
    const ctx = new Ctx(this.model.gpu, null);
    const v = this.model.forward(ctx, losses, EVAL);
    this.model.gpu.copy(v.view, out.view, out.size * 4);
    ctx.release();
  }

  /** Names, dtypes and shapes of {@linkcode MetaWeightNet.state} for `options`' recipe and H. */
  static stateSpecs(options: MwnOptions = {}): [string, SafeDType, number[]][] {
    const recipe = options.recipe ?? "noisy-label";
    const params = moduleSpecs(mwnModule(options.hidden ?? 100)).params;
    const out: [string, SafeDType, number[]][] = [];
    for (const prefix of ["mwn.", ...STATE_PREFIXES[recipe]]) {
      for (const s of params) out.push([prefix + s.name, "F32", s.shape]);
    }
    if (recipe === "noisy-label") out.push(["mwn.adam.step", "I64", []]);
    return out;
  }

  /** The optimiser's state buffers by checkpoint prefix. */
  #stateBuffers(): [string, FlatTensors][] {
    const o = this.optimizer;
    const buffers = o instanceof Adam ? [o.expAvg, o.expAvgSq] : [o.momentum];
    return STATE_PREFIXES[this.recipe].map((prefix, i) => [prefix, buffers[i]]);
  }

  /**
   * Checkpoint entries (float32, PyTorch shapes): `mwn.<name>`, then noisy-label: Adam's
   * `mwn.adam.exp_avg.<name>`, `mwn.adam.exp_avg_sq.<name>` and `mwn.adam.step` (I64);
   * class-imbalance: SGD's `mwn.sgd.momentum_buffer.<name>`.
   */
  async state(): Promise<Map<string, SafeTensor>> {
    const out = new Map<string, SafeTensor>();
    const put = (prefix: string, values: Map<string, Float32Array>) => {
      for (const s of this.model.specs.params) {
        out.set(prefix + s.name, { dtype: "F32", shape: [...s.shape], data: values.get(s.name)! });
      }
    };
    put("mwn.", await this.model.params.download());
    for (const [prefix, buffers] of this.#stateBuffers()) put(prefix, await buffers.download());
    if (this.optimizer instanceof Adam) {
      const step = BigInt(this.optimizer.stepCount);
      out.set("mwn.adam.step", { dtype: "I64", shape: [], data: new BigInt64Array([step]) });
    }
    return out;
  }

  /** Restores {@linkcode MetaWeightNet.state}; throws naming a missing or mis-typed entry. */
  load(entries: Map<string, SafeTensor>): void {
    const take = (prefix: string) => {
      const values = new Map<string, Float32Array>();
      for (const s of this.model.specs.params) {
        const t = entries.get(prefix + s.name);
        const n = s.shape.reduce((a, b) => a * b, 1);
        if (!t || t.dtype !== "F32" || t.data.length !== n) {
          throw new Error(`checkpoint lacks ${prefix + s.name} (F32, ${n} values)`);
        }
        values.set(s.name, t.data as Float32Array);
      }
      return values;
    };
    this.model.params.upload(take("mwn."));
    for (const [prefix, buffers] of this.#stateBuffers()) buffers.upload(take(prefix));
    if (this.optimizer instanceof Adam) {
      const step = entries.get("mwn.adam.step");
      if (!step || step.dtype !== "I64") throw new Error("checkpoint lacks mwn.adam.step (I64)");
      this.optimizer.loadScalars({ step: Number((step.data as BigInt64Array)[0]) });
    }
  }
}
