/**
 * The layers beyond the ResNet's (Conv2d with bias, BatchNorm1d, MaxPool2d, AvgPool2d, Flatten,
 * Dropout, Sigmoid, Tanh): their state_dict names, shapes and default inits, dropout's per-step
 * seeding, and a small CNN made of them run through a Model: forward against the float64
 * reference, the tape's parameter and input gradients and its JVP against central differences of
 * that reference.
 */
import assert from "node:assert/strict";
import {
  ArraySource,
  AvgPool2d,
  BatchNorm1d,
  BatchNorm2d,
  classificationLoss,
  Conv2d,
  Ctx,
  Dropout,
  EVAL,
  fit,
  Flatten,
  type Gpu,
  Linear,
  MaxPool2d,
  Model,
  type Module,
  readCheckpoint,
  ReLU,
  Rng,
  Sequential,
  Sgd,
  Sigmoid,
  StepEngine,
  Tanh,
  Tape,
  Tensor,
  TRAIN_NO_UPDATE,
} from "../mod.ts";
import * as ref from "./reference/mod.ts";
import { gpuTest } from "./gpu_harness.ts";
import { type Arr, expectClose, randn, report, T } from "./op_check.ts";

function names(model: Model): string[] {
  const s = model.specs;
  return [...s.params, ...s.buffers].map((p) => `${p.name}:${p.shape}`);
}

function std(v: Float32Array): number {
  const m = v.reduce((a, b) => a + b, 0) / v.length;
  return Math.sqrt(v.reduce((a, b) => a + (b - m) ** 2, 0) / v.length);
}

gpuTest("Conv2d: PyTorch names, optional bias, uniform default and He-normal init", async (gpu) => {
  const model = new Model(
    gpu,
    new Sequential(
      new Conv2d(4, 6),
      new Conv2d(16, 32, {
        kernel: 3,
        bias: false,
        init: "he-normal",
      }),
    ),
    1,
  );
  assert.deepEqual(names(model), ["0.weight:6,4,3,3", "0.bias:6", "1.weight:32,16,3,3"]);
  const sd = await model.stateDict();
  const bound = 1 / Math.sqrt(4 * 9);
  for (const name of ["0.weight", "0.bias"]) {
    const v = sd.get(name)!;
    assert.ok(v.every((x) => Math.abs(x) <= bound), `${name} outside U(-${bound}, ${bound})`);
    assert.ok(Math.max(...v.map(Math.abs)) > 0.6 * bound, `${name} not spread over its range`);
  }
  const he = sd.get("1.weight")!;
  const want = Math.sqrt(2 / (16 * 9));
  assert.ok(Math.abs(std(he) / want - 1) < 0.05, `He-normal std ${std(he)}, want ${want}`);
  model.destroy();
});

gpuTest("BatchNorm1d and the parameter-free layers: names, init and shapes", async (gpu) => {
  const net = new Sequential(
    new MaxPool2d(2),
    new AvgPool2d(3, { stride: 1, pad: 1 }),
    new Tanh(),
    new Flatten(),
    new Dropout(0.4),
    new Sigmoid(),
    new BatchNorm1d(3 * 2 * 3),
  );
  const model = new Model(gpu, net, 0);
  assert.deepEqual(names(model), [
    "6.weight:18",
    "6.bias:18",
    "6.running_mean:18",
    "6.running_var:18",
  ]);
  const sd = await model.stateDict();
  assert.ok(sd.get("6.weight")!.every((v) => v === 1) && sd.get("6.bias")!.every((v) => v === 0));
  assert.ok(sd.get("6.running_var")!.every((v) => v === 1));
  const x = Tensor.from(gpu, Array.from({ length: 2 * 3 * 5 * 7 }, (_, i) => i % 5), [2, 3, 5, 7]);
  const ctx = new Ctx(gpu, null);
  assert.deepEqual(model.forward(ctx, x, EVAL).shape, [2, 18]);
  // a BatchNorm1d refuses maps; a train-mode pass through a Dropout needs the step's noise
  const bad = new Model(gpu, new BatchNorm1d(3), 0);
  assert.throws(() => bad.forward(ctx, x, EVAL), /BatchNorm1d.*expected \[N, 3\]/);
  const flat = Tensor.from(gpu, new Array(6).fill(1), [2, 3]);
  const drop = new Model(gpu, new Sequential(new Dropout(0.5)), 0);
  assert.throws(() => drop.forward(ctx, flat, TRAIN_NO_UPDATE), /Dropout layer "0": .*mode\.noise/);
  assert.equal(drop.forward(ctx, flat, EVAL), flat, "eval-mode dropout is the identity");
  ctx.release();
  for (const t of [x, flat]) t.release(gpu);
  for (const m of [model, bad, drop]) m.destroy();
});

