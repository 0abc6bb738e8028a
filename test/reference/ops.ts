/**
 * Float64 CPU reference ops. Each op has forward, backward (VJP) and jvp side by side.
 *
 * Conventions (shared with the GPU engine): activations NCHW, conv weights [O, C, KH, KW],
 * linear weight [out, in], bias [out]; all tensors flat row-major Float64Array with a shape.
 * In jvp functions a null tangent means zero.
 */

/** A flat row-major float64 array with its shape. */
export interface Tensor {
  shape: number[];
  data: Float64Array;
}

/** Number of elements of a shape. */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Makes a tensor; copies `data` when given, else zeros. */
export function tensor(shape: number[], data?: ArrayLike<number>): Tensor {
  const n = numel(shape);
  const d = new Float64Array(n);
  if (data) {
    if (data.length !== n) throw new Error(`tensor: ${data.length} values for shape [${shape}]`);
    d.set(data);
  }
  return { shape: [...shape], data: d };
}

/** A zero tensor. */
export function zeros(shape: number[]): Tensor {
  return tensor(shape);
}

function checkRank(t: Tensor, rank: number, what: string): void {
  if (t.shape.length !== rank) throw new Error(`${what}: expected rank ${rank}, got [${t.shape}]`);
  if (t.data.length !== numel(t.shape)) throw new Error(`${what}: data/shape mismatch`);
}

// ---------------------------------------------------------------------------------------------
// conv2d: x[N,C,H,W], w[O,C,KH,KW] -> y[N,O,OH,OW], zero padding, no bias.

/** Output size floor((size + 2*pad - k) / stride) + 1. */
export function conv2dOutSize(size: number, k: number, stride: number, pad: number): number {
  return Math.floor((size + 2 * pad - k) / stride) + 1;
}

/** conv2d forward. */
export function conv2dForward(x: Tensor, w: Tensor, stride: number, pad: number): Tensor {
  checkRank(x, 4, "conv2d x");
  checkRank(w, 4, "conv2d w");
  const [N, C, H, W] = x.shape;
  const [O, C2, KH, KW] = w.shape;
  if (C !== C2) throw new Error(`conv2d: x has ${C} channels, w expects ${C2}`);
  const OH = conv2dOutSize(H, KH, stride, pad);
  const OW = conv2dOutSize(W, KW, stride, pad);
  const y = zeros([N, O, OH, OW]);
  const xd = x.data, wd = w.data, yd = y.data;
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < O; o++) {
      for (let oh = 0; oh < OH; oh++) {
        for (let ow = 0; ow < OW; ow++) {
          let s = 0;
          for (let c = 0; c < C; c++) {
            for (let kh = 0; kh < KH; kh++) {
              const ih = oh * stride - pad + kh;
              if (ih < 0 || ih >= H) continue;
              for (let kw = 0; kw < KW; kw++) {
                const iw = ow * stride - pad + kw;
                if (iw < 0 || iw >= W) continue;
                s += xd[((n * C + c) * H + ih) * W + iw] * wd[((o * C + c) * KH + kh) * KW + kw];
              }
            }
          }
          yd[((n * O + o) * OH + oh) * OW + ow] = s;
        }
      }
    }
  }
  return y;
}

/** conv2d backward: gradients of <dy, conv2d(x, w)> w.r.t. x and w. */
export function conv2dBackward(
  x: Tensor,
  w: Tensor,
  stride: number,
  pad: number,
  dy: Tensor,
): { dx: Tensor; dw: Tensor } {
  const [N, C, H, W] = x.shape;
  const [O, , KH, KW] = w.shape;
  const OH = conv2dOutSize(H, KH, stride, pad);
  const OW = conv2dOutSize(W, KW, stride, pad);
  if (dy.data.length !== N * O * OH * OW) throw new Error("conv2dBackward: dy shape");
  const dx = zeros(x.shape), dw = zeros(w.shape);
  const xd = x.data, wd = w.data, gd = dy.data, dxd = dx.data, dwd = dw.data;
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < O; o++) {
      for (let oh = 0; oh < OH; oh++) {
        for (let ow = 0; ow < OW; ow++) {
          const g = gd[((n * O + o) * OH + oh) * OW + ow];
          for (let c = 0; c < C; c++) {
            for (let kh = 0; kh < KH; kh++) {
              const ih = oh * stride - pad + kh;
              if (ih < 0 || ih >= H) continue;
              for (let kw = 0; kw < KW; kw++) {
                const iw = ow * stride - pad + kw;
                if (iw < 0 || iw >= W) continue;
                const xi = ((n * C + c) * H + ih) * W + iw;
                const wi = ((o * C + c) * KH + kh) * KW + kw;
                dxd[xi] += g * wd[wi];
                dwd[wi] += g * xd[xi];
              }
            }
          }
        }
      }
    }
  }
  return { dx, dw };
}

