/**
 * A small baseline JPEG encoder for the tests: float64 forward DCT, IJG-scaled Annex K
 * quantisation tables, per-image optimal Huffman tables (so long codes occur), any luma
 * sampling factors with 1x1 chroma, grayscale, restart intervals. It returns the quantised
 * coefficients next to the file so the decoder's entropy stage can be checked exactly and its
 * IDCT against a float64 reference of the same coefficients.
 */
import { ZIGZAG } from "../../src/data/jpeg/decode.ts"; // checked apart by the libjpeg fixtures

/** Options of {@linkcode encodeJpeg}. */
export interface EncodeOptions {
  /** IJG quality 1..100; default 90. */
  quality?: number;
  /** Luma sampling factors [h, v] (chroma is 1x1); default [1, 1]. */
  sampling?: [number, number];
  /** One-component file from the luma; default false. */
  grayscale?: boolean;
  /** MCUs per restart interval; 0 (default) for none. */
  restartInterval?: number;
}

/** One encoded component, laid out as the decoder's `JpegComponent`. */
export interface EncodedComponent {
  /** Sampling factors. */
  h: number;
  /** Vertical sampling factor. */
  v: number;
  /** Quantisation table, natural order. */
  quant: Uint16Array;
  /** Blocks per line and per column (whole MCUs). */
  blocksPerLine: number;
  /** Block rows. */
  blocksPerColumn: number;
  /** Quantised coefficients, 64 per block, natural order. */
  coefs: Int16Array;
}

/** The file and what went into it. */
export interface EncodedJpeg {
  /** The JPEG file. */
  bytes: Uint8Array;
  /** Components in frame order. */
  components: EncodedComponent[];
}

/** ITU T.81 Table K.1 (luminance), natural order. */
const LUMA_Q = [
  16,
  11,
  10,
  16,
  24,
  40,
  51,
  61,
  12,
  12,
  14,
  19,
  26,
  58,
  60,
  55,
  14,
  13,
  16,
  24,
  40,
  57,
  69,
  56,
  14,
  17,
  22,
  29,
  51,
  87,
  80,
  62,
  18,
  22,
  37,
  56,
  68,
  109,
  103,
  77,
  24,
  35,
  55,
  64,
  81,
  104,
  113,
  92,
  49,
  64,
  78,
  87,
  103,
  121,
  120,
  101,
  72,
  92,
  95,
  98,
  112,
  100,
  103,
  99,
];

/** ITU T.81 Table K.2 (chrominance), natural order. */
const CHROMA_Q = [
  17,
  18,
  24,
  47,
  99,
  99,
  99,
  99,
  18,
  21,
  26,
  66,
  99,
  99,
  99,
  99,
  24,
  26,
  56,
  99,
  99,
  99,
  99,
  99,
  47,
  66,
  99,
  99,
  99,
  99,
  99,
  99,
  ...new Array(32).fill(99),
];

/** IJG quality scaling of a base table. */
export function scaledQuant(base: number[], quality: number): Uint16Array {
  const q = Math.min(100, Math.max(1, quality));
  const scale = q < 50 ? Math.floor(5000 / q) : 200 - 2 * q;
  return Uint16Array.from(
    base,
    (b) => Math.min(255, Math.max(1, Math.floor((b * scale + 50) / 100))),
  );
}

/** Float64 forward DCT of an 8x8 block of level-shifted samples (natural order). */
export function fdct(block: Float64Array): Float64Array {
  const out = new Float64Array(64);
  for (let v = 0; v < 8; v++) {
    for (let u = 0; u < 8; u++) {
      let s = 0;
      for (let y = 0; y < 8; y++) {
        for (let x = 0; x < 8; x++) {
          s += block[y * 8 + x] * Math.cos(((2 * x + 1) * u * Math.PI) / 16) *
            Math.cos(((2 * y + 1) * v * Math.PI) / 16);
        }
      }
      const cu = u === 0 ? Math.SQRT1_2 : 1, cv = v === 0 ? Math.SQRT1_2 : 1;
      out[v * 8 + u] = 0.25 * cu * cv * s;
    }
  }
  return out;
}

