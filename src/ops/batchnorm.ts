/**
 * batchnorm2d: forward, backward and JVP side by side, train mode (batch statistics, the
 * gradient and tangent flow through them) and eval mode (running statistics).
 *
 * Train mode, with M = N*H*W per channel, xhat = (x - mean) * invstd:
 *   backward  dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)),
 *             dgamma = sum(dy * xhat), dbeta = sum(dy)
 *   JVP       y' = gamma * invstd * (x' - mean(x') - xhat * mean(x' * xhat))
 *                  + gamma' * xhat + beta'
 * The two have the same form, so one reduction kernel and one elementwise kernel serve both
 * (on CPU adapters one kernel: see {@linkcode batchNormFusesPasses}). An optional fused
 * residual add and ReLU follow the normalisation (y = relu(bn(x) + r)): the ReLU masks the
 * incoming gradient / outgoing tangent by y > 0, and the residual gets the masked gradient.
 */
import { bind, Tensor } from "../tensor.ts";
import type { Ctx } from "../autograd/tape.ts";
import { type Gpu, grid1d } from "../gpu/runtime.ts";
import {
  type ApplyVariant,
  bnApplyKernel,
  bnEvalStatsKernel,
  bnGradMapKernel,
  bnGradReduceKernel,
  type BnShape,
  bnStatsKernel,
  type BnUniforms,
  type GradVariant,
} from "../../shaders/batchnorm.ts";
import { zero } from "./elementwise.ts";

/** How a batchnorm call normalises. */
export interface BatchNormOptions {
  /** "train": batch statistics; "eval": running statistics. */
  mode: "train" | "eval";
  /** In train mode, fold the batch statistics into the running ones (momentum 0.1). */
  updateRunningStats: boolean;
  /** Fuse a ReLU after the normalisation (after the residual add, when there is one). */
  relu?: boolean;
  /**
   * Fuse a residual add: y = bn(x) + residual (then the relu): the tail of a residual block in
   * one pass. The residual (same shape as x) gets its gradient and tangent through the tape.
   */
  residual?: Tensor;
  /** Added to the variance before the inverse square root; default 1e-5. */
  eps?: number;
  /** Running-statistics update weight m: `running = (1 - m) * running + m * batch`; default 0.1. */
  momentum?: number;
}

const fusedPasses = new WeakMap<Gpu, boolean>();

/**
 * Whether each per-channel reduction also runs the elementwise pass that follows it (one
 * dispatch, the channel re-read from cache) by default: on CPU adapters, where C workgroups
 * keep every core busy; GPUs want the elementwise pass spread over many workgroups.
 */
export function defaultBatchNormFusion(gpu: Gpu): boolean {
  return gpu.adapter.isFallbackAdapter ||
    /llvmpipe|lavapipe|swiftshader/i.test(gpu.adapter.description);
}

/** Whether this device's batchnorm runs fused passes (see {@linkcode defaultBatchNormFusion}). */
export function batchNormFusesPasses(gpu: Gpu): boolean {
  let f = fusedPasses.get(gpu);
  if (f === undefined) fusedPasses.set(gpu, f = defaultBatchNormFusion(gpu));
  return f;
}

/** Forces the fused or the separate form of the batchnorm passes (tests run both). */
export function setBatchNormFusesPasses(gpu: Gpu, fused: boolean): void {
  fusedPasses.set(gpu, fused);
}

function shapeOf(x: Tensor): BnShape {
  const [N, C, H, W] = x.shape.length === 4 ? x.shape : [x.shape[0], x.shape[1], 1, 1];
  return { N, C, HW: H * W };
}

const elementGrid = (x: Tensor) => grid1d(Math.ceil(x.size / 256));

/** Everything the backward / JVP of one call shares. */
interface BnSaved {
  gpu: Gpu;
  shape: BnShape;
  uni: BnUniforms;
  x: Tensor;
  y: Tensor;
  stats: Tensor;
  gamma: Tensor;
}

/**
 * The shared backward / JVP form (shaders/batchnorm.ts): sums of `a` into sum1 / sum2, then the
 * gradient or tangent into a new tensor (and, with `writeGated`, the masked a into another).
 */
function gradForm(
  s: BnSaved,
  v: GradVariant,
  a: Tensor,
  extra: Tensor[],
  sums: [Tensor, Tensor],
): { out: Tensor; gated: Tensor | null } {
  const { gpu, shape, uni, x } = s;
  const out = Tensor.empty(gpu, x.shape);
  const gated = v.writeGated ? Tensor.empty(gpu, x.shape) : null;
  const reads = [bind(a), bind(x), bind(s.stats), ...(v.gateIn || v.gateOut ? [bind(s.y)] : [])];
  const writes = [bind(s.gamma), ...extra.map(bind), bind(out), ...(gated ? [bind(gated)] : [])];
  const sumViews = sums.map(bind);
  if (batchNormFusesPasses(gpu)) {
    bnGradReduceKernel({ shape, grad: v, fused: true })
      .dispatch(gpu, [...reads, ...writes, ...sumViews], uni, [shape.C]);
  } else {
    bnGradReduceKernel({ shape, grad: v, fused: false })
      .dispatch(gpu, [...reads, ...sumViews], uni, [shape.C]);
    bnGradMapKernel({ shape, grad: v })
      .dispatch(gpu, [...reads, ...sumViews, ...writes], uni, elementGrid(x));
  }
  return { out, gated };
}

