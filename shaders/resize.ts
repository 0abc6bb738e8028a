/**
 * Declaration of the crop-resize-normalise kernel of the JPEG pipeline: a batch of decoded RGB
 * images (uint8, 3 bytes per pixel, packed into u32 words, each image at its own byte offset)
 * to the normalised float32 NCHW batch [B, 3, outH, outW].
 *
 * Each image has a 12-word record in `boxes` (see {@linkcode CROP_RECORD_WORDS}):
 * 0 byte offset, 1 width (row stride in pixels), 2 loX, 3 loY, 4 hiX, 5 hiY (inclusive sample
 * bounds), 6 flip, 7 unused, 8 shiftX, 9 shiftY, 10 scaleX, 11 scaleY (f32 bits).
 * Output pixel `o` samples the local coordinate `s = shift + (o + 0.5) * scale - 0.5`, clamped
 * below at 0, bilinearly between `lo + floor(s)` and the next sample, clamped at `hi`: PyTorch's
 * `upsample_bilinear2d` (align_corners=False, no antialias) on the region [lo, hi]. With `flip`,
 * output column `o` takes what column `outW - 1 - o` would have. The value `v` in [0, 255]
 * becomes `v * mul_c + add_c` with `mul_c = 1 / (255 std_c)` and `add_c = -mean_c / std_c`.
 */
import { kernel } from "../src/gpu/kernel.ts";

/** Words per image in the `boxes` binding. */
export const CROP_RECORD_WORDS = 12;

/** Crop, bilinear resize, optional flip and mean/std normalisation of a batch of RGB images. */
export const cropResizeKernel = kernel({
  name: "crop_resize_normalize",
  storage: [["pixels", "read", "array<u32>"], ["boxes", "read", "array<u32>"], ["out", "write"]],
  uniforms: [
    ["total", "u32"],
    ["outW", "u32"],
    ["outH", "u32"],
    ["mul0", "f32"],
    ["mul1", "f32"],
    ["mul2", "f32"],
    ["add0", "f32"],
    ["add1", "f32"],
    ["add2", "f32"],
  ],
  workgroupSize: 64,
  helpers: `
    fn byteAt(i: u32) -> f32 {
      return f32((pixels[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu);
    }
    // Sample index and weight of the next one along an axis (PyTorch's source-index rule).
    fn axis(o: u32, shift: f32, scale: f32, lo: u32, hi: u32) -> vec3<f32> {
      let s = max(shift + (f32(o) + 0.5) * scale - 0.5, 0.0);
      let i0 = min(lo + u32(floor(s)), hi);
      let i1 = min(i0 + 1u, hi);
      return vec3<f32>(f32(i0), f32(i1), s - floor(s));
    }`,
  main: `
    let i = flatIndex(gid, nwg);
    if (i >= p.total) { return; }
    let plane = p.outW * p.outH;
    let n = i / plane;
    let oy = (i % plane) / p.outW;
    let ox = i % p.outW;
    let b = n * 12u;
    let w = boxes[b + 1u];
    let sxo = select(ox, p.outW - 1u - ox, boxes[b + 6u] != 0u);
    let ax = axis(sxo, bitcast<f32>(boxes[b + 8u]), bitcast<f32>(boxes[b + 10u]),
                  boxes[b + 2u], boxes[b + 4u]);
    let ay = axis(oy, bitcast<f32>(boxes[b + 9u]), bitcast<f32>(boxes[b + 11u]),
                  boxes[b + 3u], boxes[b + 5u]);
    let r0 = boxes[b] + u32(ay.x) * w * 3u;
    let r1 = boxes[b] + u32(ay.y) * w * 3u;
    let c0 = u32(ax.x) * 3u;
    let c1 = u32(ax.y) * 3u;
    let mul = vec3<f32>(p.mul0, p.mul1, p.mul2);
    let add = vec3<f32>(p.add0, p.add1, p.add2);
    for (var c = 0u; c < 3u; c++) {
      let top = mix(byteAt(r0 + c0 + c), byteAt(r0 + c1 + c), ax.z);
      let bottom = mix(byteAt(r1 + c0 + c), byteAt(r1 + c1 + c), ax.z);
      let v = mix(top, bottom, ay.z);
      out[((n * 3u + c) * p.outH + oy) * p.outW + ox] = v * mul[c] + add[c];
    }`,
});
