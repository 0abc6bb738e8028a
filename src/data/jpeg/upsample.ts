/**
 * Chroma upsampling and colour conversion of the JPEG decoder, following libjpeg's defaults so
 * that decoded pixels match what PIL (and so torchvision) sees: "fancy" triangle-filter
 * upsampling for 2x1 and 2x2 subsampled components, pixel replication for other factors, and
 * fixed-point YCbCr -> RGB with 16 fractional bits.
 */

/**
 * Upsamples a component plane (`stride` bytes per row, at least `ceil(width*h/hMax)` samples
 * and `ceil(height*v/vMax)` rows valid) to a `width x height` plane.
 */
export function upsampleTo(
  plane: Uint8Array,
  stride: number,
  factorX: number,
  factorY: number,
  width: number,
  height: number,
): Uint8Array {
  const out = new Uint8Array(width * height);
  const srcW = Math.ceil(width / factorX), srcH = Math.ceil(height / factorY);
  if (factorX === 1 && factorY === 1) {
    for (let y = 0; y < height; y++) {
      out.set(plane.subarray(y * stride, y * stride + width), y * width);
    }
  } else if (factorX === 2 && factorY === 1) {
    for (let y = 0; y < height; y++) fancyRow2x1(plane, y * stride, srcW, out, y * width, width);
  } else if (factorX === 1 && factorY === 2) {
    fancy1x2(plane, stride, srcH, out, width, height);
  } else if (factorX === 2 && factorY === 2) {
    fancy2x2(plane, stride, srcW, srcH, out, width, height);
  } else {
    for (let y = 0; y < height; y++) {
      const row = ((y / factorY) | 0) * stride;
      for (let x = 0; x < width; x++) out[y * width + x] = plane[row + ((x / factorX) | 0)];
    }
  }
  return out;
}

/** libjpeg h2v1 fancy upsampling of one row: 3/4 nearer + 1/4 further sample, edges copied. */
function fancyRow2x1(
  src: Uint8Array,
  s: number,
  srcW: number,
  out: Uint8Array,
  o: number,
  width: number,
): void {
  if (srcW === 1) {
    out.fill(src[s], o, o + width);
    return;
  }
  const tmp = new Uint8Array(srcW * 2);
  tmp[0] = src[s];
  tmp[1] = (src[s] * 3 + src[s + 1] + 2) >> 2;
  for (let i = 1; i < srcW - 1; i++) {
    const c = src[s + i] * 3;
    tmp[2 * i] = (c + src[s + i - 1] + 1) >> 2;
    tmp[2 * i + 1] = (c + src[s + i + 1] + 2) >> 2;
  }
  const l = srcW - 1;
  tmp[2 * l] = (src[s + l] * 3 + src[s + l - 1] + 1) >> 2;
  tmp[2 * l + 1] = src[s + l];
  out.set(tmp.subarray(0, width), o);
}

/** libjpeg h1v2 fancy upsampling: 3/4 own row + 1/4 nearer neighbour row, edges replicated. */
function fancy1x2(
  src: Uint8Array,
  stride: number,
  srcH: number,
  out: Uint8Array,
  width: number,
  height: number,
): void {
  for (let y = 0; y < height; y++) {
    const iy = y >> 1, even = (y & 1) === 0;
    const ny = even ? Math.max(iy - 1, 0) : Math.min(iy + 1, srcH - 1);
    const a = iy * stride, b = ny * stride, bias = even ? 1 : 2, o = y * width;
    for (let x = 0; x < width; x++) out[o + x] = (src[a + x] * 3 + src[b + x] + bias) >> 2;
  }
}

/**
 * libjpeg h2v2 fancy upsampling: each output row mixes its own input row (3/4) with the nearer
 * neighbour row (1/4), rows beyond the edges replicated; then the h2v1 triangle across columns.
 */
function fancy2x2(
  src: Uint8Array,
  stride: number,
  srcW: number,
  srcH: number,
  out: Uint8Array,
  width: number,
  height: number,
): void {
  const sums = new Int32Array(srcW);
  const row = new Uint8Array(srcW * 2);
  const l = srcW - 1;
  for (let y = 0; y < height; y++) {
    const iy = y >> 1;
    const ny = (y & 1) === 0 ? Math.max(iy - 1, 0) : Math.min(iy + 1, srcH - 1);
    const a = iy * stride, b = ny * stride;
    for (let i = 0; i < srcW; i++) sums[i] = src[a + i] * 3 + src[b + i];
    if (srcW === 1) {
      out.fill((sums[0] * 4 + 8) >> 4, y * width, (y + 1) * width);
      continue;
    }
    row[0] = (sums[0] * 4 + 8) >> 4;
    row[1] = (sums[0] * 3 + sums[1] + 7) >> 4;
    for (let i = 1; i < l; i++) {
      const c = sums[i] * 3;
      row[2 * i] = (c + sums[i - 1] + 8) >> 4;
      row[2 * i + 1] = (c + sums[i + 1] + 7) >> 4;
    }
    row[2 * l] = (sums[l] * 3 + sums[l - 1] + 8) >> 4;
    row[2 * l + 1] = (sums[l] * 4 + 7) >> 4;
    out.set(row.subarray(0, width), y * width);
  }
}

const FIX = (x: number) => Math.round(x * 65536);
const HALF = 1 << 15;
const CR_R = new Int32Array(256), CB_B = new Int32Array(256);
const CR_G = new Int32Array(256), CB_G = new Int32Array(256);
for (let i = 0; i < 256; i++) {
  const x = i - 128;
  CR_R[i] = (FIX(1.402) * x + HALF) >> 16;
  CB_B[i] = (FIX(1.772) * x + HALF) >> 16;
  CR_G[i] = -FIX(0.71414) * x;
  CB_G[i] = -FIX(0.34414) * x + HALF;
}

function clamp8(v: number): number {
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/** YCbCr planes to interleaved RGB (JFIF / libjpeg fixed-point). */
export function ycbcrToRgb(
  y: Uint8Array,
  cb: Uint8Array,
  cr: Uint8Array,
  out: Uint8Array,
  channels = 3,
): void {
  for (let i = 0, o = 0; i < y.length; i++, o += channels) {
    const Y = y[i], b = cb[i], r = cr[i];
    out[o] = clamp8(Y + CR_R[r]);
    out[o + 1] = clamp8(Y + ((CB_G[b] + CR_G[r]) >> 16));
    out[o + 2] = clamp8(Y + CB_B[b]);
  }
}
