/**
 * A JPEG decoder in TypeScript: baseline and extended sequential (SOF0/SOF1) and progressive
 * (SOF2) Huffman-coded 8-bit images, any sampling factors, restart intervals, grayscale, YCbCr,
 * RGB and Adobe CMYK/YCCK. Arithmetic coding, 12-bit, lossless and hierarchical files are
 * refused with a {@linkcode JpegError}. EXIF orientation is not applied (as PIL's
 * `Image.open` does not).
 *
 * Stages, each exported for the tests: {@linkcode parseJpeg} (markers and entropy decoding to
 * quantised coefficients), {@linkcode componentPlanes} (integer IDCT, see idct.ts) and
 * {@linkcode planesToRgb} (libjpeg's "fancy" triangle upsampling for 2x1 and 2x2 chroma,
 * replication otherwise, and libjpeg's fixed-point colour conversion).
 */
import { BitReader, HuffmanTable, JpegError } from "./huffman.ts";
import { idctBlock } from "./idct.ts";
import { upsampleTo, ycbcrToRgb } from "./upsample.ts";

export { JpegError } from "./huffman.ts";

/** Natural (row-major) position of the k-th coefficient in zigzag order. */
export const ZIGZAG: Uint8Array = Uint8Array.from([
  0,
  1,
  8,
  16,
  9,
  2,
  3,
  10,
  17,
  24,
  32,
  25,
  18,
  11,
  4,
  5,
  12,
  19,
  26,
  33,
  40,
  48,
  41,
  34,
  27,
  20,
  13,
  6,
  7,
  14,
  21,
  28,
  35,
  42,
  49,
  56,
  57,
  50,
  43,
  36,
  29,
  22,
  15,
  23,
  30,
  37,
  44,
  51,
  58,
  59,
  52,
  45,
  38,
  31,
  39,
  46,
  53,
  60,
  61,
  54,
  47,
  55,
  62,
  63,
]);

/** Largest image the decoder accepts, in pixels (guards against corrupt headers). */
export const MAX_PIXELS = 1 << 28;

/** One colour component of a frame with its quantised coefficients. */
export interface JpegComponent {
  /** Component identifier from the frame header. */
  id: number;
  /** Horizontal and vertical sampling factors. */
  h: number;
  /** Vertical sampling factor. */
  v: number;
  /** Quantisation table id (0..3). */
  quantId: number;
  /** Quantisation table (natural order), resolved when parsing ends. */
  quant: Uint16Array;
  /** Samples per line and lines of this component (before upsampling). */
  width: number;
  /** Lines of this component. */
  height: number;
  /** Allocated blocks per line (whole MCUs) and per column. */
  blocksPerLine: number;
  /** Allocated block rows. */
  blocksPerColumn: number;
  /** 64 quantised coefficients per block, natural order, blocks row-major. */
  coefs: Int16Array;
}

/** A parsed frame: geometry, components with coefficients, and the colour transform. */
export interface JpegFrame {
  /** Image width in pixels. */
  width: number;
  /** Image height in pixels. */
  height: number;
  /** Whether the frame is progressive (SOF2). */
  progressive: boolean;
  /** Components in frame order. */
  components: JpegComponent[];
  /** Largest horizontal sampling factor. */
  hMax: number;
  /** Largest vertical sampling factor. */
  vMax: number;
  /** Adobe APP14 colour transform flag (0 none, 1 YCbCr, 2 YCCK), or -1 without the marker. */
  adobeTransform: number;
}

/** A decoded image: RGB, 3 bytes per pixel, rows top to bottom. */
export interface RgbImage {
  /** Width in pixels. */
  width: number;
  /** Height in pixels. */
  height: number;
  /** `width * height * 3` bytes. */
  data: Uint8Array;
}

/** Decodes a JPEG file's bytes to RGB. Throws {@linkcode JpegError} on bad or unsupported data. */
export function decodeJpeg(bytes: Uint8Array): RgbImage {
  const frame = parseJpeg(bytes);
  return planesToRgb(frame, componentPlanes(frame));
}

