/**
 * batchnorm2d: forward, backward and JVP side by side, train mode (batch statistics, the
 * gradient and tangent flow through them) and eval mode (running statistics).
 *
 * Train mode, with M = N*H*W per channel, xhat = (x - mean) * invstd:
 *   backward  dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)),
 *             dgamma = sum(dy * xhat), dbeta = sum(dy)
 *   JVP       y' = gamma * invstd * (x' - mean(x') - xhat * mean(x' * xhat))
 *                  + gamma' * xhat + beta'
 * The two have the same form, so one reduction kernel and one elementwise kernel serve both.
 * An optional fused ReLU masks the incoming gradient/outgoing tangent by y > 0.
 */
import { bind, Tensor } from "../tensor.ts";
import type { Ctx } from "../autograd/tape.ts";
import { type Gpu, grid1d } from "../gpu/runtime.ts";
import {
  bnApplyKernel,
  bnEvalStatsKernel,
  bnGradKernel,
  bnStatsKernel,
  bnSumsKernel,
} from "../../shaders/batchnorm.ts";
import { runMap, zero } from "./elementwise.ts";

/** How a batchnorm call normalises. */
export interface BatchNormOptions {
  /** "train": batch statistics; "eval": running statistics. */
  mode: "train" | "eval";
  /** In train mode, fold the batch statistics into the running ones (momentum 0.1). */
  updateRunningStats: boolean;
  /** Fuse a ReLU after the normalisation. */
  relu?: boolean;
  /** Added to the variance before the inverse square root; default 1e-5. */
  eps?: number;
  /** Running-statistics update weight m: `running = (1 - m) * running + m * batch`; default 0.1. */
  momentum?: number;
}

/** Uniform values of every batchnorm kernel of one call. */
type BnParams = Parameters<typeof bnStatsKernel.uniform>[1];

function params(x: Tensor, update: boolean, eps: number, momentum: number): BnParams {
  const [N, C, H, W] = x.shape.length === 4 ? x.shape : [x.shape[0], x.shape[1], 1, 1];
  return { N, C, HW: H * W, update: update ? 1 : 0, eps, momentum };
}

function channelSums(gpu: Gpu, a: Tensor, x: Tensor, stats: Tensor, uni: BnParams): Tensor {
  const C = x.shape[1];
  const sums = Tensor.empty(gpu, [2, C]);
  bnSumsKernel.dispatch(gpu, [bind(a), bind(x), bind(stats), bind(sums)], uni, [C]);
  return sums;
}

function gradForm(
  gpu: Gpu,
  coupled: boolean,
  a: Tensor,
  x: Tensor,
  stats: Tensor,
  sums: Tensor,
  gamma: Tensor,
  tangents: [Tensor, Tensor] | null,
  uni: BnParams,
): Tensor {
  const out = Tensor.empty(gpu, x.shape);
  const views = [bind(a), bind(x), bind(stats), bind(sums), bind(gamma)];
  if (tangents) views.push(bind(tangents[0]), bind(tangents[1]));
  bnGradKernel({ coupled, tangentParams: tangents !== null }).dispatch(
    gpu,
    [...views, bind(out)],
    uni,
    grid1d(Math.ceil(x.size / 256)),
  );
  return out;
}

/**
 * Batch normalisation over the channel axis of an NCHW (or [N, C]) tensor, with autograd.
 * `runningMean`/`runningVar` are updated in place only when `updateRunningStats` is set.
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
  const C = x.shape[1];
  const eps = opts.eps ?? 1e-5;
  const train = opts.mode === "train";
  const uni = params(x, train && opts.updateRunningStats, eps, opts.momentum ?? 0.1);
  const stats = ctx.empty([2, C]);
  if (train) {
    bnStatsKernel.dispatch(
      gpu,
      [bind(x), bind(stats), bind(runningMean), bind(runningVar)],
      uni,
      [C],
    );
  } else {
    bnEvalStatsKernel.dispatch(gpu, [bind(runningMean), bind(runningVar), bind(stats)], uni, [
      Math.ceil(C / 64),
    ]);
  }
  const y = ctx.empty(x.shape);
  bnApplyKernel(!!opts.relu).dispatch(
    gpu,
    [bind(x), bind(stats), bind(gamma), bind(beta), bind(y)],
    uni,
    grid1d(Math.ceil(x.size / 256)),
  );
  // With a fused relu, gradients and tangents are masked by y > 0 on the output side.
  const maskByOutput = (g: Tensor): Tensor => {
    const m = Tensor.empty(gpu, x.shape);
    runMap(gpu, "relu-mask", "select(0.0, a[i], b[i] > 0.0)", [g, y], m);
    return m;
  };
  ctx.record({
    op: opts.relu ? "batchNorm+relu" : "batchNorm",
    inputs: [x, gamma, beta],
    output: y,
    backward: (dyIn, needs, into) => {
      const dy = opts.relu ? maskByOutput(dyIn) : dyIn;
      const sums = channelSums(gpu, dy, x, stats, uni);
      const dx = needs[0] ? gradForm(gpu, train, dy, x, stats, sums, gamma, null, uni) : null;
      const dgamma = needs[1] ? into?.[1] ?? Tensor.empty(gpu, [C]) : null;
      const dbeta = needs[2] ? into?.[2] ?? Tensor.empty(gpu, [C]) : null;
      if (dbeta) gpu.copy(sums.view, dbeta.view, C * 4);
      if (dgamma) {
        gpu.copy({ ...sums.view, offset: sums.view.offset + C * 4 }, dgamma.view, C * 4);
      }
      sums.release(gpu);
      if (dy !== dyIn) dy.release(gpu);
      return [dx, dgamma, dbeta];
    },
    jvp: ([xDot, gammaDot, betaDot]) => {
      const zeros: Tensor[] = [];
      const orZero = (t: Tensor | null, shape: readonly number[]) => {
        if (t) return t;
        const z = Tensor.empty(gpu, shape);
        zero(gpu, z);
        zeros.push(z);
        return z;
      };
      const a = orZero(xDot, x.shape);
      const sums = channelSums(gpu, a, x, stats, uni);
      const tangents: [Tensor, Tensor] = [orZero(gammaDot, [C]), orZero(betaDot, [C])];
      let out = gradForm(gpu, train, a, x, stats, sums, gamma, tangents, uni);
      sums.release(gpu);
      for (const z of zeros) z.release(gpu);
      if (opts.relu) {
        const masked = maskByOutput(out);
        out.release(gpu);
        out = masked;
      }
      return out;
    },
  });
  return y;
}
