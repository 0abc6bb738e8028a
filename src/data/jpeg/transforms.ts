/**
 * Host halves of the ImageNet transforms: which region of each decoded image the GPU kernel
 * (shaders/resize.ts) samples, and how. Training: torchvision's `RandomResizedCrop(224)`
 * (scale (0.08, 1), ratio (3/4, 4/3), ten attempts, then a centre crop of the nearest allowed
 * ratio) and `RandomHorizontalFlip()`, drawn from a generator seeded by (seed, epoch, index) so
 * the draw of an image never depends on decoding order. Evaluation: `Resize(256)` (shorter side
 * to 256) then `CenterCrop(224)`, folded into one sampling of the source image.
 *
 * The kernel's bilinear sampling has no antialiasing filter: torchvision's `Resize` on PIL
 * images (and on tensors since 0.17 by default) low-pass filters when shrinking, so a strongly
 * downscaled crop here is slightly sharper (more aliased) than torchvision's; PIL also rounds
 * the resized image to uint8 before normalising, which this pipeline does not.
 */
import { Rng } from "../../random.ts";
import { CROP_RECORD_WORDS } from "../../../shaders/resize.ts";

/** How the kernel samples one image (see shaders/resize.ts). */
export interface SampleBox {
  /** Inclusive sample bounds of the region, in source pixels. */
  loX: number;
  /** Top row of the region. */
  loY: number;
  /** Rightmost column of the region. */
  hiX: number;
  /** Bottom row of the region. */
  hiY: number;
  /** Offset of the sampling grid within the region, in source pixels. */
  shiftX: number;
  /** Vertical offset of the sampling grid. */
  shiftY: number;
  /** Source pixels per output pixel, horizontally. */
  scaleX: number;
  /** Source pixels per output pixel, vertically. */
  scaleY: number;
  /** Mirror horizontally. */
  flip: boolean;
}

/** An integer crop rectangle (torchvision's `i, j, h, w` as top, left, height, width). */
export interface CropRect {
  /** Top row. */
  top: number;
  /** Left column. */
  left: number;
  /** Height in pixels. */
  height: number;
  /** Width in pixels. */
  width: number;
}

/** Python's `round`: halves to even. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** torchvision's `RandomResizedCrop.get_params`. */
export function randomResizedCrop(
  width: number,
  height: number,
  rng: Rng,
  scale: [number, number] = [0.08, 1],
  ratio: [number, number] = [3 / 4, 4 / 3],
): CropRect {
  const area = width * height;
  const logLo = Math.log(ratio[0]), logHi = Math.log(ratio[1]);
  for (let attempt = 0; attempt < 10; attempt++) {
    const target = area * (scale[0] + (scale[1] - scale[0]) * rng.nextFloat());
    const aspect = Math.exp(logLo + (logHi - logLo) * rng.nextFloat());
    const w = roundHalfEven(Math.sqrt(target * aspect));
    const h = roundHalfEven(Math.sqrt(target / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const top = rng.nextInt(height - h + 1);
      const left = rng.nextInt(width - w + 1);
      return { top, left, height: h, width: w };
    }
  }
  const inRatio = width / height;
  let w = width, h = height;
  if (inRatio < Math.min(...ratio)) h = roundHalfEven(w / Math.min(...ratio));
  else if (inRatio > Math.max(...ratio)) w = roundHalfEven(h * Math.max(...ratio));
  return {
    top: Math.floor((height - h) / 2),
    left: Math.floor((width - w) / 2),
    height: h,
    width: w,
  };
}

/** The training sample of image `index` in `epoch`: random resized crop to `size`, flip. */
export function trainBox(
  width: number,
  height: number,
  seed: number,
  epoch: number,
  index: number,
  size = 224,
): SampleBox {
  const rng = new Rng(seed, "crop", epoch, index);
  const c = randomResizedCrop(width, height, rng);
  const flip = rng.nextFloat() < 0.5;
  return cropBox(c, size, size, flip);
}

/** Samples crop rectangle `c` resized to `outW x outH` (crop then resize, as torchvision). */
export function cropBox(c: CropRect, outW: number, outH: number, flip = false): SampleBox {
  return {
    loX: c.left,
    loY: c.top,
    hiX: c.left + c.width - 1,
    hiY: c.top + c.height - 1,
    shiftX: 0,
    shiftY: 0,
    scaleX: c.width / outW,
    scaleY: c.height / outH,
    flip,
  };
}

/**
 * The evaluation sample: `Resize(resize)` (shorter side to `resize`, the longer scaled and
 * truncated as torchvision does) then `CenterCrop(size)`, as one sampling of the source.
 */
export function evalBox(width: number, height: number, resize = 256, size = 224): SampleBox {
  let newW = width, newH = height;
  if (Math.min(width, height) !== resize) {
    if (width <= height) [newW, newH] = [resize, Math.floor((resize * height) / width)];
    else [newW, newH] = [Math.floor((resize * width) / height), resize];
  }
  if (newW < size || newH < size) {
    throw new RangeError(`centre crop ${size} exceeds the resized image ${newW}x${newH}`);
  }
  const left = roundHalfEven((newW - size) / 2), top = roundHalfEven((newH - size) / 2);
  const sx = width / newW, sy = height / newH;
  return {
    loX: 0,
    loY: 0,
    hiX: width - 1,
    hiY: height - 1,
    shiftX: left * sx,
    shiftY: top * sy,
    scaleX: sx,
    scaleY: sy,
    flip: false,
  };
}

/** Writes image `n`'s record (byte offset, width and box) into `out` for the kernel. */
export function packBox(
  out: Uint32Array,
  n: number,
  byteOffset: number,
  width: number,
  box: SampleBox,
): void {
  const f = new Float32Array(out.buffer, out.byteOffset, out.length);
  const b = n * CROP_RECORD_WORDS;
  out[b] = byteOffset;
  out[b + 1] = width;
  out[b + 2] = box.loX;
  out[b + 3] = box.loY;
  out[b + 4] = box.hiX;
  out[b + 5] = box.hiY;
  out[b + 6] = box.flip ? 1 : 0;
  out[b + 7] = 0;
  f[b + 8] = box.shiftX;
  f[b + 9] = box.shiftY;
  f[b + 10] = box.scaleX;
  f[b + 11] = box.scaleY;
}

/** ImageNet channel means (RGB, pixels in [0, 1]). */
export const IMAGENET_MEAN: readonly number[] = [0.485, 0.456, 0.406];
/** ImageNet channel standard deviations. */
export const IMAGENET_STD: readonly number[] = [0.229, 0.224, 0.225];
