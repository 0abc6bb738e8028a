/**
 * CIFAR ResNet-(6n+2) with option-A shortcuts (He et al.; the common PyTorch "resnet_cifar"
 * code), float64 reference: forward, backward (VJP of sum_i w_i loss_i) and jvp (tangent of the
 * per-example loss vector). Parameter and buffer names and order follow PyTorch's state_dict.
 */

import {
  batchNorm2dBackward,
  batchNorm2dForward,
  batchNorm2dJvp,
  type BatchNormCache,
  batchNormUpdateRunning,
  BN_MOMENTUM,
  type BnMode,
  conv2dBackward,
  conv2dForward,
  conv2dJvp,
  globalAvgPoolBackward,
  globalAvgPoolForward,
  globalAvgPoolJvp,
  linearBackward,
  linearForward,
  linearJvp,
  lossBackward,
  type LossCache,
  lossForward,
  lossJvp,
  type LossOpts,
  numel,
  reluBackward,
  reluForward,
  reluJvp,
  rowNormalizeBackward,
  rowNormalizeForward,
  rowNormalizeJvp,
  type RowNormCache,
  shortcutABackward,
  shortcutAForward,
  shortcutAJvp,
  type Tensor,
  zeros,
} from "./ops.ts";
import type { Rng } from "./rng.ts";

/** Named float64 arrays (parameters, buffers, gradients or tangents). */
export type Params = Map<string, Float64Array>;

/** A parameter or buffer name with its shape. */
export interface ParamSpec {
  name: string;
  shape: number[];
}

/** Network configuration. */
export interface ResNetConfig {
  /** Input image channels (3 for CIFAR). */
  inChannels: number;
  numClasses: number;
  /** BasicBlocks per stage; depth = 6n + 2 (n = 1: ResNet-8, 3: ResNet-20, 5: ResNet-32). */
  n: number;
  /** Stage widths, default [16, 32, 64]; each must be 2x the previous for option A. */
  widths?: [number, number, number];
  /**
   * "linear" (default): linear.weight [numClasses, 64] and linear.bias. "normed" (LDAM):
   * logits = rowNormalize(features) rowNormalize(linear.weight)^T, no bias. Note the LDAM code
   * stores its NormedLinear weight as [64, numClasses]; here it is [numClasses, 64].
   */
  classifier?: "linear" | "normed";
}

interface BlockSpec {
  prefix: string;
  inC: number;
  outC: number;
  stride: number;
  shortcut: boolean;
}

function widthsOf(cfg: ResNetConfig): [number, number, number] {
  return cfg.widths ?? [16, 32, 64];
}

function blocksOf(cfg: ResNetConfig): BlockSpec[] {
  const w = widthsOf(cfg);
  const blocks: BlockSpec[] = [];
  let inC = w[0];
  for (let l = 0; l < 3; l++) {
    for (let b = 0; b < cfg.n; b++) {
      const stride = l > 0 && b === 0 ? 2 : 1;
      const outC = w[l];
      blocks.push({
        prefix: `layer${l + 1}.${b}.`,
        inC,
        outC,
        stride,
        shortcut: stride !== 1 || inC !== outC,
      });
      inC = outC;
    }
  }
  return blocks;
}

/** Parameters in PyTorch named_parameters() order. */
export function resnetParamSpec(cfg: ResNetConfig): ParamSpec[] {
  const w = widthsOf(cfg);
  const spec: ParamSpec[] = [
    { name: "conv1.weight", shape: [w[0], cfg.inChannels, 3, 3] },
    { name: "bn1.weight", shape: [w[0]] },
    { name: "bn1.bias", shape: [w[0]] },
  ];
  for (const b of blocksOf(cfg)) {
    spec.push(
      { name: b.prefix + "conv1.weight", shape: [b.outC, b.inC, 3, 3] },
      { name: b.prefix + "bn1.weight", shape: [b.outC] },
      { name: b.prefix + "bn1.bias", shape: [b.outC] },
      { name: b.prefix + "conv2.weight", shape: [b.outC, b.outC, 3, 3] },
      { name: b.prefix + "bn2.weight", shape: [b.outC] },
      { name: b.prefix + "bn2.bias", shape: [b.outC] },
    );
  }
  spec.push({ name: "linear.weight", shape: [cfg.numClasses, w[2]] });
  if ((cfg.classifier ?? "linear") === "linear") {
    spec.push({ name: "linear.bias", shape: [cfg.numClasses] });
  }
  return spec;
}

/**
 * Buffers in PyTorch named_buffers() order: running_mean, running_var per BN
 * (PyTorch's num_batches_tracked is omitted: it has no effect with a fixed momentum).
 */
