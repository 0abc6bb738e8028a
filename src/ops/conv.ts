/**
 * conv2d (NCHW, weights [O, C, KH, KW], zero padding, no bias): forward, backward and JVP,
 * all three as implicit GEMMs through the one template of shaders/gemm.ts.
 *
 *   forward  y[n,o,oh,ow] = sum_{c,kh,kw} w[o,c,kh,kw] x[n,c,oh*s-p+kh,ow*s-p+kw]
 *            GEMM rows o, columns (n,oh,ow), depth (c,kh,kw)
 *   dX       dx[n,c,h,w]  = sum_{o,kh,kw} w[o,c,kh,kw] dy[n,o,(h+p-kh)/s,(w+p-kw)/s]
 *            one GEMM per phase (h%s, w%s): rows c, columns (n,h/s,w/s), depth (o and the
 *            taps whose (h+p-kh)/s is an integer), so no work on structural zeros
 *   dW       dw[o,(c,kh,kw)] = sum_{n,oh,ow} dy[n,o,oh,ow] x[n,c,oh*s-p+kh,ow*s-p+kw]
 *            rows o, columns (c,kh,kw), depth (n,oh,ow): long K, so split-K
 *   JVP      y' = conv(x', w) + conv(x, w')   (the forward GEMM, the second accumulating)
 */
import { bind, Tensor } from "../tensor.ts";
import type { Ctx } from "../autograd/tape.ts";
import type { Gpu } from "../gpu/runtime.ts";
import { type GemmInstance, runGemm, type StoreMode } from "./gemm.ts";

/** Convolution geometry. */
export interface ConvOptions {
  /** Step between output positions, in input pixels (both axes). */
  stride: number;
  /** Zero padding on every side, in pixels. */
  pad: number;
}

interface ConvShape {
  N: number;
  C: number;
  H: number;
  W: number;
  O: number;
  KH: number;
  KW: number;
  OH: number;
  OW: number;
  stride: number;
  pad: number;
}

const PARAMS = ["Cin", "H", "W", "OH", "OW", "KH", "KW", "stride", "pad", "Cout"];

function paramValues(s: ConvShape): number[] {
  return [s.C, s.H, s.W, s.OH, s.OW, s.KH, s.KW, s.stride, s.pad, s.O];
}

/** Output size of a convolution along one axis. */
export function convOutSize(size: number, k: number, stride: number, pad: number): number {
  return Math.floor((size + 2 * pad - k) / stride) + 1;
}

function shapeOf(x: Tensor, w: Tensor, o: ConvOptions): ConvShape {
  if (x.shape.length !== 4 || w.shape.length !== 4 || x.shape[1] !== w.shape[1]) {
    throw new Error(`conv2d: input [${x.shape}] does not match weight [${w.shape}]`);
  }
  const [N, C, H, W] = x.shape;
  const [O, , KH, KW] = w.shape;
  const OH = convOutSize(H, KH, o.stride, o.pad);
  const OW = convOutSize(W, KW, o.stride, o.pad);
  return { N, C, H, W, O, KH, KW, OH, OW, stride: o.stride, pad: o.pad };
}

const I = (e: string) => `i32(${e})`;

function forwardInstance(mode: StoreMode): GemmInstance {
  return {
    key: `conv-fwd:${mode}`,
    hooks: {
      params: PARAMS,
      rowA: `return vec4<i32>(${I("m * p.K")}, 0, 0, 0);`,
      kA: "return vec4<i32>(i32(k), 0, 0, 0);",
      loadA: "return A[u32(r.x + k.x)];",
      // w[o, :] is contiguous along k = (c, kh, kw) (aligned when K % 4 == 0).
      loadA4: "return A[u32(r.x + k.x) >> 2u];",
      kB:
        `let kk = p.KH * p.KW; let ci = k / kk; let t = k % kk; let kh = t / p.KW; let kw = t % p.KW;
        return vec4<i32>(${I("ci * p.H * p.W + kh * p.W + kw")}, i32(kh), i32(kw), 0);`,
      colB: `let hw = p.OH * p.OW; let nb = n / hw; let s = n % hw;
        let ih0 = ${I("(s / p.OW) * p.stride")} - i32(p.pad);
        let iw0 = ${I("(s % p.OW) * p.stride")} - i32(p.pad);
        return vec4<i32>(${I("nb * p.Cin * p.H * p.W")} + ih0 * i32(p.W) + iw0, ih0, iw0, 0);`,
      loadB: `let ih = k.y + c.y; let iw = k.z + c.z;
        let ok = ih >= 0 && ih < i32(p.H) && iw >= 0 && iw < i32(p.W);
        return select(0.0, B[u32(select(0, k.x + c.x, ok))], ok);`,
      store: `let hw = p.OH * p.OW; let idx = ((n / hw) * p.Cout + m) * hw + n % hw;
        C[idx] = v${mode === "accumulate" ? " + C[idx]" : ""};`,
    },
  };
}

