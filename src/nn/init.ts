/**
 * Classifier initialisations of the baselines' reference code, as pure host functions drawing
 * from the engine's seeded {@linkcode Rng} (the same seed gives the same bits; PyTorch's own
 * random stream is not reproduced, only the distribution):
 *
 * - {@linkcode unitNormRows}: LDAM's cosine classifier `NormedLinear`, whose class vectors
 *   start at unit L2 norm: `weight.uniform_(-1, 1).renorm_(2, 1, 1e-5).mul_(1e5)`
 *   (kaidic/LDAM-DRW models/resnet_cifar.py; abdullahjamal/Longtail_DA C-LT/resnet.py
 *   `MetaLinear_Norm`).
 * - {@linkcode torchLinearBias}: PyTorch's `nn.Linear` default bias,
 *   U(-1/sqrt(fan_in), 1/sqrt(fan_in)), which the paper's, LDAM's and Meta-Weight-Net's
 *   classifiers keep (their init code overrides only the weight).
 * - {@linkcode priorBias}: Cui et al.'s bias for the sigmoid losses, -log((1 - pi) / pi)
 *   (richardaecn/class-balanced-loss src/model_base.py `_fully_connected`).
 */
import type { Rng } from "../random.ts";

function checkCount(what: string, n: number): void {
  if (!Number.isInteger(n) || n < 1) {
    throw new RangeError(`${what} must be a positive integer, got ${n}`);
  }
}

/**
 * A [rows, cols] weight (row-major) whose rows are uniform(-1, 1) draws rescaled to unit L2
 * norm: LDAM's `NormedLinear` init, for the engine's cosine classifier `linear.weight`
 * [numClasses, features], whose rows are the class vectors. (LDAM stores the transpose,
 * [features, C], and renormalises its columns; `renorm_` caps the norm at 1e-5 / (norm + 1e-7)
 * before the x 1e5, so its norms are 1 - 1e-7 / norm, ~2e-8 short of 1 at 64 features.)
 * Draws in row-major order.
 */
export function unitNormRows(rng: Rng, rows: number, cols: number): Float32Array {
  checkCount("unitNormRows: rows", rows);
  checkCount("unitNormRows: cols", cols);
  const out = new Float32Array(rows * cols);
  const row = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    let sq = 0;
    for (let c = 0; c < cols; c++) {
      row[c] = 2 * rng.nextFloat() - 1;
      sq += row[c] * row[c];
    }
    // a zero row has probability 0 (53-bit draws), but would leave the cosine undefined
    if (sq === 0) throw new Error("unitNormRows: drew an all-zero row");
    const inv = 1 / Math.sqrt(sq);
    for (let c = 0; c < cols; c++) out[r * cols + c] = row[c] * inv;
  }
  return out;
}

/**
 * PyTorch's `nn.Linear` default bias: `size` draws of U(-1/sqrt(fanIn), 1/sqrt(fanIn)), e.g.
 * U(-0.125, 0.125) for the CIFAR ResNets' 64 features.
 */
export function torchLinearBias(rng: Rng, fanIn: number, size: number): Float32Array {
  checkCount("torchLinearBias: fanIn", fanIn);
  checkCount("torchLinearBias: size", size);
  const bound = 1 / Math.sqrt(fanIn);
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++) out[i] = (2 * rng.nextFloat() - 1) * bound;
  return out;
}

/**
 * Cui et al.'s classifier bias for the sigmoid losses: every class at -log((1 - pi) / pi), so
 * that each sigmoid starts at the prior pi and the C - 1 negative terms do not swamp the loss
 * at the first steps. Cui's code uses pi = 1 / numClasses, i.e. -log(C - 1): -2.197 for
 * CIFAR-10, -4.595 for CIFAR-100 (so it equals a prior of 0.1 only for C = 10); that is the
 * default. Cui also exempts this bias from weight decay (src/cifar_main.py), which the
 * optimiser must do separately.
 */
export function priorBias(numClasses: number, prior = 1 / numClasses): Float32Array {
  checkCount("priorBias: numClasses", numClasses);
  if (!(prior > 0 && prior < 1)) {
    throw new RangeError(
      `priorBias: prior must lie in (0, 1), got ${prior}` +
        (numClasses === 1 ? " (1 / numClasses with one class; a sigmoid loss needs C >= 2)" : ""),
    );
  }
  return new Float32Array(numClasses).fill(-Math.log((1 - prior) / prior));
}