/** Float64 inverse DCT of 64 dequantised coefficients (natural order) to samples. */
export function idctReference(coefs: ArrayLike<number>): Float64Array {
  const out = new Float64Array(64);
  for (let y = 0; y < 8; y++) {
    for (let x = 0; x < 8; x++) {
      let s = 0;
      for (let v = 0; v < 8; v++) {
        for (let u = 0; u < 8; u++) {
          const cu = u === 0 ? Math.SQRT1_2 : 1, cv = v === 0 ? Math.SQRT1_2 : 1;
          s += cu * cv * coefs[v * 8 + u] * Math.cos(((2 * x + 1) * u * Math.PI) / 16) *
            Math.cos(((2 * y + 1) * v * Math.PI) / 16);
        }
      }
      out[y * 8 + x] = 0.25 * s;
    }
  }
  return out;
}

/** Full-resolution Y, Cb, Cr planes (float64, JFIF) of interleaved RGB. */
function toYcc(rgb: Uint8Array, n: number): Float64Array[] {
  const y = new Float64Array(n), cb = new Float64Array(n), cr = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const r = rgb[3 * i], g = rgb[3 * i + 1], b = rgb[3 * i + 2];
    y[i] = 0.299 * r + 0.587 * g + 0.114 * b;
    cb[i] = -0.168736 * r - 0.331264 * g + 0.5 * b + 128;
    cr[i] = 0.5 * r - 0.418688 * g - 0.081312 * b + 128;
  }
  return [y, cb, cr];
}

/**
 * A component's quantised blocks: the plane box-downsampled by (fx, fy), edge-replicated to
 * whole MCUs, level-shifted, transformed and quantised.
 */
function quantisedBlocks(
  plane: Float64Array,
  width: number,
  height: number,
  fx: number,
  fy: number,
  blocksPerLine: number,
  blocksPerColumn: number,
  quant: Uint16Array,
): Int16Array {
  const cw = Math.ceil(width / fx), ch = Math.ceil(height / fy);
  const sample = (x: number, y: number) => {
    const sx = Math.min(x, cw - 1), sy = Math.min(y, ch - 1);
    let s = 0;
    for (let dy = 0; dy < fy; dy++) {
      for (let dx = 0; dx < fx; dx++) {
        const px = Math.min(sx * fx + dx, width - 1), py = Math.min(sy * fy + dy, height - 1);
        s += plane[py * width + px];
      }
    }
    return s / (fx * fy);
  };
  const coefs = new Int16Array(blocksPerLine * blocksPerColumn * 64);
  const block = new Float64Array(64);
  for (let by = 0; by < blocksPerColumn; by++) {
    for (let bx = 0; bx < blocksPerLine; bx++) {
      for (let i = 0; i < 64; i++) block[i] = sample(bx * 8 + (i & 7), by * 8 + (i >> 3)) - 128;
      const f = fdct(block);
      const base = (by * blocksPerLine + bx) * 64;
      for (let i = 0; i < 64; i++) {
        const limit = i === 0 ? 2047 : 1023;
        coefs[base + i] = Math.max(-limit, Math.min(limit, Math.round(f[i] / quant[i])));
      }
    }
  }
  return coefs;
}

/** Magnitude category of a value (bits needed for |v|). */
function category(v: number): number {
  let a = Math.abs(v), n = 0;
  while (a > 0) {
    n++;
    a >>= 1;
  }
  return n;
}

/** A coded event: Huffman symbol of table `table`, then `len` raw bits of `bits`. */
type Event = [table: number, symbol: number, bits: number, len: number];

