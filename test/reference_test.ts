/**
 * Proves the float64 CPU reference right: every backward and jvp against central finite
 * differences on awkward shapes, forward values against hand computations, the ResNet against FD,
 * and the exact meta-gradient against FD of F(eps).
 */

import assert from "node:assert/strict";
import {
  addBackward,
  addForward,
  addJvp,
  assertClose,
  batchNorm2dBackward,
  batchNorm2dForward,
  batchNorm2dJvp,
  batchNormUpdateRunning,
  type BnMode,
  cloneParams,
  conv2dBackward,
  conv2dForward,
  conv2dJvp,
  dot,
  fdDerivative,
  fdDerivativeVec,
  fdGradient,
  globalAvgPoolBackward,
  globalAvgPoolForward,
  globalAvgPoolJvp,
  linearBackward,
  linearForward,
  linearJvp,
  lossBackward,
  lossForward,
  lossJvp,
  type LossOpts,
  metaEpsGrad,
  metaEpsGradFd,
  type MetaProblem,
  numel,
  type Params,
  reluBackward,
  reluForward,
  reluJvp,
  resnetBackward,
  resnetBufferSpec,
  type ResNetConfig,
  resnetForward,
  resnetInit,
  resnetJvp,
  resnetParamCount,
  resnetParamSpec,
  resnetUpdateBuffers,
  Rng,
  rowNormalizeBackward,
  rowNormalizeForward,
  rowNormalizeJvp,
  sgdStep,
  shortcutABackward,
  shortcutAForward,
  shortcutAJvp,
  type Tensor,
  tensor,
} from "./reference/mod.ts";

const RTOL = 1e-6;

function randn(rng: Rng, shape: number[], mean = 0, std = 1): Tensor {
  return { shape, data: rng.normalArray(numel(shape), mean, std) };
}

type Arr = Float64Array;

/**
 * Checks an op with inputs `ins`: vjp(r) against FD of <r, f(ins)> for every input, and jvp(ts)
 * against the FD directional derivative, for all tangents at once and for each alone.
 */
function checkOp(
  label: string,
  rng: Rng,
  ins: Arr[],
  f: (ins: Arr[]) => ArrayLike<number>,
  vjp: (r: Arr) => (Arr | null)[],
  jvp: (ts: (Arr | null)[]) => ArrayLike<number>,
  h = 1e-6,
  rtol = RTOL,
): void {
  const y = f(ins);
  const r = rng.normalArray(y.length);
  const grads = vjp(r);
  assert.equal(grads.length, ins.length);
  ins.forEach((x, k) => {
    const fd = fdGradient(() => dot(r, f(ins)), x, h);
    assertClose(grads[k] ?? new Float64Array(x.length), fd, rtol, undefined, `${label} vjp[${k}]`);
  });
  const ts = ins.map((x) => rng.normalArray(x.length));
  const along = (sel: (Arr | null)[]) =>
    fdDerivativeVec((s) => f(ins.map((x, k) => x.map((v, i) => v + s * (sel[k]?.[i] ?? 0)))), h);
  assertClose(jvp(ts), along(ts), rtol, undefined, `${label} jvp(all)`);
  ins.forEach((_, k) => {
    const sel = ts.map((t, j) => (j === k ? t : null));
    assertClose(jvp(sel), along(sel), rtol, undefined, `${label} jvp[${k}]`);
  });
}

// ---------------------------------------------------------------------------------------------

Deno.test("rng: deterministic, sane moments", () => {
  const a = new Rng(42).normalArray(20000), b = new Rng(42).normalArray(20000);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, new Rng(43).normalArray(20000));
  const mean = a.reduce((s, v) => s + v, 0) / a.length;
  const vr = a.reduce((s, v) => s + (v - mean) ** 2, 0) / a.length;
  assert.ok(Math.abs(mean) < 0.03, `mean ${mean}`);
  assert.ok(Math.abs(vr - 1) < 0.05, `var ${vr}`);
  const u = new Rng(1).uniformArray(1000);
  assert.ok(u.every((v) => v > 0 && v < 1));
});