export function resnetBufferSpec(cfg: ResNetConfig): ParamSpec[] {
  const bns: [string, number][] = [["bn1.", widthsOf(cfg)[0]]];
  for (const b of blocksOf(cfg)) bns.push([b.prefix + "bn1.", b.outC], [b.prefix + "bn2.", b.outC]);
  return bns.flatMap(([p, c]) => [
    { name: p + "running_mean", shape: [c] },
    { name: p + "running_var", shape: [c] },
  ]);
}

/** Total number of parameters. */
export function resnetParamCount(cfg: ResNetConfig): number {
  return resnetParamSpec(cfg).reduce((s, p) => s + numel(p.shape), 0);
}

/**
 * Deterministic Kaiming-normal-like init: conv and linear weights N(0, 2 / fan_in), linear bias
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)), BN gamma 1 and beta 0; running mean 0 and var 1.
 */
export function resnetInit(cfg: ResNetConfig, rng: Rng): { params: Params; buffers: Params } {
  const params: Params = new Map();
  for (const { name, shape } of resnetParamSpec(cfg)) {
    const n = numel(shape);
    let a: Float64Array;
    if (
      name.endsWith("conv1.weight") || name.endsWith("conv2.weight") || name === "linear.weight"
    ) {
      const fanIn = numel(shape.slice(1));
      a = rng.normalArray(n, 0, Math.sqrt(2 / fanIn));
    } else if (name === "linear.bias") {
      const bound = 1 / Math.sqrt(widthsOf(cfg)[2]);
      a = rng.uniformArray(n, -bound, bound);
    } else if (name.endsWith(".weight")) {
      a = new Float64Array(n).fill(1);
    } else {
      a = new Float64Array(n);
    }
    params.set(name, a);
  }
  const buffers: Params = new Map();
  for (const { name, shape } of resnetBufferSpec(cfg)) {
    buffers.set(name, new Float64Array(numel(shape)).fill(name.endsWith("running_var") ? 1 : 0));
  }
  return { params, buffers };
}

/** Deep copy of a parameter map. */
export function cloneParams(p: Params): Params {
  return new Map([...p].map(([k, v]) => [k, new Float64Array(v)]));
}

interface BlockCache {
  spec: BlockSpec;
  h: Tensor;
  bn1: BatchNormCache;
  v1: Tensor;
  r1: Tensor;
  bn2: BatchNormCache;
  s: Tensor;
}

/** Everything a forward pass saves; input to backward and jvp. */
export interface ResNetForward {
  cfg: ResNetConfig;
  params: Params;
  bnMode: BnMode;
  x: Tensor;
  /** Logits [B, numClasses]. */
  logits: Tensor;
  /** Per-example losses [B]. */
  losses: Float64Array;
  /** BN caches by prefix (their mean/var are the batch statistics in train mode). */
  bn: Map<string, BatchNormCache>;
  stem: { bn: BatchNormCache; v: Tensor };
  blocks: BlockCache[];
  head: { h: Tensor; f: Tensor; fn?: RowNormCache; wn?: RowNormCache; loss: LossCache };
}

const shapeCache = new WeakMap<ResNetConfig, Map<string, number[]>>();

function paramTensor(cfg: ResNetConfig, params: Params, name: string): Tensor {
  let shapes = shapeCache.get(cfg);
  if (!shapes) {
    shapes = new Map(resnetParamSpec(cfg).map((p) => [p.name, p.shape]));
    shapeCache.set(cfg, shapes);
  }
  const shape = shapes.get(name);
  const data = params.get(name);
  if (!shape || !data) throw new Error(`missing parameter ${name}`);
  if (data.length !== numel(shape)) throw new Error(`parameter ${name}: wrong size`);
  return { shape, data };
}

function bnStep(
  x: Tensor,
  prefix: string,
  params: Params,
  bnMode: BnMode,
  buffers: Params | undefined,
): { y: Tensor; cache: BatchNormCache } {
  const running = bnMode === "eval"
    ? {
      mean: buffers?.get(prefix + "running_mean") ?? fail(`missing buffer ${prefix}running_mean`),
      var: buffers?.get(prefix + "running_var") ?? fail(`missing buffer ${prefix}running_var`),
    }
    : undefined;
  return batchNorm2dForward(
    x,
    params.get(prefix + "weight")!,
    params.get(prefix + "bias")!,
    bnMode,
    running,
  );
}

function fail(msg: string): never {
  throw new Error(msg);
}