gpuTest(
  "Dropout: a mask per step, per layer and per pass; the same for the same step",
  async (gpu) => {
    const net = new Sequential(["a", new Dropout(0.5)], ["b", new Dropout(0.5)]);
    const model = new Model(gpu, new Sequential(new Flatten()), 0);
    const engine = new StepEngine(model, {
      loss: (ctx, y, t) => classificationLoss(ctx, y, t),
      optimizer: new Sgd(gpu, model.paramLayout, { momentum: 0, weightDecay: 0, nesterov: false }),
      batch: 4,
      input: [64],
      seed: 11,
    });
    const ones = Tensor.from(gpu, new Array(256).fill(1), [4, 64]);
    const scope = model.scope();
    const masks = async (step: number, stream: number) => {
      engine.stepIndex = step;
      const ctx = new Ctx(gpu, null);
      const mode = { ...TRAIN_NO_UPDATE, noise: engine.noise(stream) };
      const a = await net.layers[0][1].forward(ctx, ones, scope.child("a"), mode).read(gpu);
      const b = await net.layers[1][1].forward(ctx, ones, scope.child("b"), mode).read(gpu);
      ctx.release();
      return { a: [...a], b: [...b] };
    };
    const s3 = await masks(3, 0);
    // the mask is the reference hash of (step seed ^ layer salt)
    const stepSeed = new Rng(11, "dropout-step", 3).nextU32();
    const salt = new Rng(0, "dropout", "a.").nextU32();
    s3.a.forEach((v, i) => assert.equal(v !== 0, ref.dropoutKeep((stepSeed ^ salt) >>> 0, i, 0.5)));
    assert.notDeepEqual(s3.a, s3.b, "two layers share a mask");
    assert.notDeepEqual((await masks(4, 0)).a, s3.a, "the next step reuses the mask");
    assert.notDeepEqual((await masks(3, 1)).a, s3.a, "the dev pass reuses the batch's mask");
    assert.deepEqual(await masks(3, 0), s3, "the same step draws another mask");
    ones.release(gpu);
    engine.optimizer.destroy();
    engine.destroy();
    model.destroy();
  },
);

// ------------------------------------------------------------------ a small CNN through Model

/** Conv-BN-ReLU-MaxPool, Conv(+bias)-Tanh-AvgPool, Flatten, Dropout, Linear-BN1d-Sigmoid, Linear. */
function smallCnn(): Module {
  return new Sequential(
    ["conv1", new Conv2d(2, 3)],
    ["bn1", new BatchNorm2d(3)],
    ["relu", new ReLU()],
    ["pool1", new MaxPool2d(2)],
    ["conv2", new Conv2d(3, 4, { kernel: 3, pad: 1 })],
    ["tanh", new Tanh()],
    ["pool2", new AvgPool2d(2, { stride: 1 })],
    ["flat", new Flatten()],
    ["drop", new Dropout(0.25)],
    ["fc1", new Linear(8, 6)],
    ["bn2", new BatchNorm1d(6)],
    ["sig", new Sigmoid()],
    ["fc2", new Linear(6, 3)],
  );
}

