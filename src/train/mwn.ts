/**
 * Meta-Weight-Net (Shu et al., NeurIPS 2019) on the host: an MLP 1-100-1 (ReLU, sigmoid output)
 * maps a per-example loss to a weight, and is meta-learned on the dev set every step.
 *
 * Per step, with phi the MLP parameters and V_i = V(loss_i; phi):
 *   theta'  = theta - eta * grad (1/|B|) sum_i V_i loss_i          (GPU, MetaReweighter.stepHost)
 *   g_i     = d L_dev(theta') / d V_i = -(eta/|B|) <grad L_dev(theta'), grad loss_i(theta)>  (GPU)
 *   grad_phi = sum_i g_i dV_i/dphi;  phi <- Adam(phi, grad_phi)    (host, float64)
 *   final weights V'_i = V(loss_i; phi') / sum_j V(loss_j; phi');  loss = sum_i V'_i loss_i
 *
 * as in the reference code (look-ahead mean over the batch, eta = the current lr, Adam with lr
 * 1e-3 and weight decay 1e-4, weights normalised by their sum). Deviation: the reference code
 * differentiates through the look-ahead with a double backward at every step; here the
 * identical meta-gradient comes from the engine's single JVP, and the 1-100-1 MLP (a few
 * hundred flops per example) runs on the CPU in float64, which costs two small readbacks
 * (losses and the JVP) per step.
 */
import type { HostWeightRule } from "../engine/meta.ts";
import { Rng } from "../random.ts";
import type { SafeTensor } from "../checkpoint/safetensors.ts";

/** Hyper-parameters of the MLP's optimiser. */
export interface MwnOptions {
  /** Hidden units of the 1-H-1 MLP; default 100. */
  hidden?: number;
  /** Adam learning rate; default 1e-3. */
  lr?: number;
  /** L2 weight decay added to the Adam gradient; default 1e-4. */
  weightDecay?: number;
}

const NAMES = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"] as const;

/** The MLP, its Adam state, and the weighting rule for {@linkcode MetaReweighter.stepHost}. */
export class MetaWeightNet implements HostWeightRule {
  /** Hidden units H of the MLP. */
  readonly hidden: number;
  /** Adam learning rate. */
  readonly lr: number;
  /** L2 weight decay added to the Adam gradient. */
  readonly weightDecay: number;
  /** fc1.weight [H,1], fc1.bias [H], fc2.weight [1,H], fc2.bias [1]. */
  readonly params: Float64Array[];
  #m: Float64Array[];
  #v: Float64Array[];
  #t = 0;
  /** Final (unnormalised) MLP outputs V(loss; phi') of the last step, for statistics. */
  lastWeights: Float32Array = new Float32Array(0);

  /** An MLP initialised like PyTorch's Linear from `seed`, with zeroed Adam state. */
  constructor(seed: number, options: MwnOptions = {}) {
    const H = this.hidden = options.hidden ?? 100;
    this.lr = options.lr ?? 1e-3;
    this.weightDecay = options.weightDecay ?? 1e-4;
    // PyTorch's default Linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias.
    const rng = Rng.derive(seed, "mwn-init");
    const u = (n: number, bound: number) =>
      Float64Array.from({ length: n }, () => (2 * rng.nextFloat() - 1) * bound);
    this.params = [u(H, 1), u(H, 1), u(H, 1 / Math.sqrt(H)), u(1, 1 / Math.sqrt(H))];
    this.#m = this.params.map((p) => new Float64Array(p.length));
    this.#v = this.params.map((p) => new Float64Array(p.length));
  }

  /** V(loss) for each loss. */
  weigh(losses: ArrayLike<number>): Float64Array {
    const [w1, b1, w2, b2] = this.params;
    const out = new Float64Array(losses.length);
    for (let i = 0; i < losses.length; i++) {
      let o = b2[0];
      for (let j = 0; j < this.hidden; j++) {
        const h = w1[j] * losses[i] + b1[j];
        if (h > 0) o += w2[j] * h;
      }
      out[i] = 1 / (1 + Math.exp(-o));
    }
    return out;
  }

  /** Look-ahead weights: V(loss_i; phi). */
  lookahead(losses: Float32Array): Float32Array {
    return Float32Array.from(this.weigh(losses));
  }

