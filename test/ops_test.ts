/**
 * Every GPU op against the float64 CPU reference (test/reference, itself FD-verified in
 * test/reference_test.ts): forward values, backward through the tape (vs the reference VJP and
 * vs central finite differences of the reference at sampled coordinates) and JVP through the
 * tape (all tangents, and each input's tangent alone; vs the reference JVP and vs FD of the
 * reference along the tangent). Shapes are deliberately awkward: batch 3, 5x7 images, 3 and 17
 * channels, odd sizes with stride 2, 1x1 and 3x3 kernels, pad 0 and 1, GEMM sizes that are not
 * multiples of any tile, and cases that take the split-K path.
 *
 * Tolerance: errors are max-abs-normalised, max_i |gpu_i - ref_i| / max_i |ref_i|, and must
 * stay <= TOL = 2e-5 (float32 kernels vs float64; measured on llvmpipe: 1e-10..7e-7 for the ops,
 * 2.4e-6 for the K = 70000 GEMM; the last test prints the worst error per op).
 */
import assert from "node:assert/strict";
import type { Gpu } from "../src/gpu/runtime.ts";
import { Tensor } from "../src/tensor.ts";
import { Ctx, Tape } from "../src/autograd/tape.ts";
import {
  conv2d,
  convBackwardInput,
  convBackwardWeight,
  convForwardInto,
  type ConvOptions,
} from "../src/ops/conv.ts";
import { linear, matmulInto, rowNormalize } from "../src/ops/linear.ts";
import {
  batchNorm,
  type BatchNormOptions,
  defaultBatchNormFusion,
  setBatchNormFusesPasses,
} from "../src/ops/batchnorm.ts";
import { add, addRelu, globalAvgPool, relu, shortcutA } from "../src/ops/elementwise.ts";
import { classificationLoss } from "../src/ops/loss.ts";
import { sgdStep } from "../src/optim/sgd.ts";
import { defaultGemmPolicy, fitTile, type GemmPolicy, setGemmPolicy } from "../src/ops/gemm.ts";
import type { GemmFamily, GemmTile } from "../shaders/gemm.ts";
import * as ref from "./reference/mod.ts";
import { f32, gpuTest } from "./gpu_harness.ts";
import { type Arr, checkOp, expectClose, randn, report, T } from "./op_check.ts";

// ------------------------------------------------------------------------------ GEMM

/** Random x, w and dy of a conv, with the float64 reference's output and gradients. */
function convProblem(rng: ref.Rng, xs: number[], ws: number[], o: ConvOptions) {
  const x = randn(rng, ref.numel(xs)), w = randn(rng, ref.numel(ws));
  const yRef = ref.conv2dForward(T(xs, x), T(ws, w), o.stride, o.pad);
  const dy = randn(rng, yRef.data.length);
  const g = ref.conv2dBackward(T(xs, x), T(ws, w), o.stride, o.pad, T(yRef.shape, dy));
  return { x, w, yRef, dy, g };
}

/** A tile and the GEMM family to run it in. */
type FamilyTile = GemmTile & { family: GemmFamily };

/**
 * Every tile of both default policies (llvmpipe's and the real-GPU one), each in both kernel
 * families (registers only, and slabs staged in workgroup memory).
 */
function allTiles(gpu: Gpu): FamilyTile[] {
  const fake = (fallback: boolean) =>
    defaultGemmPolicy({
      adapter: { ...gpu.adapter, isFallbackAdapter: fallback, description: fallback ? "" : "x" },
    } as Gpu).tiles;
  const tiles = [...fake(true), ...fake(false)];
  return (["register", "workgroup"] as const).flatMap((family) =>
    tiles.map((t) => ({ ...t, family }))
  );
}

/** The result of `run` and the names of the programs it dispatched. */
async function dispatchedPrograms<T>(
  gpu: Gpu,
  run: () => Promise<T>,
): Promise<{ result: T; keys: string[] }> {
  const keys: string[] = [];
  gpu.observer = {
    dispatch: (program) => {
      keys.push(program.key);
      return undefined;
    },
  };
  try {
    return { result: await run(), keys };
  } finally {
    gpu.observer = null;
  }
}

/** A policy that runs `tile` in its family, K split into many parts or not at all. */
function forcedPolicy(tile: FamilyTile, split: boolean): GemmPolicy {
  const { family, ...t } = tile;
  // k-slabs of 8 in the workgroup family: a K of 70 or 72 ends in a partial slab or not
  const base = { tiles: [t], family, kTile: 8 };
  return split
    ? { ...base, minWorkgroups: 1e9, minKPerSplit: 8 }
    : { ...base, minWorkgroups: 0, minKPerSplit: 1e9 };
}

