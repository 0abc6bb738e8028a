/**
 * The TypeScript JPEG decoder: entropy decoding exact against the test encoder's coefficients,
 * the integer IDCT within one level of a float64 IDCT of the same coefficients, upsampling and
 * colour conversion within two levels of a float64 reference, and whole files bit-exact against
 * libjpeg-turbo's own decodes (fixtures, incl. progressive with successive approximation).
 */
import assert from "node:assert/strict";
import {
  componentPlanes,
  decodeJpeg,
  JpegError,
  parseJpeg,
  planesToRgb,
} from "../src/data/jpeg/decode.ts";
import { encodeJpeg, type EncodeOptions, idctReference } from "./support/jpeg_encoder.ts";
import { testImage } from "./support/images.ts";

const FIXTURES = new URL("./fixtures/jpeg/", import.meta.url);

/** A PPM (P6) or PGM (P5) file's pixels as RGB. */
function readPnm(bytes: Uint8Array): { width: number; height: number; rgb: Uint8Array } {
  const fields: string[] = [];
  let pos = 0, tok = "";
  while (fields.length < 4) {
    const ch = String.fromCharCode(bytes[pos++]);
    if (/\s/.test(ch)) {
      if (tok) fields.push(tok);
      tok = "";
    } else tok += ch;
  }
  const [magic, w, h] = [fields[0], +fields[1], +fields[2]];
  const data = bytes.subarray(pos);
  if (magic === "P6") return { width: w, height: h, rgb: data.slice(0, w * h * 3) };
  const rgb = new Uint8Array(w * h * 3);
  for (let i = 0; i < w * h; i++) rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = data[i];
  return { width: w, height: h, rgb };
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const CASES: [string, number, number, EncodeOptions][] = [
  ["4:4:4 q90", 37, 23, {}],
  ["4:2:0 q75 restart 2", 37, 23, { sampling: [2, 2], quality: 75, restartInterval: 2 }],
  ["4:2:2 q50", 41, 17, { sampling: [2, 1], quality: 50 }],
  ["4:4:0 q95", 19, 30, { sampling: [1, 2], quality: 95 }],
  ["gray q80 restart 3", 29, 13, { grayscale: true, quality: 80, restartInterval: 3 }],
  ["4:1:1 q60", 45, 9, { sampling: [4, 1], quality: 60 }],
];

for (const [name, w, h, options] of CASES) {
  Deno.test(`decoder: entropy decoding is exact (${name}, ${w}x${h})`, () => {
    const enc = encodeJpeg(testImage(w, h, 3), w, h, options);
    const frame = parseJpeg(enc.bytes);
    assert.equal(frame.width, w);
    assert.equal(frame.height, h);
    assert.equal(frame.components.length, enc.components.length);
    frame.components.forEach((c, i) => {
      const e = enc.components[i];
      assert.deepEqual([c.h, c.v, c.blocksPerLine, c.blocksPerColumn], [
        e.h,
        e.v,
        e.blocksPerLine,
        e.blocksPerColumn,
      ]);
      assert.deepEqual(c.quant, e.quant);
      assert.deepEqual(c.coefs, e.coefs, `component ${i} coefficients`);
    });
  });

  Deno.test(`decoder: integer IDCT within 1 of float64 (${name})`, () => {
    const enc = encodeJpeg(testImage(w, h, 5), w, h, options);
    const frame = parseJpeg(enc.bytes);
    const planes = componentPlanes(frame);
    let exact = 0, total = 0;
    frame.components.forEach((c, ci) => {
      const stride = c.blocksPerLine * 8;
      const deq = new Float64Array(64);
      for (let b = 0; b < c.blocksPerLine * c.blocksPerColumn; b++) {
        for (let i = 0; i < 64; i++) deq[i] = c.coefs[b * 64 + i] * c.quant[i];
        const ref = idctReference(deq);
        const bx = b % c.blocksPerLine, by = Math.floor(b / c.blocksPerLine);
        for (let i = 0; i < 64; i++) {
          const want = Math.min(255, Math.max(0, Math.round(ref[i] + 128)));
          const got = planes[ci][(by * 8 + (i >> 3)) * stride + bx * 8 + (i & 7)];
          assert.ok(Math.abs(got - want) <= 1, `component ${ci} block ${b}: ${got} vs ${want}`);
          if (got === want) exact++;
          total++;
        }
      }
    });
    assert.ok(exact / total > 0.95, `only ${exact}/${total} samples exact`);
  });
}

/** Float64 reference of libjpeg's fancy upsampling (triangle filter) plus JFIF YCbCr -> RGB. */
function referenceRgb(frame: ReturnType<typeof parseJpeg>, planes: Uint8Array[]): Float64Array {
  const { width: W, height: H } = frame;
  const full = frame.components.map((c, i) => {
    const stride = c.blocksPerLine * 8, fx = frame.hMax / c.h, fy = frame.vMax / c.v;
    const cw = Math.ceil(W / fx), ch = Math.ceil(H / fy);
    const at = (x: number, y: number) =>
      planes[i][Math.min(Math.max(y, 0), ch - 1) * stride + Math.min(Math.max(x, 0), cw - 1)];
    const out = new Float64Array(W * H);
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        // Nearer neighbour in each subsampled direction weighs 1/4, own sample 3/4.
        const sx = Math.floor(x / fx), sy = Math.floor(y / fy);
        const nx = fx === 2 ? sx + (x % 2 === 0 ? -1 : 1) : sx;
        const ny = fy === 2 ? sy + (y % 2 === 0 ? -1 : 1) : sy;
        const wx = fx === 2 ? 0.75 : 1, wy = fy === 2 ? 0.75 : 1;
        out[y * W + x] = wx * wy * at(sx, sy) + (1 - wx) * wy * at(nx, sy) +
          wx * (1 - wy) * at(sx, ny) + (1 - wx) * (1 - wy) * at(nx, ny);
      }
    }
    return out;
  });
  const rgb = new Float64Array(W * H * 3);
  for (let i = 0; i < W * H; i++) {
    const y = full[0][i], cb = (full[1]?.[i] ?? 128) - 128, cr = (full[2]?.[i] ?? 128) - 128;
    rgb[3 * i] = y + 1.402 * cr;
    rgb[3 * i + 1] = y - 0.344136 * cb - 0.714136 * cr;
    rgb[3 * i + 2] = y + 1.772 * cb;
  }
  return rgb.map((v) => Math.min(255, Math.max(0, v)));
}

