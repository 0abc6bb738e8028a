/** WGSL of the elementwise family: generic maps, option-A shortcut, global average pooling. */

const INPUT_NAMES = ["a", "b", "c", "d"];

/** out[i] = expr over up to four inputs a..d and the scalars p.s0..p.s2. */
export function mapSource(inputs: number, expr: string): string {
  const decl = INPUT_NAMES.slice(0, inputs).map((name, i) =>
    `@group(0) @binding(${i}) var<storage, read> ${name}: array<f32>;`
  );
  return `struct P { n: u32, s0: f32, s1: f32, s2: f32 }
${decl.join("\n")}
@group(0) @binding(${inputs}) var<storage, read_write> out: array<f32>;
@group(0) @binding(${inputs + 1}) var<uniform> p: P;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  out[i] = ${expr};
}
`;
}

/**
 * Option-A shortcut. forward: y[n,c,h,w] = x[n,c-pad,2h,2w] inside the kept channels, else 0.
 * backward: dx[n,c,h,w] = dy[n,c+pad,h/2,w/2] at even h and w, else 0.
 */
export function shortcutSource(direction: "forward" | "backward"): string {
  const body = direction === "forward"
    ? `let ow = i % p.OW; let oh = (i / p.OW) % p.OH; let co = (i / (p.OW * p.OH)) % p.CO;
  let n = i / (p.OW * p.OH * p.CO);
  let inside = co >= p.pad && co < p.pad + p.C;
  let src = ((n * p.C + select(0u, co - p.pad, inside)) * p.H + 2u * oh) * p.W + 2u * ow;
  dst[i] = select(0.0, x[src], inside);`
    : `let w = i % p.W; let h = (i / p.W) % p.H; let c = (i / (p.W * p.H)) % p.C;
  let n = i / (p.W * p.H * p.C);
  let kept = (h % 2u) == 0u && (w % 2u) == 0u;
  let src = ((n * p.CO + c + p.pad) * p.OH + h / 2u) * p.OW + w / 2u;
  dst[i] = select(0.0, x[select(0u, src, kept)], kept);`;
  return `struct P { N: u32, C: u32, H: u32, W: u32, CO: u32, OH: u32, OW: u32, pad: u32, total: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.total) { return; }
  ${body}
}
`;
}

/** Global average pooling over H*W: forward sums in order; backward broadcasts g / HW. */
export function poolSource(direction: "forward" | "backward"): string {
  const body = direction === "forward"
    ? `if (i >= p.NC) { return; }
  var s = 0.0;
  for (var j = 0u; j < p.HW; j++) { s += x[i * p.HW + j]; }
  dst[i] = s / f32(p.HW);`
    : `if (i >= p.NC * p.HW) { return; }
  dst[i] = x[i / p.HW] / f32(p.HW);`;
  return `struct P { NC: u32, HW: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  ${body}
}
`;
}

/** Sums the rows of a [R, C] matrix, one thread per column, rows in order (bias gradients). */
export function columnSumsSource(): string {
  return `struct P { R: u32, C: u32 }
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  if (c >= p.C) { return; }
  var s = 0.0;
  for (var r = 0u; r < p.R; r++) { s += a[r * p.C + c]; }
  out[c] = s;
}`;
}
