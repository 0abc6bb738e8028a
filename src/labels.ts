/**
 * The one test of a class label, shared by every place that checks labels on the host (data
 * files and splits, the engine's batches, evaluation): each names the label in its own words.
 */

/**
 * The index of the first of the first `n` (default all) `labels` that is not a class of
 * [0, classes), an integer in that range; -1 when they all are.
 */
export function firstBadLabel(
  labels: ArrayLike<number>,
  classes: number,
  n: number = labels.length,
): number {
  for (let i = 0; i < n; i++) {
    const y = labels[i];
    if (!(Number.isInteger(y) && y >= 0 && y < classes)) return i;
  }
  return -1;
}
