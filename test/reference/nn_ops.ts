/**
 * Float64 CPU reference of the layer ops and optimizers beyond the ResNet's: max and average
 * pooling, regression losses, per-channel bias, dropout's mask, sigmoid, tanh and Adam. Each op
 * has forward, backward (VJP) and jvp side by side; a null tangent means zero.
 */
import { numel, type Tensor, zeros } from "./ops.ts";

// ---------------------------------------------------------------------------------------------
// 2-D pooling, NCHW, PyTorch semantics (floor output size, padding never wins a max, average
// divides by kernel * kernel including padding).

/** Pooling geometry. */
export interface PoolOpts {
  kernel: number;
  stride: number;
  pad: number;
}

/** Output size of one axis. */
export function poolOutSize(size: number, o: PoolOpts): number {
  return Math.floor((size + 2 * o.pad - o.kernel) / o.stride) + 1;
}

/** Calls `f(outIndex, inIndex)` for each in-bounds input of each output window, in scan order. */
function forEachWindow(
  shape: number[],
  o: PoolOpts,
  f: (out: number, inp: number, first: boolean) => void,
): number[] {
  const [N, C, H, W] = shape;
  const OH = poolOutSize(H, o), OW = poolOutSize(W, o);
  for (let nc = 0; nc < N * C; nc++) {
    for (let oh = 0; oh < OH; oh++) {
      for (let ow = 0; ow < OW; ow++) {
        const out = (nc * OH + oh) * OW + ow;
        let first = true;
        for (let kh = 0; kh < o.kernel; kh++) {
          for (let kw = 0; kw < o.kernel; kw++) {
            const ih = oh * o.stride - o.pad + kh, iw = ow * o.stride - o.pad + kw;
            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
            f(out, (nc * H + ih) * W + iw, first);
            first = false;
          }
        }
      }
    }
  }
  return [N, C, OH, OW];
}

/** Max pooling: values and the flat input index of each window's first maximum. */
export function maxPool2dForward(x: Tensor, o: PoolOpts): { y: Tensor; argmax: Int32Array } {
  const idx: number[] = [];
  const vals: number[] = [];
  const shape = forEachWindow(x.shape, o, (out, inp, first) => {
    if (first || x.data[inp] > vals[out]) {
      vals[out] = x.data[inp];
      idx[out] = inp;
    }
  });
  return { y: { shape, data: Float64Array.from(vals) }, argmax: Int32Array.from(idx) };
}

/** dx[argmax[o]] += dy[o]. */
export function maxPool2dBackward(xShape: number[], argmax: Int32Array, dy: Tensor): Tensor {
  const dx = zeros(xShape);
  for (let i = 0; i < argmax.length; i++) dx.data[argmax[i]] += dy.data[i];
  return dx;
}

/** y'[o] = x'[argmax[o]]. */
export function maxPool2dJvp(yShape: number[], argmax: Int32Array, tx: Tensor | null): Tensor {
  const ty = zeros(yShape);
  if (tx) { for (let i = 0; i < argmax.length; i++) ty.data[i] = tx.data[argmax[i]]; }
  return ty;
}

/** Average pooling with count_include_pad: window sum / kernel^2. */
export function avgPool2dForward(x: Tensor, o: PoolOpts): Tensor {
  const sums: number[] = [];
  const shape = forEachWindow(x.shape, o, (out, inp, first) => {
    sums[out] = (first ? 0 : sums[out]) + x.data[inp];
  });
  const k2 = o.kernel * o.kernel;
  return { shape, data: Float64Array.from(sums, (s) => s / k2) };
}

/** dx[i] = sum over windows holding i of dy / kernel^2. */
export function avgPool2dBackward(xShape: number[], o: PoolOpts, dy: Tensor): Tensor {
  const dx = zeros(xShape);
  const k2 = o.kernel * o.kernel;
  forEachWindow(xShape, o, (out, inp) => {
    dx.data[inp] += dy.data[out] / k2;
  });
  return dx;
}

/** Linear: the forward of the tangent. */
export function avgPool2dJvp(xShape: number[], o: PoolOpts, tx: Tensor | null): Tensor {
  return avgPool2dForward(tx ?? zeros(xShape), o);
}

// ---------------------------------------------------------------------------------------------
// Regression losses: per-example mean over the non-batch elements; the target is a constant.

/** Which regression loss. */
export type RegressionKind = "mse" | "l1";

function perExample(
  pred: Tensor,
  f: (b: number, j: number, d: number) => number,
): Float64Array {
  const B = pred.shape[0], D = numel(pred.shape) / B;
  const out = new Float64Array(B);
  for (let b = 0; b < B; b++) {
    let s = 0;
    for (let j = 0; j < D; j++) s += f(b, b * D + j, 0);
    out[b] = s / D;
  }
  return out;
}

