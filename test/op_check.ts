/**
 * The op-checking harness shared by the op tests: forward values against the float64
 * reference, backward through the tape (vs the reference VJP and vs central finite differences
 * of the reference at sampled coordinates) and JVP through the tape (all tangents, and subsets;
 * vs the reference JVP and vs FD of the reference along the tangent).
 */
import assert from "node:assert/strict";
import type { Gpu } from "../src/gpu/runtime.ts";
import { Tensor } from "../src/tensor.ts";
import { Ctx, Tape } from "../src/autograd/tape.ts";
import * as ref from "./reference/mod.ts";
import { f32, maxAbsErr } from "./gpu_harness.ts";

/** Default max-abs-normalised tolerance of float32 kernels against the float64 reference. */
export const TOL = 2e-5;
/** Central-difference step on the float64 reference. */
const H = 1e-6;

/** Float64 data of the reference. */
export type Arr = Float64Array;

// ------------------------------------------------------------------------------ harness

/** Float32-representable normal draws. */
export function randn(rng: ref.Rng, n: number, mean = 0, std = 1): Arr {
  return f32(rng.normalArray(n, mean, std));
}

/** Largest error seen per test, for the report. */
const worst = new Map<string, number>();
/** Asserts a max-abs-normalised error <= tol and remembers the worst one per label prefix. */
export function expectClose(
  label: string,
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  tol = TOL,
  scale?: number,
): number {
  const err = maxAbsErr(got, want, scale);
  const key = label.split(": ")[0];
  worst.set(key, Math.max(worst.get(key) ?? 0, err));
  assert.ok(err <= tol, `${label}: max-abs-normalised error ${err.toExponential(3)} > ${tol}`);
  return err;
}

/** Prints the worst errors of labels starting with `prefix`. */
export function report(prefix: string): void {
  const lines = [...worst].filter(([k]) => k.startsWith(prefix)).map(([k, v]) =>
    `${k}: ${v.toExponential(2)}`
  );
  console.log(lines.join("\n"));
}

/** One differentiable op: its inputs, the GPU call, and the reference's three functions. */
export interface OpCase {
  label: string;
  shapes: number[][];
  inputs: Arr[];
  run(ctx: Ctx, ts: Tensor[]): Tensor;
  f(xs: Arr[]): ArrayLike<number>;
  vjp(xs: Arr[], r: Arr): (Arr | null)[];
  jvp(xs: Arr[], ts: (Arr | null)[]): ArrayLike<number>;
  /** Input subsets whose tangents are tested alone (default: each input alone). */
  jvpSubsets?: number[][];
  tol?: number;
  /** Called with the live tape state after forward, before backward (extra checks). */
  afterForward?(gpu: Gpu): Promise<void>;
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  return ref.dot(a, b);
}

/** Forward, backward (reference + FD) and JVP (reference + FD) of one op case. */
export async function checkOp(gpu: Gpu, rng: ref.Rng, c: OpCase): Promise<void> {
  const tol = c.tol ?? TOL;
  const xs = c.inputs;
  const ts = xs.map((x, i) => {
    const t = Tensor.from(gpu, x, c.shapes[i]);
    t.requiresGrad = true;
    return t;
  });
  const tape = new Tape();
  const ctx = new Ctx(gpu, tape);
  const y = c.run(ctx, ts);
  const want = c.f(xs);
  expectClose(`${c.label}: forward`, await y.read(gpu), want, tol);
  if (c.afterForward) await c.afterForward(gpu);

  // backward with a random seed of the output's shape
  const r = randn(rng, y.size);
  const seed = Tensor.from(gpu, r, y.shape);
  const grads = tape.backward(gpu, y, seed, ts);
  const refGrads = c.vjp(xs, r);
  for (let k = 0; k < xs.length; k++) {
    const g = await grads.get(ts[k])!.read(gpu);
    const rg = refGrads[k]!;
    expectClose(`${c.label}: backward[${k}] vs ref`, g, rg, tol);
    // FD of <r, f(x)> at a few coordinates of input k
    const idx = [0, xs[k].length - 1, rng.int(xs[k].length), rng.int(xs[k].length)];
    const fd = ref.fdGradient(() => dot(r, c.f(xs)), xs[k], H, idx);
    expectClose(
      `${c.label}: backward[${k}] vs FD`,
      idx.map((i) => g[i]),
      idx.map((i) => fd[i]),
      tol,
      ref.maxAbs(rg),
    );
  }
  for (const g of grads.values()) g.release(gpu);

  // JVP: every input's tangent at once, then subsets
  const tans = xs.map((x) => randn(rng, x.length));
  const tanTs = tans.map((t, i) => Tensor.from(gpu, t, c.shapes[i]));
  const subsets = [xs.map((_, i) => i)];
  if (xs.length > 1) subsets.push(...(c.jvpSubsets ?? xs.map((_, i) => [i])));
  for (const subset of subsets) {
    const sel = tans.map((t, i) => (subset.includes(i) ? t : null));
    const map = new Map<Tensor, Tensor>(subset.map((i) => [ts[i], tanTs[i]]));
    const out = tape.jvp(gpu, map, y);
    assert.ok(out, `${c.label}: jvp [${subset}] returned null`);
    const got = await out.read(gpu);
    out.release(gpu);
    const rj = c.jvp(xs, sel);
    expectClose(`${c.label}: jvp[${subset}] vs ref`, got, rj, tol);
    const fd = ref.fdDerivativeVec(
      (s) => c.f(xs.map((x, k) => (sel[k] ? ref.axpy(x, s, sel[k]) : x))),
      H,
    );
    expectClose(`${c.label}: jvp[${subset}] vs FD`, got, fd, tol);
  }
  ctx.release();
  for (const t of [...ts, ...tanTs, seed]) t.release(gpu);
}

/** A reference tensor from a shape and data. */
export const T = (shape: number[], data: Arr): ref.Tensor => ({ shape, data });