/** conv2d jvp: conv(tx, w) + conv(x, tw) (the op is bilinear). */
export function conv2dJvp(
  x: Tensor,
  w: Tensor,
  stride: number,
  pad: number,
  tx: Tensor | null,
  tw: Tensor | null,
): Tensor {
  const [N, , H, W] = x.shape;
  const [O, , KH, KW] = w.shape;
  const out = zeros([
    N,
    O,
    conv2dOutSize(H, KH, stride, pad),
    conv2dOutSize(W, KW, stride, pad),
  ]);
  if (tx) addInPlace(out.data, conv2dForward(tx, w, stride, pad).data);
  if (tw) addInPlace(out.data, conv2dForward(x, tw, stride, pad).data);
  return out;
}

function addInPlace(a: Float64Array, b: Float64Array): void {
  for (let i = 0; i < a.length; i++) a[i] += b[i];
}

// ---------------------------------------------------------------------------------------------
// linear: x[N,I], w[O,I], b[O] | null -> y[N,O] = x w^T + b.

/** linear forward. */
export function linearForward(x: Tensor, w: Tensor, b: Float64Array | null): Tensor {
  checkRank(x, 2, "linear x");
  checkRank(w, 2, "linear w");
  const [N, I] = x.shape;
  const [O, I2] = w.shape;
  if (I !== I2) throw new Error(`linear: x has ${I} features, w expects ${I2}`);
  if (b && b.length !== O) throw new Error("linear: bias length");
  const y = zeros([N, O]);
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < O; o++) {
      let s = b ? b[o] : 0;
      for (let i = 0; i < I; i++) s += x.data[n * I + i] * w.data[o * I + i];
      y.data[n * O + o] = s;
    }
  }
  return y;
}

/** linear backward; db is null when `hasBias` is false. */
export function linearBackward(
  x: Tensor,
  w: Tensor,
  dy: Tensor,
  hasBias = true,
): { dx: Tensor; dw: Tensor; db: Float64Array | null } {
  const [N, I] = x.shape;
  const [O] = w.shape;
  const dx = zeros(x.shape), dw = zeros(w.shape);
  const db = hasBias ? new Float64Array(O) : null;
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < O; o++) {
      const g = dy.data[n * O + o];
      if (db) db[o] += g;
      for (let i = 0; i < I; i++) {
        dx.data[n * I + i] += g * w.data[o * I + i];
        dw.data[o * I + i] += g * x.data[n * I + i];
      }
    }
  }
  return { dx, dw, db };
}

