/**
 * Optimizers over the flat layout (SGD, Adam, AdamW) against the float64 reference, the
 * per-step values that create no GPU objects, and the learning-rate schedules by value.
 */
import assert from "node:assert/strict";
import type { Gpu } from "../src/gpu/runtime.ts";
import { FlatLayout, FlatTensors } from "../src/nn/params.ts";
import { createOptimizer, type Optimizer, Sgd } from "../src/optim/optimizer.ts";
import { Adam } from "../src/optim/adam.ts";
import { sgdStep } from "../src/optim/sgd.ts";
import {
  constantLr,
  cosineLr,
  globalStep,
  linearWarmup,
  multiStepLr,
  pointAt,
  stepLr,
} from "../src/optim/schedule.ts";
import { Tensor } from "../src/tensor.ts";
import * as ref from "./reference/mod.ts";
import { gpuTest } from "./gpu_harness.ts";
import { expectClose, randn, report } from "./op_check.ts";

/** Three parameters of sizes that fill no alignment unit, so the layout has gaps. */
function layout(gpu: Gpu): FlatLayout {
  return new FlatLayout([
    { name: "a.weight", shape: [5, 7] },
    { name: "a.bias", shape: [5] },
    { name: "b.weight", shape: [3, 17, 3] },
  ], gpu.offsetAlignment);
}

/** Host values of every entry, by name. */
function values(l: FlatLayout, rng: ref.Rng, std = 1): Map<string, Float32Array> {
  return new Map(
    l.specs.map((s) => [s.name, Float32Array.from(randn(rng, ref.numel(s.shape), 0, std))]),
  );
}

/** Concatenated entries (no gaps), as float64. */
function concat(m: Map<string, Float32Array>, l: FlatLayout): Float64Array {
  return Float64Array.from(l.specs.flatMap((s) => [...m.get(s.name)!]));
}

const adamCases = [
  { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.05, decoupled: false },
  { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.05, decoupled: true },
  { lr: 0.003, beta1: 0.8, beta2: 0.99, eps: 1e-6, weightDecay: 0.1, decoupled: true },
];

for (const o of adamCases) {
  gpuTest(`adam vs float64 reference over 20 steps: ${JSON.stringify(o)}`, async (gpu) => {
    const rng = new ref.Rng(7 + o.lr * 1000 + (o.decoupled ? 1 : 0));
    const l = layout(gpu);
    const params = new FlatTensors(gpu, l), grads = new FlatTensors(gpu, l);
    const init = values(l, rng);
    params.upload(init);
    const { lr, ...config } = o;
    const opt = new Adam(gpu, l, config);
    assert.equal(opt.name, o.decoupled ? "adamw" : "adam");
    const p = concat(init, l), m = new Float64Array(p.length), v = new Float64Array(p.length);
    for (let t = 1; t <= 20; t++) {
      const g = values(l, rng, 0.5);
      grads.upload(g);
      opt.step(params, grads, lr);
      ref.adamStep(p, concat(g, l), m, v, t, { lr, ...config });
    }
    const got = (f: FlatTensors) => f.download().then((x) => concat(x, l));
    expectClose("adam: params", await got(params), p, 1e-6);
    expectClose("adam: exp_avg", await got(opt.expAvg), m, 1e-6);
    expectClose("adam: exp_avg_sq", await got(opt.expAvgSq), v, 1e-6);
    // the parameters moved well beyond the tolerance, so the check above has teeth
    assert.ok(ref.relError(p, concat(init, l)) > 1e-2);
    // the gaps between entries stay zero
    const raw = new Float32Array(await gpu.read(params.all));
    const used = new Set(
      l.specs.flatMap((s, i) =>
        Array.from({ length: ref.numel(s.shape) }, (_, j) => l.offsets[i] + j)
      ),
    );
    assert.ok(raw.every((x, i) => used.has(i) || x === 0), "a gap changed");
    report("adam");
    assert.deepEqual(opt.scalars(), { step: 20 });
    assert.deepEqual([...opt.stateBuffers().keys()], [
      "optimizer.exp_avg.",
      "optimizer.exp_avg_sq.",
    ]);
    for (const f of [params, grads]) f.destroy();
    opt.destroy();
  });
}