function refMatmul(
  a: Arr,
  b: Arr,
  M: number,
  N: number,
  K: number,
  transA: boolean,
  transB: boolean,
  bias: Arr | null,
  acc: Arr | null,
): Arr {
  const out = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = (bias ? bias[n] : 0) + (acc ? acc[m * N + n] : 0);
      for (let k = 0; k < K; k++) {
        s += (transA ? a[k * M + m] : a[m * K + k]) * (transB ? b[n * K + k] : b[k * N + n]);
      }
      out[m * N + n] = s;
    }
  }
  return out;
}

Deno.test("gemm: fitTile trims the register block without changing the workgroup grid", () => {
  const tile: GemmTile = { wx: 8, wy: 1, tm: 16, tn: 16 };
  // dW of a 16 -> 16 conv: N = 144 needs 2 column tiles of 128; 2 x 72 covers it exactly
  assert.deepEqual(fitTile(tile, 16, 144, 2, 1), { wx: 8, wy: 1, tm: 16, tn: 9 });
  for (const [M, N] of [[16, 27], [64, 576], [37, 19], [1024, 1024], [3, 102400]]) {
    const gx = Math.ceil(N / 128), gy = Math.ceil(M / 16);
    const t = fitTile(tile, M, N, gx, gy);
    assert.ok(t.tm <= 16 && t.tn <= 16);
    assert.equal(Math.ceil(N / (t.wx * t.tn)), gx, `${M}x${N}: same columns of workgroups`);
    assert.equal(Math.ceil(M / (t.wy * t.tm)), gy, `${M}x${N}: same rows of workgroups`);
  }
});

gpuTest("gemm: matmulInto, every tile variant, split-K and not, all transposes", async (gpu) => {
  const rng = new ref.Rng(1);
  const [M, N, K] = [37, 19, 70];
  const a = randn(rng, M * K), b = randn(rng, K * N), bias = randn(rng, N), c0 = randn(rng, M * N);
  const tiles = allTiles(gpu);
  assert.equal(tiles.length, 14);
  try {
    for (const tile of tiles) {
      for (const split of [false, true]) {
        setGemmPolicy(gpu, forcedPolicy(tile, split));
        for (
          const [transA, transB] of [[false, false], [true, false], [false, true], [
            true,
            true,
          ]]
        ) {
          const useBias = transA !== transB, accumulate = transA;
          const at = Tensor.from(gpu, a, transA ? [K, M] : [M, K]);
          const bt = Tensor.from(gpu, b, transB ? [N, K] : [K, N]);
          const bs = Tensor.from(gpu, bias, [N]);
          const out = Tensor.from(gpu, c0, [M, N]);
          const before = gpu.stats.dispatches;
          matmulInto(gpu, at, bt, out, {
            transA,
            transB,
            bias: useBias ? bs : null,
            accumulate,
          });
          // split-K adds the deterministic reduction kernel
          assert.equal(gpu.stats.dispatches - before, split ? 2 : 1, "split path not taken");
          const want = refMatmul(
            a,
            b,
            M,
            N,
            K,
            transA,
            transB,
            useBias ? bias : null,
            accumulate ? c0 : null,
          );
          const label = `gemm ${JSON.stringify(tile)} split=${split} tA=${transA} tB=${transB}`;
          expectClose(`gemm: ${label}`, await out.read(gpu), want);
          for (const t of [at, bt, bs, out]) t.release(gpu);
        }
      }
    }
    // K beyond one split's maximum (llvmpipe's 65535-iteration loop limit): forced splits
    const KL = 70000;
    const la = randn(rng, 2 * KL), lb = randn(rng, KL * 3);
    for (const family of ["register", "workgroup"] as const) {
      setGemmPolicy(gpu, { tiles: [tiles[2]], minWorkgroups: 0, minKPerSplit: 1e9, family });
      const at = Tensor.from(gpu, la, [2, KL]), bt = Tensor.from(gpu, lb, [KL, 3]);
      const out = Tensor.empty(gpu, [2, 3]);
      const before = gpu.stats.dispatches;
      matmulInto(gpu, at, bt, out);
      assert.equal(gpu.stats.dispatches - before, 2, "long K must split");
      expectClose(
        `gemm: long K, ${family}`,
        await out.read(gpu),
        refMatmul(la, lb, 2, 3, KL, false, false, null, null),
      );
      for (const t of [at, bt, out]) t.release(gpu);
    }
  } finally {
    setGemmPolicy(gpu, defaultGemmPolicy(gpu));
  }
  report("gemm");
});