/** linear jvp: tx w^T + x tw^T + tb. */
export function linearJvp(
  x: Tensor,
  w: Tensor,
  tx: Tensor | null,
  tw: Tensor | null,
  tb: Float64Array | null,
): Tensor {
  const out = zeros([x.shape[0], w.shape[0]]);
  if (tx) addInPlace(out.data, linearForward(tx, w, null).data);
  if (tw) addInPlace(out.data, linearForward(x, tw, null).data);
  if (tb) {
    const [N, O] = out.shape;
    for (let n = 0; n < N; n++) for (let o = 0; o < O; o++) out.data[n * O + o] += tb[o];
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// batchnorm2d over (N,H,W) per channel. Train mode: batch mean and biased variance, with the
// coupling through the batch statistics in backward and jvp. Eval mode: running statistics.

/** Train mode normalises with batch statistics, eval mode with running statistics. */
export type BnMode = "train" | "eval";

/** BatchNorm epsilon (PyTorch default). */
export const BN_EPS = 1e-5;
/** Running-statistics momentum (PyTorch default). */
export const BN_MOMENTUM = 0.1;

/** What batchnorm2d forward saves for backward and jvp. */
export interface BatchNormCache {
  mode: BnMode;
  shape: number[];
  gamma: Float64Array;
  /** Mean used for normalisation (batch mean in train mode, running mean in eval). */
  mean: Float64Array;
  /** Biased variance used for normalisation (batch or running). */
  var: Float64Array;
  /** 1 / sqrt(var + eps) per channel. */
  invStd: Float64Array;
  xhat: Tensor;
  /** Elements per channel, N*H*W. */
  count: number;
}

/**
 * batchnorm2d forward: xhat = (x - mean) / sqrt(var + eps), y = gamma * xhat + beta.
 * Eval mode needs `running` ({mean, var}).
 */
export function batchNorm2dForward(
  x: Tensor,
  gamma: Float64Array,
  beta: Float64Array,
  mode: BnMode = "train",
  running?: { mean: Float64Array; var: Float64Array },
  eps = BN_EPS,
): { y: Tensor; cache: BatchNormCache } {
  checkRank(x, 4, "batchnorm2d x");
  const [N, C, H, W] = x.shape;
  const HW = H * W, M = N * HW;
  const mean = new Float64Array(C), vr = new Float64Array(C), invStd = new Float64Array(C);
  if (mode === "train") {
    for (let c = 0; c < C; c++) {
      let s = 0;
      for (let n = 0; n < N; n++) {
        const base = (n * C + c) * HW;
        for (let k = 0; k < HW; k++) s += x.data[base + k];
      }
      const mu = s / M;
      let v = 0;
      for (let n = 0; n < N; n++) {
        const base = (n * C + c) * HW;
        for (let k = 0; k < HW; k++) v += (x.data[base + k] - mu) ** 2;
      }
      mean[c] = mu;
      vr[c] = v / M;
    }
  } else {
    if (!running) throw new Error("batchnorm2d eval mode needs running statistics");
    mean.set(running.mean);
    vr.set(running.var);
  }
  for (let c = 0; c < C; c++) invStd[c] = 1 / Math.sqrt(vr[c] + eps);
  const xhat = zeros(x.shape), y = zeros(x.shape);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      const base = (n * C + c) * HW;
      for (let k = 0; k < HW; k++) {
        const h = (x.data[base + k] - mean[c]) * invStd[c];
        xhat.data[base + k] = h;
        y.data[base + k] = gamma[c] * h + beta[c];
      }
    }
  }
  return {
    y,
    cache: { mode, shape: [...x.shape], gamma, mean, var: vr, invStd, xhat, count: M },
  };
}

/**
 * batchnorm2d backward. Train mode:
 * dx = gamma * invStd / M * (M dy - sum(dy) - xhat * sum(dy * xhat)); eval: gamma * invStd * dy.
 */
export function batchNorm2dBackward(
  cache: BatchNormCache,
  dy: Tensor,
): { dx: Tensor; dgamma: Float64Array; dbeta: Float64Array } {
  const [N, C, H, W] = cache.shape;
  const HW = H * W, M = cache.count;
  const xh = cache.xhat.data;
  const dgamma = new Float64Array(C), dbeta = new Float64Array(C);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      const base = (n * C + c) * HW;
      for (let k = 0; k < HW; k++) {
        dbeta[c] += dy.data[base + k];
        dgamma[c] += dy.data[base + k] * xh[base + k];
      }
    }
  }
  const dx = zeros(cache.shape);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      const base = (n * C + c) * HW;
      const a = cache.gamma[c] * cache.invStd[c];
      for (let k = 0; k < HW; k++) {
        const g = dy.data[base + k];
        dx.data[base + k] = cache.mode === "train"
          ? a * (g - dbeta[c] / M - xh[base + k] * dgamma[c] / M)
          : a * g;
      }
    }
  }
  return { dx, dgamma, dbeta };
}

/**
 * batchnorm2d jvp. Train mode: txhat = invStd * (tx - mean(tx) - xhat * mean(xhat * tx));
 * eval: txhat = invStd * tx. ty = tgamma * xhat + gamma * txhat + tbeta.
 */
export function batchNorm2dJvp(
  cache: BatchNormCache,
  tx: Tensor | null,
  tgamma: Float64Array | null,
  tbeta: Float64Array | null,
): Tensor {
  const [N, C, H, W] = cache.shape;
  const HW = H * W, M = cache.count;
  const xh = cache.xhat.data;
  const mt = new Float64Array(C), mxt = new Float64Array(C);
  if (tx && cache.mode === "train") {
    for (let n = 0; n < N; n++) {
      for (let c = 0; c < C; c++) {
        const base = (n * C + c) * HW;
        for (let k = 0; k < HW; k++) {
          mt[c] += tx.data[base + k] / M;
          mxt[c] += xh[base + k] * tx.data[base + k] / M;
        }
      }
    }
  }
  const ty = zeros(cache.shape);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      const base = (n * C + c) * HW;
      for (let k = 0; k < HW; k++) {
        let v = tbeta ? tbeta[c] : 0;
        if (tgamma) v += tgamma[c] * xh[base + k];
        if (tx) {
          const txh = cache.invStd[c] * (tx.data[base + k] - mt[c] - xh[base + k] * mxt[c]);
          v += cache.gamma[c] * txh;
        }
        ty.data[base + k] = v;
      }
    }
  }
  return ty;
}