Deno.test("fd helpers and assertClose can fail", () => {
  const g = fdGradient((x) => x[0] ** 3 + Math.sin(x[1]), new Float64Array([2, 0.5]), 1e-5);
  assertClose(g, [12, Math.cos(0.5)], 1e-8);
  assert.throws(() => assertClose([1, 2.001], [1, 2], 1e-6), /mismatch at \[1\]/);
  assert.ok(Math.abs(fdDerivative((s) => Math.exp(s)) - 1) < 1e-9);
});

Deno.test("conv2d forward: hand-computed values", () => {
  const x = tensor([1, 1, 3, 3], [1, 2, 3, 4, 5, 6, 7, 8, 9]);
  const w = tensor([1, 1, 2, 2], [1, 0, 0, -1]);
  assert.deepEqual([...conv2dForward(x, w, 1, 0).data], [-4, -4, -4, -4]);
  const y = conv2dForward(x, w, 2, 1);
  assert.deepEqual(y.shape, [1, 1, 2, 2]);
  assert.deepEqual([...y.data], [-1, -3, -7, -4]);
  // One output of a multi-channel strided conv by the explicit formula.
  const rng = new Rng(5);
  const X = randn(rng, [3, 3, 5, 7]), W = randn(rng, [17, 3, 3, 3]);
  const Y = conv2dForward(X, W, 2, 1);
  assert.deepEqual(Y.shape, [3, 17, 3, 4]);
  const [n, o, oh, ow] = [2, 11, 1, 3];
  let s = 0;
  for (let c = 0; c < 3; c++) {
    for (let kh = 0; kh < 3; kh++) {
      for (let kw = 0; kw < 3; kw++) {
        const ih = 2 * oh - 1 + kh, iw = 2 * ow - 1 + kw;
        if (ih >= 0 && ih < 5 && iw >= 0 && iw < 7) {
          s += X.data[((n * 3 + c) * 5 + ih) * 7 + iw] * W.data[((o * 3 + c) * 3 + kh) * 3 + kw];
        }
      }
    }
  }
  assert.ok(Math.abs(Y.data[((n * 17 + o) * 3 + oh) * 4 + ow] - s) < 1e-12);
});

const convCases = [
  { C: 3, O: 17, H: 5, W: 7, k: 3, s: 2, p: 1 },
  { C: 17, O: 3, H: 5, W: 7, k: 1, s: 1, p: 0 },
  { C: 3, O: 4, H: 7, W: 5, k: 3, s: 2, p: 0 },
  { C: 17, O: 3, H: 5, W: 7, k: 1, s: 2, p: 0 },
  { C: 3, O: 3, H: 5, W: 7, k: 3, s: 1, p: 1 },
];
for (const c of convCases) {
  Deno.test(`conv2d vjp/jvp vs FD: ${JSON.stringify(c)}`, () => {
    const rng = new Rng(100 + c.C + c.k * 7 + c.s);
    const xs = [3, c.C, c.H, c.W], ws = [c.O, c.C, c.k, c.k];
    const ins = [rng.normalArray(numel(xs)), rng.normalArray(numel(ws))];
    const T = (s: number[], d: Arr): Tensor => ({ shape: s, data: d });
    const f = (v: Arr[]) => conv2dForward(T(xs, v[0]), T(ws, v[1]), c.s, c.p).data;
    const yShape = conv2dForward(T(xs, ins[0]), T(ws, ins[1]), c.s, c.p).shape;
    checkOp(
      "conv2d",
      rng,
      ins,
      f,
      (r) => {
        const g = conv2dBackward(T(xs, ins[0]), T(ws, ins[1]), c.s, c.p, T(yShape, r));
        return [g.dx.data, g.dw.data];
      },
      (ts) =>
        conv2dJvp(
          T(xs, ins[0]),
          T(ws, ins[1]),
          c.s,
          c.p,
          ts[0] && T(xs, ts[0]),
          ts[1] && T(ws, ts[1]),
        ).data,
    );
  });
}