gpuTest(
  "gemm: vec4 loads of A give the same bits as scalar loads (matmul, conv fwd, dW)",
  async (gpu) => {
    const rng = new ref.Rng(5);
    // The vector path's conditions: K % 4 == 0, OH * OW % 4 == 0 and, with the forced
    // splits (K / 8 of them), a split length of 8; M and N fit no tile
    const [M, N, K] = [37, 19, 72];
    const a = randn(rng, M * K), b = randn(rng, K * N);
    const xs = [2, 8, 6, 6], ws = [5, 8, 3, 3];
    const o: ConvOptions = { stride: 1, pad: 1 };
    const { x, w, yRef, dy, g } = convProblem(rng, xs, ws, o);
    const at = Tensor.from(gpu, a, [M, K]), bt = Tensor.from(gpu, b, [K, N]);
    const btT = Tensor.from(gpu, b, [N, K]);
    const xt = Tensor.from(gpu, x, xs), wt = Tensor.from(gpu, w, ws);
    const dyt = Tensor.from(gpu, dy, yRef.shape);
    const run = async (): Promise<Float32Array[]> => {
      const outs = [
        Tensor.empty(gpu, [M, N]),
        Tensor.empty(gpu, [M, N]),
        Tensor.empty(gpu, yRef.shape),
      ];
      matmulInto(gpu, at, bt, outs[0]);
      matmulInto(gpu, at, btT, outs[1], { transB: true });
      convForwardInto(gpu, xt, wt, o, outs[2]);
      outs.push(convBackwardWeight(gpu, dyt, xt, wt, o));
      const got = await Promise.all(outs.map((t) => t.read(gpu)));
      for (const t of outs) t.release(gpu);
      return got;
    };
    const bTransposed = new Float64Array(K * N);
    for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) bTransposed[n * K + k] = b[k * N + n];
    try {
      for (const tile of allTiles(gpu)) {
        for (const split of [false, true]) {
          const policy = forcedPolicy(tile, split);
          const label = `${JSON.stringify(tile)} split=${split}`;
          setGemmPolicy(gpu, policy);
          const used = await dispatchedPrograms(gpu, run);
          const vector = used.result;
          // mm NN, mm NT, conv-fwd and conv-dw each ran a vec4 program for this tile and split
          const families = new Set(
            used.keys.filter((k) => k.includes(`:${split}:a4:`)).map((k) => k.split(":")[1]),
          );
          assert.equal(families.size, 3, `${label}: vec4 programs of ${[...families]}`);
          setGemmPolicy(gpu, { ...policy, vectorLoads: false });
          const scalar = await run();
          const want = [
            refMatmul(a, b, M, N, K, false, false, null, null),
            refMatmul(a, b, M, N, K, false, true, null, null), // b read as [N, K]
            yRef.data,
            g.dw.data,
          ];
          for (let i = 0; i < 4; i++) {
            assert.deepEqual(
              vector[i],
              scalar[i],
              `${label} case ${i}: vec4 and scalar bits differ`,
            );
            expectClose(`gemm-vec4: case ${i} ${label}`, vector[i], want[i]);
          }
        }
      }
    } finally {
      setGemmPolicy(gpu, defaultGemmPolicy(gpu));
      for (const t of [at, bt, btT, xt, wt, dyt]) t.release(gpu);
    }
    report("gemm-vec4");
  },
);

