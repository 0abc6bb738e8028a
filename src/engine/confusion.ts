/**
 * Confusion matrices as a run records them. Up to {@linkcode DENSE_CONFUSION_CLASSES} classes:
 * dense rows `confusion[true][predicted]` (the form of every run before the sparse one, and the
 * one that reads best in summary.json). Above it: the nonzero cells only, `[true, predicted,
 * count]` sorted by (true, predicted), at most one per evaluated image, where the dense matrix
 * of iNaturalist 2018 (8142 classes) holds 66 million numbers: pretty-printed, that is past the
 * longest string V8 builds. Readers take either form, at any number of classes (a checkpoint
 * from before the sparse form holds dense rows at every size).
 */

/** The most classes whose confusion matrix a run records dense; above it, sparse. */
export const DENSE_CONFUSION_CLASSES = 100;

/** The nonzero cells of a `classes x classes` confusion matrix. */
export interface SparseConfusion {
  /** Number of classes C: true and predicted classes lie in [0, C). */
  classes: number;
  /** `[true, predicted, count]` of every nonzero cell, sorted by true, then predicted class. */
  entries: [number, number, number][];
}

/** A confusion matrix in either recorded form: dense rows, or {@linkcode SparseConfusion}. */
export type Confusion = number[][] | SparseConfusion;

/** Whether `c` is the sparse form. */
export function isSparseConfusion(c: Confusion): c is SparseConfusion {
  return !Array.isArray(c);
}

/** Number of classes of `c`. */
export function confusionClasses(c: Confusion): number {
  return isSparseConfusion(c) ? c.classes : c.length;
}

/** The sparse form of `c` (a new object). */
export function sparseConfusion(c: Confusion): SparseConfusion {
  if (isSparseConfusion(c)) {
    return { classes: c.classes, entries: c.entries.map(([t, p, n]) => [t, p, n]) };
  }
  const entries: [number, number, number][] = [];
  c.forEach((row, t) => row.forEach((n, p) => n !== 0 && entries.push([t, p, n])));
  return { classes: c.length, entries };
}

/** The dense rows of `c`: C x C numbers, for small C (the report's heatmaps). */
export function denseConfusion(c: Confusion): number[][] {
  if (!isSparseConfusion(c)) return c.map((row) => [...row]);
  const rows = Array.from({ length: c.classes }, () => new Array<number>(c.classes).fill(0));
  for (const [t, p, n] of c.entries) rows[t][p] = n;
  return rows;
}

/**
 * The form a run records for `classes` classes: dense up to {@linkcode DENSE_CONFUSION_CLASSES},
 * else sparse; `entries` are nonzero `[true, predicted, count]` cells sorted by (true, predicted).
 */
export function recordedConfusion(
  classes: number,
  entries: [number, number, number][],
): Confusion {
  const sparse = { classes, entries };
  return classes <= DENSE_CONFUSION_CLASSES ? denseConfusion(sparse) : sparse;
}

/** `c` in the form a run of its classes records now ({@linkcode recordedConfusion}). */
export function canonicalConfusion(c: Confusion): Confusion {
  const s = sparseConfusion(c);
  return recordedConfusion(s.classes, s.entries);
}

/** Examples of each true class: the row sums of `c` (C numbers). */
export function confusionRowTotals(c: Confusion): number[] {
  if (!isSparseConfusion(c)) return c.map((row) => row.reduce((a, b) => a + b, 0));
  const totals = new Array<number>(c.classes).fill(0);
  for (const [t, , n] of c.entries) totals[t] += n;
  return totals;
}

const isCount = (v: unknown, min: number): v is number =>
  typeof v === "number" && Number.isSafeInteger(v) && v >= min;

/**
 * `v` (parsed JSON) as a {@linkcode Confusion}, or an error saying what is wrong with it: dense
 * rows must be square with counts that are non-negative integers; sparse entries must be
 * `[true, predicted, count]` with classes in range, positive counts, sorted and unique by
 * (true, predicted). With `classes`, the matrix must have that many.
 */
export function checkConfusion(v: unknown, classes?: number): Confusion {
  const fail = (what: string): never => {
    throw new Error(`confusion matrix: ${what}`);
  };
  let c: Confusion;
  if (Array.isArray(v)) {
    v.forEach((row, t) => {
      if (!Array.isArray(row) || row.length !== v.length) {
        fail(`row ${t} is not a row of ${v.length} counts`);
      }
      if (!row.every((n: unknown) => isCount(n, 0))) {
        fail(`row ${t} holds a value that is not a count`);
      }
    });
    c = v as number[][];
  } else if (typeof v === "object" && v !== null) {
    const s = v as Partial<SparseConfusion>;
    if (!isCount(s.classes, 1)) fail(`"classes" is ${JSON.stringify(s.classes)}`);
    if (!Array.isArray(s.entries)) fail(`"entries" is not a list`);
    const C = s.classes!;
    let previous = -1;
    s.entries!.forEach((e, i) => {
      const ok = Array.isArray(e) && e.length === 3 && isCount(e[0], 0) && e[0] < C &&
        isCount(e[1], 0) && e[1] < C && isCount(e[2], 1);
      if (!ok) fail(`entry ${i} is ${JSON.stringify(e)}, not [true, predicted, count > 0]`);
      const at = e[0] * C + e[1];
      if (at <= previous) fail(`entry ${i} is out of (true, predicted) order or repeated`);
      previous = at;
    });
    c = s as SparseConfusion;
  } else {
    return fail(`${JSON.stringify(v)} is neither dense rows nor {classes, entries}`);
  }
  if (classes !== undefined && confusionClasses(c) !== classes) {
    fail(`${confusionClasses(c)} classes, expected ${classes}`);
  }
  return c;
}