/**
 * Running-statistics update after a train-mode forward (PyTorch):
 * rm = (1-m) rm + m mean, rv = (1-m) rv + m var * M / (M-1). Updates in place.
 */
export function batchNormUpdateRunning(
  runningMean: Float64Array,
  runningVar: Float64Array,
  cache: BatchNormCache,
  momentum = BN_MOMENTUM,
): void {
  if (cache.mode !== "train") throw new Error("running stats update needs a train-mode forward");
  const M = cache.count;
  for (let c = 0; c < runningMean.length; c++) {
    runningMean[c] = (1 - momentum) * runningMean[c] + momentum * cache.mean[c];
    runningVar[c] = (1 - momentum) * runningVar[c] + momentum * cache.var[c] * M / (M - 1);
  }
}

// ---------------------------------------------------------------------------------------------
// relu and add.

/** relu forward. */
export function reluForward(x: Tensor): Tensor {
  const y = zeros(x.shape);
  for (let i = 0; i < y.data.length; i++) y.data[i] = x.data[i] > 0 ? x.data[i] : 0;
  return y;
}

/** relu backward (derivative 0 at x = 0). */
export function reluBackward(x: Tensor, dy: Tensor): Tensor {
  const dx = zeros(x.shape);
  for (let i = 0; i < dx.data.length; i++) dx.data[i] = x.data[i] > 0 ? dy.data[i] : 0;
  return dx;
}

/** relu jvp. */
export function reluJvp(x: Tensor, tx: Tensor | null): Tensor {
  return tx ? reluBackward(x, tx) : zeros(x.shape);
}

/** add forward. */
export function addForward(a: Tensor, b: Tensor): Tensor {
  if (a.data.length !== b.data.length) throw new Error("add: shape mismatch");
  const y = zeros(a.shape);
  for (let i = 0; i < y.data.length; i++) y.data[i] = a.data[i] + b.data[i];
  return y;
}

/** add backward: both inputs get dy (copies). */
export function addBackward(dy: Tensor): { da: Tensor; db: Tensor } {
  return { da: tensor(dy.shape, dy.data), db: tensor(dy.shape, dy.data) };
}

/** add jvp. */
export function addJvp(shape: number[], ta: Tensor | null, tb: Tensor | null): Tensor {
  const y = zeros(shape);
  if (ta) addInPlace(y.data, ta.data);
  if (tb) addInPlace(y.data, tb.data);
  return y;
}

// ---------------------------------------------------------------------------------------------
// shortcutA (CIFAR ResNet option A): y = pad(x[:, :, ::2, ::2]) with (outC - C)/2 zero
// channels on each side. y: [N, outC, ceil(H/2), ceil(W/2)].

/** shortcutA forward. */
export function shortcutAForward(x: Tensor, outChannels: number): Tensor {
  checkRank(x, 4, "shortcutA x");
  const [N, C, H, W] = x.shape;
  const padC = (outChannels - C) / 2;
  if (!Number.isInteger(padC) || padC < 0) {
    throw new Error(`shortcutA: cannot pad ${C} channels to ${outChannels}`);
  }
  const OH = Math.ceil(H / 2), OW = Math.ceil(W / 2);
  const y = zeros([N, outChannels, OH, OW]);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      for (let i = 0; i < OH; i++) {
        for (let j = 0; j < OW; j++) {
          y.data[((n * outChannels + c + padC) * OH + i) * OW + j] =
            x.data[((n * C + c) * H + 2 * i) * W + 2 * j];
        }
      }
    }
  }
  return y;
}