gpuTest("conv2d: forward, dX and dW under every tile variant, split-K and not", async (gpu) => {
  const rng = new ref.Rng(2);
  const xs = [3, 3, 5, 7], ws = [5, 3, 3, 3];
  const o: ConvOptions = { stride: 2, pad: 1 };
  const { x, w, yRef, dy, g } = convProblem(rng, xs, ws, o);
  const xt = Tensor.from(gpu, x, xs), wt = Tensor.from(gpu, w, ws);
  const dyt = Tensor.from(gpu, dy, yRef.shape);
  try {
    for (const tile of allTiles(gpu)) {
      for (const split of [false, true]) {
        setGemmPolicy(gpu, forcedPolicy(tile, split));
        const label = `${JSON.stringify(tile)} split=${split}`;
        const y = Tensor.empty(gpu, yRef.shape);
        let before = gpu.stats.dispatches;
        convForwardInto(gpu, xt, wt, o, y);
        assert.equal(gpu.stats.dispatches - before, split ? 2 : 1);
        expectClose(`conv-tiles: fwd ${label}`, await y.read(gpu), yRef.data);
        before = gpu.stats.dispatches;
        const dx = convBackwardInput(gpu, dyt, wt, xt, o);
        // stride 2: one GEMM per input phase (4), some of them split
        const dxDispatches = gpu.stats.dispatches - before;
        assert.ok(split ? dxDispatches > 4 : dxDispatches === 4, `dX: ${dxDispatches} dispatches`);
        expectClose(`conv-tiles: dx ${label}`, await dx.read(gpu), g.dx.data);
        before = gpu.stats.dispatches;
        const dw = convBackwardWeight(gpu, dyt, xt, wt, o);
        assert.equal(gpu.stats.dispatches - before, split ? 2 : 1);
        expectClose(`conv-tiles: dw ${label}`, await dw.read(gpu), g.dw.data);
        for (const t of [y, dx, dw]) t.release(gpu);
      }
    }
  } finally {
    setGemmPolicy(gpu, defaultGemmPolicy(gpu));
    for (const t of [xt, wt, dyt]) t.release(gpu);
  }
  report("conv-tiles");
});

// ------------------------------------------------------------------------------ conv2d

const convCases = [
  { C: 3, O: 17, H: 5, W: 7, k: 3, s: 1, p: 1 },
  { C: 3, O: 17, H: 5, W: 7, k: 3, s: 2, p: 1 },
  { C: 17, O: 3, H: 5, W: 7, k: 1, s: 2, p: 0 },
  { C: 17, O: 3, H: 5, W: 7, k: 1, s: 1, p: 0 },
  { C: 3, O: 4, H: 7, W: 5, k: 3, s: 2, p: 0 },
  { C: 17, O: 17, H: 5, W: 7, k: 3, s: 2, p: 1 },
  { C: 3, O: 3, H: 5, W: 7, k: 1, s: 1, p: 1 },
  // conv dW: K = N*OH*OW = 867 with a single output tile -> split-K under the default policy
  { C: 3, O: 3, H: 17, W: 17, k: 3, s: 1, p: 1 },
];

for (const cc of convCases) {
  gpuTest(`conv2d vs reference and FD: ${JSON.stringify(cc)}`, async (gpu) => {
    const rng = new ref.Rng(10 + cc.C * 3 + cc.k + cc.s + cc.H);
    const xs = [3, cc.C, cc.H, cc.W], ws = [cc.O, cc.C, cc.k, cc.k];
    const o: ConvOptions = { stride: cc.s, pad: cc.p };
    const f = (v: Arr[]) => ref.conv2dForward(T(xs, v[0]), T(ws, v[1]), o.stride, o.pad);
    const yShape = f([new Float64Array(ref.numel(xs)), new Float64Array(ref.numel(ws))]).shape;
    await checkOp(gpu, rng, {
      label: `conv ${JSON.stringify(cc)}`,
      shapes: [xs, ws],
      inputs: [randn(rng, ref.numel(xs)), randn(rng, ref.numel(ws))],
      run: (ctx, [x, w]) => conv2d(ctx, x, w, o),
      f: (v) => f(v).data,
      vjp: (v, r) => {
        const g = ref.conv2dBackward(T(xs, v[0]), T(ws, v[1]), o.stride, o.pad, T(yShape, r));
        return [g.dx.data, g.dw.data];
      },
      jvp: (v, t) =>
        ref.conv2dJvp(
          T(xs, v[0]),
          T(ws, v[1]),
          o.stride,
          o.pad,
          t[0] && T(xs, t[0]),
          t[1] && T(ws, t[1]),
        ).data,
    });
    if (cc.H === 17) {
      // this case must take the split-K path in dW (two dispatches: partials + reduction)
      const x = Tensor.from(gpu, randn(rng, ref.numel(xs)), xs);
      const w = Tensor.from(gpu, randn(rng, ref.numel(ws)), ws);
      const dy = Tensor.from(gpu, randn(rng, ref.numel(yShape)), yShape);
      const before = gpu.stats.dispatches;
      const dw = convBackwardWeight(gpu, dy, x, w, o);
      assert.equal(gpu.stats.dispatches - before, 2, "conv dW did not split K");
      const g = ref.conv2dBackward(
        T(xs, f32(await x.read(gpu))),
        T(ws, f32(await w.read(gpu))),
        o.stride,
        o.pad,
        T(yShape, f32(await dy.read(gpu))),
      );
      expectClose(`conv split-K dW`, await dw.read(gpu), g.dw.data);
      for (const t of [x, w, dy, dw]) t.release(gpu);
    }
  });
}

