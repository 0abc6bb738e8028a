/**
 * The engine over a model that is not the ResNet, through mod.ts only:
 *
 * - module names compose by prefix (PyTorch state_dict names), Linear's default init is
 *   PyTorch's U(-1/sqrt(in), 1/sqrt(in)) and deterministic in the seed;
 * - a model's state dict round-trips through a safetensors file bit for bit;
 * - a plain step of an MLP equals SGD on the float64 gradient of the weighted mean loss;
 * - steady state: after a warm-up, plain and meta steps of an MLP create no GPU objects;
 * - fit: 2 epochs in one call and 1 + 1 epochs with a resume in between end bit-identical;
 *   so does a "meta-update-wy" run, whose learned class weights travel in the checkpoint through
 *   the reweighter's checkpointState / restore hooks (and start at 1 in a fresh reweighter);
 * - readLossSum gives per-step losses inside fit's afterStep without draining the epoch's loss.
 */
import assert from "node:assert/strict";
import {
  ArraySource,
  classificationLoss,
  crossEntropy,
  Ctx,
  EVAL,
  fit,
  type Gpu,
  Linear,
  linear,
  MetaReweighter,
  Model,
  readCheckpoint,
  ReLU,
  relu,
  Sequential,
  Sgd,
  StepEngine,
  Tape,
  Tensor,
} from "../mod.ts";
import { gpuTest } from "./gpu_harness.ts";

function mlp(inputs: number, hidden: number, classes: number): Sequential {
  return new Sequential(new Linear(inputs, hidden), new ReLU(), new Linear(hidden, classes));
}

gpuTest("modules: prefixed names, PyTorch default Linear init, deterministic", async (gpu) => {
  const net = new Sequential(["body", mlp(5, 7, 3)], ["head", new Linear(3, 2, { bias: false })]);
  const model = new Model(gpu, net, 3);
  assert.deepEqual(model.specs.params.map((s) => `${s.name}:${s.shape}`), [
    "body.0.weight:7,5",
    "body.0.bias:7",
    "body.2.weight:3,7",
    "body.2.bias:3",
    "head.weight:2,3",
  ]);
  assert.deepEqual(model.specs.buffers, []);
  const sd = await model.stateDict();
  for (const [name, fanIn] of [["body.0.weight", 5], ["body.0.bias", 5], ["body.2.weight", 7]]) {
    const v = sd.get(name as string)!;
    const bound = 1 / Math.sqrt(fanIn as number);
    assert.ok(v.every((x) => Math.abs(x) <= bound), `${name} outside U(-${bound}, ${bound})`);
    assert.ok(Math.max(...v.map(Math.abs)) > 0.5 * bound, `${name} not spread over its range`);
  }
  const again = await new Model(gpu, net, 3).stateDict();
  const other = await new Model(gpu, net, 4).stateDict();
  assert.deepEqual(again, sd, "same seed, different init");
  assert.notDeepEqual(other.get("head.weight"), sd.get("head.weight"), "seed ignored");
  model.destroy();
});

gpuTest("model: state dict round-trips through safetensors", async (gpu) => {
  const path = await Deno.makeTempFile({ suffix: ".safetensors" });
  try {
    const a = new Model(gpu, mlp(4, 6, 3), 1);
    await a.save(path, { metadata: { note: "test" }, overwrite: true }); // the temp file is ours
    const b = new Model(gpu, mlp(4, 6, 3), 2);
    assert.notDeepEqual(await b.stateDict(), await a.stateDict());
    const file = await b.load(path);
    assert.equal(file.metadata.note, "test");
    assert.deepEqual(await b.stateDict(), await a.stateDict());
    const raw = await readCheckpoint(path);
    assert.deepEqual(raw!.tensors.get("2.weight")!.shape, [3, 6]);
    // a file of another architecture is refused with the entry's name
    const c = new Model(gpu, mlp(4, 5, 3), 0);
    await assert.rejects(() => c.load(path), /0\.weight/);
    for (const m of [a, b, c]) m.destroy();
  } finally {
    await Deno.remove(path);
  }
});

