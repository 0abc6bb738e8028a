/**
 * Float64 reference of the crop-resize-normalise kernel: PyTorch's `upsample_bilinear2d`
 * (align_corners=False, antialias off) of a sample box, with flip and mean/std normalisation.
 */
import type { SampleBox } from "../../src/data/jpeg/transforms.ts";

/** Source index pair and weight of the second along one axis (local coordinate rule). */
function axis(o: number, shift: number, scale: number, lo: number, hi: number): number[] {
  const s = Math.max(shift + (o + 0.5) * scale - 0.5, 0);
  const i0 = Math.min(lo + Math.floor(s), hi);
  return [i0, Math.min(i0 + 1, hi), s - Math.floor(s)];
}

/** [3, outH, outW] normalised float64 values of one RGB image sampled through `box`. */
export function cropResizeReference(
  rgb: Uint8Array,
  width: number,
  box: SampleBox,
  outW: number,
  outH: number,
  mean: readonly number[],
  std: readonly number[],
): Float64Array {
  const out = new Float64Array(3 * outH * outW);
  for (let oy = 0; oy < outH; oy++) {
    const [y0, y1, ly] = axis(oy, box.shiftY, box.scaleY, box.loY, box.hiY);
    for (let ox = 0; ox < outW; ox++) {
      const sx = box.flip ? outW - 1 - ox : ox;
      const [x0, x1, lx] = axis(sx, box.shiftX, box.scaleX, box.loX, box.hiX);
      for (let c = 0; c < 3; c++) {
        const px = (x: number, y: number) => rgb[(y * width + x) * 3 + c];
        const top = (1 - lx) * px(x0, y0) + lx * px(x1, y0);
        const bottom = (1 - lx) * px(x0, y1) + lx * px(x1, y1);
        const v = (1 - ly) * top + ly * bottom;
        out[(c * outH + oy) * outW + ox] = (v / 255 - mean[c]) / std[c];
      }
    }
  }
  return out;
}