  /** Meta-update phi from d L_dev / d V_i; returns the normalised new weights as the seed. */
  final(dDevDw: Float32Array, losses: Float32Array): Float32Array {
    this.update(losses, dDevDw);
    const v = this.weigh(losses);
    this.lastWeights = Float32Array.from(v);
    let sum = 0;
    for (const x of v) sum += x;
    const seed = new Float32Array(v.length);
    for (let i = 0; i < v.length; i++) seed[i] = sum !== 0 ? v[i] / sum : v[i];
    return seed;
  }

  /** One Adam step on phi with gradient sum_i g_i dV(loss_i)/dphi (+ L2 weight decay). */
  update(losses: ArrayLike<number>, g: ArrayLike<number>): void {
    const H = this.hidden;
    const [w1, b1, w2, b2] = this.params;
    const grads = this.params.map((p) => new Float64Array(p.length));
    const [gw1, gb1, gw2, gb2] = grads;
    for (let i = 0; i < losses.length; i++) {
      const l = losses[i];
      let o = b2[0];
      for (let j = 0; j < H; j++) {
        const h = w1[j] * l + b1[j];
        if (h > 0) o += w2[j] * h;
      }
      const v = 1 / (1 + Math.exp(-o));
      const d = g[i] * v * (1 - v); // dL/do
      gb2[0] += d;
      for (let j = 0; j < H; j++) {
        const h = w1[j] * l + b1[j];
        if (h > 0) {
          gw2[j] += d * h;
          const dh = d * w2[j];
          gw1[j] += dh * l;
          gb1[j] += dh;
        }
      }
    }
    this.#t++;
    const b1c = 1 - 0.9 ** this.#t, b2c = 1 - 0.999 ** this.#t;
    this.params.forEach((p, k) => {
      const m = this.#m[k], s = this.#v[k], gr = grads[k];
      for (let j = 0; j < p.length; j++) {
        const gj = gr[j] + this.weightDecay * p[j];
        m[j] = 0.9 * m[j] + 0.1 * gj;
        s[j] = 0.999 * s[j] + 0.001 * gj * gj;
        p[j] -= this.lr * (m[j] / b1c) / (Math.sqrt(s[j] / b2c) + 1e-8);
      }
    });
  }

  /** Checkpoint entries: `mwn.<name>` (float64, PyTorch shapes) and the Adam state. */
  state(): Map<string, SafeTensor> {
    const H = this.hidden;
    const shapes = [[H, 1], [H], [1, H], [1]];
    const out = new Map<string, SafeTensor>();
    NAMES.forEach((n, k) => {
      out.set(`mwn.${n}`, { dtype: "F64", shape: shapes[k], data: this.params[k].slice() });
      out.set(`mwn.adam.exp_avg.${n}`, {
        dtype: "F64",
        shape: shapes[k],
        data: this.#m[k].slice(),
      });
      out.set(`mwn.adam.exp_avg_sq.${n}`, {
        dtype: "F64",
        shape: shapes[k],
        data: this.#v[k].slice(),
      });
    });
    out.set("mwn.adam.step", {
      dtype: "I64",
      shape: [],
      data: new BigInt64Array([BigInt(this.#t)]),
    });
    return out;
  }

  /** Restores {@linkcode state}. */
  load(entries: Map<string, SafeTensor>): void {
    const get = (name: string, len: number) => {
      const t = entries.get(name);
      if (!t || t.dtype !== "F64" || t.data.length !== len) {
        throw new Error(`checkpoint lacks ${name} (F64, ${len} values)`);
      }
      return t.data as Float64Array;
    };
    NAMES.forEach((n, k) => {
      const len = this.params[k].length;
      this.params[k].set(get(`mwn.${n}`, len));
      this.#m[k].set(get(`mwn.adam.exp_avg.${n}`, len));
      this.#v[k].set(get(`mwn.adam.exp_avg_sq.${n}`, len));
    });
    const step = entries.get("mwn.adam.step");
    if (!step || step.dtype !== "I64") throw new Error("checkpoint lacks mwn.adam.step");
    this.#t = Number((step.data as BigInt64Array)[0]);
  }
}