/** The same network in float64 (train-mode batch norm, the dropout mask of `dropSeed`). */
function smallCnnRef(p: Map<string, Arr>, x: ref.Tensor, dropSeed: number): Arr {
  const N = x.shape[0];
  const bn = (t: ref.Tensor, name: string) =>
    ref.batchNorm2dForward(t, p.get(`${name}.weight`)!, p.get(`${name}.bias`)!).y;
  const conv = (t: ref.Tensor, name: string, shape: number[]) =>
    ref.channelBiasForward(
      ref.conv2dForward(t, T(shape, p.get(`${name}.weight`)!), 1, 1),
      p.get(`${name}.bias`)!,
    );
  const map = (t: ref.Tensor, f: (v: number) => number) => T(t.shape, t.data.map(f));
  let h = conv(x, "conv1", [3, 2, 3, 3]);
  h = ref.reluForward(bn(h, "bn1"));
  h = ref.maxPool2dForward(h, { kernel: 2, stride: 2, pad: 0 }).y;
  h = map(conv(h, "conv2", [4, 3, 3, 3]), Math.tanh);
  h = ref.avgPool2dForward(h, { kernel: 2, stride: 1, pad: 0 });
  const scale = Math.fround(1 / 0.75);
  const flat = T(
    [N, 8],
    h.data.map((v, i) => (ref.dropoutKeep(dropSeed, i, 0.25) ? v * scale : 0)),
  );
  let z = ref.linearForward(flat, T([6, 8], p.get("fc1.weight")!), p.get("fc1.bias")!);
  z = map(bn(T([N, 6, 1, 1], z.data), "bn2"), ref.sigmoid);
  return ref.linearForward(T([N, 6], z.data), T([3, 6], p.get("fc2.weight")!), p.get("fc2.bias")!)
    .data;
}

gpuTest(
  "a small CNN of the layers through Model: forward, gradients and JVP vs float64",
  async (gpu) => {
    const rng = new ref.Rng(31);
    const model = new Model(gpu, smallCnn(), 0);
    const xs = [5, 2, 5, 7];
    const x = randn(rng, ref.numel(xs));
    // parameters drawn in float32-representable values, uploaded to the model
    const params = new Map<string, Arr>();
    for (const s of model.specs.params) {
      const n = ref.numel(s.shape);
      params.set(s.name, s.name.includes("bn") ? randn(rng, n, 1, 0.2) : randn(rng, n, 0, 0.5));
    }
    const buffers = model.specs.buffers.map((s) => [s.name, new Float32Array(ref.numel(s.shape))]);
    model.loadStateDict(
      new Map([...[...params].map(([k, v]) => [k, Float32Array.from(v)] as const), ...buffers] as [
        string,
        Float32Array,
      ][]),
    );
    const seedValue = 0x5eed;
    const seedT = Tensor.from(gpu, [seedValue], [1], "u32");
    const mode = { ...TRAIN_NO_UPDATE, noise: { seed: seedT.view, stream: 2 } };
    const dropSeed = (seedValue ^ new Rng(2, "dropout", "drop.").nextU32()) >>> 0;
    const xT = Tensor.from(gpu, x, xs);
    xT.requiresGrad = true;
    const ctx = new Ctx(gpu, new Tape());
    const y = model.forward(ctx, xT, mode);
    const f = (p: Map<string, Arr>, xv: Arr) => smallCnnRef(p, T(xs, xv), dropSeed);
    expectClose("CNN: forward", await y.read(gpu), f(params, x));

    // backward with a random seed: every parameter and the input against FD of <r, f>
    const r = randn(rng, y.size);
    const rT = Tensor.from(gpu, r, y.shape);
    const wrt = [...model.params.tensors, xT];
    const grads = ctx.tape!.backward(gpu, y, rT, wrt);
    const leaves: [string, Arr][] = [...params, ["input", x]];
    for (const [k, [name, v]] of leaves.entries()) {
      const g = await grads.get(wrt[k])!.read(gpu);
      const fd = ref.fdGradient(() => ref.dot(r, f(params, x)), v, 1e-6);
      // conv1.bias feeds a train-mode batch norm: its true gradient is 0, so errors are measured
      // against a floor of 1e-2 (the other gradients are O(0.1 - 1))
      expectClose(`CNN: gradient of ${name}`, g, fd, 1e-4, Math.max(ref.maxAbs(fd), 1e-2));
    }
    for (const [t, g] of grads) if (t !== xT) g.release(gpu);

    // JVP along random tangents of every parameter and the input
    const tangents = leaves.map(([, v]) => randn(rng, v.length));
    const tanTs = tangents.map((t, k) => Tensor.from(gpu, t, wrt[k].shape));
    const yDot = ctx.tape!.jvp(gpu, new Map(wrt.map((t, k) => [t, tanTs[k]])), y)!;
    const moved = (h: number) => {
      const p = new Map([...params].map(([n, v], k) => [n, ref.axpy(v, h, tangents[k])]));
      return f(p, ref.axpy(x, h, tangents[tangents.length - 1]));
    };
    expectClose("CNN: JVP", await yDot.read(gpu), ref.fdDerivativeVec(moved, 1e-6), 1e-4);
    report("CNN");
    for (const t of [yDot, rT, xT, seedT, ...tanTs]) t.release(gpu);
    ctx.release();
    model.destroy();
  },
);

