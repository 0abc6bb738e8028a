/**
 * The baselines' losses as their authors compute them (test/reference/baselines.ts): Cui et
 * al.'s sigmoid focal loss (richardaecn/class-balanced-loss) and LDAM's weighted mean
 * (kaidic/LDAM-DRW), each as the engine runs it: the per-example loss op, then the backward
 * seed that carries the weights and the normalisation (w / |B| for Cui, w / sum w for LDAM).
 *
 * The per-example sigmoid loss goes through the op harness (forward, backward and JVP against
 * the float64 reference and central finite differences), at odd shapes, several gamma and at
 * logits of +-100; the whole objectives are then checked as scalars: value, gradient (against
 * the analytic reference and against FD of the author's formula at every coordinate) and the
 * directional derivative.
 */
import assert from "node:assert/strict";
import type { Gpu } from "../src/gpu/runtime.ts";
import { Tensor } from "../src/tensor.ts";
import { Ctx, Tape } from "../src/autograd/tape.ts";
import { classificationLoss, type LossOptions, normalizedWeights } from "../src/ops/loss.ts";
import * as ref from "./reference/mod.ts";
import * as base from "./reference/baselines.ts";
import { f32, gpuTest } from "./gpu_harness.ts";
import { type Arr, checkOp, expectClose, randn, report } from "./op_check.ts";

/** Class-balanced weights (1 - beta) / (1 - beta^n_c), normalised to sum C (all three codes). */
function cbWeights(counts: number[], beta = 0.9999): Float64Array {
  const raw = counts.map((n) => (1 - beta) / (1 - Math.pow(beta, n)));
  const sum = raw.reduce((a, b) => a + b, 0);
  return f32(raw.map((w) => (w / sum) * counts.length));
}

/** B labels drawn in proportion to `counts` (a long-tailed batch). */
function ltLabels(rng: ref.Rng, B: number, counts: number[]): Int32Array {
  const total = counts.reduce((a, b) => a + b, 0);
  return Int32Array.from({ length: B }, () => {
    let r = rng.int(total), c = 0;
    while (r >= counts[c]) r -= counts[c++];
    return c;
  });
}

/** Long-tailed class counts n_c = 500 * 100^(-c / (C - 1)). */
function ltCounts(C: number): number[] {
  return Array.from({ length: C }, (_, c) => Math.floor(500 * Math.pow(100, -c / (C - 1))));
}

// ------------------------------------------------------------------------ sigmoid focal, per example

const sigmoidCases = [
  { name: "sigmoid CE (gamma 0)", B: 13, C: 7, gamma: 0 },
  { name: "sigmoid focal gamma 1 (Cui's scripts)", B: 13, C: 7, gamma: 1 },
  { name: "sigmoid focal gamma 0.5", B: 5, C: 3, gamma: 0.5 },
  { name: "sigmoid focal gamma 2 B=67 C=10", B: 67, C: 10, gamma: 2 },
];

/** The op case of the per-example sigmoid loss on logits z. */
async function checkSigmoid(
  gpu: Gpu,
  rng: ref.Rng,
  label: string,
  z: Arr,
  labels: Int32Array,
  C: number,
  gamma: number,
) {
  const B = labels.length;
  const labelsT = Tensor.from(gpu, labels, [B], "u32");
  const G = (v: Arr) => base.sigmoidFocalGrad(v, labels, C, gamma);
  await checkOp(gpu, rng, {
    label,
    shapes: [[B, C]],
    inputs: [z],
    run: (ctx, [zt]) => classificationLoss(ctx, zt, labelsT, { form: "sigmoid", gamma }),
    f: (v) => base.sigmoidFocalPerExample(v[0], labels, C, gamma),
    vjp: (v, r) => [base.rowScale(G(v[0]), r, C)],
    jvp: (v, t) => (t[0] ? base.rowDot(G(v[0]), t[0], C) : new Float64Array(B)),
  });
  labelsT.release(gpu);
}

for (const sc of sigmoidCases) {
  gpuTest(`sigmoid form vs Cui's formula and FD: ${sc.name}`, async (gpu) => {
    const rng = new ref.Rng(150 + sc.B + sc.C + sc.gamma * 10);
    const z = randn(rng, sc.B * sc.C, 0, 3);
    await checkSigmoid(gpu, rng, `sigmoid ${sc.name}`, z, rng.intArray(sc.B, sc.C), sc.C, sc.gamma);
  });
}