/** Decoder state across segments. */
interface ParseState {
  bytes: Uint8Array;
  quant: (Uint16Array | undefined)[];
  dc: (HuffmanTable | undefined)[];
  ac: (HuffmanTable | undefined)[];
  restartInterval: number;
  frame: JpegFrame | null;
  adobeTransform: number;
  eobrun: number;
}

/** The state before the first segment of `bytes`. */
function newParseState(bytes: Uint8Array): ParseState {
  return {
    bytes,
    quant: [],
    dc: [],
    ac: [],
    restartInterval: 0,
    frame: null,
    adobeTransform: -1,
    eobrun: 0,
  };
}

/** Throws {@linkcode JpegError} unless `bytes` start with the SOI marker. */
function checkSoi(bytes: Uint8Array): void {
  if (bytes.length < 4 || bytes[0] !== 0xff || bytes[1] !== 0xd8) {
    throw new JpegError("not a JPEG file (no SOI marker at the start)");
  }
}

function u16(b: Uint8Array, p: number): number {
  if (p + 1 >= b.length) throw new JpegError("truncated segment");
  return (b[p] << 8) | b[p + 1];
}

/** Parses markers and decodes every scan into quantised coefficients. */
export function parseJpeg(bytes: Uint8Array): JpegFrame {
  checkSoi(bytes);
  const s = newParseState(bytes);
  let pos = 2;
  let scans = 0;
  for (;;) {
    // Markers may be preceded by fill bytes 0xFF; anything else between segments is skipped.
    while (pos < bytes.length && bytes[pos] !== 0xff) pos++;
    while (pos < bytes.length && bytes[pos] === 0xff) pos++;
    if (pos >= bytes.length) break;
    const marker = bytes[pos++];
    if (marker === 0xd9) break; // EOI
    if (marker >= 0xd0 && marker <= 0xd7) continue; // stray RST
    const length = u16(bytes, pos);
    const end = pos + length;
    if (length < 2 || end > bytes.length) throw new JpegError("truncated segment");
    const body = bytes.subarray(pos + 2, end);
    if (marker === 0xc0 || marker === 0xc1 || marker === 0xc2) readFrame(s, body, marker);
    else if (marker === 0xc4) readHuffman(s, body);
    else if (marker === 0xdb) readQuant(s, body);
    else if (marker === 0xdd) s.restartInterval = u16(body, 0);
    else if (marker === 0xee) readAdobe(s, body);
    else if (marker === 0xda) {
      pos = readScan(s, body, end);
      scans++;
      continue;
    } else if (marker === 0xcc) throw new JpegError("arithmetic-coded JPEG is not supported");
    else if (marker >= 0xc3 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8) {
      throw new JpegError(
        `unsupported JPEG process (SOF${marker - 0xc0}): only baseline, extended and ` +
          "progressive Huffman are supported",
      );
    }
    pos = end;
  }
  if (!s.frame) throw new JpegError("no frame header (SOF) found");
  if (scans === 0) throw new JpegError("no image data (SOS) found");
  s.frame.adobeTransform = s.adobeTransform;
  for (const c of s.frame.components) {
    const q = s.quant[c.quantId];
    if (!q) throw new JpegError(`quantisation table ${c.quantId} is not defined`);
    c.quant = q;
  }
  return s.frame;
}

function readQuant(s: ParseState, body: Uint8Array): void {
  let p = 0;
  while (p < body.length) {
    const pq = body[p] >> 4, tq = body[p] & 15;
    p++;
    if (tq > 3) throw new JpegError(`invalid quantisation table id ${tq}`);
    if (p + (pq ? 128 : 64) > body.length) throw new JpegError("truncated quantisation table");
    const table = new Uint16Array(64);
    for (let k = 0; k < 64; k++) {
      table[ZIGZAG[k]] = pq ? (body[p] << 8) | body[p + 1] : body[p];
      p += pq ? 2 : 1;
    }
    s.quant[tq] = table;
  }
}

