/**
 * Float64 reference of Meta-Weight-Net's MLP (1-H-1: Linear, ReLU, Linear, Sigmoid) and its
 * meta update: the weights V(loss; phi), the gradient sum_i g_i dV(loss_i)/dphi by hand, and one
 * Adam step with L2 weight decay added to the gradient (PyTorch's Adam). This was the trainer's
 * host implementation before Meta-Weight-Net ran on the GPU; it now checks the GPU one.
 *
 * The class-imbalance code's step (its `meta-weight-net-class-imbalance.py`): the look-ahead loss
 * L = sum_i l_i V(l_i) / sum_j V(l_j) with the losses entering V undetached, its seed
 * s_i = dL/dl_i, the gradient sum_i g_i ds_i/dphi through the dense Jacobians ds_i/dV_j and
 * ds_i/dV'_j (V' = dV/dl, whose phi-derivative holds the MLP's second derivatives), and one SGD
 * step (PyTorch's: L2 decay added to the gradient, momentum buffer, Nesterov).
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
  /** SGD's momentum buffers, per parameter (null before the first SGD step). */
  buf: Float64Array[] | null = null;

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
    this.adamStep(this.gradient(losses, g));
  }

  /** sum_i g_i dV(loss_i)/dphi, the loss entering V detached. */
  gradient(losses: ArrayLike<number>, g: ArrayLike<number>): Float64Array[] {
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
    return grads;
  }

  /** One Adam step (PyTorch's, L2 weight decay added to the gradient). */
  adamStep(grads: Float64Array[]): void {
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

  /**
   * V, V' = dV/dl, and their gradients w.r.t. phi (flat: fc1.weight, fc1.bias, fc2.weight,
   * fc2.bias) at one loss. With z_j = w1_j l + b1_j, m_j = [z_j > 0], o = b2 + sum m w2 z,
   * V = sigmoid(o), V' = V (1 - V) q with q = do/dl = sum m w2 w1.
   */
  slope(l: number): { v: number; dv: number; gradV: Float64Array; gradDv: Float64Array } {
    const H = this.hidden;
    const [w1, b1, w2, b2] = this.params;
    let o = b2[0], q = 0;
    for (let j = 0; j < H; j++) {
      const z = w1[j] * l + b1[j];
      if (z > 0) {
        o += w2[j] * z;
        q += w2[j] * w1[j];
      }
    }
    const v = 1 / (1 + Math.exp(-o)), s1 = v * (1 - v), s2 = s1 * (1 - 2 * v);
    const gradO = new Float64Array(3 * H + 1), gradQ = new Float64Array(3 * H + 1);
    gradO[3 * H] = 1;
    for (let j = 0; j < H; j++) {
      const z = w1[j] * l + b1[j];
      if (z <= 0) continue;
      gradO[j] = w2[j] * l; // fc1.weight
      gradO[H + j] = w2[j]; // fc1.bias
      gradO[2 * H + j] = z; // fc2.weight
      gradQ[j] = w2[j];
      gradQ[2 * H + j] = w1[j];
    }
    // dV = s1 dO; dV' = s2 q dO + s1 dQ
    const gradV = gradO.map((x) => s1 * x);
    const gradDv = gradO.map((x, k) => s2 * q * x + s1 * gradQ[k]);
    return { v, dv: s1 * q, gradV, gradDv };
  }

  /**
   * The class-imbalance look-ahead's seed s_i = dL/dl_i of L = sum l V / sum V (sum l V when
   * sum V is 0, the code's guard); `throughInput` false drops V' (a detached input).
   */
  imbalanceSeed(losses: ArrayLike<number>, throughInput = true): Float64Array {
    const n = losses.length;
    const at = Array.from({ length: n }, (_, i) => this.slope(losses[i]));
    const S = at.reduce((a, f) => a + f.v, 0);
    const k = S !== 0 ? 1 / S : 1;
    const mean = S !== 0 ? k * at.reduce((a, f, i) => a + losses[i] * f.v, 0) : 0;
    return Float64Array.from(
      at,
      (f, i) => k * (f.v + (throughInput ? f.dv : 0) * (losses[i] - mean)),
    );
  }

  /**
   * sum_i g_i ds_i/dphi (per parameter, as `params`) through the dense Jacobians of
   * s_i = k (V_i + V'_i (l_i - L)), k = 1 / sum V, L = k sum l V (S != 0):
   * ds_i/dV_j = k [i = j] - k s_i - k^2 V'_i (l_j - L), ds_i/dV'_j = [i = j] k (l_i - L);
   * `throughInput` false: V' = 0, the gradient of a detached input.
   */
  imbalanceGradient(
    losses: ArrayLike<number>,
    g: ArrayLike<number>,
    throughInput = true,
  ): Float64Array[] {
    const n = losses.length, H = this.hidden;
    const at = Array.from({ length: n }, (_, i) => {
      const f = this.slope(losses[i]);
      return throughInput ? f : { ...f, dv: 0, gradDv: new Float64Array(3 * H + 1) };
    });
    const S = at.reduce((a, f) => a + f.v, 0);
    if (S === 0) throw new Error("imbalanceGradient: sum V is 0 (the guard's branch)");
    const k = 1 / S;
    const mean = k * at.reduce((a, f, i) => a + losses[i] * f.v, 0);
    const s = this.imbalanceSeed(losses, throughInput);
    const flat = new Float64Array(3 * H + 1);
    for (let j = 0; j < n; j++) {
      let dV = 0; // sum_i g_i ds_i/dV_j
      for (let i = 0; i < n; i++) {
        dV += g[i] * ((i === j ? k : 0) - k * s[i] - k * k * at[i].dv * (losses[j] - mean));
      }
      const dDv = g[j] * k * (losses[j] - mean);
      for (let q = 0; q < flat.length; q++) {
        flat[q] += dV * at[j].gradV[q] + dDv * at[j].gradDv[q];
      }
    }
    return [flat.slice(0, H), flat.slice(H, 2 * H), flat.slice(2 * H, 3 * H), flat.slice(3 * H)];
  }

  /** One SGD step as PyTorch's: d = g + wd p, buf = momentum buf + d (d at first), Nesterov. */
  sgdStep(grads: Float64Array[], lr: number, momentum: number, nesterov: boolean): void {
    const first = this.buf === null;
    this.buf ??= this.params.map((p) => new Float64Array(p.length));
    this.params.forEach((p, k) => {
      const b = this.buf![k];
      for (let j = 0; j < p.length; j++) {
        const d = grads[k][j] + this.weightDecay * p[j];
        b[j] = first ? d : momentum * b[j] + d;
        p[j] -= lr * (nesterov ? d + momentum * b[j] : b[j]);
      }
    });
  }
}