gpuTest("adam resumes from its saved step count exactly", async (gpu) => {
  const rng = new ref.Rng(11);
  const l = layout(gpu);
  const init = values(l, rng), gs = [values(l, rng), values(l, rng), values(l, rng)];
  const run = async (split: boolean) => {
    const params = new FlatTensors(gpu, l), grads = new FlatTensors(gpu, l);
    params.upload(init);
    let opt = new Adam(gpu, l, { decoupled: true });
    for (const [t, g] of gs.entries()) {
      if (split && t === 2) {
        // a fresh optimizer given the saved moments and step count
        const next = new Adam(gpu, l, { decoupled: true });
        next.expAvg.copyFrom(opt.expAvg);
        next.expAvgSq.copyFrom(opt.expAvgSq);
        next.loadScalars(opt.scalars());
        gpu.submit(); // the copies read the old buffers
        opt.destroy();
        opt = next;
      }
      grads.upload(g);
      opt.step(params, grads, 0.01);
    }
    const out = await params.download();
    for (const f of [params, grads]) f.destroy();
    opt.destroy();
    return concat(out, l);
  };
  assert.deepEqual(await run(true), await run(false));
  const opt = new Adam(gpu, l);
  assert.throws(() => opt.loadScalars({ step: 1.5 }), /"step" must be an integer >= 0/);
  assert.throws(
    () => new Adam(gpu, l, { beta1: 1 }),
    new RangeError("Adam: beta1 = 1, expected a number in [0, 1)"),
  );
  opt.destroy();
});

/** Runs `steps` optimizer steps with a new learning rate each; returns the object counters. */
async function varyingRateSteps(gpu: Gpu, opt: Optimizer, l: FlatLayout, steps: number) {
  const rng = new ref.Rng(3);
  const params = new FlatTensors(gpu, l), grads = new FlatTensors(gpu, l);
  params.upload(values(l, rng));
  grads.upload(values(l, rng));
  const lr = (i: number) => 0.1 / (1 + i);
  opt.step(params, grads, lr(0)); // the first step builds the pipeline and bind group
  gpu.submit();
  const snap = () => ({
    buffers: gpu.stats.buffersCreated,
    uniforms: gpu.stats.uniformsCreated,
    bindGroups: gpu.stats.bindGroupsCreated,
    pipelines: gpu.stats.pipelinesCreated,
    submits: gpu.stats.submits,
  });
  const before = snap();
  for (let i = 1; i <= steps; i++) {
    opt.step(params, grads, lr(i));
    gpu.submit(); // one submit per training step, as the trainer does
  }
  await gpu.sync();
  const after = snap();
  for (const f of [params, grads]) f.destroy();
  return { before, after };
}

for (const kind of ["sgd", "adam", "adamw"] as const) {
  gpuTest(`${kind}: 50 steps at 50 learning rates create no GPU objects`, async (gpu) => {
    const l = layout(gpu);
    const opt = createOptimizer(
      gpu,
      l,
      kind === "sgd"
        ? { kind, momentum: 0.9, weightDecay: 5e-4, nesterov: false }
        : { kind, weightDecay: 0.01 },
    );
    assert.equal(opt.name, kind);
    const { before, after } = await varyingRateSteps(gpu, opt, l, 50);
    assert.equal(after.buffers, before.buffers, "buffers created");
    assert.equal(after.uniforms, before.uniforms, "uniforms created");
    assert.equal(after.bindGroups, before.bindGroups, "bind groups created");
    assert.equal(after.pipelines, before.pipelines, "pipelines created");
    // a changed rate needs no extra submit when the previous step was submitted
    assert.equal(after.submits - before.submits, 50);
    opt.destroy();
  });
}

gpuTest(
  "sgd: the Sgd class and sgdStep follow the reference under a changing rate",
  async (gpu) => {
    const rng = new ref.Rng(5);
    const l = layout(gpu);
    const config = { momentum: 0.9, weightDecay: 0.01, nesterov: true };
    const params = new FlatTensors(gpu, l), grads = new FlatTensors(gpu, l);
    const init = values(l, rng);
    params.upload(init);
    const opt = new Sgd(gpu, l, config);
    const p = concat(init, l), buf = new Float64Array(p.length);
    for (let t = 0; t < 6; t++) {
      const g = values(l, rng);
      grads.upload(g);
      const lr = 0.1 * 0.7 ** t;
      opt.step(params, grads, lr);
      ref.sgdStep(p, concat(g, l), buf, { lr, ...config });
    }
    expectClose("sgd class: params", concat(await params.download(), l), p, 1e-6);
    expectClose("sgd class: momentum", concat(await opt.momentum.download(), l), buf, 1e-6);
    for (const f of [params, grads]) f.destroy();
    opt.destroy();
  },
);

gpuTest(
  "a rate rewritten while recorded work still reads the old one waits for it",
  async (gpu) => {
    // two updates recorded back to back, without a submit between them, at different rates:
    // the second rate must not overtake the first update
    const n = 300;
    const p = Tensor.from(gpu, new Array(n).fill(1), [n]);
    const g = Tensor.from(gpu, new Array(n).fill(1), [n]);
    const m = Tensor.from(gpu, new Array(n).fill(0), [n]);
    const o = { momentum: 0, weightDecay: 0, nesterov: false };
    gpu.submit();
    const submits = gpu.stats.submits;
    sgdStep(gpu, p.view, g.view, m.view, n, { lr: 0.5, ...o });
    sgdStep(gpu, p.view, g.view, m.view, n, { lr: 0.25, ...o });
    assert.equal(gpu.stats.submits - submits, 1, "the first update was submitted before the write");
    const got = await p.read(gpu);
    assert.ok(got.every((x) => x === 1 - 0.5 - 0.25), `got ${got[0]}`);
    for (const t of [p, g, m]) t.release(gpu);
  },
);