/** loss[b] = mean_j (pred - target)^2 or |pred - target|. */
export function regressionForward(
  kind: RegressionKind,
  pred: Tensor,
  target: Tensor,
): Float64Array {
  return perExample(pred, (_, i) => {
    const d = pred.data[i] - target.data[i];
    return kind === "mse" ? d * d : Math.abs(d);
  });
}

/** Derivative of the summand: 2d or sign(d) (0 at 0). */
function slope(kind: RegressionKind, d: number): number {
  return kind === "mse" ? 2 * d : Math.sign(d);
}

/** dpred[b, j] = w[b] * slope(pred - target) / D. */
export function regressionBackward(
  kind: RegressionKind,
  pred: Tensor,
  target: Tensor,
  w: ArrayLike<number>,
): Tensor {
  const B = pred.shape[0], D = numel(pred.shape) / B;
  const g = zeros(pred.shape);
  for (let i = 0; i < g.data.length; i++) {
    g.data[i] = w[Math.floor(i / D)] * slope(kind, pred.data[i] - target.data[i]) / D;
  }
  return g;
}

/** loss'[b] = mean_j slope(pred - target) * pred'. */
export function regressionJvp(
  kind: RegressionKind,
  pred: Tensor,
  target: Tensor,
  tp: Tensor | null,
): Float64Array {
  if (!tp) return new Float64Array(pred.shape[0]);
  return perExample(pred, (_, i) => slope(kind, pred.data[i] - target.data[i]) * tp.data[i]);
}

// ---------------------------------------------------------------------------------------------
// Per-channel bias: x [N, C, ...] + b[c].

/** y = x + b[c]. */
export function channelBiasForward(x: Tensor, b: Float64Array): Tensor {
  const C = x.shape[1], inner = numel(x.shape.slice(2));
  const y = zeros(x.shape);
  for (let i = 0; i < y.data.length; i++) y.data[i] = x.data[i] + b[Math.floor(i / inner) % C];
  return y;
}

/** dx = dy; db[c] = sum of dy over every axis but C. */
export function channelBiasBackward(dy: Tensor): { dx: Tensor; db: Float64Array } {
  const C = dy.shape[1], inner = numel(dy.shape.slice(2));
  const db = new Float64Array(C);
  for (let i = 0; i < dy.data.length; i++) db[Math.floor(i / inner) % C] += dy.data[i];
  return { dx: { shape: [...dy.shape], data: new Float64Array(dy.data) }, db };
}

/** y' = x' + b'[c]. */
export function channelBiasJvp(
  xShape: number[],
  tx: Tensor | null,
  tb: Float64Array | null,
): Tensor {
  return channelBiasForward(tx ?? zeros(xShape), tb ?? new Float64Array(xShape[1]));
}

// ---------------------------------------------------------------------------------------------
// Dropout's mask: a counter-based hash of (seed, element index), the same bits as the GPU.

/** The 32-bit integer hash used by dropout (lowbias32). */
export function hash32(x: number): number {
  let v = x >>> 0;
  v ^= v >>> 16;
  v = Math.imul(v, 0x7feb352d) >>> 0;
  v ^= v >>> 15;
  v = Math.imul(v, 0x846ca68b) >>> 0;
  v ^= v >>> 16;
  return v >>> 0;
}

/** Whether element `i` is kept: hash(hash(i ^ hash(seed)) ^ seed) >= p * 2^32. */
export function dropoutKeep(seed: number, i: number, p: number): boolean {
  const r = hash32(hash32((i ^ hash32(seed)) >>> 0) ^ seed);
  return r >= Math.min(2 ** 32 - 1, Math.floor(p * 2 ** 32));
}

// ---------------------------------------------------------------------------------------------
// Activations.

/** Logistic sigmoid. */
export function sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}

// ---------------------------------------------------------------------------------------------
// Adam / AdamW (PyTorch semantics, no AMSGrad).

/** Adam hyper-parameters. */
export interface AdamOpts {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  decoupled: boolean;
}

/** One Adam step `t` (1-based) in place over p, m, v. */
export function adamStep(
  p: Float64Array,
  g: Float64Array,
  m: Float64Array,
  v: Float64Array,
  t: number,
  o: AdamOpts,
): void {
  const bc1 = 1 - o.beta1 ** t, bc2 = 1 - o.beta2 ** t;
  for (let i = 0; i < p.length; i++) {
    let gi = g[i];
    if (o.decoupled) p[i] *= 1 - o.lr * o.weightDecay;
    else gi += o.weightDecay * p[i];
    m[i] = o.beta1 * m[i] + (1 - o.beta1) * gi;
    v[i] = o.beta2 * v[i] + (1 - o.beta2) * gi * gi;
    p[i] -= (o.lr / bc1) * m[i] / (Math.sqrt(v[i]) / Math.sqrt(bc2) + o.eps);
  }
}
