/**
 * Float64 references of the baselines' losses as their authors wrote them, to test the engine's
 * per-example loss plus seed against the whole normalised objective:
 *
 * - Cui et al.'s sigmoid focal loss (richardaecn/class-balanced-loss src/cifar_main.py
 *   `focal_loss` and the `sigmoid` branch of `_tower_fn`): TF's
 *   `sigmoid_cross_entropy_with_logits` times the modulator
 *   exp(-gamma y z - gamma log1p(exp(-z))), times the example's class weight on every class
 *   term, summed and divided by the number of positive labels (= B with one-hot targets).
 * - LDAM (kaidic/LDAM-DRW losses.py `LDAMLoss`): `F.cross_entropy(s * z', y, weight=w)` with
 *   z' = z - m_y on the true class: PyTorch's weighted mean sum_i w_yi l_i / sum_i w_yi.
 *
 * Each comes as the literal formula (value) and its analytic derivative, and per example where
 * the engine keeps per-example losses. Test-only.
 */

/** TF's sigmoid_cross_entropy_with_logits(labels = y, logits = x), its documented form. */
function tfSigmoidCe(x: number, y: number): number {
  return Math.max(x, 0) - x * y + Math.log1p(Math.exp(-Math.abs(x)));
}

/** Cui's modulator (1 - p_t)^gamma as written there; 1 for gamma = 0. */
function cuiModulator(x: number, y: number, gamma: number): number {
  if (gamma === 0) return 1;
  return Math.exp(-gamma * y * x - gamma * Math.log1p(Math.exp(-x)));
}

/** Per-example sigmoid focal losses [B]: sum_j modulator_ij * BCE_ij (no weight, no 1/B). */
export function sigmoidFocalPerExample(
  z: Float64Array,
  labels: ArrayLike<number>,
  C: number,
  gamma: number,
): Float64Array {
  const B = labels.length;
  const out = new Float64Array(B);
  for (let i = 0; i < B; i++) {
    for (let j = 0; j < C; j++) {
      const y = j === labels[i] ? 1 : 0;
      const x = z[i * C + j];
      out[i] += cuiModulator(x, y, gamma) * tfSigmoidCe(x, y);
    }
  }
  return out;
}

/**
 * Cui's whole focal loss: sum_ij alpha_i modulator_ij BCE_ij / sum_ij onehot_ij, with
 * alpha_i = classWeights[y_i] on all C terms of example i.
 */
export function cuiFocalLoss(
  z: Float64Array,
  labels: ArrayLike<number>,
  C: number,
  classWeights: ArrayLike<number>,
  gamma: number,
): number {
  const per = sigmoidFocalPerExample(z, labels, C, gamma);
  let total = 0;
  for (let i = 0; i < labels.length; i++) total += classWeights[labels[i]] * per[i];
  return total / labels.length;
}

/**
 * G[i, j] = d loss_i / d z_ij of the per-example sigmoid focal loss, derived: with
 * t = (2y - 1) z, p_t = sigmoid(t), q = 1 - p_t, d loss / dt = q^gamma (gamma p_t log p_t - q).
 */
export function sigmoidFocalGrad(
  z: Float64Array,
  labels: ArrayLike<number>,
  C: number,
  gamma: number,
): Float64Array {
  const G = new Float64Array(z.length);
  for (let i = 0; i < labels.length; i++) {
    for (let j = 0; j < C; j++) {
      const sign = j === labels[i] ? 1 : -1;
      const t = sign * z[i * C + j];
      const logpt = -Math.log1p(Math.exp(-Math.abs(t))) + Math.min(t, 0);
      const pt = Math.exp(logpt);
      const q = 1 / (1 + Math.exp(t));
      const dt = Math.pow(q, gamma) * (gamma * pt * logpt - q);
      G[i * C + j] = sign * dt;
    }
  }
  return G;
}

/** Row-scaled G: the gradient of sum_i r_i loss_i. */
export function rowScale(G: Float64Array, r: ArrayLike<number>, C: number): Float64Array {
  return G.map((g, k) => r[Math.floor(k / C)] * g);
}

/** Row-wise <G_i, t_i>: the JVP of the per-example losses along t. */
export function rowDot(G: Float64Array, t: Float64Array, C: number): Float64Array {
  const out = new Float64Array(G.length / C);
  for (let k = 0; k < G.length; k++) out[Math.floor(k / C)] += G[k] * t[k];
  return out;
}

/** log softmax(s * z')_y of one row, z' = z - m_y on the true class. */
function ldamRow(
  z: Float64Array,
  i: number,
  C: number,
  y: number,
  margins: ArrayLike<number>,
  s: number,
): { logits: Float64Array; lse: number } {
  const logits = new Float64Array(C);
  let mx = -Infinity;
  for (let j = 0; j < C; j++) {
    logits[j] = s * (z[i * C + j] - (j === y ? margins[y] : 0));
    mx = Math.max(mx, logits[j]);
  }
  let se = 0;
  for (let j = 0; j < C; j++) se += Math.exp(logits[j] - mx);
  return { logits, lse: mx + Math.log(se) };
}

/** LDAM's `F.cross_entropy(s * z', y, weight=w)`: sum_i w_yi l_i / sum_i w_yi. */
export function ldamWeightedMean(
  z: Float64Array,
  labels: ArrayLike<number>,
  C: number,
  classWeights: ArrayLike<number>,
  margins: ArrayLike<number>,
  s: number,
): number {
  let num = 0, den = 0;
  for (let i = 0; i < labels.length; i++) {
    const y = labels[i];
    const { logits, lse } = ldamRow(z, i, C, y, margins, s);
    num += classWeights[y] * (lse - logits[y]);
    den += classWeights[y];
  }
  return num / den;
}

/** d / dz of {@linkcode ldamWeightedMean}: (w_yi / W) s (softmax_ij - onehot_ij). */
export function ldamWeightedMeanGrad(
  z: Float64Array,
  labels: ArrayLike<number>,
  C: number,
  classWeights: ArrayLike<number>,
  margins: ArrayLike<number>,
  s: number,
): Float64Array {
  let den = 0;
  for (let i = 0; i < labels.length; i++) den += classWeights[labels[i]];
  const g = new Float64Array(z.length);
  for (let i = 0; i < labels.length; i++) {
    const y = labels[i];
    const { logits, lse } = ldamRow(z, i, C, y, margins, s);
    const a = (classWeights[y] / den) * s;
    for (let j = 0; j < C; j++) {
      g[i * C + j] = a * (Math.exp(logits[j] - lse) - (j === y ? 1 : 0));
    }
  }
  return g;
}