/**
 * Forward pass: per-example losses and logits. x is [B, inChannels, H, W] (any H, W);
 * eval mode needs `buffers` (running statistics). Buffers are not updated here: call
 * {@linkcode resnetUpdateBuffers} after a train-mode forward.
 */
export function resnetForward(
  cfg: ResNetConfig,
  params: Params,
  x: Tensor,
  labels: ArrayLike<number>,
  lossOpts: LossOpts = {},
  bnMode: BnMode = "train",
  buffers?: Params,
): ResNetForward {
  const bn = new Map<string, BatchNormCache>();
  const c1 = conv2dForward(x, paramTensor(cfg, params, "conv1.weight"), 1, 1);
  const b1 = bnStep(c1, "bn1.", params, bnMode, buffers);
  bn.set("bn1.", b1.cache);
  let h = reluForward(b1.y);
  const blocks: BlockCache[] = [];
  for (const spec of blocksOf(cfg)) {
    const p = spec.prefix;
    const u1 = conv2dForward(h, paramTensor(cfg, params, p + "conv1.weight"), spec.stride, 1);
    const bn1 = bnStep(u1, p + "bn1.", params, bnMode, buffers);
    const r1 = reluForward(bn1.y);
    const u2 = conv2dForward(r1, paramTensor(cfg, params, p + "conv2.weight"), 1, 1);
    const bn2 = bnStep(u2, p + "bn2.", params, bnMode, buffers);
    const sc = spec.shortcut ? shortcutAForward(h, spec.outC) : h;
    const s = zeros(bn2.y.shape);
    for (let i = 0; i < s.data.length; i++) s.data[i] = bn2.y.data[i] + sc.data[i];
    bn.set(p + "bn1.", bn1.cache);
    bn.set(p + "bn2.", bn2.cache);
    blocks.push({ spec, h, bn1: bn1.cache, v1: bn1.y, r1, bn2: bn2.cache, s });
    h = reluForward(s);
  }
  const f = globalAvgPoolForward(h);
  const W = paramTensor(cfg, params, "linear.weight");
  let logits: Tensor;
  let fn: RowNormCache | undefined, wn: RowNormCache | undefined;
  if ((cfg.classifier ?? "linear") === "linear") {
    logits = linearForward(f, W, params.get("linear.bias")!);
  } else {
    const a = rowNormalizeForward(f), b = rowNormalizeForward(W);
    fn = a.cache;
    wn = b.cache;
    logits = linearForward(a.y, b.y, null);
  }
  const { losses, cache } = lossForward(logits, labels, lossOpts);
  return {
    cfg,
    params,
    bnMode,
    x,
    logits,
    losses,
    bn,
    stem: { bn: b1.cache, v: b1.y },
    blocks,
    head: { h, f, fn, wn, loss: cache },
  };
}

/** Updates running statistics in place from a train-mode forward (PyTorch momentum 0.1). */
export function resnetUpdateBuffers(
  fwd: ResNetForward,
  buffers: Params,
  momentum = BN_MOMENTUM,
): void {
  for (const [prefix, cache] of fwd.bn) {
    batchNormUpdateRunning(
      buffers.get(prefix + "running_mean")!,
      buffers.get(prefix + "running_var")!,
      cache,
      momentum,
    );
  }
}

/**
 * Backward: gradients of sum_i weights_i * loss_i for every parameter (train-mode BN includes
 * the coupling through batch statistics).
 */
