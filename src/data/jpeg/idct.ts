/**
 * The 8x8 inverse DCT of the JPEG decoder: the accurate integer algorithm of the IJG library
 * ("islow": Loeffler-Ligtenberg-Moschytz with 13-bit fixed-point constants, two passes, the
 * first keeping 2 extra bits), so decoded pixels agree with libjpeg's default to within a
 * rounding step. Dequantisation is folded into the first pass.
 */

const CONST_BITS = 13;
const PASS1_BITS = 2;
const F_0_298 = 2446;
const F_0_390 = 3196;
const F_0_541 = 4433;
const F_0_765 = 6270;
const F_0_899 = 7373;
const F_1_175 = 9633;
const F_1_501 = 12299;
const F_1_847 = 15137;
const F_1_961 = 16069;
const F_2_053 = 16819;
const F_2_562 = 20995;
const F_3_072 = 25172;

const workspace = new Int32Array(64);

/** Clamps to [0, 255]. */
function clamp8(v: number): number {
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/**
 * Inverse-transforms block `blockIndex` of `coefs` (64 quantised coefficients per block, natural
 * order) with quantisation table `quant` (natural order), writing 8x8 level-shifted, clamped
 * samples to `out` at `outOffset` with row stride `stride`.
 */
export function idctBlock(
  coefs: Int16Array,
  blockIndex: number,
  quant: Uint16Array,
  out: Uint8Array,
  outOffset: number,
  stride: number,
): void {
  const ws = workspace;
  const base = blockIndex * 64;
  // Pass 1: columns, into the workspace scaled by 2^PASS1_BITS.
  for (let c = 0; c < 8; c++) {
    const i = base + c;
    if (
      coefs[i + 8] === 0 && coefs[i + 16] === 0 && coefs[i + 24] === 0 && coefs[i + 32] === 0 &&
      coefs[i + 40] === 0 && coefs[i + 48] === 0 && coefs[i + 56] === 0
    ) {
      const dc = (coefs[i] * quant[c]) << PASS1_BITS;
      for (let r = 0; r < 64; r += 8) ws[c + r] = dc;
      continue;
    }
    let z2 = coefs[i + 16] * quant[c + 16];
    let z3 = coefs[i + 48] * quant[c + 48];
    let z1 = (z2 + z3) * F_0_541;
    const e2 = z1 - z3 * F_1_847;
    const e3 = z1 + z2 * F_0_765;
    z2 = coefs[i] * quant[c];
    z3 = coefs[i + 32] * quant[c + 32];
    const e0 = (z2 + z3) * 8192;
    const e1 = (z2 - z3) * 8192;
    const t10 = e0 + e3, t13 = e0 - e3, t11 = e1 + e2, t12 = e1 - e2;
    let o0 = coefs[i + 56] * quant[c + 56];
    let o1 = coefs[i + 40] * quant[c + 40];
    let o2 = coefs[i + 24] * quant[c + 24];
    let o3 = coefs[i + 8] * quant[c + 8];
    z1 = o0 + o3;
    z2 = o1 + o2;
    z3 = o0 + o2;
    let z4 = o1 + o3;
    const z5 = (z3 + z4) * F_1_175;
    o0 *= F_0_298;
    o1 *= F_2_053;
    o2 *= F_3_072;
    o3 *= F_1_501;
    z1 *= -F_0_899;
    z2 *= -F_2_562;
    z3 = z3 * -F_1_961 + z5;
    z4 = z4 * -F_0_390 + z5;
    o0 += z1 + z3;
    o1 += z2 + z4;
    o2 += z2 + z3;
    o3 += z1 + z4;
    const sh = CONST_BITS - PASS1_BITS, rnd = 1 << (sh - 1);
    ws[c] = (t10 + o3 + rnd) >> sh;
    ws[c + 56] = (t10 - o3 + rnd) >> sh;
    ws[c + 8] = (t11 + o2 + rnd) >> sh;
    ws[c + 48] = (t11 - o2 + rnd) >> sh;
    ws[c + 16] = (t12 + o1 + rnd) >> sh;
    ws[c + 40] = (t12 - o1 + rnd) >> sh;
    ws[c + 24] = (t13 + o0 + rnd) >> sh;
    ws[c + 32] = (t13 - o0 + rnd) >> sh;
  }
  // Pass 2: rows, descaled by 2^(CONST_BITS + PASS1_BITS + 3), plus the level shift of 128.
  const sh = CONST_BITS + PASS1_BITS + 3, rnd = 1 << (sh - 1);
  for (let r = 0; r < 64; r += 8) {
    const o = outOffset + (r >> 3) * stride;
    if (
      ws[r + 1] === 0 && ws[r + 2] === 0 && ws[r + 3] === 0 && ws[r + 4] === 0 &&
      ws[r + 5] === 0 && ws[r + 6] === 0 && ws[r + 7] === 0
    ) {
      const v = clamp8(((ws[r] + (1 << (PASS1_BITS + 2))) >> (PASS1_BITS + 3)) + 128);
      for (let k = 0; k < 8; k++) out[o + k] = v;
      continue;
    }
    let z2 = ws[r + 2];
    let z3 = ws[r + 6];
    let z1 = (z2 + z3) * F_0_541;
    const e2 = z1 - z3 * F_1_847;
    const e3 = z1 + z2 * F_0_765;
    const e0 = (ws[r] + ws[r + 4]) * 8192;
    const e1 = (ws[r] - ws[r + 4]) * 8192;
    const t10 = e0 + e3, t13 = e0 - e3, t11 = e1 + e2, t12 = e1 - e2;
    // the odd part is pass 1's, written out again: a shared function would put a call (and its
    // four results) in the decoder's innermost loop
    let o0 = ws[r + 7], o1 = ws[r + 5], o2 = ws[r + 3], o3 = ws[r + 1];
    z1 = o0 + o3;
    z2 = o1 + o2;
    z3 = o0 + o2;
    let z4 = o1 + o3;
    const z5 = (z3 + z4) * F_1_175;
    o0 *= F_0_298;
    o1 *= F_2_053;
    o2 *= F_3_072;
    o3 *= F_1_501;
    z1 *= -F_0_899;
    z2 *= -F_2_562;
    z3 = z3 * -F_1_961 + z5;
    z4 = z4 * -F_0_390 + z5;
    o0 += z1 + z3;
    o1 += z2 + z4;
    o2 += z2 + z3;
    o3 += z1 + z4;
    out[o] = clamp8(((t10 + o3 + rnd) >> sh) + 128);
    out[o + 7] = clamp8(((t10 - o3 + rnd) >> sh) + 128);
    out[o + 1] = clamp8(((t11 + o2 + rnd) >> sh) + 128);
    out[o + 6] = clamp8(((t11 - o2 + rnd) >> sh) + 128);
    out[o + 2] = clamp8(((t12 + o1 + rnd) >> sh) + 128);
    out[o + 5] = clamp8(((t12 - o1 + rnd) >> sh) + 128);
    out[o + 3] = clamp8(((t13 + o0 + rnd) >> sh) + 128);
    out[o + 4] = clamp8(((t13 - o0 + rnd) >> sh) + 128);
  }
}