function readHuffman(s: ParseState, body: Uint8Array): void {
  let p = 0;
  while (p < body.length) {
    if (p + 17 > body.length) throw new JpegError("truncated Huffman table");
    const tc = body[p] >> 4, th = body[p] & 15;
    if (tc > 1 || th > 3) throw new JpegError(`invalid Huffman table class/id ${body[p]}`);
    const counts = body.subarray(p + 1, p + 17);
    let n = 0;
    for (let i = 0; i < 16; i++) n += counts[i];
    if (p + 17 + n > body.length || n > 256) throw new JpegError("truncated Huffman table");
    const table = new HuffmanTable(counts, body.slice(p + 17, p + 17 + n));
    (tc === 0 ? s.dc : s.ac)[th] = table;
    p += 17 + n;
  }
}

function readAdobe(s: ParseState, body: Uint8Array): void {
  const tag = String.fromCharCode(...body.subarray(0, 5));
  if (tag === "Adobe" && body.length >= 12) s.adobeTransform = body[11];
}

function readFrame(s: ParseState, body: Uint8Array, marker: number): void {
  if (s.frame) throw new JpegError("more than one frame header (SOF)");
  if (body.length < 6) throw new JpegError("truncated frame header");
  if (body[0] !== 8) throw new JpegError(`${body[0]}-bit samples are not supported (8-bit only)`);
  const height = u16(body, 1), width = u16(body, 3), n = body[5];
  if (height === 0) throw new JpegError("frame height 0 (DNL marker) is not supported");
  if (width === 0) throw new JpegError("frame width is 0");
  if (width * height > MAX_PIXELS) throw new JpegError(`image ${width}x${height} is too large`);
  if (n !== 1 && n !== 3 && n !== 4) throw new JpegError(`${n} components are not supported`);
  if (body.length < 6 + 3 * n) throw new JpegError("truncated frame header");
  const raw = [];
  for (let i = 0; i < n; i++) {
    const p = 6 + 3 * i;
    const h = body[p + 1] >> 4, v = body[p + 1] & 15;
    if (h < 1 || h > 4 || v < 1 || v > 4) throw new JpegError("invalid sampling factor");
    raw.push({ id: body[p], h, v, quantId: body[p + 2] & 3 });
  }
  const hMax = Math.max(...raw.map((c) => c.h)), vMax = Math.max(...raw.map((c) => c.v));
  const mcusX = Math.ceil(width / (8 * hMax)), mcusY = Math.ceil(height / (8 * vMax));
  const components = raw.map((c): JpegComponent => {
    const blocksPerLine = mcusX * c.h, blocksPerColumn = mcusY * c.v;
    return {
      ...c,
      quant: new Uint16Array(64),
      width: Math.ceil((width * c.h) / hMax),
      height: Math.ceil((height * c.v) / vMax),
      blocksPerLine,
      blocksPerColumn,
      coefs: new Int16Array(blocksPerLine * blocksPerColumn * 64),
    };
  });
  s.frame = {
    width,
    height,
    progressive: marker === 0xc2,
    components,
    hMax,
    vMax,
    adobeTransform: -1,
  };
}

/** One component's part in a scan. */
interface ScanComponent {
  c: JpegComponent;
  dc: HuffmanTable | undefined;
  ac: HuffmanTable | undefined;
  pred: number;
}