Deno.test("linear: hand values and vjp/jvp vs FD, with and without bias", () => {
  const y = linearForward(
    tensor([1, 2], [1, 2]),
    tensor([2, 2], [3, 4, 5, 6]),
    new Float64Array([1, -1]),
  );
  assert.deepEqual([...y.data], [12, 16]);
  for (const hasBias of [true, false]) {
    const rng = new Rng(hasBias ? 7 : 8);
    const N = 3, I = 17, O = 5;
    const ins = [rng.normalArray(N * I), rng.normalArray(O * I), rng.normalArray(O)];
    const X = (d: Arr): Tensor => ({ shape: [N, I], data: d });
    const W = (d: Arr): Tensor => ({ shape: [O, I], data: d });
    checkOp(
      `linear bias=${hasBias}`,
      rng,
      hasBias ? ins : ins.slice(0, 2),
      (v) => linearForward(X(v[0]), W(v[1]), hasBias ? v[2] : null).data,
      (r) => {
        const g = linearBackward(X(ins[0]), W(ins[1]), { shape: [N, O], data: r }, hasBias);
        return hasBias ? [g.dx.data, g.dw.data, g.db] : [g.dx.data, g.dw.data];
      },
      (ts) =>
        linearJvp(X(ins[0]), W(ins[1]), ts[0] && X(ts[0]), ts[1] && W(ts[1]), ts[2] ?? null)
          .data,
    );
  }
});

const bnCases: { shape: number[]; mode: BnMode }[] = [
  { shape: [3, 3, 5, 7], mode: "train" },
  { shape: [3, 17, 5, 7], mode: "train" },
  { shape: [3, 3, 1, 1], mode: "train" },
  { shape: [3, 17, 5, 7], mode: "eval" },
];
for (const { shape, mode } of bnCases) {
  Deno.test(`batchnorm2d ${mode} [${shape}] vjp/jvp vs FD`, () => {
    const rng = new Rng(numel(shape) + (mode === "train" ? 0 : 1));
    const C = shape[1];
    const ins = [
      rng.normalArray(numel(shape), 0.5, 2),
      rng.normalArray(C, 1, 0.5),
      rng.normalArray(C, 0, 0.5),
    ];
    const running = { mean: rng.normalArray(C), var: rng.uniformArray(C, 0.5, 2) };
    const fwd = (v: Arr[]) => batchNorm2dForward({ shape, data: v[0] }, v[1], v[2], mode, running);
    const cache = fwd(ins).cache;
    checkOp(
      `bn ${mode}`,
      rng,
      ins,
      (v) => fwd(v).y.data,
      (r) => {
        const g = batchNorm2dBackward(cache, { shape, data: r });
        return [g.dx.data, g.dgamma, g.dbeta];
      },
      (ts) => batchNorm2dJvp(cache, ts[0] && { shape, data: ts[0] }, ts[1], ts[2]).data,
    );
  });
}

