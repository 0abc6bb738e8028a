/**
 * The layer ops beyond the ResNet's (pooling, reshape/flatten, regression losses, channel bias,
 * dropout, sigmoid/tanh, and batchnorm on [N, C] through reshape) against the float64 reference
 * and central finite differences, through the shared harness of test/op_check.ts. Shapes are
 * awkward on purpose: batch 3 and 5, 5x7 and 7x9 maps, odd channel counts, windows that leave
 * rows over, element counts above one workgroup.
 */
import assert from "node:assert/strict";
import { Tensor } from "../src/tensor.ts";
import { Ctx, Tape } from "../src/autograd/tape.ts";
import { avgPool2d, maxPool2d, type PoolOptions } from "../src/ops/pool.ts";
import { flatten, reshape } from "../src/ops/shape.ts";
import { l1Loss, mseLoss } from "../src/ops/regression.ts";
import { channelBias } from "../src/ops/bias.ts";
import { dropout } from "../src/ops/dropout.ts";
import { sigmoid, tanh } from "../src/ops/activation.ts";
import { batchNorm } from "../src/ops/batchnorm.ts";
import { conv2d } from "../src/ops/conv.ts";
import { linear } from "../src/ops/linear.ts";
import * as ref from "./reference/mod.ts";
import { f32, gpuTest } from "./gpu_harness.ts";
import { type Arr, checkOp, randn, report, T } from "./op_check.ts";

// ------------------------------------------------------------------------------ pooling

const poolCases: { shape: number[]; o: PoolOptions }[] = [
  { shape: [3, 2, 5, 7], o: { kernel: 2 } }, // stride = kernel, a row and a column left over
  { shape: [3, 2, 5, 7], o: { kernel: 3, stride: 2, pad: 1 } },
  { shape: [3, 2, 5, 7], o: { kernel: 3, stride: 1, pad: 1 } }, // each input in up to 9 windows
  { shape: [2, 3, 7, 9], o: { kernel: 2, stride: 1, pad: 1 } },
  { shape: [5, 3, 17, 13], o: { kernel: 3, stride: 2, pad: 0 } },
];

for (const { shape, o } of poolCases) {
  const full = { kernel: o.kernel, stride: o.stride ?? o.kernel, pad: o.pad ?? 0 };
  const n = ref.numel(shape);
  gpuTest(`maxPool2d vs reference and FD: [${shape}] ${JSON.stringify(o)}`, async (gpu) => {
    const rng = new ref.Rng(100 + n + full.stride * 7 + full.pad);
    const fwd = (v: Arr[]) => ref.maxPool2dForward(T(shape, v[0]), full);
    await checkOp(gpu, rng, {
      label: `maxPool2d [${shape}] ${JSON.stringify(o)}`,
      shapes: [shape],
      inputs: [randn(rng, n)],
      run: (ctx, [x]) => maxPool2d(ctx, x, o),
      f: (v) => fwd(v).y.data,
      vjp: (v, r) => {
        const { y, argmax } = fwd(v);
        return [ref.maxPool2dBackward(shape, argmax, T(y.shape, r)).data];
      },
      jvp: (v, t) => {
        const { y, argmax } = fwd(v);
        return ref.maxPool2dJvp(y.shape, argmax, t[0] && T(shape, t[0])).data;
      },
    });
  });
  gpuTest(`avgPool2d vs reference and FD: [${shape}] ${JSON.stringify(o)}`, async (gpu) => {
    const rng = new ref.Rng(200 + n + full.stride * 7 + full.pad);
    const yShape = ref.avgPool2dForward(T(shape, new Float64Array(n)), full).shape;
    await checkOp(gpu, rng, {
      label: `avgPool2d [${shape}] ${JSON.stringify(o)}`,
      shapes: [shape],
      inputs: [randn(rng, n)],
      run: (ctx, [x]) => avgPool2d(ctx, x, o),
      f: (v) => ref.avgPool2dForward(T(shape, v[0]), full).data,
      vjp: (_, r) => [ref.avgPool2dBackward(shape, full, T(yShape, r)).data],
      jvp: (_, t) => ref.avgPool2dJvp(shape, full, t[0] && T(shape, t[0])).data,
    });
  });
}