/** shortcutA backward: scatter dy back to the even positions of x (x shape given). */
export function shortcutABackward(dy: Tensor, xShape: number[]): Tensor {
  const [N, C, H, W] = xShape;
  const [, outC, OH, OW] = dy.shape;
  const padC = (outC - C) / 2;
  const dx = zeros(xShape);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      for (let i = 0; i < OH; i++) {
        for (let j = 0; j < OW; j++) {
          dx.data[((n * C + c) * H + 2 * i) * W + 2 * j] =
            dy.data[((n * outC + c + padC) * OH + i) * OW + j];
        }
      }
    }
  }
  return dx;
}

/** shortcutA jvp (the op is linear). */
export function shortcutAJvp(xShape: number[], tx: Tensor | null, outChannels: number): Tensor {
  const [N, , H, W] = xShape;
  return tx
    ? shortcutAForward(tx, outChannels)
    : zeros([N, outChannels, Math.ceil(H / 2), Math.ceil(W / 2)]);
}

// ---------------------------------------------------------------------------------------------
// globalAvgPool: x[N,C,H,W] -> [N,C].

/** globalAvgPool forward. */
export function globalAvgPoolForward(x: Tensor): Tensor {
  checkRank(x, 4, "globalAvgPool x");
  const [N, C, H, W] = x.shape;
  const HW = H * W;
  const y = zeros([N, C]);
  for (let nc = 0; nc < N * C; nc++) {
    let s = 0;
    for (let k = 0; k < HW; k++) s += x.data[nc * HW + k];
    y.data[nc] = s / HW;
  }
  return y;
}

/** globalAvgPool backward. */
export function globalAvgPoolBackward(dy: Tensor, xShape: number[]): Tensor {
  const [N, C, H, W] = xShape;
  const HW = H * W;
  const dx = zeros(xShape);
  for (let nc = 0; nc < N * C; nc++) {
    for (let k = 0; k < HW; k++) dx.data[nc * HW + k] = dy.data[nc] / HW;
  }
  return dx;
}

/** globalAvgPool jvp. */
export function globalAvgPoolJvp(xShape: number[], tx: Tensor | null): Tensor {
  return tx ? globalAvgPoolForward(tx) : zeros([xShape[0], xShape[1]]);
}

// ---------------------------------------------------------------------------------------------
// rowNormalize: x[N,D] -> y = x / ||x||_2 per row.

/** What rowNormalize forward saves. */
export interface RowNormCache {
  y: Tensor;
  norms: Float64Array;
}

/** rowNormalize forward. */
export function rowNormalizeForward(x: Tensor): { y: Tensor; cache: RowNormCache } {
  checkRank(x, 2, "rowNormalize x");
  const [N, D] = x.shape;
  const y = zeros(x.shape), norms = new Float64Array(N);
  for (let n = 0; n < N; n++) {
    let s = 0;
    for (let d = 0; d < D; d++) s += x.data[n * D + d] ** 2;
    norms[n] = Math.sqrt(s);
    for (let d = 0; d < D; d++) y.data[n * D + d] = x.data[n * D + d] / norms[n];
  }
  return { y, cache: { y, norms } };
}

function rowNormProject(cache: RowNormCache, g: Tensor): Tensor {
  const [N, D] = cache.y.shape;
  const out = zeros(cache.y.shape);
  for (let n = 0; n < N; n++) {
    let yg = 0;
    for (let d = 0; d < D; d++) yg += cache.y.data[n * D + d] * g.data[n * D + d];
    for (let d = 0; d < D; d++) {
      out.data[n * D + d] = (g.data[n * D + d] - cache.y.data[n * D + d] * yg) / cache.norms[n];
    }
  }
  return out;
}

/** rowNormalize backward: dx = (dy - y (y . dy)) / ||x||. */
export function rowNormalizeBackward(cache: RowNormCache, dy: Tensor): Tensor {
  return rowNormProject(cache, dy);
}

/** rowNormalize jvp: ty = (tx - y (y . tx)) / ||x||. */
export function rowNormalizeJvp(cache: RowNormCache, tx: Tensor | null): Tensor {
  return tx ? rowNormProject(cache, tx) : zeros(cache.y.shape);
}

// ---------------------------------------------------------------------------------------------
// Per-example classification loss with margins, scale and focal gamma:
// z' = s (z - m[y] onehot(y)); p = softmax(z'); loss_i = -(1 - p_y)^gamma log p_y.

/** Loss options; the defaults (s 1, no margins, gamma 0) give plain cross-entropy. */
export interface LossOpts {
  /** Logit scale s (LDAM uses 30 with a normalised classifier). */
  scale?: number;
  /** Per-class margins m[C] subtracted from the true-class logit (LDAM). */
  margins?: ArrayLike<number> | null;
  /** Focal-loss gamma. */
  gamma?: number;
}