Deno.test("batchnorm2d train: forward stats, running update, and FD catches missing coupling", () => {
  const rng = new Rng(3);
  const shape = [3, 4, 5, 7];
  const x = randn(rng, shape, 1, 3);
  const gamma = rng.normalArray(4, 1, 0.3), beta = rng.normalArray(4);
  const { y, cache } = batchNorm2dForward(x, gamma, beta, "train");
  for (let c = 0; c < 4; c++) {
    const vals: number[] = [];
    for (let n = 0; n < 3; n++) {
      for (let k = 0; k < 35; k++) vals.push(y.data[(n * 4 + c) * 35 + k]);
    }
    const m = vals.reduce((s, v) => s + v, 0) / vals.length;
    const v = vals.reduce((s, u) => s + (u - m) ** 2, 0) / vals.length;
    assert.ok(Math.abs(m - beta[c]) < 1e-12);
    const expectVar = gamma[c] ** 2 * cache.var[c] / (cache.var[c] + 1e-5);
    assert.ok(Math.abs(v - expectVar) < 1e-12 * Math.max(1, expectVar));
  }
  // Running update by hand: channel values [1, 2, 3, 6]: mean 3, unbiased var 14/3.
  const small = batchNorm2dForward(
    tensor([2, 1, 1, 2], [1, 2, 3, 6]),
    new Float64Array([1]),
    new Float64Array([0]),
    "train",
  );
  assert.ok(Math.abs(small.cache.var[0] - 3.5) < 1e-15);
  const rm = new Float64Array([0]), rv = new Float64Array([1]);
  batchNormUpdateRunning(rm, rv, small.cache);
  assert.ok(Math.abs(rm[0] - 0.3) < 1e-15);
  assert.ok(Math.abs(rv[0] - (0.9 + 0.1 * 14 / 3)) < 1e-15);
  // A backward that ignores the batch-statistics coupling must fail the FD check.
  const r = rng.normalArray(numel(shape));
  const fd = fdGradient(
    (xv) => dot(r, batchNorm2dForward({ shape, data: xv }, gamma, beta, "train").y.data),
    x.data,
  );
  const good = batchNorm2dBackward(cache, { shape, data: r }).dx.data;
  assertClose(good, fd, RTOL, undefined, "bn coupled");
  const uncoupled = batchNorm2dBackward({ ...cache, mode: "eval" }, { shape, data: r }).dx.data;
  assert.throws(() => assertClose(uncoupled, fd, RTOL, undefined, "bn uncoupled"), /mismatch/);
});

Deno.test("relu, add, globalAvgPool vjp/jvp vs FD", () => {
  const rng = new Rng(11);
  const shape = [3, 3, 5, 7];
  const T = (d: Arr): Tensor => ({ shape, data: d });
  const x = rng.normalArray(numel(shape));
  assert.deepEqual([...reluForward(tensor([3], [-1, 0, 2])).data], [0, 0, 2]);
  checkOp(
    "relu",
    rng,
    [x],
    (v) => reluForward(T(v[0])).data,
    (r) => [reluBackward(T(x), T(r)).data],
    (ts) => reluJvp(T(x), ts[0] && T(ts[0])).data,
  );
  const a = rng.normalArray(numel(shape)), b = rng.normalArray(numel(shape));
  checkOp(
    "add",
    rng,
    [a, b],
    (v) => addForward(T(v[0]), T(v[1])).data,
    (r) => {
      const g = addBackward(T(r));
      return [g.da.data, g.db.data];
    },
    (ts) => addJvp(shape, ts[0] && T(ts[0]), ts[1] && T(ts[1])).data,
  );
  const p = globalAvgPoolForward(T(x));
  assert.deepEqual(p.shape, [3, 3]);
  assert.ok(Math.abs(p.data[4] - x.slice(4 * 35, 5 * 35).reduce((s, v) => s + v, 0) / 35) < 1e-14);
  checkOp(
    "gap",
    rng,
    [x],
    (v) => globalAvgPoolForward(T(v[0])).data,
    (r) => [globalAvgPoolBackward({ shape: [3, 3], data: r }, shape).data],
    (ts) => globalAvgPoolJvp(shape, ts[0] && T(ts[0])).data,
  );
});

