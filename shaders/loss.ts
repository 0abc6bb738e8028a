/**
 * Declarations of the per-example classification loss, one thread per example, classes in
 * order. The softmax form:
 *
 *   z' = s * (z - m[y] * onehot(y)),  p = softmax(z'),  loss = -(1 - p_y)^gamma * log p_y
 *
 * gamma = 0, s = 1, m = 0 is cross-entropy; gamma > 0 the focal loss; m and s LDAM. The sigmoid
 * form (Cui et al.'s sigmoid cross-entropy and focal loss, richardaecn/class-balanced-loss
 * src/cifar_main.py `focal_loss`): one binary problem per class with target onehot(y),
 *
 *   t_j = (2 onehot_j - 1) z_j,  p_t = sigmoid(t_j),  loss = sum_j -(1 - p_t)^gamma * log p_t
 *
 * Either forward also stores G = d loss_i / d z_i (row i), because backward (rows scaled by
 * per-example weights) and JVP (row-wise dot with the tangent) both need only G; so the two
 * forms share their backward and JVP kernels, which take the same uniform fields.
 */
import { kernel } from "../src/gpu/kernel.ts";

const UNIFORMS = [["B", "u32"], ["C", "u32"], ["s", "f32"], ["gamma", "f32"]] as const;

/** loss [B] and G [B, C] from logits z [B, C], u32 labels [B] and margins [C]. */
export const lossForwardKernel = kernel({
  name: "loss:forward",
  storage: [
    ["z", "read"],
    ["labels", "read", "array<u32>"],
    ["margins", "read"],
    ["loss", "write"],
    ["G", "write"],
  ],
  uniforms: UNIFORMS,
  workgroupSize: 64,
  helpers: `
fn logit(base: u32, y: u32, j: u32) -> f32 {
  return p.s * (z[base + j] - select(0.0, margins[y], j == y));
}`,
  main: `
    let i = gid.x;
    if (i >= p.B) { return; }
    let base = i * p.C;
    let y = labels[i];
    var mx = logit(base, y, 0u);
    for (var j = 1u; j < p.C; j++) { mx = max(mx, logit(base, y, j)); }
    var se = 0.0;
    for (var j = 0u; j < p.C; j++) { se += exp(logit(base, y, j) - mx); }
    let lse = mx + log(se);
    let logpy = logit(base, y, y) - lse;
    let py = exp(logpy);
    let q = max(1.0 - py, 0.0);
    // f(p) = -(1-p)^g log p; dL/dz'_j = f'(p_y) p_y (onehot_j - p_j); f'(p) p = g(1-p)^(g-1) p log p - (1-p)^g
    var focal = 1.0;
    var fp = -1.0;
    if (p.gamma > 0.0) {
      focal = pow(q, p.gamma);
      fp = p.gamma * pow(q, p.gamma - 1.0) * py * logpy - focal;
    }
    loss[i] = -focal * logpy;
    for (var j = 0u; j < p.C; j++) {
      let pj = exp(logit(base, y, j) - lse);
      let onehot = select(0.0, 1.0, j == y);
      G[base + j] = p.s * fp * (onehot - pj);
    }`,
});

/**
 * Sigmoid form: loss [B] and G [B, C] from logits z [B, C] and u32 labels [B], in log-sigmoid
 * terms so nothing overflows at any finite logit (Cui's own modulator
 * exp(-gamma y z - gamma log1p(exp(-z))) overflows in float32 for z < -88.7, where it gives 0
 * instead of ~1 on the true class).
 * With t = +-z, q = 1 - p_t = sigmoid(-t): d loss / dt = q^gamma (gamma p_t log p_t - q).
 */
export const lossSigmoidForwardKernel = kernel({
  name: "loss:forward-sigmoid",
  storage: [
    ["z", "read"],
    ["labels", "read", "array<u32>"],
    ["loss", "write"],
    ["G", "write"],
  ],
  uniforms: [["B", "u32"], ["C", "u32"], ["gamma", "f32"]],
  workgroupSize: 64,
  helpers: `
// log(1 + x) for x in [0, 1] to float32 relative precision. WGSL has no log1p, and its log is
// only absolutely accurate near 1, so log(1 + x) would lose tiny x: instead
// log(1 + x) = 2 atanh(r), r = x / (2 + x) <= 1/3, whose odd series to r^15 is within 2e-9.
fn log1pSmall(x: f32) -> f32 {
  let r = x / (2.0 + x);
  let r2 = r * r;
  var s = 1.0 / 15.0;
  s = s * r2 + 1.0 / 13.0;
  s = s * r2 + 1.0 / 11.0;
  s = s * r2 + 1.0 / 9.0;
  s = s * r2 + 1.0 / 7.0;
  s = s * r2 + 1.0 / 5.0;
  s = s * r2 + 1.0 / 3.0;
  s = s * r2 + 1.0;
  return 2.0 * r * s;
}
// log sigmoid(t) = min(t, 0) - log(1 + exp(-|t|))
fn logSigmoid(t: f32) -> f32 {
  return min(t, 0.0) - log1pSmall(exp(-abs(t)));
}`,
  main: `
    let i = gid.x;
    if (i >= p.B) { return; }
    let base = i * p.C;
    let y = labels[i];
    var total = 0.0;
    for (var j = 0u; j < p.C; j++) {
      let t = select(-z[base + j], z[base + j], j == y);
      let logpt = logSigmoid(t);
      let logq = logSigmoid(-t);
      let q = exp(logq);
      var focal = 1.0;
      var dt = -q;
      if (p.gamma > 0.0) {
        focal = exp(p.gamma * logq);
        dt = focal * (p.gamma * exp(logpt) * logpt - q);
      }
      total += -focal * logpt;
      G[base + j] = select(-dt, dt, j == y);
    }
    loss[i] = total;`,
});

/** dz[i, j] = w[i] * G[i, j]. */
export const lossBackwardKernel = kernel({
  name: "loss:backward",
  storage: [["G", "read"], ["w", "read"], ["dz", "write"]],
  uniforms: UNIFORMS,
  workgroupSize: 256,
  main: `
    let k = gid.x;
    if (k >= p.B * p.C) { return; }
    dz[k] = w[k / p.C] * G[k];`,
});

/** loss'[i] = sum_j G[i, j] z'[i, j]. */
export const lossJvpKernel = kernel({
  name: "loss:jvp",
  storage: [["G", "read"], ["zDot", "read"], ["lossDot", "write"]],
  uniforms: UNIFORMS,
  workgroupSize: 64,
  main: `
    let i = gid.x;
    if (i >= p.B) { return; }
    var s = 0.0;
    for (var j = 0u; j < p.C; j++) { s += G[i * p.C + j] * zDot[i * p.C + j]; }
    lossDot[i] = s;`,
});

/**
 * out[i] = w[i] / sum_j w[j], summed by one invocation in index order (deterministic; |B| is
 * ~100). A batch whose weights sum to 0 gets out = 0. The seed of a weighted mean.
 */
export const normalizedWeightsKernel = kernel({
  name: "loss:normalized-weights",
  storage: [["w", "read"], ["out", "write"]],
  uniforms: [["n", "u32"]],
  workgroupSize: 1,
  main: `
    var total = 0.0;
    for (var i = 0u; i < p.n; i++) { total += w[i]; }
    for (var i = 0u; i < p.n; i++) { out[i] = select(0.0, w[i] / total, total != 0.0); }`,
});
