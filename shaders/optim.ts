/**
 * WGSL of the optimizer: one fused SGD kernel over the flat parameter buffer (PyTorch
 * semantics, dampening 0): g' = g + wd * p; buf = momentum * buf + g';
 * d = nesterov ? g' + momentum * buf : buf; p -= lr * d.
 */
export function sgdSource(): string {
  return `struct P { n: u32, nesterov: u32, lr: f32, momentum: f32, wd: f32 }
@group(0) @binding(0) var<storage, read> g: array<f32>;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read_write> buf: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  let gi = g[i] + p.wd * param[i];
  let b = p.momentum * buf[i] + gi;
  buf[i] = b;
  let d = select(b, gi + p.momentum * b, p.nesterov == 1u);
  param[i] = param[i] - p.lr * d;
}
`;
}
