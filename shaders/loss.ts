/**
 * WGSL of the per-example classification loss, one thread per example, classes in order.
 *
 *   z' = s * (z - m[y] * onehot(y)),  p = softmax(z'),  loss = -(1 - p_y)^gamma * log p_y
 *
 * gamma = 0, s = 1, m = 0 is cross-entropy; gamma > 0 the focal loss; m and s LDAM. Forward also
 * stores G = d loss_i / d z_i (row i), because backward (rows scaled by per-example weights)
 * and JVP (row-wise dot with the tangent) both need only G.
 */

const PARAMS = `struct P { B: u32, C: u32, s: f32, gamma: f32 }`;

/** Bindings: z [B,C], labels u32 [B], margins [C], loss [B], G [B,C]. */
export function lossForwardSource(): string {
  return `${PARAMS}
@group(0) @binding(0) var<storage, read> z: array<f32>;
@group(0) @binding(1) var<storage, read> labels: array<u32>;
@group(0) @binding(2) var<storage, read> margins: array<f32>;
@group(0) @binding(3) var<storage, read_write> loss: array<f32>;
@group(0) @binding(4) var<storage, read_write> G: array<f32>;
@group(0) @binding(5) var<uniform> p: P;
fn logit(base: u32, y: u32, j: u32) -> f32 {
  return p.s * (z[base + j] - select(0.0, margins[y], j == y));
}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
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
  }
}
`;
}

/** dz[i, j] = w[i] * G[i, j]. Bindings: G, w [B], dz. */
export function lossBackwardSource(): string {
  return `${PARAMS}
@group(0) @binding(0) var<storage, read> G: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> dz: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let k = gid.x;
  if (k >= p.B * p.C) { return; }
  dz[k] = w[k / p.C] * G[k];
}
`;
}

/** loss'[i] = sum_j G[i, j] z'[i, j]. Bindings: G, zDot, lossDot. */
export function lossJvpSource(): string {
  return `${PARAMS}
@group(0) @binding(0) var<storage, read> G: array<f32>;
@group(0) @binding(1) var<storage, read> zDot: array<f32>;
@group(0) @binding(2) var<storage, read_write> lossDot: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  if (i >= p.B) { return; }
  var s = 0.0;
  for (var j = 0u; j < p.C; j++) { s += G[i * p.C + j] * zDot[i * p.C + j]; }
  lossDot[i] = s;
}
`;
}
