/**
 * Each method as a weighting rule over the one training loop: for every epoch, which step runs
 * (plain, meta, or Meta-Weight-Net), which class weights w_y feed the per-example weights, which
 * meta rule turns the dev signal into final weights, and which images the epoch iterates.
 *
 * Stage 2 (meta steps, deferred re-weighting, fine-tuning) starts at `metaStart` for every
 * method with two stages:
 *
 * | method          | epochs < metaStart           | epochs >= metaStart                         |
 * |-----------------|------------------------------|---------------------------------------------|
 * | ce / focal      | plain, w = 1                 | same                                        |
 * | cb / cb-focal   | plain, w = CB                | same                                        |
 * | ldam            | plain LDAM, w = 1            | same                                        |
 * | ldam-drw        | plain LDAM, w = 1            | plain LDAM, w = CB (DRW)                    |
 * | cb-finetune     | plain CE, w = 1, all images  | plain CE, w = 1, class-balanced subset      |
 * | l2rw, mwn       | meta (from epoch 0)          | same                                        |
 * | meta            | plain, w = 1                 | meta, w = CB, final w + eps                 |
 * | l2rw-pretrain   | plain, w = 1                 | meta, look-ahead 0, L2RW rule               |
 * | l2rw-init-wy    | plain, w = 1                 | meta, look-ahead w = CB, L2RW rule          |
 * | l2rw-wy-eps     | plain, w = 1                 | meta, w = CB, rule max(w + eps, 0)/sum      |
 * | meta-update-wy  | plain, w = 1                 | meta, class weights from CB, meta-updated   |
 * | meta-eps0       | plain, w = 1                 | plain, w = CB (the paper's schedule, eps=0) |
 *
 * CB = effective-number weights (1 - beta) / (1 - beta^n_y), normalised to sum C.
 *
 * Losses: ce / cb / cb-finetune train with cross-entropy, focal / cb-focal with the focal loss,
 * ldam / ldam-drw with LDAM (margins C / n_y^(1/4) scaled to a largest margin of 0.5, s = 30,
 * cosine classifier). The meta family (meta, l2rw*, mwn, meta-update-wy, meta-eps0) uses
 * `--loss` in both stages, without weights in stage 1: cross-entropy pre-training by default,
 * as in the paper; with `--loss ldam` the model has the cosine classifier from the start.
 *
 * Meta steps use eta = the current lr for the look-ahead, `--lookahead` (sum by default) and
 * `--tau`; Meta-Weight-Net always uses a mean look-ahead, as its reference code does.
 */
import type { MetaWeightRule } from "../engine/meta.ts";
import type { Method } from "./config.ts";

/** What one epoch runs. */
export interface Phase {
  /** Step kind. */
  kind: "plain" | "meta" | "mwn";
  /** Class weights feeding the per-example weights (and the meta look-ahead). */
  weights: "ones" | "cb" | "zero";
  /** Meta rule and look-ahead weights (meta steps only). */
  rule?: MetaWeightRule;
  /** Look-ahead per-example weights (meta steps only): the class weights ("w") or zeros (L2RW). */
  lookaheadWeights?: "w" | "zero";
  /** Images of the epoch: the whole long-tailed set, or a class-balanced subset. */
  images: "all" | "balanced-subset";
}

/** The phase of `epoch` for `method` with stage 2 starting at `metaStart`. */
export function phaseOf(method: Method, epoch: number, metaStart: number): Phase {
  const stage2 = epoch >= metaStart;
  const plain = (weights: Phase["weights"], images: Phase["images"] = "all"): Phase => ({
    kind: "plain",
    weights,
    images,
  });
  const meta = (
    weights: Phase["weights"],
    rule: MetaWeightRule,
    lookaheadWeights: "w" | "zero",
  ): Phase => ({ kind: "meta", weights, rule, lookaheadWeights, images: "all" });
  switch (method) {
    case "ce":
    case "focal":
    case "ldam":
      return plain("ones");
    case "cb":
    case "cb-focal":
      return plain("cb");
    case "ldam-drw":
    case "meta-eps0":
      return plain(stage2 ? "cb" : "ones");
    case "cb-finetune":
      return plain("ones", stage2 ? "balanced-subset" : "all");
    case "l2rw":
      return meta("zero", "l2rw", "zero");
    case "mwn":
      return { kind: "mwn", weights: "ones", images: "all" };
    case "meta":
      return stage2 ? meta("cb", "meta", "w") : plain("ones");
    case "l2rw-pretrain":
      return stage2 ? meta("zero", "l2rw", "zero") : plain("ones");
    case "l2rw-init-wy":
      return stage2 ? meta("cb", "l2rw", "w") : plain("ones");
    case "l2rw-wy-eps":
      return stage2 ? meta("cb", "l2rw-wy-eps", "w") : plain("ones");
    case "meta-update-wy":
      return stage2 ? meta("cb", "meta-update-wy", "w") : plain("ones");
  }
}

/** Whether the method ever needs the dev set (meta or MWN steps). */
export function usesDevSet(method: Method, epochs: number, metaStart: number): boolean {
  for (let e = 0; e < epochs; e++) if (phaseOf(method, e, metaStart).kind !== "plain") return true;
  return false;
}