gpuTest("conv2d: backward with only x requiring grad gives dX and no dW work", async (gpu) => {
  const rng = new ref.Rng(3);
  const xs = [3, 3, 5, 7], ws = [4, 3, 3, 3];
  const x = randn(rng, ref.numel(xs)), w = randn(rng, ref.numel(ws));
  const xt = Tensor.from(gpu, x, xs), wt = Tensor.from(gpu, w, ws);
  xt.requiresGrad = true;
  const tape = new Tape();
  const ctx = new Ctx(gpu, tape);
  const y = conv2d(ctx, xt, wt, { stride: 2, pad: 1 });
  const r = randn(rng, y.size);
  const seed = Tensor.from(gpu, r, y.shape);
  const before = gpu.stats.dispatches;
  const grads = tape.backward(gpu, y, seed, [xt]);
  // stride 2: the dX GEMM runs as 4 sub-pixel phases
  assert.equal(gpu.stats.dispatches - before, 4, "only the dX GEMMs should run");
  const g = ref.conv2dBackward(T(xs, x), T(ws, w), 2, 1, T(y.shape as number[], r));
  expectClose("conv x-only: dx", await grads.get(xt)!.read(gpu), g.dx.data);
  grads.get(xt)!.release(gpu);
  ctx.release();
  for (const t of [xt, wt, seed]) t.release(gpu);
});

// ------------------------------------------------------------------------------ linear

const linearCases = [
  { N: 3, I: 17, O: 5, bias: true },
  { N: 3, I: 17, O: 5, bias: false },
  { N: 37, I: 70, O: 19, bias: true },
  { N: 37, I: 70, O: 19, bias: false },
];
for (const lc of linearCases) {
  gpuTest(`linear vs reference and FD: ${JSON.stringify(lc)}`, async (gpu) => {
    const rng = new ref.Rng(20 + lc.N + (lc.bias ? 1 : 0));
    const xs = [lc.N, lc.I], ws = [lc.O, lc.I];
    const inputs = [randn(rng, lc.N * lc.I), randn(rng, lc.O * lc.I)];
    const shapes = [xs, ws];
    if (lc.bias) {
      inputs.push(randn(rng, lc.O));
      shapes.push([lc.O]);
    }
    await checkOp(gpu, rng, {
      label: `linear ${JSON.stringify(lc)}`,
      shapes,
      inputs,
      run: (ctx, [x, w, b]) => linear(ctx, x, w, b ?? null),
      f: (v) => ref.linearForward(T(xs, v[0]), T(ws, v[1]), v[2] ?? null).data,
      vjp: (v, r) => {
        const g = ref.linearBackward(T(xs, v[0]), T(ws, v[1]), T([lc.N, lc.O], r), lc.bias);
        return lc.bias ? [g.dx.data, g.dw.data, g.db] : [g.dx.data, g.dw.data];
      },
      jvp: (v, t) =>
        ref.linearJvp(T(xs, v[0]), T(ws, v[1]), t[0] && T(xs, t[0]), t[1] && T(ws, t[1]), t[2])
          .data,
      jvpSubsets: lc.bias ? [[0], [1], [2], [1, 2]] : [[0], [1]],
    });
  });
}

// ------------------------------------------------------------------------------ rowNormalize

for (const shape of [[5, 17], [67, 9]]) {
  gpuTest(`rowNormalize vs reference and FD: [${shape}]`, async (gpu) => {
    const rng = new ref.Rng(30 + shape[0]);
    await checkOp(gpu, rng, {
      label: `rowNormalize [${shape}]`,
      shapes: [shape],
      inputs: [randn(rng, shape[0] * shape[1])],
      run: (ctx, [x]) => rowNormalize(ctx, x),
      f: (v) => ref.rowNormalizeForward(T(shape, v[0])).y.data,
      vjp: (v, r) => [
        ref.rowNormalizeBackward(ref.rowNormalizeForward(T(shape, v[0])).cache, T(shape, r)).data,
      ],
      jvp: (v, t) =>
        ref.rowNormalizeJvp(ref.rowNormalizeForward(T(shape, v[0])).cache, t[0] && T(shape, t[0]))
          .data,
    });
  });
}

// ------------------------------------------------------------------------------ batchnorm