/** An engine over an MLP with SGD, and random batch data. */
function mlpEngine(gpu: Gpu, batch: number, devBatch: number) {
  const model = new Model(gpu, mlp(6, 8, 4), 5);
  const optimizer = new Sgd(gpu, model.paramLayout, {
    momentum: 0.9,
    weightDecay: 1e-3,
    nesterov: true,
  });
  const engine = new StepEngine(model, {
    loss: (ctx, y, t) => classificationLoss(ctx, y, t, {}),
    optimizer,
    batch,
    input: [6],
  });
  const meta = new MetaReweighter(engine, { devBatch, devLoss: crossEntropy, numClasses: 4 });
  const rnd = (n: number, s: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * s));
  engine.x.upload(gpu, rnd(batch * 6, 1.3));
  engine.targets.upload(gpu, Array.from({ length: batch }, (_, i) => i % 4));
  engine.weights.upload(gpu, Array.from({ length: batch }, (_, i) => 0.5 + (i % 3) * 0.25));
  meta.devX.upload(gpu, rnd(devBatch * 6, 0.7));
  meta.devTargets.upload(gpu, Array.from({ length: devBatch }, (_, i) => (i + 1) % 4));
  const destroy = () => {
    meta.destroy();
    engine.destroy();
    optimizer.destroy();
    model.destroy();
  };
  return { model, optimizer, engine, meta, destroy };
}

gpuTest(
  "step engine: an MLP's plain step is SGD on the float64 weighted-loss gradient",
  async (gpu) => {
    const B = 5;
    const { model, engine, destroy } = mlpEngine(gpu, B, 4);
    const before = await model.stateDict();
    const x = await engine.x.read(gpu);
    const y = await engine.targets.read(gpu);
    const w = await engine.weights.read(gpu);
    engine.step(0.1);
    const after = await model.stateDict();
    // float64 forward and backward of (1/B) sum_i w_i CE_i
    const W1 = before.get("0.weight")!, b1 = before.get("0.bias")!;
    const W2 = before.get("2.weight")!, b2 = before.get("2.bias")!;
    const gW1 = new Float64Array(W1.length), gb1 = new Float64Array(b1.length);
    const gW2 = new Float64Array(W2.length), gb2 = new Float64Array(b2.length);
    for (let i = 0; i < B; i++) {
      const h = Array.from({ length: 8 }, (_, j) => {
        let s = b1[j];
        for (let k = 0; k < 6; k++) s += W1[j * 6 + k] * x[i * 6 + k];
        return Math.max(s, 0);
      });
      const z = Array.from({ length: 4 }, (_, c) => {
        let s = b2[c];
        for (let j = 0; j < 8; j++) s += W2[c * 8 + j] * h[j];
        return s;
      });
      const mx = Math.max(...z);
      const e = z.map((v) => Math.exp(v - mx));
      const sum = e.reduce((a, b) => a + b, 0);
      const dz = e.map((v, c) => (w[i] / B) * (v / sum - (c === y[i] ? 1 : 0)));
      for (let c = 0; c < 4; c++) {
        gb2[c] += dz[c];
        for (let j = 0; j < 8; j++) gW2[c * 8 + j] += dz[c] * h[j];
      }
      for (let j = 0; j < 8; j++) {
        if (h[j] <= 0) continue;
        let dh = 0;
        for (let c = 0; c < 4; c++) dh += dz[c] * W2[c * 8 + j];
        gb1[j] += dh;
        for (let k = 0; k < 6; k++) gW1[j * 6 + k] += dh * x[i * 6 + k];
      }
    }
    // first SGD step from zero momentum, Nesterov: d = g + wd p; step = lr * (d + 0.9 d)
    const grads = new Map([["0.weight", gW1], ["0.bias", gb1], ["2.weight", gW2], ["2.bias", gb2]]);
    let err = 0;
    for (const [name, g] of grads) {
      const p = before.get(name)!, q = after.get(name)!;
      for (let k = 0; k < g.length; k++) {
        const want = p[k] - 0.1 * 1.9 * (g[k] + 1e-3 * p[k]);
        err = Math.max(err, Math.abs(q[k] - want));
      }
    }
    console.log(`max abs error of the updated parameters: ${err.toExponential(2)}`);
    assert.ok(err < 1e-6, `update differs from float64 SGD by ${err}`);
    destroy();
  },
);

