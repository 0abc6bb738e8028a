/**
 * Declaration of the data-augmentation kernel: uint8 NCHW images (packed 4 per u32 word) to
 * normalised float32 NCHW, with optional reflect-pad + crop + horizontal flip per image.
 *
 * One invocation per output element. For image `n` with parameters (dx, dy, flip), output
 * pixel (y, x) reads source pixel (reflect(y + dy - pad), reflect(x' + dx - pad)) where
 * x' = W-1-x if flipped else x: reflect-pad by `pad`, crop back to HxW at offset (dx, dy)
 * in the padded image, then flip. `reflect` is PyTorch's ReflectionPad2d (no edge repeat:
 * -1 -> 1, H -> H-2). Normalisation reads a per-channel 256-entry table of
 * `(v/255 - mean_c) / std_c` computed on the host, so GPU and CPU results are identical.
 */
import { kernel } from "../src/gpu/kernel.ts";

/** Workgroup size of the augmentation kernel. */
export const AUGMENT_WORKGROUP = 256;

/**
 * pixels (u32 words of packed bytes), params (dx | dy << 8 | flip << 16 per image), table
 * (channels * 256) -> out; `augment` 0 normalises only.
 */
export const augmentKernel = kernel({
  name: "data.augment.u8nchw",
  storage: [
    ["pixels", "read", "array<u32>"],
    ["params", "read", "array<u32>"],
    ["table", "read"],
    ["out", "write"],
  ],
  uniforms: [
    ["count", "u32"],
    ["channels", "u32"],
    ["height", "u32"],
    ["width", "u32"],
    ["pad", "u32"],
    ["augment", "u32"],
    ["total", "u32"],
  ],
  workgroupSize: AUGMENT_WORKGROUP,
  helpers: `
// PyTorch ReflectionPad2d indexing; valid for -n < i < 2n - 1 (pad < n).
fn reflectIndex(i: i32, n: i32) -> i32 {
  var j = i;
  if (j < 0) { j = -j; }
  if (j >= n) { j = 2 * (n - 1) - j; }
  return j;
}`,
  main: `
    let idx = flatIndex(gid, nwg);
    if (idx >= p.total) { return; }
    let w = p.width;
    let h = p.height;
    let plane = w * h;
    let x = idx % w;
    let y = (idx / w) % h;
    let nc = idx / plane;
    let c = nc % p.channels;
    let n = nc / p.channels;
    var sx = i32(x);
    var sy = i32(y);
    if (p.augment != 0u) {
      let packed = params[n];
      let dx = i32(packed & 0xffu);
      let dy = i32((packed >> 8u) & 0xffu);
      if (((packed >> 16u) & 1u) != 0u) { sx = i32(w) - 1 - sx; }
      sx = reflectIndex(sx + dx - i32(p.pad), i32(w));
      sy = reflectIndex(sy + dy - i32(p.pad), i32(h));
    }
    let src = nc * plane + u32(sy) * w + u32(sx);
    let v = (pixels[src >> 2u] >> ((src & 3u) * 8u)) & 0xffu;
    out[idx] = table[c * 256u + v];`,
});