for (const gamma of [0, 2]) {
  gpuTest(`sigmoid form at logits of +-100 stays finite and exact: gamma ${gamma}`, async (gpu) => {
    const rng = new ref.Rng(170 + gamma);
    const C = 5;
    // rows: confidently right, confidently wrong, mixed, moderate, near zero
    const z = f32([
      100,
      -100,
      -100,
      -100,
      -100,
      -100,
      100,
      100,
      -40,
      40,
      100,
      100,
      -100,
      15,
      -15,
      -30,
      30,
      -88.5,
      88.5,
      0,
      0.001,
      -0.001,
      1e-6,
      0,
      2,
    ]);
    const labels = Int32Array.from([0, 0, 1, 2, 4]);
    await checkSigmoid(gpu, rng, `sigmoid extreme gamma ${gamma}`, z, labels, C, gamma);
  });
}

gpuTest("sigmoid form: small losses keep their relative precision", async (gpu) => {
  // confident rows: loss ~ C * exp(-|z|), where a plain log(1 + x) in float32 loses it all
  const C = 4;
  const z = f32([12, -12, -12, -12, -15, 15, -15, -15, -20, -20, 20, -20, 30, -25, -20, -17]);
  const labels = Int32Array.from([0, 1, 2, 0]);
  const labelsT = Tensor.from(gpu, labels, [4], "u32");
  const zt = Tensor.from(gpu, z, [4, C]);
  for (const gamma of [0, 1]) {
    const ctx = new Ctx(gpu, new Tape());
    const got = await classificationLoss(ctx, zt, labelsT, { form: "sigmoid", gamma }).read(gpu);
    const want = base.sigmoidFocalPerExample(z, labels, C, gamma);
    ref.assertClose(got, want, 1e-5, 0, `sigmoid small losses gamma ${gamma}`);
    ctx.release();
  }
  labelsT.release(gpu);
  zt.release(gpu);
});

gpuTest("sigmoid form rejects LDAM's scale and margins", (gpu) => {
  const ctx = new Ctx(gpu, new Tape());
  const z = Tensor.from(gpu, new Float32Array(6), [2, 3]);
  const labels = Tensor.from(gpu, Int32Array.from([0, 2]), [2], "u32");
  const margins = Tensor.from(gpu, new Float32Array(3), [3]);
  for (const opts of [{ scale: 30 }, { margins }] as LossOptions[]) {
    assert.throws(
      () => classificationLoss(ctx, z, labels, { ...opts, form: "sigmoid" }),
      /sigmoid form takes no scale or margins/,
    );
  }
  ctx.release();
  for (const t of [z, labels, margins]) t.release(gpu);
  return Promise.resolve();
});

// ------------------------------------------------------------------------ whole objectives

/** Value, gradient and directional derivative of sum_i seed_i loss_i through the tape. */
async function weightedObjective(
  gpu: Gpu,
  z: Arr,
  shape: [number, number],
  labels: Int32Array,
  opts: LossOptions,
  makeSeed: (ctx: Ctx) => Tensor,
  tangent: Arr,
): Promise<{ value: number; grad: Float32Array; dir: number; seed: Float32Array }> {
  const tape = new Tape();
  const ctx = new Ctx(gpu, tape);
  const zt = Tensor.from(gpu, z, shape);
  zt.requiresGrad = true;
  const labelsT = Tensor.from(gpu, labels, [shape[0]], "u32");
  const l = classificationLoss(ctx, zt, labelsT, opts);
  const seedT = makeSeed(ctx);
  const [losses, seed] = [await l.read(gpu), await seedT.read(gpu)];
  const g = tape.backward(gpu, l, seedT, [zt]).get(zt)!;
  const grad = await g.read(gpu);
  g.release(gpu);
  const tt = Tensor.from(gpu, tangent, shape);
  const ldot = tape.jvp(gpu, new Map([[zt, tt]]), l)!;
  const ld = await ldot.read(gpu);
  ldot.release(gpu);
  ctx.release();
  for (const t of [zt, labelsT, tt]) t.release(gpu);
  return { value: ref.dot(seed, losses), grad, dir: ref.dot(seed, ld), seed };
}

/** Asserts value, gradient (analytic and FD at every coordinate) and directional derivative. */
function expectObjective(
  label: string,
  got: { value: number; grad: Float32Array; dir: number },
  f: (z: Float64Array) => number,
  analytic: Float64Array,
  z: Arr,
  tangent: Arr,
): void {
  expectClose(`${label}: value`, [got.value], [f(z)]);
  expectClose(`${label}: gradient vs analytic`, got.grad, analytic);
  const fd = ref.fdGradient(f, new Float64Array(z));
  expectClose(`${label}: gradient vs FD`, got.grad, fd, 2e-5, ref.maxAbs(analytic));
  const dir = ref.fdDerivative((s) => f(ref.axpy(z, s, tangent)));
  expectClose(`${label}: directional derivative vs FD`, [got.dir], [dir], 2e-5);
}

