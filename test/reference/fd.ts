/**
 * Central finite-difference helpers and float64 comparisons for checking derivatives.
 */

/** Inner product of two equal-length arrays. */
export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`dot: length ${a.length} != ${b.length}`);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** Euclidean norm. */
export function norm2(a: ArrayLike<number>): number {
  return Math.sqrt(dot(a, a));
}

/** Maximum absolute value (0 for an empty array). */
export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/** Relative error ||a - b|| / max(||b||, tiny). */
export function relError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`relError: length ${a.length} != ${b.length}`);
  let d = 0;
  for (let i = 0; i < a.length; i++) d += (a[i] - b[i]) ** 2;
  return Math.sqrt(d) / Math.max(norm2(b), 1e-300);
}

/**
 * Central-difference gradient of a scalar function, perturbing x in place (x is restored).
 * With `indices`, only those coordinates are computed (others stay 0).
 */
export function fdGradient(
  f: (x: Float64Array) => number,
  x: Float64Array,
  h = 1e-6,
  indices?: ArrayLike<number>,
): Float64Array {
  const g = new Float64Array(x.length);
  const n = indices ? indices.length : x.length;
  for (let k = 0; k < n; k++) {
    const i = indices ? indices[k] : k;
    const x0 = x[i];
    x[i] = x0 + h;
    const fp = f(x);
    x[i] = x0 - h;
    const fm = f(x);
    x[i] = x0;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

/** Central-difference derivative of a scalar function of one variable at 0. */
export function fdDerivative(f: (s: number) => number, h = 1e-6): number {
  return (f(h) - f(-h)) / (2 * h);
}

/** Central-difference derivative at 0 of a vector-valued function of one variable. */
export function fdDerivativeVec(f: (s: number) => ArrayLike<number>, h = 1e-6): Float64Array {
  const p = f(h);
  const m = f(-h);
  const d = new Float64Array(p.length);
  for (let i = 0; i < p.length; i++) d[i] = (p[i] - m[i]) / (2 * h);
  return d;
}

/** x + s * t as a new array (t null means zero). */
export function axpy(x: Float64Array, s: number, t: Float64Array | null): Float64Array {
  const y = new Float64Array(x);
  if (t) { for (let i = 0; i < y.length; i++) y[i] += s * t[i]; }
  return y;
}

/**
 * Elementwise check |actual - expected| <= atol + rtol * |expected|. The default atol is
 * rtol * max|expected|, so entries tiny relative to the array's scale are judged on that scale.
 * Throws an Error naming the worst entry.
 */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  rtol = 1e-6,
  atol?: number,
  label = "",
): void {
  if (actual.length !== expected.length) {
    throw new Error(`${label}: length ${actual.length} != ${expected.length}`);
  }
  const a0 = atol ?? rtol * maxAbs(expected);
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < actual.length; i++) {
    const diff = Math.abs(actual[i] - expected[i]);
    const allowed = a0 + rtol * Math.abs(expected[i]);
    if (!(diff <= allowed)) {
      const excess = Number.isFinite(diff) ? diff / Math.max(allowed, 1e-300) : Infinity;
      if (worst < 0 || excess > worstExcess) {
        worst = i;
        worstExcess = excess;
      }
    }
  }
  if (worst >= 0) {
    throw new Error(
      `${label}: mismatch at [${worst}]: actual ${actual[worst]} expected ${expected[worst]} ` +
        `(rtol ${rtol}, atol ${a0}, relError ${relError(actual, expected).toExponential(3)})`,
    );
  }
}
