/**
 * Per-example regression losses returning [B], like classificationLoss: the seed of their
 * backward is the per-example weight vector, so re-weighting is a different seed on the same
 * tape. pred and target are [B, ...] of one shape; the target is a constant.
 */
import { bind, Tensor } from "../tensor.ts";
import type { Ctx } from "../autograd/tape.ts";
import { grid1d } from "../gpu/runtime.ts";
import {
  regressionBackward,
  regressionForward,
  regressionJvp,
  type RegressionKind,
} from "../../shaders/regression.ts";

function regressionLoss(kind: RegressionKind, ctx: Ctx, pred: Tensor, target: Tensor): Tensor {
  const op = kind === "mse" ? "mseLoss" : "l1Loss";
  const same = pred.shape.length === target.shape.length &&
    pred.shape.every((d, i) => d === target.shape[i]);
  if (!same || pred.shape.length < 1 || pred.dtype !== "f32" || target.dtype !== "f32") {
    const labels = target.dtype === "u32" ? "targets are u32 class labels by default; " : "";
    throw new Error(
      `${op}: pred and target must be f32 [B, ...] of one shape, got [${pred.shape}] ` +
        `${pred.dtype} and [${target.shape}] ${target.dtype}; ${labels}for regression pass ` +
        `target: { shape: [${pred.shape.slice(1)}], dtype: "f32" } to StepEngine`,
    );
  }
  if (target.requiresGrad) {
    throw new Error(`${op}: the target is a constant; it must not require grad`);
  }
  const gpu = ctx.gpu;
  const B = pred.shape[0], D = pred.size / B;
  const loss = ctx.empty([B]);
  const u = { B, D };
  const perExample = grid1d(Math.ceil(B / 64));
  regressionForward(kind).dispatch(gpu, [bind(pred), bind(target), bind(loss)], u, perExample);
  ctx.record({
    op,
    inputs: [pred],
    output: loss,
    backward: (weights) => {
      const dpred = Tensor.empty(gpu, pred.shape);
      regressionBackward(kind).dispatch(
        gpu,
        [bind(pred), bind(target), bind(weights), bind(dpred)],
        u,
        grid1d(Math.ceil(pred.size / 256)),
      );
      return [dpred];
    },
    jvp: ([predDot]) => {
      const out = Tensor.empty(gpu, [B]);
      regressionJvp(kind).dispatch(
        gpu,
        [bind(pred), bind(target), bind(predDot!), bind(out)],
        u,
        perExample,
      );
      return out;
    },
  });
  return loss;
}

/**
 * Per-example mean squared error [B]: loss[b] = mean over the non-batch elements of
 * (pred - target)^2. Backward: w[b] * 2 (pred - target) / D; JVP: mean of 2 (pred - target) pred'.
 */
export function mseLoss(ctx: Ctx, pred: Tensor, target: Tensor): Tensor {
  return regressionLoss("mse", ctx, pred, target);
}

/**
 * Per-example mean absolute error [B]: loss[b] = mean of |pred - target|. Backward:
 * w[b] * sign(pred - target) / D (subgradient 0 where they are equal); JVP likewise.
 */
export function l1Loss(ctx: Ctx, pred: Tensor, target: Tensor): Tensor {
  return regressionLoss("l1", ctx, pred, target);
}