interface BnCase {
  shape: number[];
  mode: "train" | "eval";
  relu: boolean;
  update: boolean;
  /** Fused residual add (a fourth input of x's shape) before the relu. */
  residual?: boolean;
  /** The separate (GPU) form of the passes instead of the fused one, or the reverse. */
  fused?: boolean;
}
const bnCases: BnCase[] = [
  { shape: [3, 17, 5, 7], mode: "train", relu: false, update: true },
  { shape: [3, 17, 5, 7], mode: "train", relu: true, update: false },
  // N*H*W = 297 > 256: the strided part of the per-channel reduction
  { shape: [3, 3, 9, 11], mode: "train", relu: false, update: false },
  { shape: [3, 3, 9, 11], mode: "train", relu: true, update: true },
  { shape: [6, 17], mode: "train", relu: false, update: true },
  { shape: [3, 17, 5, 7], mode: "eval", relu: false, update: false },
  // eval mode must never touch the running statistics, even when asked to update
  { shape: [3, 3, 5, 7], mode: "eval", relu: true, update: true },
  // relu(bn(x) + r): the tail of a residual block
  { shape: [3, 3, 9, 11], mode: "train", relu: true, update: true, residual: true },
  { shape: [3, 17, 5, 7], mode: "train", relu: false, update: false, residual: true },
  { shape: [3, 3, 5, 7], mode: "eval", relu: true, update: false, residual: true },
];
// every case once more in the other form of the passes (fused on GPUs, separate on llvmpipe)
const bnAllCases = [
  ...bnCases.map((c) => ({ ...c, fused: true })),
  ...bnCases.map((c) => ({ ...c, fused: false })),
];

for (const bc of bnAllCases) {
  gpuTest(`batchNorm vs reference and FD: ${JSON.stringify(bc)}`, async (gpu) => {
    const rng = new ref.Rng(40 + ref.numel(bc.shape) + (bc.relu ? 1 : 0) + (bc.residual ? 7 : 0));
    const C = bc.shape[1];
    const shape4 = bc.shape.length === 4 ? bc.shape : [bc.shape[0], C, 1, 1];
    const running = { mean: randn(rng, C, 0, 0.5), var: f32(rng.uniformArray(C, 0.5, 2)) };
    const rm = Tensor.from(gpu, running.mean, [C]), rv = Tensor.from(gpu, running.var, [C]);
    const opts = (r?: Tensor): BatchNormOptions => ({
      mode: bc.mode,
      updateRunningStats: bc.update,
      relu: bc.relu,
      residual: r,
    });
    const fwd = (v: Arr[]) => ref.batchNorm2dForward(T(shape4, v[0]), v[1], v[2], bc.mode, running);
    const n = ref.numel(bc.shape);
    const ins = [randn(rng, n, 0.5, 2), randn(rng, C, 1, 0.3), randn(rng, C)];
    if (bc.residual) ins.push(randn(rng, n));
    // bn(x), plus the residual when there is one (before the relu)
    const pre = (v: Arr[]) => {
      const y = fwd(v).y;
      if (!bc.residual) return y;
      return T(shape4, y.data.map((u, i) => u + v[3][i]));
    };
    setBatchNormFusesPasses(gpu, bc.fused);
    try {
      await checkOp(gpu, rng, {
        label: `bn ${JSON.stringify(bc)}`,
        shapes: bc.residual ? [bc.shape, [C], [C], bc.shape] : [bc.shape, [C], [C]],
        inputs: ins,
        run: (ctx, [x, g, b, r]) => batchNorm(ctx, x, g, b, rm, rv, opts(r)),
        f: (v) => (bc.relu ? ref.reluForward(pre(v)) : pre(v)).data,
        vjp: (v, r) => {
          const dy = bc.relu ? ref.reluBackward(pre(v), T(shape4, r)) : T(shape4, r);
          const g = ref.batchNorm2dBackward(fwd(v).cache, dy);
          return bc.residual
            ? [g.dx.data, g.dgamma, g.dbeta, dy.data]
            : [g.dx.data, g.dgamma, g.dbeta];
        },
        jvp: (v, t) => {
          const { cache } = fwd(v);
          let ty = ref.batchNorm2dJvp(cache, t[0] && T(shape4, t[0]), t[1], t[2]);
          if (bc.residual && t[3]) ty = T(shape4, ty.data.map((u, i) => u + t[3]![i]));
          return (bc.relu ? ref.reluJvp(pre(v), ty) : ty).data;
        },
        jvpSubsets: bc.residual ? [[0], [1], [2], [3], [1, 2]] : [[0], [1], [2], [1, 2]],
        afterForward: async (gpu) => {
          const gotMean = await rm.read(gpu), gotVar = await rv.read(gpu);
          if (bc.mode === "train" && bc.update) {
            const m = new Float64Array(running.mean), v = new Float64Array(running.var);
            ref.batchNormUpdateRunning(m, v, fwd(ins).cache);
            expectClose(`bn running: mean ${JSON.stringify(bc)}`, gotMean, m);
            expectClose(`bn running: var ${JSON.stringify(bc)}`, gotVar, v);
          } else {
            // untouched, bit for bit
            assert.deepEqual([...gotMean], [...running.mean], "running mean changed");
            assert.deepEqual([...gotVar], [...running.var], "running var changed");
          }
        },
      });
    } finally {
      setBatchNormFusesPasses(gpu, defaultBatchNormFusion(gpu));
      rm.release(gpu);
      rv.release(gpu);
    }
  });
}