/** A step engine over the small CNN (batch 6, SGD with momentum), and its destructor. */
function cnnEngine(gpu: Gpu, modelSeed: number, engineSeed: number) {
  const model = new Model(gpu, smallCnn(), modelSeed);
  const sgd = { momentum: 0.9, weightDecay: 0, nesterov: false };
  const optimizer = new Sgd(gpu, model.paramLayout, sgd);
  const engine = new StepEngine(model, {
    loss: (ctx, y, t) => classificationLoss(ctx, y, t),
    optimizer,
    batch: 6,
    input: [2, 5, 7],
    seed: engineSeed,
  });
  const destroy = () => {
    engine.destroy();
    optimizer.destroy();
    model.destroy();
  };
  return { model, engine, destroy };
}

gpuTest(
  "steady state: warm steps of the CNN (dropout, batch norm 1d) create no GPU objects",
  async (gpu) => {
    const { engine, destroy } = cnnEngine(gpu, 0, 0);
    engine.x.upload(gpu, Array.from({ length: 6 * 70 }, (_, i) => Math.sin(i)));
    engine.targets.upload(gpu, [0, 1, 2, 0, 1, 2]);
    for (let i = 0; i < 3; i++) engine.step(0.01 * (i + 1));
    await gpu.sync();
    const snap = () => ({ ...gpu.stats, submits: 0, dispatches: 0, liveBuffers: gpu.liveBuffers });
    const s0 = snap();
    for (let i = 0; i < 20; i++) engine.step(0.01 / (i + 1));
    await gpu.sync();
    assert.deepEqual(snap(), s0);
    assert.equal(engine.stepIndex, 23);
    destroy();
  },
);

gpuTest(
  "fit with dropout: a resumed run draws the same masks and ends bit-identical",
  async (gpu) => {
    const dir = await Deno.makeTempDir();
    const n = 30;
    const inputs = Float32Array.from({ length: n * 70 }, (_, i) => Math.cos(i * 0.37));
    const targets = Uint32Array.from({ length: n }, (_, i) => i % 3);
    const run = async (path: string, maxEpochs: number, resume: boolean) => {
      const { model, engine, destroy } = cnnEngine(gpu, 4, 8);
      const result = await fit({
        engine,
        data: new ArraySource({ engine, inputs, targets, seed: 2 }),
        epochs: 3,
        lr: () => 0.05,
        checkpoint: { path, format: "layers-test/1" },
        resume: resume ? await readCheckpoint(path) : null,
        maxEpochs,
      });
      const state = await model.stateDict();
      const losses = result.history.map((h) => (h as { trainLoss: number }).trainLoss);
      destroy();
      return { state, losses };
    };
    try {
      const whole = await run(`${dir}/a.safetensors`, Infinity, false);
      await run(`${dir}/b.safetensors`, 2, false);
      const rest = await run(`${dir}/b.safetensors`, Infinity, true);
      assert.deepEqual(rest.state, whole.state);
      assert.deepEqual(rest.losses, whole.losses);
      // the masks matter: another engine seed trains to other parameters
      assert.ok(whole.losses.every(Number.isFinite));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