gpuTest("steady state: warm plain and meta steps of an MLP create no GPU objects", async (gpu) => {
  const { engine, meta, destroy } = mlpEngine(gpu, 8, 8);
  const opts = { tau: 1, lookahead: "mean" as const, rule: "meta" as const };
  // a learning rate that changes every step (a per-step schedule) must create nothing either
  let lr = 0.1;
  const metaStep = () => {
    lr *= 0.999;
    meta.step(lr, { ...opts, eta: lr, lookaheadWeights: "w" });
  };
  for (let i = 0; i < 2; i++) {
    engine.step(0.1);
    metaStep();
  }
  await gpu.sync();
  const snap = () => ({
    liveBuffers: gpu.liveBuffers,
    buffersCreated: gpu.stats.buffersCreated,
    bindGroupsCreated: gpu.stats.bindGroupsCreated,
    pipelinesCreated: gpu.stats.pipelinesCreated,
    uniformsCreated: gpu.stats.uniformsCreated,
    readbacks: gpu.stats.readbacks,
  });
  const s0 = snap();
  for (let i = 0; i < 100; i++) {
    if (i % 3 === 0) metaStep();
    else engine.step(lr *= 0.999);
  }
  await gpu.sync();
  assert.deepEqual(snap(), s0);
  const eps = await meta.eps.read(gpu);
  const fin = await meta.finalWeights.read(gpu);
  const w = await engine.weights.read(gpu);
  assert.ok(eps.some((e) => e !== 0) && eps.every(Number.isFinite), `eps ${eps}`);
  fin.forEach((f, i) => assert.ok(Math.abs(f - (w[i] + eps[i])) < 1e-6, "final = w + eps"));
  destroy();
});