// ------------------------------------------------------------------------------ loss

const lossCases: {
  name: string;
  B: number;
  C: number;
  gamma: number;
  scale: number;
  m: boolean;
}[] = [
  { name: "cross-entropy", B: 5, C: 7, gamma: 0, scale: 1, m: false },
  { name: "cross-entropy B=67 C=10", B: 67, C: 10, gamma: 0, scale: 1, m: false },
  { name: "focal gamma=2", B: 5, C: 7, gamma: 2, scale: 1, m: false },
  { name: "LDAM s=30", B: 5, C: 7, gamma: 0, scale: 30, m: true },
  { name: "LDAM s=30 + focal gamma=2", B: 5, C: 7, gamma: 2, scale: 30, m: true },
];

for (const lc of lossCases) {
  gpuTest(`classificationLoss vs reference and FD: ${lc.name}`, async (gpu) => {
    const rng = new ref.Rng(50 + lc.B + lc.gamma * 3 + lc.scale);
    const { B, C } = lc;
    // cosine logits live in [-1, 1] when scaled by 30; plain logits are N(0, 2)
    const z = lc.scale === 1 ? randn(rng, B * C, 0, 2) : f32(rng.uniformArray(B * C, -1, 1));
    const labels = rng.intArray(B, C);
    // LDAM margins C / n_c^(1/4), scaled so the largest is 0.5
    const margins = f32(Array.from({ length: C }, (_, c) => 0.5 / Math.pow(1 + c, 0.25)));
    const opts = { gamma: lc.gamma, scale: lc.scale, margins: lc.m ? margins : null };
    const labelsT = Tensor.from(gpu, labels, [B], "u32");
    const marginsT = Tensor.from(gpu, margins, [C]);
    await checkOp(gpu, rng, {
      label: `loss ${lc.name}`,
      shapes: [[B, C]],
      inputs: [z],
      run: (ctx, [zt]) =>
        classificationLoss(ctx, zt, labelsT, {
          gamma: lc.gamma,
          scale: lc.scale,
          margins: lc.m ? marginsT : null,
        }),
      f: (v) => ref.lossForward(T([B, C], v[0]), labels, opts).losses,
      vjp: (
        v,
        r,
      ) => [ref.lossBackward(ref.lossForward(T([B, C], v[0]), labels, opts).cache, r).data],
      jvp: (v, t) =>
        ref.lossJvp(ref.lossForward(T([B, C], v[0]), labels, opts).cache, t[0] && T([B, C], t[0])),
    });
    labelsT.release(gpu);
    marginsT.release(gpu);
  });
}

// ------------------------------------------------------------------------------ elementwise

