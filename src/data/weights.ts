/**
 * Class-balancing weights from the "effective number of samples" (Cui et al., CVPR 2019).
 */

/**
 * Weights `w_c = (1 - beta) / (1 - beta^n_c)`, normalised so they sum to C (the number of
 * classes). Classes with `n_c = 0` get weight 0 (the others still sum to C).
 * `beta` in [0, 1); the default 0.9999 suits ~10^4 images per class.
 */
export function effectiveNumberWeights(
  counts: ArrayLike<number>,
  beta = 0.9999,
): Float64Array {
  if (!(beta >= 0 && beta < 1)) throw new RangeError(`beta must be in [0, 1), got ${beta}`);
  const C = counts.length;
  const w = new Float64Array(C);
  let sum = 0;
  for (let c = 0; c < C; c++) {
    const n = counts[c];
    if (n < 0) throw new RangeError(`class ${c} has negative count ${n}`);
    // 1 - beta^n computed as -expm1(n * log(beta)) to keep precision for beta near 1.
    w[c] = n === 0 ? 0 : (1 - beta) / -Math.expm1(n * Math.log(beta));
    sum += w[c];
  }
  if (sum > 0) { for (let c = 0; c < C; c++) w[c] *= C / sum; }
  return w;
}

/**
 * The effective number `(1 - beta^n) / (1 - beta)` of `n` samples.
 */
export function effectiveNumber(n: number, beta: number): number {
  return -Math.expm1(n * Math.log(beta)) / (1 - beta);
}

/**
 * `beta = (n - 1) / n`, the choice that makes the effective number saturate at `n` (use e.g.
 * the training-set size or the head-class count). Requires `n >= 1`.
 */
export function betaForCount(n: number): number {
  if (!(n >= 1)) throw new RangeError(`n must be >= 1, got ${n}`);
  return (n - 1) / n;
}
