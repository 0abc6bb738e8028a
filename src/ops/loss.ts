/**
 * Per-example classification losses (cross-entropy, focal, LDAM) returning the vector of
 * per-example losses [B]. The seed of its backward is the vector of per-example weights, so
 * `w_y + eps_i` weighting is just a different seed on the same tape.
 */
import { bind, Tensor } from "../tensor.ts";
import type { Ctx } from "../autograd/tape.ts";
import type { Gpu } from "../gpu/runtime.ts";
import { lossBackwardKernel, lossForwardKernel, lossJvpKernel } from "../../shaders/loss.ts";
import { zero } from "./map.ts";

/** Loss family parameters. */
export interface LossOptions {
  /** Focal exponent; 0 for cross-entropy. */
  gamma?: number;
  /** Logit scale (LDAM uses 30 with a cosine classifier); 1 otherwise. */
  scale?: number;
  /** Per-class margins subtracted from the true-class logit (LDAM), [C]; zeros otherwise. */
  margins?: Tensor | null;
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
  const margins = opts.margins ?? zerosFor(gpu, C);
  lossForwardKernel.dispatch(
    gpu,
    [bind(logits), bind(labels), bind(margins), bind(loss), bind(G)],
    uni,
    [Math.ceil(B / 64)],
  );
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