Deno.test("shortcutA: layout and vjp/jvp vs FD", () => {
  const rng = new Rng(12);
  for (const [C, outC] of [[3, 7], [16, 32]]) {
    const shape = [3, C, 5, 7];
    const T = (d: Arr): Tensor => ({ shape, data: d });
    const x = rng.normalArray(numel(shape));
    const y = shortcutAForward(T(x), outC);
    assert.deepEqual(y.shape, [3, outC, 3, 4]);
    const pad = (outC - C) / 2;
    for (let n = 0; n < 3; n++) {
      for (let c = 0; c < outC; c++) {
        for (let i = 0; i < 3; i++) {
          for (let j = 0; j < 4; j++) {
            const got = y.data[((n * outC + c) * 3 + i) * 4 + j];
            const src = c - pad;
            const want = src >= 0 && src < C ? x[((n * C + src) * 5 + 2 * i) * 7 + 2 * j] : 0;
            assert.equal(got, want);
          }
        }
      }
    }
    checkOp(
      `shortcutA ${C}->${outC}`,
      rng,
      [x],
      (v) => shortcutAForward(T(v[0]), outC).data,
      (r) => [shortcutABackward({ shape: y.shape, data: r }, shape).data],
      (ts) => shortcutAJvp(shape, ts[0] && T(ts[0]), outC).data,
    );
  }
});

Deno.test("rowNormalize: unit rows and vjp/jvp vs FD", () => {
  const rng = new Rng(13);
  const shape = [3, 17];
  const T = (d: Arr): Tensor => ({ shape, data: d });
  const x = rng.normalArray(51);
  const { y, cache } = rowNormalizeForward(T(x));
  for (let n = 0; n < 3; n++) {
    const row = y.data.slice(n * 17, n * 17 + 17);
    assert.ok(Math.abs(dot(row, row) - 1) < 1e-14);
  }
  checkOp(
    "rowNormalize",
    rng,
    [x],
    (v) => rowNormalizeForward(T(v[0])).y.data,
    (r) => [rowNormalizeBackward(cache, T(r)).data],
    (ts) => rowNormalizeJvp(cache, ts[0] && T(ts[0])).data,
  );
});

const lossCases: { name: string; opts: LossOpts; zStd: number }[] = [
  { name: "CE", opts: {}, zStd: 2 },
  { name: "focal gamma 2", opts: { gamma: 2 }, zStd: 2 },
  {
    name: "focal 0.5 + margins",
    opts: { gamma: 0.5, margins: [0.3, 0.1, 0.5, 0.2, 0, 0.4, 0.25] },
    zStd: 1,
  },
  {
    name: "LDAM s=30 margins",
    opts: { scale: 30, margins: [0.5, 0.4, 0.3, 0.2, 0.15, 0.1, 0.05] },
    zStd: 0.3,
  },
  {
    name: "s=30 margins gamma 2",
    opts: { scale: 30, margins: [0.5, 0.4, 0.3, 0.2, 0.15, 0.1, 0.05], gamma: 2 },
    zStd: 0.3,
  },
];
for (const { name, opts, zStd } of lossCases) {
  Deno.test(`loss ${name}: values and vjp/jvp vs FD`, () => {
    const rng = new Rng(name.length * 31);
    const B = 5, C = 7;
    const z = rng.normalArray(B * C, 0, zStd);
    const labels = [0, 6, 3, 3, 1];
    const T = (d: Arr): Tensor => ({ shape: [B, C], data: d });
    const { losses, cache } = lossForward(T(z), labels, opts);
    // Forward by the textbook formula.
    const s = opts.scale ?? 1, g = opts.gamma ?? 0;
    for (let i = 0; i < B; i++) {
      const zp = [...z.slice(i * C, i * C + C)].map((v, j) =>
        s * (v - (j === labels[i] ? (opts.margins?.[j] ?? 0) : 0))
      );
      const den = zp.reduce((a, v) => a + Math.exp(v), 0);
      const py = Math.exp(zp[labels[i]]) / den;
      const want = -((1 - py) ** g) * Math.log(py);
      assert.ok(Math.abs(losses[i] - want) < 1e-12 * Math.max(1, want), `${losses[i]} vs ${want}`);
    }
    const weights = rng.normalArray(B);
    const fd = fdGradient((zv) => dot(weights, lossForward(T(zv), labels, opts).losses), z);
    assertClose(lossBackward(cache, weights).data, fd, RTOL, undefined, `${name} vjp`);
    const tz = rng.normalArray(B * C);
    const fdj = fdDerivativeVec((e) =>
      lossForward(T(z.map((v, i) => v + e * tz[i])), labels, opts).losses
    );
    assertClose(lossJvp(cache, T(tz)), fdj, RTOL, undefined, `${name} jvp`);
  });
}

