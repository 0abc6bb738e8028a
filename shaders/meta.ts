/**
 * Declarations of the meta step's weighting rules. Input ldot_i = <v, grad loss_i(theta)> from
 * the JVP; with c = tau * eta (/ |B| for a mean look-ahead), eps_i = c * ldot_i is exactly
 * -tau * d L_dev(theta') / d eps_i. One invocation walks the batch in index order, so the
 * normalising sums of the L2RW rules are deterministic (|B| is ~100: this kernel is tiny).
 *
 * rules (w = class weight of the example, s = seed of the final backward):
 *   meta           final = w + eps                              s = final / |B|
 *   l2rw           final = max(eps, 0) / sum                    s = final
 *   l2rw-wy-eps    final = max(w + eps, 0) / sum                s = final
 *   meta-update-wy classW[y] += eps (summed per class); final = classW[y]; s = final / |B|
 */
import { kernel, kernelFamily } from "../src/gpu/kernel.ts";

/** How the meta step turns eps into final weights and the seed of the final backward. */
export type MetaWeightRule = "meta" | "l2rw" | "l2rw-wy-eps" | "meta-update-wy";

function normalised(raw: string): string {
  return `var total = 0.0;
  for (var i = 0u; i < p.B; i++) { finalW[i] = ${raw}; total += finalW[i]; }
  let inv = select(0.0, 1.0 / total, total > 0.0);
  for (var i = 0u; i < p.B; i++) {
    finalW[i] = finalW[i] * inv;
    seed[i] = finalW[i];
  }`;
}

const RULES: Record<MetaWeightRule, string> = {
  "meta": `for (var i = 0u; i < p.B; i++) {
    finalW[i] = w[i] + eps[i];
    seed[i] = finalW[i] / f32(p.B);
  }`,
  "l2rw": normalised("max(eps[i], 0.0)"),
  "l2rw-wy-eps": normalised("max(w[i] + eps[i], 0.0)"),
  "meta-update-wy": `for (var i = 0u; i < p.B; i++) { classW[labels[i]] += eps[i]; }
  for (var i = 0u; i < p.B; i++) {
    finalW[i] = classW[labels[i]];
    seed[i] = finalW[i] / f32(p.B);
  }`,
};

/**
 * eps, final weights and seed of a batch by one rule (one invocation). The factor c of
 * eps = c * ldot follows the learning rate, so it is read from a storage slot, not a uniform.
 */
export const metaWeightsKernel = kernelFamily((rule: MetaWeightRule) => ({
  name: `meta-weights:${rule}`,
  storage: [
    ["w", "read"],
    ["ldot", "read"],
    ["labels", "read", "array<u32>"],
    ["classW", "write"],
    ["eps", "write"],
    ["finalW", "write"],
    ["seed", "write"],
    ["c", "read"],
  ] as const,
  uniforms: [["B", "u32"]] as const,
  workgroupSize: 1,
  main: `
    for (var i = 0u; i < p.B; i++) { eps[i] = c[0] * ldot[i]; }
    ${RULES[rule]}
    // keep every binding statically used so one layout serves all rules
    if (p.B == 0u) { classW[0] = classW[0] + f32(labels[0]); }`,
}));

/**
 * out[i] = v[i] / sum_j v[j] (v[i] itself when the sum is 0), the sum taken in index order by
 * one invocation: Meta-Weight-Net's final weights.
 */
export const normalizeBySumKernel = kernel({
  name: "normalize-by-sum",
  storage: [["v", "read"], ["out", "write"]],
  uniforms: [["B", "u32"]],
  workgroupSize: 1,
  main: `
    var total = 0.0;
    for (var i = 0u; i < p.B; i++) { total += v[i]; }
    for (var i = 0u; i < p.B; i++) { out[i] = select(v[i], v[i] / total, total != 0.0); }`,
});

/**
 * The look-ahead parameters theta' = theta - eta * g over the flat buffers, eta read from a
 * storage slot so that a learning rate that changes every step creates no uniform.
 */
export const lookaheadKernel = kernel({
  name: "lookahead",
  storage: [["theta", "read"], ["g", "read"], ["eta", "read"], ["out", "write"]],
  uniforms: [["n", "u32"]],
  workgroupSize: 256,
  main: `
    let i = flatIndex(gid, nwg);
    if (i >= p.n) { return; }
    out[i] = theta[i] - eta[0] * g[i];`,
});

/**
 * out[i] = s[0] * a[i], the factor read from a storage slot: Meta-Weight-Net's d L_dev / d V_i
 * = -eta / B * ldot_i follows the learning rate, which a uniform would cache once per value.
 */
export const scaleBySlotKernel = kernel({
  name: "scale-by-slot",
  storage: [["a", "read"], ["s", "read"], ["out", "write"]],
  uniforms: [["n", "u32"]],
  workgroupSize: 256,
  main: `
    let i = flatIndex(gid, nwg);
    if (i >= p.n) { return; }
    out[i] = s[0] * a[i];`,
});