/**
 * dX as s*s sub-pixel GEMMs, one per input phase (h % s, w % s): input row h = ph + s*h' is
 * reached only by the taps kh = rh + s*jh with rh = (ph + pad) % s, from output row
 * oh = h' + bh - jh with bh = (ph + pad - rh) / s. Each phase's GEMM has only those taps in its
 * depth, so a stride-2 dX does the useful multiply-adds only, instead of an implicit GEMM over
 * every tap where 3/4 of the loads hit structural zeros. At stride 1 it is the one phase.
 *   rows c, columns (n, h', w'), depth (o, jh, jw)
 */
const DX_PARAMS = [...PARAMS, "ph", "pw", "rh", "rw", "nKh", "nKw", "bh", "bw", "Hp", "Wp"];

const DX: GemmInstance = {
  key: "conv-dx",
  hooks: {
    params: DX_PARAMS,
    rowA: `return vec4<i32>(${I("m * p.KH * p.KW")}, 0, 0, 0);`,
    kA: `let kk = p.nKh * p.nKw; let co = k / kk; let t = k % kk;
      let kh = p.rh + p.stride * (t / p.nKw); let kw = p.rw + p.stride * (t % p.nKw);
      return vec4<i32>(${I("co * p.Cin * p.KH * p.KW + kh * p.KW + kw")}, 0, 0, 0);`,
    loadA: "return A[u32(r.x + k.x)];",
    kB: `let kk = p.nKh * p.nKw; let co = k / kk; let t = k % kk;
      return vec4<i32>(${I("co * p.OH * p.OW")}, ${I("t / p.nKw")}, ${I("t % p.nKw")}, 0);`,
    colB: `let hw = p.Hp * p.Wp; let nb = n / hw; let s = n % hw;
      return vec4<i32>(${I("nb * p.Cout * p.OH * p.OW")}, ${I("s / p.Wp + p.bh")}, ${
      I("s % p.Wp + p.bw")
    }, 0);`,
    loadB: `let oh = c.y - k.y; let ow = c.z - k.z;
      let ok = oh >= 0 && ow >= 0 && oh < i32(p.OH) && ow < i32(p.OW);
      return select(0.0, B[u32(select(0, k.x + c.x + oh * i32(p.OW) + ow, ok))], ok);`,
    store: `let hw = p.Hp * p.Wp; let nb = n / hw; let s = n % hw;
      let h = p.ph + p.stride * (s / p.Wp); let w = p.pw + p.stride * (s % p.Wp);
      C[((nb * p.Cin + m) * p.H + h) * p.W + w] = v;`,
  },
};

/** Geometry of one dX phase along an axis (see {@linkcode DX}). */
function dxPhase(phase: number, size: number, k: number, stride: number, pad: number) {
  const r = (phase + pad) % stride;
  return {
    r,
    taps: r < k ? Math.ceil((k - r) / stride) : 0,
    b: (phase + pad - r) / stride,
    count: phase < size ? Math.ceil((size - phase) / stride) : 0,
  };
}