for (const gamma of [0, 1]) {
  gpuTest(`Cui's class-balanced sigmoid loss, seed w_y / B: gamma ${gamma}`, async (gpu) => {
    const rng = new ref.Rng(180 + gamma);
    const B = 13, C = 7;
    const classW = cbWeights(ltCounts(C));
    const z = randn(rng, B * C, 0, 3);
    const labels = rng.intArray(B, C);
    const tangent = randn(rng, B * C);
    const wB = f32(Array.from(labels, (y) => classW[y] / B));
    const got = await weightedObjective(
      gpu,
      z,
      [B, C],
      labels,
      { form: "sigmoid", gamma },
      (ctx) => {
        const seed = ctx.empty([B]);
        seed.upload(gpu, wB);
        return seed;
      },
      tangent,
    );
    const f = (v: Float64Array) => base.cuiFocalLoss(v, labels, C, classW, gamma);
    const G = base.rowScale(base.sigmoidFocalGrad(z, labels, C, gamma), wB, C);
    expectObjective(`cui sigmoid gamma ${gamma}`, got, f, G, z, tangent);
  });
}

gpuTest("LDAM weighted mean (s = 30, margins, CB weights): seed normalizedWeights", async (gpu) => {
  const rng = new ref.Rng(190);
  const B = 13, C = 7, s = 30;
  const counts = ltCounts(C);
  const classW = cbWeights(counts);
  // kaidic/LDAM-DRW losses.py: m_c = 1 / n_c^(1/4), rescaled so the largest is 0.5
  const raw = counts.map((n) => 1 / Math.pow(n, 0.25));
  const margins = f32(raw.map((m) => (m * 0.5) / Math.max(...raw)));
  const z = f32(rng.uniformArray(B * C, -1, 1)); // cosines
  const labels = ltLabels(rng, B, counts);
  const tangent = randn(rng, B * C);
  const w = f32(Array.from(labels, (y) => classW[y]));
  // the test must tell sum w from |B|: the batch-mean weight is far from 1
  const meanW = w.reduce((a, b) => a + b, 0) / B;
  assert.ok(Math.abs(meanW - 1) > 0.1, `batch-mean weight ${meanW} too close to 1`);
  const marginsT = Tensor.from(gpu, margins, [C]);
  const wT = Tensor.from(gpu, w, [B]);
  const got = await weightedObjective(
    gpu,
    z,
    [B, C],
    labels,
    { scale: s, margins: marginsT },
    (ctx) => normalizedWeights(gpu, wT, ctx.empty([B])),
    tangent,
  );
  const sumW = w.reduce((a, b) => a + b, 0);
  expectClose("ldam weighted mean: seed", got.seed, w.map((v) => v / sumW), 1e-6);
  const f = (v: Float64Array) => base.ldamWeightedMean(v, labels, C, classW, margins, s);
  const G = base.ldamWeightedMeanGrad(z, labels, C, classW, margins, s);
  expectObjective("ldam weighted mean", got, f, G, z, tangent);
  marginsT.release(gpu);
  wT.release(gpu);
});

gpuTest("normalizedWeights: fixed order, zero sum gives zeros, sizes checked", async (gpu) => {
  const rng = new ref.Rng(191);
  const n = 129;
  const w = Tensor.from(gpu, f32(rng.uniformArray(n, 0.01, 5)), [n]);
  const a = await normalizedWeights(gpu, w, Tensor.empty(gpu, [n])).read(gpu);
  const b = await normalizedWeights(gpu, w, Tensor.empty(gpu, [n])).read(gpu);
  assert.deepEqual(a, b, "two runs differ");
  const zeros = Tensor.from(gpu, new Float32Array(4), [4]);
  assert.deepEqual([...(await normalizedWeights(gpu, zeros, Tensor.empty(gpu, [4])).read(gpu))], [
    0,
    0,
    0,
    0,
  ]);
  assert.throws(() => normalizedWeights(gpu, w, Tensor.empty(gpu, [n - 1])), /one size/);
  w.release(gpu);
  zeros.release(gpu);
});

gpuTest("report of the worst errors of the baselines' checks", () => {
  report("");
  return Promise.resolve();
});