/** Forward and input gradient (seed `seed`) of one op on host data. */
async function runWithGrad(
  op: (ctx: Ctx, x: Tensor) => Tensor,
  gpu: Parameters<Parameters<typeof gpuTest>[1]>[0],
  x: number[],
  shape: number[],
  seed: number[],
): Promise<{ y: number[]; dx: number[] }> {
  const xt = Tensor.from(gpu, x, shape);
  xt.requiresGrad = true;
  const ctx = new Ctx(gpu, new Tape());
  const y = op(ctx, xt);
  const st = Tensor.from(gpu, seed, y.shape);
  const g = ctx.tape!.backward(gpu, y, st, [xt]).get(xt)!;
  const out = { y: [...await y.read(gpu)], dx: [...await g.read(gpu)] };
  ctx.release();
  for (const t of [xt, st, g]) t.release(gpu);
  return out;
}

gpuTest(
  "maxPool2d: ties go to the first element in scan order; padding never wins",
  async (gpu) => {
    // a 4x4 plane of equal values: each 2x2 window's gradient lands on its top-left element
    const ties = await runWithGrad(
      (c, x) => maxPool2d(c, x, { kernel: 2 }),
      gpu,
      [
        ...new Array(16).fill(3),
      ],
      [1, 1, 4, 4],
      [1, 2, 3, 4],
    );
    assert.deepEqual(ties.y, [3, 3, 3, 3]);
    assert.deepEqual(ties.dx, [1, 0, 2, 0, 0, 0, 0, 0, 3, 0, 4, 0, 0, 0, 0, 0]);
    // a negative plane with padding: the maxima are the (negative) values, not the padding's 0
    const neg = [-5, -4, -3, -2, -1, -6];
    const padded = await runWithGrad(
      (c, x) => maxPool2d(c, x, { kernel: 2, stride: 2, pad: 1 }),
      gpu,
      neg,
      [1, 1, 2, 3],
      [1, 1, 1, 1],
    );
    assert.deepEqual(padded.y, [-5, -3, -2, -1]);
    assert.deepEqual(padded.dx, [1, 0, 1, 1, 1, 0]);
    // windows overlap (stride 1): one maximum collects the gradient of every window it wins
    const overlap = await runWithGrad(
      (c, x) => maxPool2d(c, x, { kernel: 2, stride: 1 }),
      gpu,
      [0, 0, 0, 0, 9, 0, 0, 0, 0],
      [1, 1, 3, 3],
      [1, 10, 100, 1000],
    );
    assert.deepEqual(overlap.y, [9, 9, 9, 9]);
    assert.deepEqual(overlap.dx, [0, 0, 0, 0, 1111, 0, 0, 0, 0]);
  },
);

gpuTest("pooling refuses bad windows and shapes by name", (gpu) => {
  const ctx = new Ctx(gpu, null);
  const x = Tensor.empty(gpu, [1, 1, 3, 3]);
  assert.throws(() => maxPool2d(ctx, x, { kernel: 2, pad: 2 }), /maxPool2d: .*pad <= kernel \/ 2/);
  assert.throws(() => avgPool2d(ctx, x, { kernel: 0 }), /avgPool2d: kernel 0/);
  assert.throws(() => maxPool2d(ctx, x, { kernel: 5 }), /does not fit \[3, 3\]/);
  assert.throws(() => avgPool2d(ctx, Tensor.empty(gpu, [3, 3]), { kernel: 2 }), /\[N, C, H, W\]/);
  x.release(gpu);
  return Promise.resolve();
});

// ------------------------------------------------------------------------------ reshape