const DW: GemmInstance = {
  key: "conv-dw",
  hooks: {
    params: PARAMS,
    rowA: `return vec4<i32>(${I("m * p.OH * p.OW")}, 0, 0, 0);`,
    kA: `let hw = p.OH * p.OW; return vec4<i32>(${I("(k / hw) * p.Cout * hw + k % hw")}, 0, 0, 0);`,
    loadA: "return A[u32(r.x + k.x)];",
    // dy[n, o, :] is contiguous along k = (n, oh, ow) within an image: 4 k stay in one image
    // and 16-byte aligned when OH * OW % 4 == 0.
    loadA4: "return A[u32(r.x + k.x) >> 2u];",
    alignedA: (c) => (c.OH * c.OW) % 4 === 0,
    kB: `let hw = p.OH * p.OW; let s = k % hw;
      return vec4<i32>(${I("(k / hw) * p.Cin * p.H * p.W")}, ${
      I("(s / p.OW) * p.stride")
    } - i32(p.pad), ${I("(s % p.OW) * p.stride")} - i32(p.pad), 0);`,
    colB: `let kk = p.KH * p.KW; let t = n % kk;
      return vec4<i32>(${I("(n / kk) * p.H * p.W")}, ${I("t / p.KW")}, ${I("t % p.KW")}, 0);`,
    loadB: `let ih = k.y + c.y; let iw = k.z + c.z;
      let ok = ih >= 0 && ih < i32(p.H) && iw >= 0 && iw < i32(p.W);
      return select(0.0, B[u32(select(0, k.x + c.x + ih * i32(p.W) + iw, ok))], ok);`,
    store: "C[m * p.N + n] = v;",
  },
};

const FWD_SET = forwardInstance("set");
const FWD_ACC = forwardInstance("accumulate");

/** y = conv(x, w) into `out` (accumulating when asked). */
export function convForwardInto(
  gpu: Gpu,
  x: Tensor,
  w: Tensor,
  o: ConvOptions,
  out: Tensor,
  accumulate = false,
): void {
  const s = shapeOf(x, w, o);
  runGemm(
    gpu,
    accumulate ? FWD_ACC : FWD_SET,
    { M: s.O, N: s.N * s.OH * s.OW, K: s.C * s.KH * s.KW },
    bind(w),
    bind(x),
    [],
    bind(out),
    paramValues(s),
  );
}

/** dx from dy (shape of x). */
export function convBackwardInput(
  gpu: Gpu,
  dy: Tensor,
  w: Tensor,
  x: Tensor,
  o: ConvOptions,
): Tensor {
  const s = shapeOf(x, w, o);
  const dx = Tensor.empty(gpu, x.shape);
  for (let ph = 0; ph < s.stride; ph++) {
    const h = dxPhase(ph, s.H, s.KH, s.stride, s.pad);
    for (let pw = 0; pw < s.stride; pw++) {
      const v = dxPhase(pw, s.W, s.KW, s.stride, s.pad);
      const N = s.N * h.count * v.count;
      runGemm(
        gpu,
        DX,
        { M: s.C, N, K: s.O * h.taps * v.taps },
        bind(w),
        bind(dy),
        [],
        bind(dx),
        [...paramValues(s), ph, pw, h.r, v.r, h.taps, v.taps, h.b, v.b, h.count, v.count],
      );
    }
  }
  return dx;
}

/** dw from dy and x. */
export function convBackwardWeight(
  gpu: Gpu,
  dy: Tensor,
  x: Tensor,
  w: Tensor,
  o: ConvOptions,
  dw: Tensor = Tensor.empty(gpu, w.shape),
): Tensor {
  const s = shapeOf(x, w, o);
  runGemm(
    gpu,
    DW,
    { M: s.O, N: s.C * s.KH * s.KW, K: s.N * s.OH * s.OW },
    bind(dy),
    bind(x),
    [],
    bind(dw),
    paramValues(s),
  );
  return dw;
}

/** 2-D convolution with autograd (backward and JVP recorded on the context's tape). */
export function conv2d(ctx: Ctx, x: Tensor, w: Tensor, o: ConvOptions): Tensor {
  const s = shapeOf(x, w, o);
  const y = ctx.empty([s.N, s.O, s.OH, s.OW]);
  convForwardInto(ctx.gpu, x, w, o, y);
  ctx.record({
    op: "conv2d",
    inputs: [x, w],
    output: y,
    backward: (dy, needs, into) => [
      needs[0] ? convBackwardInput(ctx.gpu, dy, w, x, o) : null,
      needs[1] ? convBackwardWeight(ctx.gpu, dy, x, w, o, into?.[1] ?? undefined) : null,
    ],
    jvp: ([xDot, wDot]) => {
      const yDot = Tensor.empty(ctx.gpu, y.shape);
      if (xDot) convForwardInto(ctx.gpu, xDot, w, o, yDot);
      if (wDot) convForwardInto(ctx.gpu, x, wDot, o, yDot, xDot !== null);
      return yDot;
    },
  });
  return y;
}
