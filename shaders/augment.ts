/**
 * WGSL for the data-augmentation kernel: uint8 NCHW images (packed 4 per u32 word) to
 * normalised float32 NCHW, with optional reflect-pad + crop + horizontal flip per image.
 *
 * One invocation per output element. For image `n` with parameters (dx, dy, flip), output
 * pixel (y, x) reads source pixel (reflect(y + dy - pad), reflect(x' + dx - pad)) where
 * x' = W-1-x if flipped else x: reflect-pad by `pad`, crop back to HxW at offset (dx, dy)
 * in the padded image, then flip. `reflect` is PyTorch's ReflectionPad2d (no edge repeat:
 * -1 -> 1, H -> H-2). Normalisation reads a per-channel 256-entry table of
 * `(v/255 - mean_c) / std_c` computed on the host, so GPU and CPU results are identical.
 *
 * Bindings: 0 pixels (read, array<u32>), 1 params (read, array<u32>: dx | dy<<8 | flip<<16),
 * 2 table (read, array<f32>, channels*256), 3 out (write, array<f32>), 4 uniform
 * { count, channels, height, width, pad, augment, total, rowStride }.
 */

/** Workgroup size of the augmentation kernel. */
export const AUGMENT_WORKGROUP = 256;

/** Returns the WGSL source of the augmentation kernel (entry point `main`). */
export function augmentWgsl(workgroupSize = AUGMENT_WORKGROUP): string {
  return /* wgsl */ `
struct Params {
  count: u32,
  channels: u32,
  height: u32,
  width: u32,
  pad: u32,
  augment: u32,
  total: u32,
  rowStride: u32,
}

@group(0) @binding(0) var<storage, read> pixels: array<u32>;
@group(0) @binding(1) var<storage, read> params: array<u32>;
@group(0) @binding(2) var<storage, read> table: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> u: Params;

// PyTorch ReflectionPad2d indexing; valid for -n < i < 2n - 1 (pad < n).
fn reflectIndex(i: i32, n: i32) -> i32 {
  var j = i;
  if (j < 0) { j = -j; }
  if (j >= n) { j = 2 * (n - 1) - j; }
  return j;
}

@compute @workgroup_size(${workgroupSize})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let idx = gid.x + gid.y * u.rowStride;
  if (idx >= u.total) { return; }
  let w = u.width;
  let h = u.height;
  let plane = w * h;
  let x = idx % w;
  let y = (idx / w) % h;
  let nc = idx / plane;
  let c = nc % u.channels;
  let n = nc / u.channels;
  var sx = i32(x);
  var sy = i32(y);
  if (u.augment != 0u) {
    let p = params[n];
    let dx = i32(p & 0xffu);
    let dy = i32((p >> 8u) & 0xffu);
    if (((p >> 16u) & 1u) != 0u) { sx = i32(w) - 1 - sx; }
    sx = reflectIndex(sx + dx - i32(u.pad), i32(w));
    sy = reflectIndex(sy + dy - i32(u.pad), i32(h));
  }
  let src = nc * plane + u32(sy) * w + u32(sx);
  let v = (pixels[src >> 2u] >> ((src & 3u) * 8u)) & 0xffu;
  out[idx] = table[c * 256u + v];
}
`;
}