/** The DC then AC events of one block (baseline, T.81 F.1.2). */
function blockEvents(
  coefs: Int16Array,
  base: number,
  pred: number,
  dcTable: number,
  out: Event[],
): void {
  const diff = coefs[base] - pred;
  const s = category(diff);
  out.push([dcTable, s, diff < 0 ? diff + (1 << s) - 1 : diff, s]);
  let run = 0;
  for (let k = 1; k < 64; k++) {
    const v = coefs[base + ZIGZAG[k]];
    if (v === 0) {
      run++;
      continue;
    }
    while (run > 15) {
      out.push([dcTable + 2, 0xf0, 0, 0]);
      run -= 16;
    }
    const c = category(v);
    out.push([dcTable + 2, (run << 4) | c, v < 0 ? v + (1 << c) - 1 : v, c]);
    run = 0;
  }
  if (run > 0) out.push([dcTable + 2, 0, 0, 0]);
}

/** Code lengths of an optimal Huffman code limited to 16 bits (T.81 Annex K.2). */
function huffmanTable(freq: number[]): { counts: number[]; symbols: number[] } {
  const f = [...freq, 1]; // reserved symbol 256: no code of all ones
  const size = new Array(257).fill(0), others = new Array(257).fill(-1);
  for (;;) {
    let c1 = -1, c2 = -1;
    for (let i = 0; i < 257; i++) {
      if (f[i] === 0) continue;
      if (c1 < 0 || f[i] <= f[c1]) {
        c2 = c1;
        c1 = i;
      } else if (c2 < 0 || f[i] <= f[c2]) c2 = i;
    }
    if (c2 < 0) break;
    f[c1] += f[c2];
    f[c2] = 0;
    for (size[c1]++; others[c1] >= 0; size[c1]++) c1 = others[c1];
    others[c1] = c2;
    for (size[c2]++; others[c2] >= 0; size[c2]++) c2 = others[c2];
  }
  const bits = new Array(33).fill(0);
  for (let i = 0; i < 257; i++) if (size[i]) bits[size[i]]++;
  for (let i = 32; i > 16; i--) {
    while (bits[i] > 0) {
      let j = i - 2;
      while (bits[j] === 0) j--;
      bits[i] -= 2;
      bits[i - 1]++;
      bits[j + 1] += 2;
      bits[j]--;
    }
  }
  let i = 16;
  while (bits[i] === 0) i--;
  bits[i]--; // drop the reserved symbol
  const symbols: number[] = [];
  for (let len = 1; len <= 32; len++) {
    for (let s = 0; s < 256; s++) if (size[s] === len) symbols.push(s);
  }
  return { counts: bits.slice(1, 17), symbols };
}

/** Canonical codes of a table: symbol -> [code, length]. */
function codesOf(t: { counts: number[]; symbols: number[] }): Map<number, [number, number]> {
  const codes = new Map<number, [number, number]>();
  let code = 0, k = 0;
  for (let len = 1; len <= 16; len++) {
    for (let i = 0; i < t.counts[len - 1]; i++) codes.set(t.symbols[k++], [code++, len]);
    code <<= 1;
  }
  return codes;
}