for (const [name, w, h, options] of CASES.slice(0, 5)) {
  Deno.test(`decoder: upsampling and colour within 2 of float64 (${name})`, () => {
    const enc = encodeJpeg(testImage(w, h, 7), w, h, options);
    const frame = parseJpeg(enc.bytes);
    const planes = componentPlanes(frame);
    const got = planesToRgb(frame, planes).data;
    assert.ok(maxDiff(got, referenceRgb(frame, planes)) <= 2);
  });
}

Deno.test("decoder: round trip PSNR is high at q95 and falls with quality", () => {
  const w = 64, h = 48, src = testImage(w, h, 11);
  const psnr = (quality: number) => {
    const got = decodeJpeg(encodeJpeg(src, w, h, { quality }).bytes).data;
    let se = 0;
    for (let i = 0; i < src.length; i++) se += (got[i] - src[i]) ** 2;
    return 10 * Math.log10((255 * 255) / (se / src.length));
  };
  const [p95, p50] = [psnr(95), psnr(50)];
  assert.ok(p95 > 34, `PSNR at q95 ${p95.toFixed(1)} dB`);
  assert.ok(p95 > p50 + 3, `PSNR q95 ${p95.toFixed(1)} vs q50 ${p50.toFixed(1)} dB`);
});

Deno.test("decoder: a flat grey image decodes exactly", () => {
  const w = 21, h = 14, src = new Uint8Array(w * h * 3).fill(137);
  for (const sampling of [[1, 1], [2, 2]] as [number, number][]) {
    const got = decodeJpeg(encodeJpeg(src, w, h, { quality: 90, sampling }).bytes).data;
    assert.ok(got.every((v) => v === 137), `sampling ${sampling}`);
  }
});

const LIBJPEG_FIXTURES: [string, string][] = [
  ["base420.jpg", "base420.ppm"],
  ["prog420.jpg", "base420.ppm"],
  ["prog420_rst.jpg", "base420.ppm"],
  ["s440.jpg", "s440.ppm"],
  ["prog422.jpg", "prog422.ppm"],
  ["gray_prog.jpg", "gray_prog.pgm"],
  ["cmyk.jpg", "cmyk.ppm"],
];

for (const [jpg, pnm] of LIBJPEG_FIXTURES) {
  Deno.test(`decoder: ${jpg} matches libjpeg-turbo bit for bit`, async () => {
    const img = decodeJpeg(await Deno.readFile(new URL(jpg, FIXTURES)));
    const want = readPnm(await Deno.readFile(new URL(pnm, FIXTURES)));
    assert.deepEqual([img.width, img.height], [want.width, want.height]);
    assert.equal(maxDiff(img.data, want.rgb), 0);
  });
}

Deno.test("decoder: progressive and baseline files of the same coefficients agree exactly", async () => {
  const base = parseJpeg(await Deno.readFile(new URL("base420.jpg", FIXTURES)));
  for (const name of ["prog420.jpg", "prog420_rst.jpg"]) {
    const prog = parseJpeg(await Deno.readFile(new URL(name, FIXTURES)));
    assert.ok(prog.progressive && !base.progressive);
    prog.components.forEach((c, i) => assert.deepEqual(c.coefs, base.components[i].coefs));
  }
});

Deno.test("decoder: bad and unsupported files throw JpegError", async () => {
  const good = encodeJpeg(testImage(16, 16, 1), 16, 16).bytes;
  const sof = good.findIndex((b, i) => b === 0xff && good[i + 1] === 0xc0);
  const withMarker = (m: number) => {
    const b = good.slice();
    b[sof + 1] = m;
    return b;
  };
  const twelveBit = good.slice();
  twelveBit[sof + 4] = 12;
  const cases: [string, Uint8Array, RegExp][] = [
    ["empty", new Uint8Array(0), /not a JPEG/],
    ["PNG", Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0, 0, 0, 0]), /not a JPEG/],
    ["no frame", good.slice(0, sof), /no frame header/],
    ["arithmetic", withMarker(0xc9), /SOF9/],
    ["lossless", withMarker(0xc3), /SOF3/],
    ["12-bit", twelveBit, /12-bit/],
    ["truncated header", good.slice(0, sof + 6), /truncated/],
    ["truncated data", good.slice(0, good.length - 40), /truncated/],
  ];
  for (const [name, bytes, pattern] of cases) {
    assert.throws(() => decodeJpeg(bytes), (e: unknown) => {
      assert.ok(e instanceof JpegError, `${name}: ${e}`);
      assert.match((e as Error).message, pattern, name);
      return true;
    });
  }
  await Promise.resolve();
});