gpuTest("createOptimizer refuses an unknown kind by name", (gpu) => {
  const l = layout(gpu);
  assert.throws(
    () => createOptimizer(gpu, l, { kind: "rmsprop" } as unknown as { kind: "adam" }),
    /unknown kind "rmsprop"; expected "sgd", "adam" or "adamw"/,
  );
  return Promise.resolve();
});

// ------------------------------------------------------------------------------ schedules

const at = (epoch: number, step = 0, stepsPerEpoch = 10) => ({ epoch, step, stepsPerEpoch });

Deno.test("schedules: constant, step, multi-step by value", () => {
  assert.equal(constantLr(0.1)(at(7, 3)), 0.1);
  const s = stepLr(0.1, { every: 3, gamma: 0.5 });
  assert.deepEqual([0, 2, 3, 5, 6, 9].map((e) => s(at(e, 9))), [
    0.1,
    0.1,
    0.05,
    0.05,
    0.025,
    0.0125,
  ]);
  const m = multiStepLr(1, { milestones: [2, 5], gamma: 0.1 });
  const got = [0, 1, 2, 4, 5, 100].map((e) => m(at(e)));
  const want = [1, 1, 0.1, 0.1, 0.01, 0.01];
  got.forEach((g, i) => assert.ok(Math.abs(g - want[i]) < 1e-15, `epoch ${i}: ${g}`));
});

Deno.test("schedules: cosine per epoch and per step, clamped at the floor", () => {
  const c = cosineLr(0.1, { epochs: 4, floor: 0.01 });
  const want = [
    0.1,
    0.01 + 0.09 * (1 + Math.SQRT1_2) / 2,
    0.055,
    0.01 + 0.09 * (1 - Math.SQRT1_2) / 2,
    0.01,
    0.01,
  ];
  [0, 1, 2, 3, 4, 9].forEach((e, i) =>
    assert.ok(Math.abs(c(at(e, 5)) - want[i]) < 1e-15, `epoch ${e}`)
  );
  const smooth = cosineLr(1, { epochs: 2, perStep: true });
  assert.ok(Math.abs(smooth(at(0, 5)) - (1 + Math.cos(Math.PI / 4)) / 2) < 1e-15);
  assert.ok(Math.abs(smooth(at(1, 0)) - 0.5) < 1e-15);
  assert.throws(
    () => cosineLr(0.1, { epochs: 4, floor: 0.2 }),
    /floor = 0.2, expected a number in \[0, lr = 0.1\]/,
  );
});

Deno.test("schedules: linear warm-up composes with any schedule, in steps or epochs", () => {
  const w = linearWarmup(constantLr(0.3), { steps: 4, startFactor: 0 });
  assert.deepEqual([0, 1, 2, 4, 5].map((s) => w(at(0, s))), [0, 0.075, 0.15, 0.3, 0.3]);
  assert.ok(Math.abs(w(at(0, 3)) - 0.225) < 1e-15);
  // PyTorch LinearLR's default start factor 1/3, over 2 epochs of 10 steps
  const we = linearWarmup(multiStepLr(0.3, { milestones: [3], gamma: 0.1 }), { epochs: 2 });
  assert.ok(Math.abs(we(at(0, 0)) - 0.1) < 1e-15);
  assert.ok(Math.abs(we(at(1, 0)) - 0.2) < 1e-15);
  assert.ok(Math.abs(we(at(2, 0)) - 0.3) < 1e-15);
  assert.ok(Math.abs(we(at(3, 0)) - 0.03) < 1e-15);
  assert.throws(() => linearWarmup(constantLr(1), {}), /exactly one of steps or epochs/);
  assert.throws(
    () => linearWarmup(constantLr(1), { steps: 0 }),
    /steps = 0, expected an integer >= 1/,
  );
});

Deno.test("schedules: global steps and points convert both ways; bad settings are refused", () => {
  for (const g of [0, 9, 10, 37]) assert.equal(globalStep(pointAt(g, 10)), g);
  assert.deepEqual(pointAt(37, 10), { epoch: 3, step: 7, stepsPerEpoch: 10 });
  assert.throws(() => stepLr(0.1, { every: 0, gamma: 0.1 }), /every = 0/);
  assert.throws(() => multiStepLr(0.1, { milestones: [5, 5], gamma: 0.1 }), /milestones\[1\] = 5/);
  assert.throws(() => constantLr(-1), /lr = -1, expected a finite number >= 0/);
});