/** Decodes one scan; returns the position of the marker that follows its data. */
function readScan(s: ParseState, body: Uint8Array, dataStart: number): number {
  const frame = s.frame;
  if (!frame) throw new JpegError("scan (SOS) before the frame header (SOF)");
  const n = body[0];
  if (n < 1 || n > 4 || body.length < 4 + 2 * n) throw new JpegError("invalid scan header");
  const comps: ScanComponent[] = [];
  for (let i = 0; i < n; i++) {
    const id = body[1 + 2 * i], t = body[2 + 2 * i];
    const c = frame.components.find((x) => x.id === id);
    if (!c) throw new JpegError(`scan refers to unknown component ${id}`);
    comps.push({ c, dc: s.dc[t >> 4], ac: s.ac[t & 15], pred: 0 });
  }
  const ss = body[1 + 2 * n], se = body[2 + 2 * n];
  const ah = body[3 + 2 * n] >> 4, al = body[3 + 2 * n] & 15;
  const progressive = frame.progressive;
  if (progressive && (se > 63 || ss > se || (ss > 0 && n !== 1) || al > 13)) {
    throw new JpegError("invalid progressive scan parameters");
  }
  const needDc = !progressive || (ss === 0 && ah === 0);
  const needAc = !progressive || ss > 0;
  for (const sc of comps) {
    if (needDc && !sc.dc) throw new JpegError("scan uses an undefined DC Huffman table");
    if (needAc && !sc.ac) throw new JpegError("scan uses an undefined AC Huffman table");
  }
  const decodeBlock = !progressive
    ? blockSequential
    : ss === 0
    ? (ah === 0 ? blockDcFirst : blockDcRefine)
    : (ah === 0 ? blockAcFirst : blockAcRefine);
  const scan: Scan = { s, reader: new BitReader(s.bytes, dataStart), ss, se, al };
  s.eobrun = 0;
  const single = n === 1;
  const c0 = comps[0].c;
  const mcusX = single ? Math.ceil(c0.width / 8) : Math.ceil(frame.width / (8 * frame.hMax));
  const mcusY = single ? Math.ceil(c0.height / 8) : Math.ceil(frame.height / (8 * frame.vMax));
  const total = mcusX * mcusY;
  const interval = s.restartInterval || total;
  for (let mcu = 0; mcu < total; mcu++) {
    if (mcu > 0 && mcu % interval === 0) restart(scan, comps);
    const mx = mcu % mcusX, my = (mcu / mcusX) | 0;
    if (single) {
      decodeBlock(scan, comps[0], my * c0.blocksPerLine + mx);
      continue;
    }
    for (const sc of comps) {
      const { h, v, blocksPerLine } = sc.c;
      for (let by = 0; by < v; by++) {
        for (let bx = 0; bx < h; bx++) {
          decodeBlock(scan, sc, (my * v + by) * blocksPerLine + mx * h + bx);
        }
      }
    }
  }
  // Running out of file mid-scan is an error (as PIL's default); a scan cut short by a marker
  // decodes with zeros, as libjpeg does after its "premature end of data segment" warning.
  if (scan.reader.truncated) throw new JpegError("file is truncated (image data ends early)");
  return nextMarker(s.bytes, scan.reader.pos);
}

/** The position of the next marker other than RSTn (where the scan's data ends). */
function nextMarker(b: Uint8Array, pos: number): number {
  for (let p = pos; p + 1 < b.length; p++) {
    if (b[p] === 0xff && b[p + 1] !== 0 && b[p + 1] !== 0xff && (b[p + 1] & 0xf8) !== 0xd0) {
      return p;
    }
  }
  return b.length;
}

/** At a restart interval: align to the RSTn marker, skip it, reset predictors. */
function restart(scan: Scan, comps: ScanComponent[]): void {
  const r = scan.reader, b = r.data;
  r.reset();
  let p = r.pos;
  while (p + 1 < b.length && !(b[p] === 0xff && (b[p + 1] & 0xf8) === 0xd0)) p++;
  if (p + 1 >= b.length) throw new JpegError("missing restart marker");
  r.pos = p + 2;
  for (const sc of comps) sc.pred = 0;
  scan.s.eobrun = 0;
}

/** What the block decoders need. */
interface Scan {
  s: ParseState;
  reader: BitReader;
  ss: number;
  se: number;
  al: number;
}

function blockSequential(scan: Scan, sc: ScanComponent, block: number): void {
  const r = scan.reader, coefs = sc.c.coefs, base = block * 64;
  const t = r.decode(sc.dc!);
  sc.pred += t === 0 ? 0 : r.receiveExtend(t);
  coefs[base] = sc.pred;
  const ac = sc.ac!;
  for (let k = 1; k < 64;) {
    const rs = r.decode(ac);
    const size = rs & 15, run = rs >> 4;
    if (size === 0) {
      if (run !== 15) break;
      k += 16;
      continue;
    }
    k += run;
    if (k > 63) throw new JpegError("corrupt data: coefficient index past 63");
    coefs[base + ZIGZAG[k]] = r.receiveExtend(size);
    k++;
  }
}