export function resnetBackward(fwd: ResNetForward, weights: ArrayLike<number>): Params {
  const { cfg, params } = fwd;
  const grads: Params = new Map();
  const dlogits = lossBackward(fwd.head.loss, weights);
  const W = paramTensor(cfg, params, "linear.weight");
  let df: Tensor;
  if (fwd.head.fn && fwd.head.wn) {
    const lb = linearBackward(fwd.head.fn.y, fwd.head.wn.y, dlogits, false);
    grads.set("linear.weight", rowNormalizeBackward(fwd.head.wn, lb.dw).data);
    df = rowNormalizeBackward(fwd.head.fn, lb.dx);
  } else {
    const lb = linearBackward(fwd.head.f, W, dlogits, true);
    grads.set("linear.weight", lb.dw.data);
    grads.set("linear.bias", lb.db!);
    df = lb.dx;
  }
  let dh = globalAvgPoolBackward(df, fwd.head.h.shape);
  for (let k = fwd.blocks.length - 1; k >= 0; k--) {
    const bc = fwd.blocks[k];
    const p = bc.spec.prefix;
    const ds = reluBackward(bc.s, dh);
    const dsc = bc.spec.shortcut ? shortcutABackward(ds, bc.h.shape) : ds;
    const b2 = batchNorm2dBackward(bc.bn2, ds);
    grads.set(p + "bn2.weight", b2.dgamma);
    grads.set(p + "bn2.bias", b2.dbeta);
    const c2 = conv2dBackward(bc.r1, paramTensor(cfg, params, p + "conv2.weight"), 1, 1, b2.dx);
    grads.set(p + "conv2.weight", c2.dw.data);
    const dv1 = reluBackward(bc.v1, c2.dx);
    const b1 = batchNorm2dBackward(bc.bn1, dv1);
    grads.set(p + "bn1.weight", b1.dgamma);
    grads.set(p + "bn1.bias", b1.dbeta);
    const c1 = conv2dBackward(
      bc.h,
      paramTensor(cfg, params, p + "conv1.weight"),
      bc.spec.stride,
      1,
      b1.dx,
    );
    grads.set(p + "conv1.weight", c1.dw.data);
    dh = c1.dx;
    for (let i = 0; i < dh.data.length; i++) dh.data[i] += dsc.data[i];
  }
  const dv = reluBackward(fwd.stem.v, dh);
  const b1 = batchNorm2dBackward(fwd.stem.bn, dv);
  grads.set("bn1.weight", b1.dgamma);
  grads.set("bn1.bias", b1.dbeta);
  const c1 = conv2dBackward(fwd.x, paramTensor(cfg, params, "conv1.weight"), 1, 1, b1.dx);
  grads.set("conv1.weight", c1.dw.data);
  // Return in named_parameters order.
  return new Map(resnetParamSpec(cfg).map(({ name }) => [name, grads.get(name)!]));
}

/**
 * JVP: tangent of the per-example loss vector [B] along parameter tangents (a missing name means
 * a zero tangent). In train mode the tangent flows through the batch statistics.
 */
export function resnetJvp(fwd: ResNetForward, tangents: Params): Float64Array {
  return resnetJvpFull(fwd, tangents).losses;
}

/** JVP returning both the loss tangent [B] and the logits tangent [B, numClasses]. */
export function resnetJvpFull(
  fwd: ResNetForward,
  tangents: Params,
): { losses: Float64Array; logits: Tensor } {
  const { cfg, params } = fwd;
  const T = (name: string): Tensor | null => {
    const t = tangents.get(name);
    return t ? { shape: paramTensor(cfg, params, name).shape, data: t } : null;
  };
  const V = (name: string): Float64Array | null => tangents.get(name) ?? null;
  const tc = conv2dJvp(
    fwd.x,
    paramTensor(cfg, params, "conv1.weight"),
    1,
    1,
    null,
    T("conv1.weight"),
  );
  const tb = batchNorm2dJvp(fwd.stem.bn, tc, V("bn1.weight"), V("bn1.bias"));
  let th = reluJvp(fwd.stem.v, tb);
  for (const bc of fwd.blocks) {
    const p = bc.spec.prefix;
    const tu1 = conv2dJvp(
      bc.h,
      paramTensor(cfg, params, p + "conv1.weight"),
      bc.spec.stride,
      1,
      th,
      T(p + "conv1.weight"),
    );
    const tv1 = batchNorm2dJvp(bc.bn1, tu1, V(p + "bn1.weight"), V(p + "bn1.bias"));
    const tr1 = reluJvp(bc.v1, tv1);
    const tu2 = conv2dJvp(
      bc.r1,
      paramTensor(cfg, params, p + "conv2.weight"),
      1,
      1,
      tr1,
      T(p + "conv2.weight"),
    );
    const tv2 = batchNorm2dJvp(bc.bn2, tu2, V(p + "bn2.weight"), V(p + "bn2.bias"));
    const tsc = bc.spec.shortcut ? shortcutAJvp(bc.h.shape, th, bc.spec.outC) : th;
    for (let i = 0; i < tv2.data.length; i++) tv2.data[i] += tsc.data[i];
    th = reluJvp(bc.s, tv2);
  }
  const tf = globalAvgPoolJvp(fwd.head.h.shape, th);
  let tlogits: Tensor;
  if (fwd.head.fn && fwd.head.wn) {
    const tfn = rowNormalizeJvp(fwd.head.fn, tf);
    const twn = rowNormalizeJvp(fwd.head.wn, T("linear.weight"));
    tlogits = linearJvp(fwd.head.fn.y, fwd.head.wn.y, tfn, twn, null);
  } else {
    tlogits = linearJvp(
      fwd.head.f,
      paramTensor(cfg, params, "linear.weight"),
      tf,
      T("linear.weight"),
      V("linear.bias"),
    );
  }
  return { losses: lossJvp(fwd.head.loss, tlogits), logits: tlogits };
}