/** Normalises x into y (batch statistics in train mode, running ones in eval mode). */
function forward(
  s: Omit<BnSaved, "y">,
  y: Tensor,
  beta: Tensor,
  running: [Tensor, Tensor],
  av: ApplyVariant,
  residual: Tensor | undefined,
  train: boolean,
): void {
  const { gpu, shape, uni, x, stats } = s;
  const applyViews = [bind(s.gamma), bind(beta), ...(residual ? [bind(residual)] : []), bind(y)];
  const statViews = [bind(x), bind(stats), bind(running[0]), bind(running[1])];
  if (train && batchNormFusesPasses(gpu)) {
    bnStatsKernel({ shape, apply: av }).dispatch(gpu, [...statViews, ...applyViews], uni, [
      shape.C,
    ]);
    return;
  }
  if (train) bnStatsKernel({ shape, apply: null }).dispatch(gpu, statViews, uni, [shape.C]);
  else {
    bnEvalStatsKernel(shape).dispatch(gpu, [bind(running[0]), bind(running[1]), bind(stats)], uni, [
      Math.ceil(shape.C / 64),
    ]);
  }
  bnApplyKernel({ shape, apply: av })
    .dispatch(gpu, [bind(x), bind(stats), ...applyViews], uni, elementGrid(x));
}

/**
 * Batch normalisation over the channel axis of an NCHW (or [N, C]) tensor, with autograd, and
 * optionally a fused residual add and relu after it. `runningMean`/`runningVar` are updated in
 * place only when `updateRunningStats` is set.
 */
export function batchNorm(
  ctx: Ctx,
  x: Tensor,
  gamma: Tensor,
  beta: Tensor,
  runningMean: Tensor,
  runningVar: Tensor,
  opts: BatchNormOptions,
): Tensor {
  const gpu = ctx.gpu;
  const shape = shapeOf(x);
  const C = shape.C;
  const train = opts.mode === "train";
  const residual = opts.residual;
  if (residual && residual.size !== x.size) {
    throw new Error(`batchNorm: residual [${residual.shape}] does not match input [${x.shape}]`);
  }
  const uni: BnUniforms = {
    update: train && opts.updateRunningStats ? 1 : 0,
    eps: opts.eps ?? 1e-5,
    momentum: opts.momentum ?? 0.1,
  };
  const relu = !!opts.relu;
  const stats = ctx.empty([2, C]);
  const y = ctx.empty(x.shape);
  const base = { gpu, shape, uni, x, stats, gamma };
  forward(
    base,
    y,
    beta,
    [runningMean, runningVar],
    { residual: !!residual, relu },
    residual,
    train,
  );
  const saved: BnSaved = { ...base, y };
  const flags = { coupled: train, tangent: false, residual: false, gateOut: false };
  ctx.record({
    op: `batchNorm${residual ? "+add" : ""}${relu ? "+relu" : ""}`,
    inputs: residual ? [x, gamma, beta, residual] : [x, gamma, beta],
    output: y,
    backward: (dy, needs, into) => {
      // gamma's and beta's gradients land in the caller's destinations when offered
      const dbeta = into?.[2] ?? Tensor.empty(gpu, [C]);
      const dgamma = into?.[1] ?? Tensor.empty(gpu, [C]);
      const v = { ...flags, gateIn: relu, writeGated: !!residual && needs[3] };
      const { out: dx, gated } = gradForm(saved, v, dy, [], [dbeta, dgamma]);
      // the residual's gradient is dy itself, masked by the relu when there is one
      const dres = residual && needs[3] ? gated : null;
      const grads = [dx, dgamma, dbeta, dres];
      grads.forEach((g, i) => {
        if (g && !needs[i]) g.release(gpu); // a destination is a view: release is a no-op
      });
      return grads.map((g, i) => (needs[i] ? g : null)).slice(0, residual ? 4 : 3);
    },
    jvp: ([xDot, gammaDot, betaDot, resDot]) => {
      const scratch: Tensor[] = [];
      const orZero = (t: Tensor | null, shape: readonly number[]) => {
        if (t) return t;
        const z = Tensor.empty(gpu, shape);
        zero(gpu, z);
        scratch.push(z);
        return z;
      };
      const a = orZero(xDot, x.shape);
      const sums: [Tensor, Tensor] = [Tensor.empty(gpu, [C]), Tensor.empty(gpu, [C])];
      scratch.push(...sums);
      const extra = [orZero(gammaDot, [C]), orZero(betaDot, [C])];
      if (resDot) extra.push(resDot);
      const v = {
        coupled: train,
        gateIn: false,
        writeGated: false,
        tangent: true,
        residual: !!resDot,
        gateOut: relu,
      };
      const { out } = gradForm(saved, v, a, extra, sums);
      for (const z of scratch) z.release(gpu);
      return out;
    },
  });
  return y;
}