gpuTest(
  "fit: a run resumed from its checkpoint ends bit-identical to an uninterrupted one",
  async (gpu) => {
    const dir = await Deno.makeTempDir();
    const n = 37;
    const inputs = Float32Array.from({ length: n * 6 }, (_, i) => Math.cos(i * 0.37));
    const targets = Uint32Array.from({ length: n }, (_, i) => (i * 5) % 4);
    const run = async (path: string, maxEpochs: number, resume: boolean) => {
      const { model, engine, meta, destroy } = mlpEngine(gpu, 8, 8);
      const data = new ArraySource({ engine, inputs, targets, seed: 9 });
      const result = await fit({
        engine,
        data,
        epochs: 3,
        lr: (epoch, step) => 0.1 / (1 + epoch + step / 10),
        checkpoint: { path, format: "engine-test/1" },
        resume: resume ? await readCheckpoint(path) : null,
        maxEpochs,
        hooks: {
          stepKind: (epoch) => ({
            name: epoch === 2 ? "meta" : "plain",
            run: (lr) => {
              if (epoch !== 2) return engine.step(lr);
              meta.step(lr, {
                eta: lr,
                tau: 1,
                lookahead: "mean",
                rule: "meta",
                lookaheadWeights: "w",
              });
            },
          }),
        },
      });
      const state = await model.stateDict();
      const momentum = await (engine.optimizer as Sgd).momentum.download();
      destroy();
      return { result, state, momentum };
    };
    try {
      const whole = await run(`${dir}/a.safetensors`, Infinity, false);
      const first = await run(`${dir}/b.safetensors`, 2, false);
      assert.equal(first.result.status, "running");
      assert.equal(first.result.epochsDone, 2);
      const rest = await run(`${dir}/b.safetensors`, Infinity, true);
      assert.equal(whole.result.status, "completed");
      assert.equal(rest.result.status, "completed");
      assert.equal(rest.result.steps, whole.result.steps);
      assert.deepEqual(rest.state, whole.state);
      assert.deepEqual(rest.momentum, whole.momentum);
      const losses = (r: typeof whole) =>
        r.result.history.map((h) => (h as { trainLoss: number }).trainLoss);
      assert.deepEqual(losses(rest), losses(whole));
      assert.ok(losses(whole).every(Number.isFinite));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

/** 37 examples of 6 inputs and labels (i * 5) % 4: batches of 8 wrap around the epoch's end. */
function dataset() {
  const n = 37;
  return {
    inputs: Float32Array.from({ length: n * 6 }, (_, i) => Math.cos(i * 0.37)),
    targets: Uint32Array.from({ length: n }, (_, i) => (i * 5) % 4),
  };
}

gpuTest(
  "meta-update-wy: a fresh reweighter's class weights are 1, whatever the pool held",
  async (gpu) => {
    // a program's earlier tensors of the same size go back to the pool with their values
    for (let i = 0; i < 4; i++) Tensor.from(gpu, [7, -3, 123, 0.5], [4]).release(gpu);
    const first = mlpEngine(gpu, 8, 8);
    assert.deepEqual(Array.from(await first.meta.classWeights.read(gpu)), [1, 1, 1, 1]);
    first.meta.classWeights.upload(gpu, [0.2, 3, -1, 9]); // a learned state, left to the pool
    first.destroy();
    const second = mlpEngine(gpu, 8, 8);
    assert.deepEqual(Array.from(await second.meta.classWeights.read(gpu)), [1, 1, 1, 1]);
    second.destroy();
  },
);

gpuTest(
  "fit: a meta-update-wy run resumed from its checkpoint ends bit-identical, class weights too",
  async (gpu) => {
    const dir = await Deno.makeTempDir();
    const { inputs, targets } = dataset();
    const run = async (path: string, maxEpochs: number, resume: boolean, restore = true) => {
      const { model, engine, meta, destroy } = mlpEngine(gpu, 8, 8);
      const data = new ArraySource({ engine, inputs, targets, seed: 9 });
      const result = await fit({
        engine,
        data,
        epochs: 3,
        lr: (epoch, step) => 0.1 / (1 + epoch + step / 10),
        checkpoint: { path, format: "engine-test-wy/1" },
        resume: resume ? await readCheckpoint(path) : null,
        maxEpochs,
        hooks: {
          stepKind: () => ({
            name: "meta",
            run: (lr) => {
              meta.step(lr, {
                eta: lr,
                tau: 1,
                lookahead: "sum",
                rule: "meta-update-wy",
                lookaheadWeights: "w",
              });
            },
          }),
          checkpointState: () => meta.checkpointState(),
          restore: restore ? (file) => meta.restore(file) : undefined,
        },
      });
      const state = await model.stateDict();
      const classWeights = await meta.classWeights.read(gpu);
      destroy();
      return { result, state, classWeights };
    };
    try {
      const whole = await run(`${dir}/a.safetensors`, Infinity, false);
      const first = await run(`${dir}/b.safetensors`, 1, false);
      assert.equal(first.result.status, "running");
      const saved = (await readCheckpoint(`${dir}/b.safetensors`))!;
      const t = saved.tensors.get(MetaReweighter.classWeightsKey)!;
      assert.deepEqual(t.shape, [4]);
      assert.deepEqual(t.data, first.classWeights, "the checkpoint holds the learned weights");
      await Deno.copyFile(`${dir}/b.safetensors`, `${dir}/c.safetensors`);
      const rest = await run(`${dir}/b.safetensors`, Infinity, true);
      assert.equal(whole.result.status, "completed");
      assert.equal(rest.result.status, "completed");
      assert.deepEqual(rest.classWeights, whole.classWeights);
      assert.deepEqual(rest.state, whole.state);
      const losses = (r: typeof whole) =>
        r.result.history.map((h) => (h as { trainLoss: number }).trainLoss);
      assert.deepEqual(losses(rest), losses(whole));
      assert.ok(losses(whole).every(Number.isFinite));
      // the weights were learned (they matter), and far from 1 after the first epoch already
      const moved = (w: Float32Array) => Math.max(...w.map((v) => Math.abs(v - 1)));
      assert.ok(moved(first.classWeights) > 1e-3, `class weights ${first.classWeights}`);
      assert.ok(whole.classWeights.every(Number.isFinite), `class weights ${whole.classWeights}`);
      // without the restore hook the resumed run starts again from 1: not the same run
      const lost = await run(`${dir}/c.safetensors`, Infinity, true, false);
      assert.equal(lost.result.status, "completed");
      assert.notDeepEqual(lost.classWeights, whole.classWeights);
      assert.notDeepEqual(lost.state, whole.state);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

gpuTest(
  "readLossSum: per-step losses inside fit's afterStep, the epoch's trainLoss left whole",
  async (gpu) => {
    const { inputs, targets } = dataset();
    const { model, engine, destroy } = mlpEngine(gpu, 8, 8);
    // the first step's loss, computed apart at the initial parameters (ordered batches: 0..7)
    const ctx = new Ctx(gpu, null);
    const x = Tensor.from(gpu, inputs.subarray(0, 8 * 6), [8, 6]);
    const t = Tensor.from(gpu, targets.subarray(0, 8), [8], "u32");
    const losses0 = await crossEntropy(ctx, model.forward(ctx, x, EVAL), t).read(gpu);
    const loss0 = losses0.reduce((a, b) => a + b) / 8;
    ctx.release();
    x.release(gpu);
    t.release(gpu);
    const data = new ArraySource({ engine, inputs, targets, seed: 0, ordered: true });
    const steps: { epoch: number; loss: number; count: number }[] = [];
    let last: [number, number] = [0, 0];
    const result = await fit({
      engine,
      data,
      epochs: 2,
      lr: () => 0.1,
      hooks: {
        epochStart: async () => {
          last = await engine.readLossSum();
          assert.deepEqual(last, [0, 0], "fit took the last epoch's loss");
        },
        afterStep: async (epoch) => {
          const now = await engine.readLossSum();
          steps.push({
            epoch,
            loss: (now[0] - last[0]) / (now[1] - last[1]),
            count: now[1] - last[1],
          });
          last = now;
        },
      },
    });
    assert.equal(result.status, "completed");
    assert.equal(steps.length, 2 * 5);
    assert.ok(steps.every((s) => Number.isFinite(s.loss) && s.count === 8));
    assert.ok(Math.abs(steps[0].loss - loss0) <= 1e-6 * loss0, `${steps[0].loss} vs ${loss0}`);
    for (const e of [0, 1]) {
      const own = steps.filter((s) => s.epoch === e);
      const mean = own.reduce((a, s) => a + s.loss * s.count, 0) /
        own.reduce((a, s) => a + s.count, 0);
      const trainLoss = (result.history[e] as { trainLoss: number }).trainLoss;
      assert.ok(Math.abs(mean - trainLoss) <= 1e-6 * trainLoss, `${mean} vs ${trainLoss}`);
    }
    assert.ok(steps[9].loss < steps[0].loss, "trained");
    destroy();
  },
);

gpuTest(
  "tape: gradients written into destinations equal the returned ones, bit for bit",
  async (gpu) => {
    // w is used twice (its second contribution is added in the destination), c gets no
    // gradient (its destination is zeroed), b's gradient is written by the op itself, and the
    // root's own gradient is the seed
    const rnd = (n: number, s: number) => Array.from({ length: n }, (_, i) => Math.sin(i * s + 1));
    const leaf = (values: number[], shape: number[]) => {
      const t = Tensor.from(gpu, values, shape);
      t.requiresGrad = true;
      return t;
    };
    const x = leaf(rnd(15, 0.7), [3, 5]);
    const w = leaf(rnd(25, 1.3), [5, 5]);
    const b = leaf(rnd(5, 2.1), [5]);
    const c = leaf(rnd(5, 0.3), [5]);
    const run = async (into: boolean) => {
      const ctx = new Ctx(gpu, new Tape());
      const h = relu(ctx, linear(ctx, x, w, b));
      const y = linear(ctx, h, w, null);
      const seed = Tensor.from(gpu, rnd(15, 0.9), [3, 5]);
      const wrt = [w, b, c, x, y];
      const dests = wrt.map((t) => {
        const d = Tensor.empty(gpu, t.shape);
        gpu.write(d.view, new Float32Array(t.size).fill(7)); // stale values must not leak in
        return d;
      });
      const grads = ctx.tape!.backward(gpu, y, seed, wrt, into ? dests : undefined);
      const out = [];
      for (const [k, t] of wrt.entries()) {
        const g = grads.get(t)!;
        if (into) assert.equal(g, dests[k], "the destination is returned");
        out.push(await g.read(gpu));
        if (!into && g !== seed) g.release(gpu); // the root's gradient is the seed itself
      }
      for (const d of dests) d.release(gpu);
      seed.release(gpu);
      ctx.release();
      return out;
    };
    const returned = await run(false);
    const written = await run(true);
    assert.deepEqual(written, returned);
    assert.ok(returned[2].every((v) => v === 0), "c got no gradient");
    assert.ok(returned[0].some((v) => v !== 0));
    for (const t of [x, w, b, c]) t.release(gpu);
  },
);
