/**
 * The dev loss of the meta step (`--dev-loss`): which loss of the balanced dev batch the
 * meta-gradient d L_dev(theta') / d eps descends.
 *
 * With cross-entropy or focal training the model's output is the logits the prediction uses, and
 * "ce" is plain cross-entropy on them, as the paper's released code has it
 * (`F.cross_entropy(y_g_hat, target)`, whatever the training loss). With LDAM the classifier is
 * cosine and the scale s = 30 lives in the loss, so the raw output is a cosine in [-1, 1]:
 * cross-entropy on it ("ce-raw") sees an almost uniform softmax (at most e^2 / (e^2 + 9) = 0.45
 * for 10 classes), and its gradient is about 1/s of the scaled one, so the dev signal all but
 * vanishes at the paper's tau. "ce" therefore applies s to the cosine head: the cross-entropy of
 * the probabilities the model predicts with, unweighted and without margins (the margins are a
 * training device built from the training counts; the dev set is balanced and "not weighed").
 * "train" is the literal reading of the paper's eq. (9): the training loss itself, unweighted
 * (LDAM with s and margins, focal with its gamma).
 */
import type { Ctx } from "../autograd/tape.ts";
import type { Tensor } from "../tensor.ts";
import { classificationLoss, type LossOptions } from "../ops/loss.ts";
import type { LossFn } from "../engine/step.ts";
import type { DevLossName } from "./config.ts";

/** Logit scale s of LDAM's cosine classifier (Cao et al.), in training and evaluation. */
export const LDAM_SCALE = 30;

/**
 * The loss options of the dev loss `devLoss`, for a run training with `train` options on a
 * model with (`cosine`) or without a cosine classifier.
 */
export function devLossOptions(
  devLoss: DevLossName,
  train: LossOptions,
  cosine: boolean,
): LossOptions {
  switch (devLoss) {
    case "ce":
      return cosine ? { scale: LDAM_SCALE } : {};
    case "ce-raw":
      return {};
    case "train":
      return { ...train };
  }
}

/** The dev loss as a {@linkcode LossFn}: per-example losses of `options()` (read per call). */
export function devLossFn(options: () => LossOptions): LossFn {
  return (ctx: Ctx, output: Tensor, targets: Tensor) =>
    classificationLoss(ctx, output, targets, options());
}