gpuTest(
  "reshape and flatten vs reference and FD; Tensor.reshape refuses grad tensors",
  async (gpu) => {
    const rng = new ref.Rng(300);
    const shape = [3, 5, 7, 9], n = ref.numel(shape);
    await checkOp(gpu, rng, {
      label: "flatten",
      shapes: [shape],
      inputs: [randn(rng, n)],
      run: (ctx, [x]) => {
        const y = flatten(ctx, x);
        assert.deepEqual(y.shape, [3, 315]);
        return y;
      },
      f: (v) => v[0],
      vjp: (_, r) => [r],
      jvp: (_, t) => t[0]!,
    });
    // a reshape between two ops: the gradient and the tangent come back with the right shapes
    // and values (sigmoid's derivative depends on position)
    await checkOp(gpu, rng, {
      label: "reshape",
      shapes: [shape],
      inputs: [randn(rng, n)],
      run: (ctx, [x]) => {
        const y = reshape(ctx, sigmoid(ctx, x), [-1, 9, 5]);
        assert.deepEqual(y.shape, [21, 9, 5]);
        return y;
      },
      f: (v) => v[0].map(ref.sigmoid),
      vjp: (v, r) => [r.map((ri, i) => ri * ref.sigmoid(v[0][i]) * (1 - ref.sigmoid(v[0][i])))],
      jvp: (v, t) => t[0]!.map((ti, i) => ti * ref.sigmoid(v[0][i]) * (1 - ref.sigmoid(v[0][i]))),
    });
    const ctx = new Ctx(gpu, null);
    const x = Tensor.empty(gpu, [6, 5]);
    assert.throws(() => reshape(ctx, x, [4, -1]), /cannot view \[6,5\] as \[4,-1\]/);
    assert.throws(() => reshape(ctx, x, [-1, -1]), /at most one dimension may be -1/);
    assert.throws(() => reshape(ctx, x, [7, 5]), /30 elements, the new shape holds 35/);
    assert.equal(x.reshape([30]).size, 30); // a raw view of a tensor outside autograd
    x.requiresGrad = true;
    assert.throws(() => x.reshape([30]), /would stop its gradient; use reshape\(ctx, x, shape\)/);
    x.release(gpu);
  },
);

gpuTest("reshape's gradient outlives the seed and ctx it came from", async (gpu) => {
  const x = Tensor.from(gpu, [1, 2, 3, 4, 5, 6], [2, 3]);
  x.requiresGrad = true;
  const ctx = new Ctx(gpu, new Tape());
  const y = reshape(ctx, x, [3, 2]);
  const seed = Tensor.from(gpu, [6, 5, 4, 3, 2, 1], [3, 2]);
  const g = ctx.tape!.backward(gpu, y, seed, [x]).get(x)!;
  assert.deepEqual(g.shape, [2, 3]);
  seed.release(gpu);
  ctx.release();
  // whatever reuses the released buffers must not change the gradient
  const scratch = [Tensor.from(gpu, new Array(6).fill(-1), [6]), Tensor.empty(gpu, [3, 2])];
  assert.deepEqual([...await g.read(gpu)], [6, 5, 4, 3, 2, 1]);
  for (const t of [x, g, ...scratch]) t.release(gpu);
});

// ------------------------------------------------------------------------------ regression losses

for (const kind of ["mse", "l1"] as const) {
  for (const shape of [[5, 3, 7], [67, 3]]) {
    gpuTest(`${kind}Loss vs reference and FD: [${shape}]`, async (gpu) => {
      const rng = new ref.Rng(400 + ref.numel(shape) + (kind === "l1" ? 1 : 0));
      const n = ref.numel(shape);
      const pred = randn(rng, n);
      const target = randn(rng, n);
      // equal entries: L1's subgradient 0 there (FD agrees: |h| - |-h| = 0)
      for (let i = 0; i < n; i += 7) target[i] = pred[i];
      const targetT = Tensor.from(gpu, target, shape);
      const tgt = T(shape, target);
      const loss = kind === "mse" ? mseLoss : l1Loss;
      await checkOp(gpu, rng, {
        label: `${kind}Loss [${shape}]`,
        shapes: [shape],
        inputs: [pred],
        run: (ctx, [p]) => loss(ctx, p, targetT),
        f: (v) => ref.regressionForward(kind, T(shape, v[0]), tgt),
        vjp: (v, w) => [ref.regressionBackward(kind, T(shape, v[0]), tgt, w).data],
        jvp: (v, t) => ref.regressionJvp(kind, T(shape, v[0]), tgt, t[0] && T(shape, t[0])),
      });
      targetT.release(gpu);
    });
  }
}