Deno.test("sgd: PyTorch semantics by hand (nesterov, weight decay, plain momentum)", () => {
  const p = new Float64Array([1, -2]), buf = new Float64Array(2);
  const g = new Float64Array([0.5, 0.25]);
  const opts = { lr: 0.1, momentum: 0.9, weightDecay: 0.01, nesterov: true };
  sgdStep(p, g, buf, opts);
  assertClose(p, [0.9031, -2.0437], 1e-14, 0);
  sgdStep(p, g, buf, opts);
  assertClose(buf, [0.968031, 0.436563], 1e-14, 0);
  assertClose(p, [0.76507411, -2.10594697], 1e-14, 0);
  const q = new Float64Array([1, -2]), qb = new Float64Array(2);
  sgdStep(q, g, qb, { lr: 0.1, momentum: 0.9, weightDecay: 0.01 });
  assertClose(q, [0.949, -2.023], 1e-14, 0);
  sgdStep(q, g, qb, { lr: 0.1, momentum: 0.9, weightDecay: 0.01 });
  // g' = [0.50949, 0.22977]; buf = 0.9 * [0.51, 0.23] + g'.
  assertClose(q, [0.949 - 0.1 * (0.459 + 0.50949), -2.023 - 0.1 * (0.207 + 0.22977)], 1e-14, 0);
});

// ---------------------------------------------------------------------------------------------
// ResNet

Deno.test("resnet: PyTorch parameter/buffer names, order and counts", () => {
  const cfg: ResNetConfig = { inChannels: 3, numClasses: 10, n: 1 };
  const block = (p: string) =>
    ["conv1.weight", "bn1.weight", "bn1.bias", "conv2.weight", "bn2.weight", "bn2.bias"].map(
      (s) => p + s,
    );
  assert.deepEqual(resnetParamSpec(cfg).map((p) => p.name), [
    "conv1.weight",
    "bn1.weight",
    "bn1.bias",
    ...block("layer1.0."),
    ...block("layer2.0."),
    ...block("layer3.0."),
    "linear.weight",
    "linear.bias",
  ]);
  const spec = new Map(resnetParamSpec(cfg).map((p) => [p.name, p.shape]));
  assert.deepEqual(spec.get("conv1.weight"), [16, 3, 3, 3]);
  assert.deepEqual(spec.get("layer2.0.conv1.weight"), [32, 16, 3, 3]);
  assert.deepEqual(spec.get("layer3.0.conv2.weight"), [64, 64, 3, 3]);
  assert.deepEqual(spec.get("linear.weight"), [10, 64]);
  const bufs = resnetBufferSpec(cfg).map((p) => p.name);
  assert.deepEqual(bufs.slice(0, 6), [
    "bn1.running_mean",
    "bn1.running_var",
    "layer1.0.bn1.running_mean",
    "layer1.0.bn1.running_var",
    "layer1.0.bn2.running_mean",
    "layer1.0.bn2.running_var",
  ]);
  assert.equal(bufs.length, 14);
  // akamaster/pytorch_resnet_cifar10 prints these totals.
  assert.equal(resnetParamCount({ inChannels: 3, numClasses: 10, n: 3 }), 269722);
  assert.equal(resnetParamCount({ inChannels: 3, numClasses: 10, n: 5 }), 464154);
  const normed = resnetParamSpec({ ...cfg, classifier: "normed" }).map((p) => p.name);
  assert.equal(normed.at(-1), "linear.weight");
});

