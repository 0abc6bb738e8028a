/**
 * Float64 reference of Meta-Weight-Net's MLP (1-H-1: Linear, ReLU, Linear, Sigmoid) and its
 * meta update: the weights V(loss; phi), the gradient sum_i g_i dV(loss_i)/dphi by hand, and one
 * Adam step with L2 weight decay added to the gradient (PyTorch's Adam). This was the trainer's
 * host implementation before Meta-Weight-Net ran on the GPU; it now checks the GPU one.
 */

/** fc1.weight [H,1], fc1.bias [H], fc2.weight [1,H], fc2.bias [1], in this order. */
export type MwnParams = [Float64Array, Float64Array, Float64Array, Float64Array];

/** The MLP and its Adam state in float64. */
export class MwnReference {
  /** Hidden units. */
  readonly hidden: number;
  /** The parameters (updated in place). */
  readonly params: MwnParams;
  /** Adam's first moments, per parameter. */
  readonly m: Float64Array[];
  /** Adam's second moments, per parameter. */
  readonly v: Float64Array[];
  /** Adam steps taken. */
  t = 0;

  /** An MLP with the given parameters (copied) and zero Adam state. */
  constructor(params: ArrayLike<number>[], readonly lr = 1e-3, readonly weightDecay = 1e-4) {
    this.params = params.map((p) => Float64Array.from(p)) as MwnParams;
    this.hidden = this.params[1].length;
    this.m = this.params.map((p) => new Float64Array(p.length));
    this.v = this.params.map((p) => new Float64Array(p.length));
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

  /** One Adam step on phi with gradient sum_i g_i dV(loss_i)/dphi (+ L2 weight decay). */
  update(losses: ArrayLike<number>, g: ArrayLike<number>): void {
    const H = this.hidden;
    const [w1, b1, w2] = this.params;
    const grads = this.params.map((p) => new Float64Array(p.length));
    const [gw1, gb1, gw2, gb2] = grads;
    const v = this.weigh(losses);
    for (let i = 0; i < losses.length; i++) {
      const d = g[i] * v[i] * (1 - v[i]); // dL/do
      gb2[0] += d;
      for (let j = 0; j < H; j++) {
        const h = w1[j] * losses[i] + b1[j];
        if (h > 0) {
          gw2[j] += d * h;
          gw1[j] += d * w2[j] * losses[i];
          gb1[j] += d * w2[j];
        }
      }
    }
    this.t++;
    const bc1 = 1 - 0.9 ** this.t, bc2 = 1 - 0.999 ** this.t;
    this.params.forEach((p, k) => {
      const m = this.m[k], s = this.v[k], gr = grads[k];
      for (let j = 0; j < p.length; j++) {
        const gj = gr[j] + this.weightDecay * p[j];
        m[j] = 0.9 * m[j] + 0.1 * gj;
        s[j] = 0.999 * s[j] + 0.001 * gj * gj;
        p[j] -= this.lr * (m[j] / bc1) / (Math.sqrt(s[j] / bc2) + 1e-8);
      }
    });
  }
}
