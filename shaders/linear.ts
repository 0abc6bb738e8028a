/** WGSL of row normalisation (LDAM's cosine classifier): one thread per row, fixed order. */

/**
 * forward: y = x / max(||x||, 1e-12). project: out = (g - y <y, g>) / max(||x||, 1e-12),
 * which is both the VJP and the JVP of the normalisation.
 */
export function rowNormalizeSource(kind: "forward" | "project"): string {
  const bindings = kind === "forward"
    ? `@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> p: P;`
    : `@group(0) @binding(0) var<storage, read> g: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> p: P;`;
  const body = kind === "forward"
    ? `for (var j = 0u; j < p.D; j++) { y[base + j] = x[base + j] / norm; }`
    : `var dot = 0.0;
  for (var j = 0u; j < p.D; j++) { dot += y[base + j] * g[base + j]; }
  for (var j = 0u; j < p.D; j++) { out[base + j] = (g[base + j] - y[base + j] * dot) / norm; }`;
  return `struct P { R: u32, D: u32 }
${bindings}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let r = gid.x + gid.y * nwg.x * 64u;
  if (r >= p.R) { return; }
  let base = r * p.D;
  var ss = 0.0;
  for (var j = 0u; j < p.D; j++) { ss += x[base + j] * x[base + j]; }
  let norm = max(sqrt(ss), 1e-12);
  ${body}
}
`;
}
