/**
 * WGSL of the meta step's weighting rules. Input ldot_i = <v, grad loss_i(theta)> from the JVP;
 * with c = tau * eta (/ |B| for a mean look-ahead), eps_i = c * ldot_i is exactly
 * -tau * d L_dev(theta') / d eps_i. One invocation walks the batch in index order, so the
 * normalising sums of the L2RW rules are deterministic (|B| is ~100: this kernel is tiny).
 *
 * rules (w = class weight of the example, s = seed of the final backward):
 *   meta           final = w + eps                              s = final / |B|
 *   l2rw           final = max(eps, 0) / sum                    s = final
 *   l2rw-wy-eps    final = max(w + eps, 0) / sum                s = final
 *   meta-update-wy classW[y] += eps (summed per class); final = classW[y]; s = final / |B|
 */
export type MetaWeightRule = "meta" | "l2rw" | "l2rw-wy-eps" | "meta-update-wy";

/** Bindings: w, ldot, labels (u32), classW (rw), eps, final, seed, uniform {B, c}. */
export function metaWeightSource(rule: MetaWeightRule): string {
  const body: Record<MetaWeightRule, string> = {
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
  return `struct P { B: u32, c: f32 }
@group(0) @binding(0) var<storage, read> w: array<f32>;
@group(0) @binding(1) var<storage, read> ldot: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> classW: array<f32>;
@group(0) @binding(4) var<storage, read_write> eps: array<f32>;
@group(0) @binding(5) var<storage, read_write> finalW: array<f32>;
@group(0) @binding(6) var<storage, read_write> seed: array<f32>;
@group(0) @binding(7) var<uniform> p: P;
@compute @workgroup_size(1)
fn main() {
  for (var i = 0u; i < p.B; i++) { eps[i] = p.c * ldot[i]; }
  ${body[rule]}
  // keep every binding statically used so one layout serves all rules
  if (p.B == 0u) { classW[0] = classW[0] + f32(labels[0]); }
}
`;
}

function normalised(raw: string): string {
  return `var total = 0.0;
  for (var i = 0u; i < p.B; i++) { finalW[i] = ${raw}; total += finalW[i]; }
  let inv = select(0.0, 1.0 / total, total > 0.0);
  for (var i = 0u; i < p.B; i++) {
    finalW[i] = finalW[i] * inv;
    seed[i] = finalW[i];
  }`;
}
