/**
 * Meta-Weight-Net (Shu et al., NeurIPS 2019) on the GPU through the engine itself: an MLP 1-100-1
 * (Linear, ReLU, Linear, Sigmoid: a {@linkcode Model} of its own) maps a per-example loss to a
 * weight, and is meta-learned on the dev set at every step, with no readback.
 *
 * Per step, with phi the MLP parameters and V_i = V(loss_i; phi), loss_i entering detached:
 *   theta'   = theta - eta * grad (1/|B|) sum_i V_i loss_i           (MetaReweighter.signal)
 *   g_i      = d L_dev(theta') / d V_i = -(eta/|B|) <grad L_dev(theta'), grad loss_i(theta)>
 *              (the engine's one JVP)
 *   grad_phi = sum_i g_i dV_i/dphi: a backward of the MLP's tape seeded with g
 *   phi     <- Adam(phi, grad_phi)                                    (the fused Adam kernel)
 *   final weights V'_i = V(loss_i; phi') / sum_j V(loss_j; phi')     (one fixed-order kernel)
 *   loss = sum_i V'_i loss_i, backward of the batch's tape, SGD update
 *
 * as in the reference code (look-ahead mean over the batch, eta = the current lr, Adam with lr
 * 1e-3 and L2 weight decay 1e-4, weights normalised by their sum). Deviation: the reference code
 * differentiates through the look-ahead with a double backward at every step; here the identical
 * meta-gradient comes from the engine's single JVP. Everything runs in float32 (an earlier
 * version ran the MLP on the host in float64, with two readbacks per step).
 */
import { Ctx, Tape } from "../autograd/tape.ts";
import { bind, type Tensor } from "../tensor.ts";
import { grid1d } from "../gpu/runtime.ts";
import { StepValues } from "../optim/step_values.ts";
import { scaleBySlotKernel } from "../../shaders/meta.ts";
import { Linear, ReLU, Sequential, Sigmoid } from "../nn/layers.ts";
import { Model } from "../nn/model.ts";
import { EVAL, moduleInit, moduleSpecs } from "../nn/module.ts";
import { FlatTensors } from "../nn/params.ts";
import { scale } from "../ops/elementwise.ts";
import { Adam } from "../optim/adam.ts";
import { Rng } from "../random.ts";
import type { MetaReweighter } from "../engine/meta.ts";
import { leadingRows } from "../engine/step.ts";
import { normalizeBySum } from "../engine/kernels.ts";
import type { SafeDType, SafeTensor } from "../checkpoint/safetensors.ts";

/** Hyper-parameters of the MLP and its optimiser. */
export interface MwnOptions {
  /** Hidden units of the 1-H-1 MLP; default 100. */
  hidden?: number;
  /** Adam learning rate; default 1e-3. */
  lr?: number;
  /** L2 weight decay added to the Adam gradient; default 1e-4. */
  weightDecay?: number;
}

/** The MLP 1-H-1 with PyTorch's names: fc1, relu, fc2, sigmoid. */
export function mwnModule(hidden: number): Sequential {
  return new Sequential(
    ["fc1", new Linear(1, hidden)],
    ["relu", new ReLU()],
    ["fc2", new Linear(hidden, 1)],
    ["sigmoid", new Sigmoid()],
  );
}

const ADAM_PREFIXES = [["exp_avg", "expAvg"], ["exp_avg_sq", "expAvgSq"]] as const;

/** The MLP, its Adam state and the MWN step of a {@linkcode MetaReweighter}'s engine. */
export class MetaWeightNet {
  /** Hidden units H of the MLP. */
  readonly hidden: number;
  /** Adam learning rate. */
  readonly lr: number;
  /** The MLP: fc1.weight [H,1], fc1.bias [H], fc2.weight [1,H], fc2.bias [1]. */
  readonly model: Model<Sequential>;
  /** Adam over the MLP's parameters (L2 weight decay added to the gradient). */
  readonly optimizer: Adam;
  /** Gradients of the MLP's parameters. */
  readonly grads: FlatTensors;
  /** V(loss_i; phi') of the last step, before normalisation, [B] (for statistics). */
  readonly lastWeights: Tensor;
  readonly #meta: MetaReweighter;
  readonly #losses: Tensor;
  /** -eta / n of the current step, in a storage slot (it follows the learning rate). */
  readonly #factor: StepValues;