function perturbBn(cfg: ResNetConfig, params: Params, rng: Rng): void {
  for (const { name } of resnetParamSpec(cfg)) {
    const v = params.get(name)!;
    if (/bn\d\.weight$/.test(name)) v.set(rng.normalArray(v.length, 1, 0.2));
    if (/bn\d\.bias$/.test(name)) v.set(rng.normalArray(v.length, 0, 0.2));
  }
}

function randomTangent(cfg: ResNetConfig, params: Params, rng: Rng): Params {
  // Scale each tensor's direction like its values so every layer matters.
  const t: Params = new Map();
  for (const { name } of resnetParamSpec(cfg)) {
    const v = params.get(name)!;
    const rms = Math.sqrt(dot(v, v) / v.length) || 0.1;
    t.set(name, rng.normalArray(v.length, 0, rms));
  }
  return t;
}

function shifted(params: Params, t: Params, s: number): Params {
  const out: Params = new Map();
  for (const [k, v] of params) {
    const tv = t.get(k);
    out.set(k, tv ? v.map((x, i) => x + s * tv[i]) : v);
  }
  return out;
}

function checkResNet(
  label: string,
  cfg: ResNetConfig,
  imgShape: number[],
  B: number,
  lossOpts: LossOpts,
  bnMode: BnMode,
  seed: number,
): void {
  const rng = new Rng(seed);
  const { params, buffers } = resnetInit(cfg, rng);
  perturbBn(cfg, params, rng);
  for (const [k, v] of buffers) {
    v.set(
      k.endsWith("mean") ? rng.normalArray(v.length, 0, 0.3) : rng.uniformArray(v.length, 0.5, 2),
    );
  }
  const x: Tensor = randn(rng, [B, ...imgShape]);
  const labels = rng.intArray(B, cfg.numClasses);
  const weights = rng.uniformArray(B, 0.2, 2);
  const run = (p: Params) => resnetForward(cfg, p, x, labels, lossOpts, bnMode, buffers);
  const fwd = run(params);
  assert.deepEqual(fwd.logits.shape, [B, cfg.numClasses]);
  assert.ok(fwd.losses.every(Number.isFinite));
  const grads = resnetBackward(fwd, weights);
  assert.deepEqual([...grads.keys()], resnetParamSpec(cfg).map((p) => p.name));
  const f = (p: Params) => dot(weights, run(p).losses);

  // Directional derivatives along random full-parameter directions.
  for (let k = 0; k < 2; k++) {
    const d = randomTangent(cfg, params, rng);
    let exact = 0;
    for (const [name, g] of grads) exact += dot(g, d.get(name)!);
    const fd = fdDerivative((s) => f(shifted(params, d, s)), 1e-6);
    assertClose([exact], [fd], RTOL, 0, `${label} <grad, d>`);
  }
  // Sampled single coordinates of every tensor.
  const got: number[] = [], want: number[] = [];
  for (const { name } of resnetParamSpec(cfg)) {
    const v = params.get(name)!;
    const idx = [rng.int(v.length), rng.int(v.length)];
    const fd = fdGradient(() => f(params), v, 1e-6, idx);
    for (const i of idx) {
      got.push(grads.get(name)![i]);
      want.push(fd[i]);
    }
  }
  assertClose(got, want, RTOL, 1e-9 * Math.max(...want.map(Math.abs)), `${label} coords`);

  // JVP of the per-example loss vector.
  const t = randomTangent(cfg, params, rng);
  const jv = resnetJvp(fwd, t);
  const fdj = fdDerivativeVec((s) => run(shifted(params, t, s)).losses, 1e-6);
  assertClose(jv, fdj, RTOL, undefined, `${label} jvp`);
  // Partial tangent (missing names are zero): only the last stage and classifier.
  const part: Params = new Map(
    [...t].filter(([k]) => k.startsWith("layer3") || k.startsWith("linear")),
  );
  const fdp = fdDerivativeVec((s) => run(shifted(params, part, s)).losses, 1e-6);
  assertClose(resnetJvp(fwd, part), fdp, RTOL, undefined, `${label} jvp partial`);
}