gpuTest("regression losses refuse mismatched shapes and a target that requires grad", (gpu) => {
  const ctx = new Ctx(gpu, null);
  const p = Tensor.empty(gpu, [4, 3]), t = Tensor.empty(gpu, [4, 2]);
  assert.throws(() => mseLoss(ctx, p, t), /mseLoss: pred and target must be f32 \[B, \.\.\.\]/);
  const t2 = Tensor.empty(gpu, [4, 3]);
  t2.requiresGrad = true;
  assert.throws(() => l1Loss(ctx, p, t2), /l1Loss: the target is a constant/);
  for (const x of [p, t, t2]) x.release(gpu);
  return Promise.resolve();
});

// ------------------------------------------------------------------------------ channel bias

for (const shape of [[7, 5], [3, 17, 5, 7], [2, 3, 300]]) {
  gpuTest(`channelBias vs reference and FD: [${shape}]`, async (gpu) => {
    const rng = new ref.Rng(500 + ref.numel(shape));
    const C = shape[1];
    await checkOp(gpu, rng, {
      label: `channelBias [${shape}]`,
      shapes: [shape, [C]],
      inputs: [randn(rng, ref.numel(shape)), randn(rng, C)],
      run: (ctx, [x, b]) => channelBias(ctx, x, b),
      f: (v) => ref.channelBiasForward(T(shape, v[0]), v[1]).data,
      vjp: (_, r) => {
        const g = ref.channelBiasBackward(T(shape, r));
        return [g.dx.data, g.db];
      },
      jvp: (_, t) => ref.channelBiasJvp(shape, t[0] && T(shape, t[0]), t[1]).data,
    });
  });
}

// ------------------------------------------------------------------------------ dropout

gpuTest("dropout vs reference and FD: the hashed mask, scaled by 1 / (1 - p)", async (gpu) => {
  const rng = new ref.Rng(600);
  const shape = [3, 5, 7, 9], n = ref.numel(shape);
  const p = 0.3, seed = 12345;
  const keep = Array.from({ length: n }, (_, i) => ref.dropoutKeep(seed, i, p));
  const scale = Math.fround(1 / (1 - p));
  const masked = (v: Arr) => v.map((x, i) => (keep[i] ? x * scale : 0));
  await checkOp(gpu, rng, {
    label: "dropout",
    shapes: [shape],
    inputs: [randn(rng, n)],
    run: (ctx, [x]) => dropout(ctx, x, p, seed),
    f: (v) => masked(v[0]),
    vjp: (_, r) => [masked(r)],
    jvp: (_, t) => masked(t[0]!),
  });
});