  /**
   * An MLP initialised like PyTorch's Linear from the stream `(seed, "mwn-init")`, zeroed Adam
   * state, for the batch of `meta`'s engine.
   */
  constructor(meta: MetaReweighter, seed: number, options: MwnOptions = {}) {
    const e = meta.engine;
    this.#meta = meta;
    this.hidden = options.hidden ?? 100;
    this.lr = options.lr ?? 1e-3;
    const net = mwnModule(this.hidden);
    this.model = new Model(e.gpu, net);
    this.model.loadStateDict(moduleInit(net, Rng.derive(seed, "mwn-init")));
    this.optimizer = new Adam(e.gpu, this.model.paramLayout, {
      weightDecay: options.weightDecay ?? 1e-4,
    });
    this.grads = new FlatTensors(e.gpu, this.model.paramLayout, false);
    this.lastWeights = e.fixed([e.batch]);
    this.#losses = e.fixed([e.batch, 1]);
    this.#factor = new StepValues(e.gpu, 1);
  }

  /** Frees the MLP, its gradients and Adam state (the tensors go with the engine). */
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
      const losses = leadingRows(this.#losses, n);
      const weights = leadingRows(this.lastWeights, n);
      gpu.copy(l.view, losses.view, n * 4); // the MLP sees the losses detached
      const mlpCtx = new Ctx(gpu, new Tape());
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
      mlpCtx.release();
      this.optimizer.step(this.model.params, this.grads, this.lr);
      this.weigh(losses, weights);
      const seed = ctx.empty([n]);
      normalizeBySum(gpu, weights, seed);
      return seed;
    }, n);
  }

  /** V(loss; phi) of `losses` [B, 1] into `out` [B] (recorded, nothing taped). */
  weigh(losses: Tensor, out: Tensor): void {
    const ctx = new Ctx(this.model.gpu, null);
    const v = this.model.forward(ctx, losses, EVAL);
    this.model.gpu.copy(v.view, out.view, out.size * 4);
    ctx.release();
  }

  /** Names, dtypes and shapes of {@linkcode MetaWeightNet.state} for `hidden` units. */
  static stateSpecs(hidden = 100): [string, SafeDType, number[]][] {
    const out: [string, SafeDType, number[]][] = [];
    for (const prefix of ["mwn.", ...ADAM_PREFIXES.map(([name]) => `mwn.adam.${name}.`)]) {
      for (const s of moduleSpecs(mwnModule(hidden)).params) {
        out.push([prefix + s.name, "F32", s.shape]);
      }
    }
    out.push(["mwn.adam.step", "I64", []]);
    return out;
  }

  /**
   * Checkpoint entries (float32, PyTorch shapes): `mwn.<name>`, Adam's
   * `mwn.adam.exp_avg.<name>` and `mwn.adam.exp_avg_sq.<name>`, and `mwn.adam.step` (I64).
   */
  async state(): Promise<Map<string, SafeTensor>> {
    const out = new Map<string, SafeTensor>();
    const put = (prefix: string, values: Map<string, Float32Array>) => {
      for (const s of this.model.specs.params) {
        out.set(prefix + s.name, { dtype: "F32", shape: [...s.shape], data: values.get(s.name)! });
      }
    };
    put("mwn.", await this.model.params.download());
    for (const [name, field] of ADAM_PREFIXES) {
      put(`mwn.adam.${name}.`, await this.optimizer[field].download());
    }
    const step = BigInt(this.optimizer.stepCount);
    out.set("mwn.adam.step", { dtype: "I64", shape: [], data: new BigInt64Array([step]) });
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
    for (const [name, field] of ADAM_PREFIXES) {
      this.optimizer[field].upload(take(`mwn.adam.${name}.`));
    }
    const step = entries.get("mwn.adam.step");
    if (!step || step.dtype !== "I64") throw new Error("checkpoint lacks mwn.adam.step (I64)");
    this.optimizer.loadScalars({ step: Number((step.data as BigInt64Array)[0]) });
  }
}
