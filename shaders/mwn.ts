/**
 * Declarations of Meta-Weight-Net's class-imbalance step (src/train/mwn.ts), whose look-ahead
 * differentiates through the MLP's input: with the MLP V(x) = sigmoid(u(x)),
 * u(x) = sum_h c_h relu(a_h x + b_h) + d (a = fc1.weight, b = fc1.bias, c = fc2.weight,
 * d = fc2.bias, read from the MLP's flat parameter buffer at the offsets oA, oB, oC, oD),
 * per-example losses l_i, V_i = V(l_i), V'_i = dV/dx at l_i, S = sum_i V_i and k = 1 / S,
 *
 *   look-ahead loss  L = sum_i l_i V_i / S                    (L = sum_i l_i V_i when S = 0)
 *   its seed         s_i = dL/dl_i = k (V_i + V'_i (l_i - L))
 *
 * and, given g_i = d L_dev / d s_i, the meta-gradient sum_i g_i ds_i/dphi, which holds the
 * second derivative of the MLP through V'. The batch-wide sums are taken in index order by one
 * invocation and the per-unit sums by one thread each, over the examples in index order:
 * deterministic. |B| and H are ~100, so these kernels are tiny next to a training step.
 */
import { kernel } from "../src/gpu/kernel.ts";

/** The MLP's shape and offsets: n examples, H hidden units, parameter offsets in floats. */
const UNIFORMS = [
  ["n", "u32"],
  ["H", "u32"],
  ["oA", "u32"],
  ["oB", "u32"],
  ["oC", "u32"],
  ["oD", "u32"],
] as const;

/** vnet(x) = (V(x), dV/dx, du/dx), with the overflow-free sigmoid of shaders/activation.ts. */
const VNET = `
fn vnet(x: f32) -> vec3<f32> {
  var u = phi[p.oD];
  var du = 0.0;
  for (var h = 0u; h < p.H; h++) {
    let a = phi[p.oA + h];
    let z = a * x + phi[p.oB + h];
    if (z > 0.0) {
      let c = phi[p.oC + h];
      u += c * z;
      du += c * a;
    }
  }
  let e = exp(-abs(u));
  let v = select(e / (1.0 + e), 1.0 / (1.0 + e), u >= 0.0);
  return vec3<f32>(v, v * (1.0 - v) * du, du);
}`;

/**
 * The look-ahead seed s [n] and stats = [k, nu, nu * L] (nu = 1 when S != 0, else 0: the
 * reference code's `if norm_c != 0` guard), one invocation.
 */
export const mwnLookaheadKernel = kernel({
  name: "mwn-lookahead",
  storage: [["losses", "read"], ["phi", "read"], ["seed", "write"], ["stats", "write"]],
  uniforms: UNIFORMS,
  workgroupSize: 1,
  helpers: VNET,
  main: `
    var total = 0.0;
    var weighted = 0.0;
    for (var i = 0u; i < p.n; i++) {
      let v = vnet(losses[i]).x;
      total += v;
      weighted += losses[i] * v;
    }
    let nu = select(0.0, 1.0, total != 0.0);
    let k = select(1.0, 1.0 / total, total != 0.0);
    let mean = nu * k * weighted;
    for (var i = 0u; i < p.n; i++) {
      let f = vnet(losses[i]);
      seed[i] = k * (f.x + f.y * (losses[i] - mean));
    }
    stats[0] = k;
    stats[1] = nu;
    stats[2] = mean;`,
});

/**
 * From g_i = factor * ldot_i (factor = -eta in a storage slot): the seeds of the MLP's backward,
 * dz[i] = d/du_i and dz[n + i] = d/d(du/dx)_i of sum_j g_j s_j, one invocation. With
 * F = sum g s, P = sum g V': dF/dV_i = k (g_i - nu (F + P k (l_i - L))),
 * dF/dV'_i = k g_i (l_i - L); V = sigma(u), V' = sigma'(u) du/dx, sigma'' = sigma' (1 - 2V).
 */
export const mwnSeedsKernel = kernel({
  name: "mwn-seeds",
  storage: [
    ["losses", "read"],
    ["ldot", "read"],
    ["factor", "read"],
    ["stats", "read"],
    ["phi", "read"],
    ["dz", "write"],
  ],
  uniforms: UNIFORMS,
  workgroupSize: 1,
  helpers: VNET,
  main: `
    let k = stats[0];
    let nu = stats[1];
    let mean = stats[2];
    var F = 0.0;
    var P = 0.0;
    for (var i = 0u; i < p.n; i++) {
      let f = vnet(losses[i]);
      let g = factor[0] * ldot[i];
      F += g * k * (f.x + f.y * (losses[i] - mean));
      P += g * f.y;
    }
    for (var i = 0u; i < p.n; i++) {
      let f = vnet(losses[i]);
      let g = factor[0] * ldot[i];
      let dv = k * (g - nu * (F + P * k * (losses[i] - mean)));
      let dslope = k * g * (losses[i] - mean);
      let s1 = f.x * (1.0 - f.x);
      dz[i] = dv * s1 + dslope * s1 * (1.0 - 2.0 * f.x) * f.z;
      dz[p.n + i] = dslope * s1;
    }`,
});

/**
 * The MLP's gradient from the seeds dz: thread h < H sums over the examples (index order) with
 * m = [a_h l + b_h > 0]: dc_h = sum m (du z + dp a_h), da_h = c_h sum m (du l + dp),
 * db_h = c_h sum m du; thread H: dd = sum du. Gaps of the flat gradient buffer stay untouched.
 */
export const mwnGradientKernel = kernel({
  name: "mwn-gradient",
  storage: [["losses", "read"], ["phi", "read"], ["dz", "read"], ["grad", "write"]],
  uniforms: UNIFORMS,
  workgroupSize: 64,
  main: `
    let h = gid.x;
    if (h > p.H) { return; }
    if (h == p.H) {
      var dd = 0.0;
      for (var i = 0u; i < p.n; i++) { dd += dz[i]; }
      grad[p.oD] = dd;
      return;
    }
    let a = phi[p.oA + h];
    let b = phi[p.oB + h];
    let c = phi[p.oC + h];
    var dc = 0.0;
    var da = 0.0;
    var db = 0.0;
    for (var i = 0u; i < p.n; i++) {
      let z = a * losses[i] + b;
      if (z > 0.0) {
        let du = dz[i];
        let dp = dz[p.n + i];
        dc += du * z + dp * a;
        da += du * losses[i] + dp;
        db += du;
      }
    }
    grad[p.oA + h] = c * da;
    grad[p.oB + h] = c * db;
    grad[p.oC + h] = dc;`,
});