Deno.test("resnet-8 train BN, 4 x 1x7x7, 5 classes, CE: backward and jvp vs FD", () => {
  checkResNet("r8 train", { inChannels: 1, numClasses: 5, n: 1 }, [1, 7, 7], 4, {}, "train", 21);
});

Deno.test("resnet-8 eval BN: backward and jvp vs FD", () => {
  checkResNet("r8 eval", { inChannels: 1, numClasses: 5, n: 1 }, [1, 7, 7], 4, {}, "eval", 22);
});

Deno.test("resnet-8 normed classifier, LDAM s=30 + focal: backward and jvp vs FD", () => {
  const opts: LossOpts = { scale: 30, margins: [0.5, 0.35, 0.25, 0.2], gamma: 2 };
  checkResNet(
    "r8 ldam",
    { inChannels: 3, numClasses: 4, n: 1, classifier: "normed" },
    [3, 5, 6],
    3,
    opts,
    "train",
    23,
  );
});

Deno.test("resnet: running-stat update uses batch stats (train) and eval differs from train", () => {
  const cfg: ResNetConfig = { inChannels: 1, numClasses: 3, n: 1 };
  const rng = new Rng(9);
  const { params, buffers } = resnetInit(cfg, rng);
  const x = randn(rng, [4, 1, 5, 5], 0.5, 1);
  const fwd = resnetForward(cfg, params, x, [0, 1, 2, 0], {}, "train");
  const before = cloneParams(buffers);
  resnetUpdateBuffers(fwd, buffers);
  const c = fwd.bn.get("layer2.0.bn1.")!;
  const M = c.count;
  assert.equal(M, 4 * 3 * 3);
  assertClose(buffers.get("layer2.0.bn1.running_mean")!, c.mean.map((m) => 0.1 * m), 1e-14, 0);
  assertClose(
    buffers.get("layer2.0.bn1.running_var")!,
    c.var.map((v) => 0.9 + 0.1 * v * M / (M - 1)),
    1e-14,
    0,
  );
  const ev = resnetForward(cfg, params, x, [0, 1, 2, 0], {}, "eval", before);
  assert.ok(Math.abs(ev.losses[0] - fwd.losses[0]) > 1e-6);
});

// ---------------------------------------------------------------------------------------------
// Meta-gradient

function metaProblem(mode: "sum" | "mean"): MetaProblem {
  const rng = new Rng(77);
  const cfg: ResNetConfig = { inChannels: 2, numClasses: 3, n: 1 };
  const { params } = resnetInit(cfg, rng);
  perturbBn(cfg, params, rng);
  return {
    cfg,
    params,
    x: randn(rng, [3, 2, 5, 6]),
    labels: [0, 2, 2],
    weights: [0.4, 1.3, 1.3],
    xDev: randn(rng, [4, 2, 5, 6]),
    labelsDev: [0, 1, 2, 1],
    eta: mode === "sum" ? 0.05 : 0.15,
    mode,
  };
}

for (const mode of ["sum", "mean"] as const) {
  Deno.test(`meta eps gradient (${mode}): exact JVP identity vs FD of F(eps)`, () => {
    const p = metaProblem(mode);
    const exact = metaEpsGrad(p);
    const fd = metaEpsGradFd(p, 1e-5);
    assert.ok(Math.max(...fd.map(Math.abs)) > 1e-4, `meta gradient too small: ${fd}`);
    assertClose(exact.grad, fd, RTOL, undefined, `meta ${mode}`);
    // The 1/|B| factor matters: the other mode's exact value must not match.
    const other = metaEpsGrad({ ...p, mode: mode === "sum" ? "mean" : "sum" }).grad;
    assert.throws(() => assertClose(other, fd, RTOL, undefined, "wrong mode"), /mismatch/);
  });
}