gpuTest(
  "dropout: the mask's rate, its dependence on the seed, p = 0 and bad input",
  async (gpu) => {
    const n = 100_003;
    const ctx = new Ctx(gpu, null);
    const ones = Tensor.from(gpu, new Float32Array(n).fill(1), [n]);
    const mask = async (
      p: number,
      seed: number,
    ) => [...await dropout(ctx, ones, p, seed).read(gpu)];
    for (const p of [0.1, 0.5, 0.9]) {
      const m = await mask(p, 7);
      const dropped = m.filter((v) => v === 0).length / n;
      assert.ok(Math.abs(dropped - p) < 0.01, `p = ${p}: dropped ${dropped}`);
      const kept = m.filter((v) => v !== 0);
      assert.ok(kept.every((v) => v === Math.fround(1 / (1 - p))), "kept values scaled by 1/(1-p)");
      // the GPU's mask is the reference hash, bit for bit
      m.forEach((v, i) => assert.equal(v !== 0, ref.dropoutKeep(7, i, p), `element ${i}`));
    }
    const a = await mask(0.5, 1), b = await mask(0.5, 1), c = await mask(0.5, 2);
    assert.deepEqual(a, b, "same seed, same mask");
    const agree = a.filter((v, i) => v === c[i]).length / n;
    assert.ok(Math.abs(agree - 0.5) < 0.01, `masks of two seeds agree on ${agree} of elements`);
    // neighbouring elements are independent: P(both kept) = 1/4
    const pairs = a.slice(1).filter((v, i) => v !== 0 && a[i] !== 0).length / (n - 1);
    assert.ok(Math.abs(pairs - 0.25) < 0.01, `adjacent pairs both kept: ${pairs}`);
    assert.equal(dropout(ctx, ones, 0, 3), ones, "p = 0 is the identity");
    assert.throws(
      () => dropout(ctx, ones, 1, 3),
      /dropout: p = 1, expected a probability in \[0, 1\)/,
    );
    assert.throws(
      () => dropout(ctx, ones, 0.5, -1),
      /seed = -1, expected an integer in \[0, 2\^32\)/,
    );
    ctx.release();
    ones.release(gpu);
  },
);

// ------------------------------------------------------------------------------ activations

for (const act of ["sigmoid", "tanh"] as const) {
  gpuTest(`${act} vs reference and FD`, async (gpu) => {
    const rng = new ref.Rng(700 + act.length);
    const shape = [3, 5, 7];
    const n = ref.numel(shape);
    const fn = act === "sigmoid" ? ref.sigmoid : Math.tanh;
    const slope = (y: number) => (act === "sigmoid" ? y * (1 - y) : 1 - y * y);
    await checkOp(gpu, rng, {
      label: act,
      shapes: [shape],
      inputs: [randn(rng, n, 0, 3)],
      run: (ctx, [x]) => (act === "sigmoid" ? sigmoid : tanh)(ctx, x),
      f: (v) => v[0].map(fn),
      vjp: (v, r) => [r.map((ri, i) => ri * slope(fn(v[0][i])))],
      jvp: (v, t) => t[0]!.map((ti, i) => ti * slope(fn(v[0][i]))),
    });
    // extreme inputs stay finite and saturate; small ones keep their digits
    const xs = f32([-1000, -90, -30, -1e-3, -1e-7, 0, 1e-7, 1e-3, 0.49, 0.51, 30, 90, 1000]);
    const x = Tensor.from(gpu, xs, [xs.length]);
    const ctx = new Ctx(gpu, null);
    const got = await (act === "sigmoid" ? sigmoid : tanh)(ctx, x).read(gpu);
    got.forEach((g, i) => {
      const want = fn(xs[i]);
      assert.ok(
        Math.abs(g - want) <= 1e-7 + 1e-6 * Math.abs(want),
        `${act}(${xs[i]}) = ${g}, want ${want}`,
      );
    });
    ctx.release();
    x.release(gpu);
  });
}

// ------------------------------------------------------------------------------ BatchNorm1d

for (const mode of ["train", "eval"] as const) {
  gpuTest(`batchNorm on [N, C] viewed as [N, C, 1, 1] through reshape: ${mode}`, async (gpu) => {
    const rng = new ref.Rng(800 + (mode === "train" ? 0 : 1));
    const [N, C] = [7, 13];
    const shape4 = [N, C, 1, 1];
    const running = { mean: randn(rng, C, 0, 0.5), var: f32(rng.uniformArray(C, 0.5, 2)) };
    const rm = Tensor.from(gpu, running.mean, [C]), rv = Tensor.from(gpu, running.var, [C]);
    const fwd = (v: Arr[]) => ref.batchNorm2dForward(T(shape4, v[0]), v[1], v[2], mode, running);
    await checkOp(gpu, rng, {
      label: `batchNorm1d ${mode}`,
      shapes: [[N, C], [C], [C]],
      inputs: [randn(rng, N * C, 0.5, 2), randn(rng, C, 1, 0.3), randn(rng, C)],
      run: (ctx, [x, g, b]) => {
        const opts = { mode, updateRunningStats: false };
        const y4 = batchNorm(ctx, reshape(ctx, x, shape4), g, b, rm, rv, opts);
        return reshape(ctx, y4, [N, C]);
      },
      f: (v) => fwd(v).y.data,
      vjp: (v, r) => {
        const g = ref.batchNorm2dBackward(fwd(v).cache, T(shape4, r));
        return [g.dx.data, g.dgamma, g.dbeta];
      },
      jvp: (v, t) => ref.batchNorm2dJvp(fwd(v).cache, t[0] && T(shape4, t[0]), t[1], t[2]).data,
      jvpSubsets: [[0], [1], [2], [1, 2]],
    });
    rm.release(gpu);
    rv.release(gpu);
  });
}

