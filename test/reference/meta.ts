/**
 * The paper's meta-gradient d L_dev(theta') / d eps at eps = 0 (README, The meta step), exactly via
 * one JVP and by central finite differences of F(eps) = L_dev(theta - eta grad L_B(theta, eps)).
 */

import { fdDerivative } from "./fd.ts";
import type { LossOpts, Tensor } from "./ops.ts";
import {
  type Params,
  resnetBackward,
  type ResNetConfig,
  resnetForward,
  resnetJvp,
} from "./resnet.ts";

/** Look-ahead loss: sum_i (w_i + eps_i) loss_i, or that divided by |B|. */
export type LookaheadMode = "sum" | "mean";

/** One meta step's inputs. */
export interface MetaProblem {
  cfg: ResNetConfig;
  params: Params;
  x: Tensor;
  labels: ArrayLike<number>;
  /** Per-example base weights w_i (e.g. the class-balanced w_{y_i}) [B]. */
  weights: ArrayLike<number>;
  xDev: Tensor;
  labelsDev: ArrayLike<number>;
  /** Look-ahead step size (the current lr). */
  eta: number;
  mode: LookaheadMode;
  /** Options of the look-ahead per-example loss (default: cross-entropy). */
  loss?: LossOpts;
}

function lookaheadWeights(p: MetaProblem, eps?: ArrayLike<number>): Float64Array {
  const B = p.labels.length;
  const scale = p.mode === "mean" ? 1 / B : 1;
  const w = new Float64Array(B);
  for (let i = 0; i < B; i++) w[i] = (p.weights[i] + (eps ? eps[i] : 0)) * scale;
  return w;
}

/** theta' = theta - eta * grad_theta of the look-ahead loss (BN in train mode). */
export function lookaheadParams(p: MetaProblem, eps?: ArrayLike<number>): Params {
  const fwd = resnetForward(p.cfg, p.params, p.x, p.labels, p.loss ?? {}, "train");
  const g = resnetBackward(fwd, lookaheadWeights(p, eps));
  const out: Params = new Map();
  for (const [name, v] of p.params) {
    const gv = g.get(name)!;
    const t = new Float64Array(v.length);
    for (let i = 0; i < v.length; i++) t[i] = v[i] - p.eta * gv[i];
    out.set(name, t);
  }
  return out;
}

/** Mean cross-entropy on the dev batch, BN in train mode (dev batch statistics). */
export function devLoss(
  cfg: ResNetConfig,
  params: Params,
  xDev: Tensor,
  labelsDev: ArrayLike<number>,
): number {
  const { losses } = resnetForward(cfg, params, xDev, labelsDev, {}, "train");
  let s = 0;
  for (const l of losses) s += l;
  return s / losses.length;
}

/** F(eps) = L_dev(theta - eta * grad L_B(theta, eps)). */
export function metaObjective(p: MetaProblem, eps: ArrayLike<number>): number {
  return devLoss(p.cfg, lookaheadParams(p, eps), p.xDev, p.labelsDev);
}

/**
 * Exact dF/deps at eps = 0: -eta * <grad L_dev(theta'), grad_theta loss_i(theta)> (x 1/|B| for
 * "mean"), the inner products computed as one JVP of the per-example loss vector along
 * v = grad L_dev(theta'). Also returns the intermediates for comparison with the GPU engine.
 */
export function metaEpsGrad(
  p: MetaProblem,
): { grad: Float64Array; devLoss: number; devGrad: Params; thetaPrime: Params } {
  const B = p.labels.length;
  const fwd = resnetForward(p.cfg, p.params, p.x, p.labels, p.loss ?? {}, "train");
  const g = resnetBackward(fwd, lookaheadWeights(p));
  const thetaPrime: Params = new Map();
  for (const [name, v] of p.params) {
    const gv = g.get(name)!;
    thetaPrime.set(name, v.map((x, i) => x - p.eta * gv[i]));
  }
  const Bd = p.labelsDev.length;
  const dev = resnetForward(p.cfg, thetaPrime, p.xDev, p.labelsDev, {}, "train");
  const devGrad = resnetBackward(dev, new Float64Array(Bd).fill(1 / Bd));
  const jv = resnetJvp(fwd, devGrad);
  const scale = -p.eta * (p.mode === "mean" ? 1 / B : 1);
  let dl = 0;
  for (const l of dev.losses) dl += l / Bd;
  return { grad: jv.map((v) => scale * v), devLoss: dl, devGrad, thetaPrime };
}

/** Central finite-difference dF/deps_i at eps = 0, one coordinate at a time. */
export function metaEpsGradFd(p: MetaProblem, h = 1e-5): Float64Array {
  const B = p.labels.length;
  const out = new Float64Array(B);
  for (let i = 0; i < B; i++) {
    out[i] = fdDerivative((s) => {
      const eps = new Float64Array(B);
      eps[i] = s;
      return metaObjective(p, eps);
    }, h);
  }
  return out;
}