function blockDcFirst(scan: Scan, sc: ScanComponent, block: number): void {
  const r = scan.reader;
  const t = r.decode(sc.dc!);
  sc.pred += t === 0 ? 0 : r.receiveExtend(t);
  sc.c.coefs[block * 64] = sc.pred * (1 << scan.al);
}

function blockDcRefine(scan: Scan, sc: ScanComponent, block: number): void {
  if (scan.reader.bit()) sc.c.coefs[block * 64] |= 1 << scan.al;
}

function blockAcFirst(scan: Scan, sc: ScanComponent, block: number): void {
  const s = scan.s;
  if (s.eobrun > 0) {
    s.eobrun--;
    return;
  }
  const r = scan.reader, coefs = sc.c.coefs, base = block * 64, ac = sc.ac!;
  for (let k = scan.ss; k <= scan.se;) {
    const rs = r.decode(ac);
    const size = rs & 15, run = rs >> 4;
    if (size === 0) {
      if (run < 15) {
        s.eobrun = (1 << run) - 1 + r.bits(run);
        break;
      }
      k += 16;
      continue;
    }
    k += run;
    if (k > 63) throw new JpegError("corrupt data: coefficient index past 63");
    coefs[base + ZIGZAG[k]] = r.receiveExtend(size) * (1 << scan.al);
    k++;
  }
}

/** Successive-approximation refinement of AC coefficients (T.81 G.1.2.3; libjpeg's order). */
function blockAcRefine(scan: Scan, sc: ScanComponent, block: number): void {
  const s = scan.s, r = scan.reader, coefs = sc.c.coefs, base = block * 64, ac = sc.ac!;
  const p1 = 1 << scan.al, m1 = -1 << scan.al, se = scan.se;
  let k = scan.ss;
  if (s.eobrun === 0) {
    for (; k <= se; k++) {
      const rs = r.decode(ac);
      let run = rs >> 4, value = 0;
      if ((rs & 15) !== 0) value = r.bit() ? p1 : m1;
      else if (run !== 15) {
        s.eobrun = (1 << run) + r.bits(run);
        break;
      }
      while (k <= se) {
        const z = base + ZIGZAG[k];
        if (coefs[z] !== 0) {
          if (r.bit() && (coefs[z] & p1) === 0) coefs[z] += coefs[z] >= 0 ? p1 : m1;
        } else if (--run < 0) break;
        k++;
      }
      if (value !== 0) {
        if (k > 63) throw new JpegError("corrupt data: coefficient index past 63");
        coefs[base + ZIGZAG[k]] = value;
      }
    }
  }
  if (s.eobrun > 0) {
    for (; k <= se; k++) {
      const z = base + ZIGZAG[k];
      if (coefs[z] !== 0 && r.bit() && (coefs[z] & p1) === 0) {
        coefs[z] += coefs[z] >= 0 ? p1 : m1;
      }
    }
    s.eobrun--;
  }
}

/** Inverse-transforms every block: one plane per component at its own resolution. */
export function componentPlanes(frame: JpegFrame): Uint8Array[] {
  return frame.components.map((c) => {
    const stride = c.blocksPerLine * 8;
    const plane = new Uint8Array(stride * c.blocksPerColumn * 8);
    let block = 0;
    for (let by = 0; by < c.blocksPerColumn; by++) {
      for (let bx = 0; bx < c.blocksPerLine; bx++, block++) {
        idctBlock(c.coefs, block, c.quant, plane, by * 8 * stride + bx * 8, stride);
      }
    }
    return plane;
  });
}