gpuTest("relu, add, addRelu vs reference and FD", async (gpu) => {
  const rng = new ref.Rng(60);
  const shape = [3, 17, 5, 7];
  const n = ref.numel(shape);
  await checkOp(gpu, rng, {
    label: "relu",
    shapes: [shape],
    inputs: [randn(rng, n)],
    run: (ctx, [x]) => relu(ctx, x),
    f: (v) => ref.reluForward(T(shape, v[0])).data,
    vjp: (v, r) => [ref.reluBackward(T(shape, v[0]), T(shape, r)).data],
    jvp: (v, t) => ref.reluJvp(T(shape, v[0]), t[0] && T(shape, t[0])).data,
  });
  await checkOp(gpu, rng, {
    label: "add",
    shapes: [shape, shape],
    inputs: [randn(rng, n), randn(rng, n)],
    run: (ctx, [a, b]) => add(ctx, a, b),
    f: (v) => ref.addForward(T(shape, v[0]), T(shape, v[1])).data,
    vjp: (_, r) => {
      const g = ref.addBackward(T(shape, r));
      return [g.da.data, g.db.data];
    },
    jvp: (_, t) => ref.addJvp(shape, t[0] && T(shape, t[0]), t[1] && T(shape, t[1])).data,
  });
  const sum = (v: Arr[]) => ref.addForward(T(shape, v[0]), T(shape, v[1]));
  await checkOp(gpu, rng, {
    label: "addRelu",
    shapes: [shape, shape],
    inputs: [randn(rng, n), randn(rng, n)],
    run: (ctx, [a, b]) => addRelu(ctx, a, b),
    f: (v) => ref.reluForward(sum(v)).data,
    vjp: (v, r) => {
      const g = ref.reluBackward(sum(v), T(shape, r));
      return [g.data, g.data];
    },
    jvp: (v, t) =>
      ref.reluJvp(sum(v), ref.addJvp(shape, t[0] && T(shape, t[0]), t[1] && T(shape, t[1])))
        .data,
  });
  report("relu");
  report("add");
});

for (
  const [shape, outC] of [[[3, 3, 5, 7], 5], [[3, 16, 8, 8], 32], [[3, 17, 5, 7], 17]] as const
) {
  gpuTest(`shortcutA vs reference and FD: [${shape}] -> ${outC} channels`, async (gpu) => {
    const rng = new ref.Rng(70 + outC);
    const xs = [...shape];
    await checkOp(gpu, rng, {
      label: `shortcutA [${shape}]->${outC}`,
      shapes: [xs],
      inputs: [randn(rng, ref.numel(xs))],
      run: (ctx, [x]) => shortcutA(ctx, x, outC),
      f: (v) => ref.shortcutAForward(T(xs, v[0]), outC).data,
      vjp: (_, r) => {
        const ys = ref.shortcutAForward(T(xs, new Float64Array(ref.numel(xs))), outC).shape;
        return [ref.shortcutABackward(T(ys, r), xs).data];
      },
      jvp: (_, t) => ref.shortcutAJvp(xs, t[0] && T(xs, t[0]), outC).data,
    });
  });
}

gpuTest("globalAvgPool vs reference and FD", async (gpu) => {
  const rng = new ref.Rng(80);
  const xs = [3, 17, 5, 7];
  await checkOp(gpu, rng, {
    label: "globalAvgPool",
    shapes: [xs],
    inputs: [randn(rng, ref.numel(xs))],
    run: (ctx, [x]) => globalAvgPool(ctx, x),
    f: (v) => ref.globalAvgPoolForward(T(xs, v[0])).data,
    vjp: (_, r) => [ref.globalAvgPoolBackward(T([3, 17], r), xs).data],
    jvp: (_, t) => ref.globalAvgPoolJvp(xs, t[0] && T(xs, t[0])).data,
  });
});

// ------------------------------------------------------------------------------ SGD

const sgdCases = [
  { lr: 0.1, momentum: 0.9, weightDecay: 0, nesterov: false },
  { lr: 0.1, momentum: 0.9, weightDecay: 0.01, nesterov: true },
  { lr: 0.05, momentum: 0.9, weightDecay: 5e-4, nesterov: false },
  { lr: 0.2, momentum: 0, weightDecay: 0.05, nesterov: false },
];
for (const o of sgdCases) {
  gpuTest(`sgd vs reference over 5 steps: ${JSON.stringify(o)}`, async (gpu) => {
    const rng = new ref.Rng(90 + o.lr * 100);
    const n = 1234;
    const p = randn(rng, n), buf = new Float64Array(n);
    const pt = Tensor.from(gpu, p, [n]);
    const bt = Tensor.from(gpu, buf, [n]);
    const gt = Tensor.empty(gpu, [n]);
    for (let step = 0; step < 5; step++) {
      const g = randn(rng, n, 0, 0.5);
      gt.upload(gpu, g);
      sgdStep(gpu, pt.view, gt.view, bt.view, n, o);
      ref.sgdStep(p, g, buf, o);
      expectClose(`sgd: params step ${step}`, await pt.read(gpu), p, 1e-5);
      expectClose(`sgd: momentum step ${step}`, await bt.read(gpu), buf, 1e-5);
    }
    for (const t of [pt, bt, gt]) t.release(gpu);
  });
}

gpuTest("report of the worst errors per op family", () => {
  report("");
  return Promise.resolve();
});