// ------------------------------------------------------------------------------ composed

gpuTest(
  "a small CNN composed of the new ops: tape gradients and JVP vs finite differences",
  async (gpu) => {
    // conv (3x3, pad 1) + channelBias -> tanh -> maxPool 2 -> flatten -> dropout -> linear
    // -> sigmoid -> per-example MSE: every new op on one tape, checked end to end against
    // central differences of the float64 composition (the "reference" VJP and JVP are FD too)
    const rng = new ref.Rng(900);
    const xs = [3, 2, 5, 7], ws = [4, 2, 3, 3], ls = [3, 4 * 2 * 3];
    const target = f32(rng.uniformArray(3 * 3, 0, 1));
    const targetT = Tensor.from(gpu, target, [3, 3]);
    const seed = 99, p = 0.25;
    const f = (v: Arr[]): Arr => {
      const conv = ref.conv2dForward(T(xs, v[0]), T(ws, v[1]), 1, 1);
      const act = ref.channelBiasForward(conv, v[2]);
      act.data = act.data.map(Math.tanh);
      const pooled = ref.maxPool2dForward(act, { kernel: 2, stride: 2, pad: 0 }).y;
      const scale = Math.fround(1 / (1 - p));
      const dropped = pooled.data.map((a, i) => (ref.dropoutKeep(seed, i, p) ? a * scale : 0));
      const z = ref.linearForward(T([3, ls[1]], dropped), T(ls, v[3]), v[4]);
      z.data = z.data.map(ref.sigmoid);
      return ref.regressionForward("mse", z, T([3, 3], target));
    };
    const inputs = [randn(rng, ref.numel(xs)), randn(rng, ref.numel(ws), 0, 0.5), randn(rng, 4)];
    inputs.push(randn(rng, ref.numel(ls), 0, 0.5), randn(rng, 3));
    const fdVjp = (v: Arr[], r: Arr) =>
      v.map((x) => ref.fdGradient(() => ref.dot(r, f(v)), x, 1e-6));
    const fdJvp = (v: Arr[], t: (Arr | null)[]) =>
      ref.fdDerivativeVec((h) => f(v.map((x, k) => (t[k] ? ref.axpy(x, h, t[k]) : x))), 1e-6);
    await checkOp(gpu, rng, {
      label: "small CNN",
      shapes: [xs, ws, [4], ls, [3]],
      inputs,
      run: (ctx, [x, w, b, lw, lb]) => {
        const a = tanh(ctx, channelBias(ctx, conv2d(ctx, x, w, { stride: 1, pad: 1 }), b));
        const h = dropout(ctx, flatten(ctx, maxPool2d(ctx, a, { kernel: 2 })), p, seed);
        return mseLoss(ctx, sigmoid(ctx, linear(ctx, h, lw, lb)), targetT);
      },
      f,
      vjp: fdVjp,
      jvp: fdJvp,
      jvpSubsets: [[0], [1, 2], [3, 4]],
    });
    targetT.release(gpu);
  },
);

gpuTest("report of the worst errors of the layer ops", () => {
  report("");
  return Promise.resolve();
});
