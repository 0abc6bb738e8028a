/**
 * Declarations of the per-example classification loss, one thread per example, classes in
 * order.
 *
 *   z' = s * (z - m[y] * onehot(y)),  p = softmax(z'),  loss = -(1 - p_y)^gamma * log p_y
 *
 * gamma = 0, s = 1, m = 0 is cross-entropy; gamma > 0 the focal loss; m and s LDAM. Forward also
 * stores G = d loss_i / d z_i (row i), because backward (rows scaled by per-example weights)
 * and JVP (row-wise dot with the tangent) both need only G. The three kernels take the same
 * uniform fields.
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