/** MSB-first bit writer with 0xFF byte stuffing. */
class BitWriter {
  bytes: number[] = [];
  #acc = 0;
  #n = 0;
  put(bits: number, len: number): void {
    for (let i = len - 1; i >= 0; i--) {
      this.#acc = (this.#acc << 1) | ((bits >> i) & 1);
      if (++this.#n === 8) {
        this.bytes.push(this.#acc);
        if (this.#acc === 0xff) this.bytes.push(0);
        this.#acc = 0;
        this.#n = 0;
      }
    }
  }
  /** Pads the last byte with ones. */
  flush(): void {
    if (this.#n > 0) this.put(0x7f, 8 - this.#n);
  }
}

function segment(out: number[], marker: number, body: number[]): void {
  out.push(0xff, marker, (body.length + 2) >> 8, (body.length + 2) & 0xff, ...body);
}

/** Encodes interleaved RGB (`width * height * 3` bytes) as a baseline JPEG. */
export function encodeJpeg(
  rgb: Uint8Array,
  width: number,
  height: number,
  options: EncodeOptions = {},
): EncodedJpeg {
  const quality = options.quality ?? 90;
  const [hMax, vMax] = options.grayscale ? [1, 1] : options.sampling ?? [1, 1];
  const planes = toYcc(rgb, width * height);
  const nComp = options.grayscale ? 1 : 3;
  const mcusX = Math.ceil(width / (8 * hMax)), mcusY = Math.ceil(height / (8 * vMax));
  const quants = [scaledQuant(LUMA_Q, quality), scaledQuant(CHROMA_Q, quality)];
  const components: EncodedComponent[] = [];
  for (let c = 0; c < nComp; c++) {
    const h = c === 0 ? hMax : 1, v = c === 0 ? vMax : 1;
    const bpl = mcusX * h, bpc = mcusY * v, quant = quants[c === 0 ? 0 : 1];
    const coefs = quantisedBlocks(planes[c], width, height, hMax / h, vMax / v, bpl, bpc, quant);
    components.push({ h, v, quant, blocksPerLine: bpl, blocksPerColumn: bpc, coefs });
  }
  // Events per MCU, in scan order, with restart boundaries.
  const events: Event[] = [];
  const restarts: number[] = []; // event index where each restart interval begins
  const preds = new Array(nComp).fill(0);
  const interval = options.restartInterval ?? 0;
  for (let m = 0; m < mcusX * mcusY; m++) {
    if (interval > 0 && m > 0 && m % interval === 0) {
      restarts.push(events.length);
      preds.fill(0);
    }
    const mx = m % mcusX, my = Math.floor(m / mcusX);
    components.forEach((comp, c) => {
      for (let by = 0; by < comp.v; by++) {
        for (let bx = 0; bx < comp.h; bx++) {
          const base = ((my * comp.v + by) * comp.blocksPerLine + mx * comp.h + bx) * 64;
          blockEvents(comp.coefs, base, preds[c], c === 0 ? 0 : 1, events);
          preds[c] = comp.coefs[base];
        }
      }
    });
  }
  const freqs = Array.from({ length: 4 }, () => new Array(256).fill(0));
  for (const [t, s] of events) freqs[t][s]++;
  const tables = freqs.map((f) => huffmanTable(f));
  const codes = tables.map(codesOf);
  const out: number[] = [0xff, 0xd8];
  segment(out, 0xe0, [0x4a, 0x46, 0x49, 0x46, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0]);
  quants.slice(0, nComp === 1 ? 1 : 2).forEach((q, id) => {
    segment(out, 0xdb, [id, ...ZIGZAG.map((z) => q[z])]);
  });
  const sof = [8, height >> 8, height & 255, width >> 8, width & 255, nComp];
  components.forEach((c, i) => sof.push(i + 1, (c.h << 4) | c.v, i === 0 ? 0 : 1));
  segment(out, 0xc0, sof);
  tables.forEach((t, i) => {
    if (nComp === 1 && i % 2 === 1) return;
    segment(out, 0xc4, [(i >> 1) << 4 | (i & 1), ...t.counts, ...t.symbols]);
  });
  if (interval > 0) segment(out, 0xdd, [interval >> 8, interval & 255]);
  const sos = [nComp];
  for (let i = 0; i < nComp; i++) sos.push(i + 1, i === 0 ? 0 : 0x11);
  segment(out, 0xda, [...sos, 0, 63, 0]);
  const w = new BitWriter();
  let next = 0;
  events.forEach(([t, s, bits, len], i) => {
    if (next < restarts.length && restarts[next] === i) {
      w.flush();
      w.bytes.push(0xff, 0xd0 + (next % 8));
      next++;
    }
    const [code, clen] = codes[t].get(s)!;
    w.put(code, clen);
    w.put(bits, len);
  });
  w.flush();
  out.push(...w.bytes, 0xff, 0xd9);
  return { bytes: Uint8Array.from(out), components };
}
