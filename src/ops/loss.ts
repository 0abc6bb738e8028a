/**
 * Per-example classification losses (cross-entropy, focal, LDAM; softmax or sigmoid form)
 * returning the vector of per-example losses [B]. The seed of its backward is the vector of
 * per-example weights, so `w_y + eps_i` weighting is just a different seed on the same tape,
 * and so is the normalisation: w_i / |B| for a mean (Cui's losses), or
 * {@linkcode normalizedWeights} w_i / sum_j w_j for the weighted mean of PyTorch's
 * `cross_entropy(weight=w)` that LDAM-DRW trains with (kaidic/LDAM-DRW losses.py).
 */
import { bind, Tensor } from "../tensor.ts";
import type { Ctx } from "../autograd/tape.ts";
import type { Gpu } from "../gpu/runtime.ts";
import {
  lossBackwardKernel,
  lossForwardKernel,
  lossJvpKernel,
  lossSigmoidForwardKernel,
  normalizedWeightsKernel,
} from "../../shaders/loss.ts";
import { zero } from "./map.ts";

/** Loss family parameters. */
export interface LossOptions {
  /** Focal exponent; 0 for cross-entropy. */
  gamma?: number;
  /** Logit scale (LDAM uses 30 with a cosine classifier); 1 otherwise. */
  scale?: number;
  /** Per-class margins subtracted from the true-class logit (LDAM), [C]; zeros otherwise. */
  margins?: Tensor | null;
  /**
   * How logits become probabilities. `"softmax"` (default): one distribution per example
   * (cross-entropy, softmax focal, LDAM). `"sigmoid"`: one sigmoid per class against the
   * one-hot target, loss_i = sum_j -(1 - p_t)^gamma log p_t, Cui et al.'s sigmoid
   * cross-entropy (gamma 0) and sigmoid focal loss (richardaecn/class-balanced-loss
   * src/cifar_main.py); it takes no scale or margins.
   */
  form?: "softmax" | "sigmoid";
}

const zeroMargins = new WeakMap<Gpu, Map<number, Tensor>>();
function zerosFor(gpu: Gpu, C: number): Tensor {
  let m = zeroMargins.get(gpu);
  if (!m) zeroMargins.set(gpu, m = new Map());
  let t = m.get(C);
  if (!t) {
    t = Tensor.empty(gpu, [C]);
    zero(gpu, t);
    m.set(C, t);
  }
  return t;
}

/** Per-example losses [B] of logits [B, C] against u32 labels [B]. */
export function classificationLoss(
  ctx: Ctx,
  logits: Tensor,
  labels: Tensor,
  opts: LossOptions = {},
): Tensor {
  const gpu = ctx.gpu;
  const [B, C] = logits.shape;
  if (labels.size !== B || labels.dtype !== "u32") {
    throw new Error(
      `classificationLoss: labels must be u32 [${B}], got [${labels.shape}] ${labels.dtype}`,
    );
  }
  const uni = { B, C, s: opts.scale ?? 1, gamma: opts.gamma ?? 0 };
  const loss = ctx.empty([B]);
  const G = ctx.empty([B, C]);
  if (opts.form === "sigmoid") {
    if (uni.s !== 1 || opts.margins) {
      throw new Error("classificationLoss: the sigmoid form takes no scale or margins (LDAM)");
    }
    lossSigmoidForwardKernel.dispatch(
      gpu,
      [bind(logits), bind(labels), bind(loss), bind(G)],
      uni,
      [Math.ceil(B / 64)],
    );
  } else {
    const margins = opts.margins ?? zerosFor(gpu, C);
    lossForwardKernel.dispatch(
      gpu,
      [bind(logits), bind(labels), bind(margins), bind(loss), bind(G)],
      uni,
      [Math.ceil(B / 64)],
    );
  }
  ctx.record({
    op: "classificationLoss",
    inputs: [logits],
    output: loss,
    backward: (weights) => {
      const dz = Tensor.empty(gpu, [B, C]);
      lossBackwardKernel.dispatch(gpu, [bind(G), bind(weights), bind(dz)], uni, [
        Math.ceil((B * C) / 256),
      ]);
      return [dz];
    },
    jvp: ([zDot]) => {
      const out = Tensor.empty(gpu, [B]);
      lossJvpKernel.dispatch(gpu, [bind(G), bind(zDot!), bind(out)], uni, [Math.ceil(B / 64)]);
      return out;
    },
  });
  return loss;
}

/**
 * out[i] = w[i] / sum_j w[j] on the GPU (one invocation, index order: deterministic, no
 * readback): the backward seed of the weighted mean sum_i w_i loss_i / sum_i w_i, which is
 * what PyTorch's `F.cross_entropy(s * z', y, weight=w)` computes for LDAM-DRW
 * (kaidic/LDAM-DRW losses.py `LDAMLoss`). Weights summing to 0 give out = 0 (no update).
 * Returns `out`.
 */
export function normalizedWeights(gpu: Gpu, w: Tensor, out: Tensor): Tensor {
  if (w.size !== out.size || w.dtype !== "f32" || out.dtype !== "f32") {
    throw new Error(
      `normalizedWeights: w and out must be f32 of one size, got [${w.shape}] ${w.dtype} ` +
        `and [${out.shape}] ${out.dtype}`,
    );
  }
  normalizedWeightsKernel.dispatch(gpu, [bind(w), bind(out)], { n: w.size }, [1]);
  return out;
}