/** What the loss forward saves. */
export interface LossCache {
  B: number;
  C: number;
  labels: Int32Array;
  scale: number;
  /** softmax(z') [B*C]. */
  p: Float64Array;
  /** d loss_i / d z'_iy factor: dloss_i/dz'_ij = coef_i * (onehot_ij - p_ij). */
  coef: Float64Array;
}

/** Loss forward: per-example losses [B]. */
export function lossForward(
  z: Tensor,
  labels: ArrayLike<number>,
  opts: LossOpts = {},
): { losses: Float64Array; cache: LossCache } {
  checkRank(z, 2, "loss logits");
  const [B, C] = z.shape;
  if (labels.length !== B) throw new Error("loss: labels length");
  const s = opts.scale ?? 1, gamma = opts.gamma ?? 0, m = opts.margins ?? null;
  const p = new Float64Array(B * C), coef = new Float64Array(B), losses = new Float64Array(B);
  const lab = Int32Array.from(labels);
  const zp = new Float64Array(C);
  for (let i = 0; i < B; i++) {
    const y = lab[i];
    if (y < 0 || y >= C) throw new Error(`loss: label ${y} out of range`);
    let mx = -Infinity;
    for (let j = 0; j < C; j++) {
      zp[j] = s * (z.data[i * C + j] - (m && j === y ? m[y] : 0));
      mx = Math.max(mx, zp[j]);
    }
    let se = 0;
    for (let j = 0; j < C; j++) se += Math.exp(zp[j] - mx);
    const lse = mx + Math.log(se);
    for (let j = 0; j < C; j++) p[i * C + j] = Math.exp(zp[j] - lse);
    const logq = zp[y] - lse;
    const q = Math.exp(logq);
    const omq = -Math.expm1(logq); // 1 - q, accurate when q is near 1
    losses[i] = -Math.pow(omq, gamma) * logq;
    coef[i] = (gamma === 0 ? 0 : gamma * Math.pow(omq, gamma - 1) * q * logq) -
      Math.pow(omq, gamma);
  }
  return { losses, cache: { B, C, labels: lab, scale: s, p, coef } };
}

/** Loss backward: gradient of sum_i weights_i * loss_i w.r.t. the logits z. */
export function lossBackward(cache: LossCache, weights: ArrayLike<number>): Tensor {
  const { B, C, p, coef, labels, scale } = cache;
  const dz = zeros([B, C]);
  for (let i = 0; i < B; i++) {
    const a = weights[i] * scale * coef[i];
    for (let j = 0; j < C; j++) {
      dz.data[i * C + j] = a * ((j === labels[i] ? 1 : 0) - p[i * C + j]);
    }
  }
  return dz;
}

/** Loss jvp: tangent of the per-example loss vector for a logit tangent tz. */
export function lossJvp(cache: LossCache, tz: Tensor | null): Float64Array {
  const { B, C, p, coef, labels, scale } = cache;
  const t = new Float64Array(B);
  if (!tz) return t;
  for (let i = 0; i < B; i++) {
    let pt = 0;
    for (let j = 0; j < C; j++) pt += p[i * C + j] * tz.data[i * C + j];
    t[i] = scale * coef[i] * (tz.data[i * C + labels[i]] - pt);
  }
  return t;
}

// ---------------------------------------------------------------------------------------------
// SGD (PyTorch semantics, dampening 0).

/** SGD hyper-parameters. */
export interface SgdOpts {
  lr: number;
  momentum?: number;
  weightDecay?: number;
  nesterov?: boolean;
}

/**
 * One SGD step in place: g' = g + wd p; buf = momentum buf + g' (buf starts at zeros, which
 * equals PyTorch's buf = g' on the first step); d = nesterov ? g' + momentum buf : buf;
 * p -= lr d.
 */
export function sgdStep(p: Float64Array, g: Float64Array, buf: Float64Array, opts: SgdOpts): void {
  const mom = opts.momentum ?? 0, wd = opts.weightDecay ?? 0, nest = opts.nesterov ?? false;
  for (let i = 0; i < p.length; i++) {
    const gp = g[i] + wd * p[i];
    buf[i] = mom * buf[i] + gp;
    const d = nest ? gp + mom * buf[i] : buf[i];
    p[i] -= opts.lr * d;
  }
}