/** Whether a 3-component frame holds YCbCr (JFIF default) rather than RGB. */
function isYcbcr(frame: JpegFrame): boolean {
  if (frame.adobeTransform >= 0) return frame.adobeTransform !== 0;
  const ids = frame.components.map((c) => c.id);
  return !(ids[0] === 0x52 && ids[1] === 0x47 && ids[2] === 0x42); // 'R', 'G', 'B'
}

/** Upsamples the planes and converts them to interleaved RGB. */
export function planesToRgb(frame: JpegFrame, planes: Uint8Array[]): RgbImage {
  const { width, height, components } = frame;
  const full = components.map((c, i) =>
    upsampleTo(planes[i], c.blocksPerLine * 8, frame.hMax / c.h, frame.vMax / c.v, width, height)
  );
  const n = width * height;
  const data = new Uint8Array(n * 3);
  if (full.length === 1) {
    const g = full[0];
    for (let i = 0, o = 0; i < n; i++, o += 3) data[o] = data[o + 1] = data[o + 2] = g[i];
  } else if (full.length === 3) {
    if (isYcbcr(frame)) ycbcrToRgb(full[0], full[1], full[2], data);
    else {
      for (let i = 0, o = 0; i < n; i++, o += 3) {
        data[o] = full[0][i];
        data[o + 1] = full[1][i];
        data[o + 2] = full[2][i];
      }
    }
  } else cmykToRgb(frame, full, data);
  return { width, height, data };
}

/**
 * 4-component frames: YCCK (Adobe transform 2) is first taken to CMY; Adobe files store inverted
 * CMYK. RGB = (255 - C)(255 - K) / 255 per channel, rounded as PIL's conversion does.
 */
function cmykToRgb(frame: JpegFrame, full: Uint8Array[], data: Uint8Array): void {
  const n = frame.width * frame.height;
  if (frame.adobeTransform === 2) {
    const rgb = new Uint8Array(n * 3);
    ycbcrToRgb(full[0], full[1], full[2], rgb);
    for (let i = 0; i < n; i++) {
      full[0][i] = 255 - rgb[3 * i];
      full[1][i] = 255 - rgb[3 * i + 1];
      full[2][i] = 255 - rgb[3 * i + 2];
    }
  }
  const inverted = frame.adobeTransform >= 0;
  for (let i = 0, o = 0; i < n; i++, o += 3) {
    const nk = inverted ? full[3][i] : 255 - full[3][i];
    for (let c = 0; c < 3; c++) {
      const ink = inverted ? 255 - full[c][i] : full[c][i];
      const t = ink * nk + 128;
      data[o + c] = nk - ((t + (t >> 8)) >> 8);
    }
  }
}

/** What a JPEG header says, without decoding the image. */
export interface JpegInfo {
  /** Width in pixels. */
  width: number;
  /** Height in pixels. */
  height: number;
  /** Number of components (1, 3 or 4). */
  components: number;
  /** Whether the file is progressive. */
  progressive: boolean;
}

/**
 * Reads the frame header of a JPEG (the start of the file suffices) and checks that the decoder
 * supports it. Throws {@linkcode JpegError} otherwise.
 */
export function readJpegInfo(bytes: Uint8Array): JpegInfo {
  checkSoi(bytes);
  let pos = 2;
  while (pos + 4 <= bytes.length) {
    while (pos < bytes.length && bytes[pos] === 0xff) pos++;
    const marker = bytes[pos++];
    const end = pos + u16(bytes, pos);
    if (marker === 0xc0 || marker === 0xc1 || marker === 0xc2) {
      const s = newParseState(bytes);
      readFrame(s, bytes.subarray(pos + 2, Math.min(end, bytes.length)), marker);
      const f = s.frame!;
      return {
        width: f.width,
        height: f.height,
        components: f.components.length,
        progressive: f.progressive,
      };
    }
    if (marker === 0xda || marker === 0xd9) break;
    if (
      marker === 0xcc || (marker >= 0xc3 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8)
    ) {
      throw new JpegError(`unsupported JPEG process (SOF${marker - 0xc0})`);
    }
    pos = end;
  }
  throw new JpegError("no frame header (SOF) found");
}
