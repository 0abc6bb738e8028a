/**
 * The mistakes a program importing mod.ts can make, each refused with a message that names the
 * option, layer, example or file, before any GPU work where the host can tell:
 *
 * - sizes of layers and engines (zero, fractional) and of SGD's options;
 * - class labels outside the model's classes (given, or learned from the first forward);
 * - dev labels of the meta step outside the classes (written before or after the first forward,
 *   through the full or the classifier-only meta step), dev batches of the wrong size or array;
 * - class weights of "meta-update-wy" that are not one per class of the model (numClasses), or
 *   targets that are not class labels; a checkpoint without the reweighter's class weights;
 * - a hook that drains the running loss (takeMeanLoss inside fit): the epoch's loss still counts
 *   every step; a loss left before fit (taken by the caller, or an aborted epoch's) is not counted;
 * - inputs of the wrong width for a Linear or Conv2d layer;
 * - run lengths (fractional epochs, a checkpoint of more epochs, an epoch with no steps);
 * - resuming the wrong file: another optimizer's checkpoint, a weights file, a missing tensor;
 * - a checkpoint path holding a file the run does not resume, or in a folder that is missing;
 * - saving into a folder that does not exist.
 *
 * And the API that replaces the glue: `fit({ schedule })` fills `stepsPerEpoch` from the data.
 */
import assert from "node:assert/strict";
import {
  Adam,
  ArraySource,
  BatchNorm2d,
  Conv2d,
  cosineLr,
  crossEntropy,
  Ctx,
  EVAL,
  evaluateClassifier,
  fit,
  type ForwardMode,
  type Gpu,
  Linear,
  linearWarmup,
  MaxPool2d,
  MetaReweighter,
  Model,
  type ParamScope,
  readCheckpoint,
  ReLU,
  Sequential,
  Sgd,
  StepEngine,
  stopMessage,
  Tensor,
  UserError,
} from "../mod.ts";
import { C, D, engineOf, examples, withDir } from "./engine_fixtures.ts";
import { gpuTest } from "./gpu_harness.ts";

gpuTest("sizes: zero or fractional sizes are RangeErrors naming the option", async (gpu) => {
  const model = new Model(gpu, new Linear(D, C), 0);
  const optimizer = new Sgd(gpu, model.paramLayout);
  const engine = (o: { batch: number; input: number[]; target?: { shape: number[] } }) =>
    new StepEngine(model, { loss: crossEntropy, optimizer, ...o });
  assert.throws(
    () => engine({ batch: 0, input: [D] }),
    new RangeError("StepEngine: batch = 0, expected an integer >= 1"),
  );
  assert.throws(() => engine({ batch: 2.5, input: [D] }), /StepEngine: batch = 2\.5/);
  assert.throws(
    () => engine({ batch: 4, input: [1, 0, 28] }),
    new RangeError("StepEngine: input[1] = 0, expected an integer >= 1"),
  );
  assert.throws(
    () => engine({ batch: 4, input: [D], target: { shape: [-2] } }),
    /StepEngine: target\.shape\[0\] = -2, expected an integer >= 1/,
  );
  assert.throws(
    () => new Linear(0, 3),
    new RangeError("Linear: inFeatures = 0, expected an integer >= 1"),
  );
  assert.throws(() => new Linear(3, 1.5), /Linear: outFeatures = 1\.5/);
  assert.throws(() => new Conv2d(1, 8, { kernel: 0 }), /Conv2d: kernel = 0, expected an integer/);
  assert.throws(() => new Conv2d(1, 8, { pad: -1 }), /Conv2d: pad = -1, expected an integer >= 0/);
  assert.throws(() => new BatchNorm2d(0), /BatchNorm2d: channels = 0/);
  assert.throws(() => new MaxPool2d(2, { stride: 0 }), /MaxPool2d: stride = 0/);
  const ok = engine({ batch: 4, input: [D] });
  assert.throws(
    () => new MetaReweighter(ok, { devBatch: 0 }),
    /MetaReweighter: devBatch = 0, expected an integer >= 1/,
  );
  await gpu.sync(); // nothing was recorded by the refused constructions
  ok.destroy();
  optimizer.destroy();
  model.destroy();
});

gpuTest("Sgd: PyTorch's defaults, and out-of-range options named", async (gpu) => {
  const model = new Model(gpu, new Linear(D, C), 0);
  const defaults = new Sgd(gpu, model.paramLayout);
  assert.deepEqual(defaults.config, { momentum: 0, weightDecay: 0, nesterov: false });
  const given = { momentum: 0.9, weightDecay: 5e-4, nesterov: true, decayExempt: ["bias"] };
  const full = new Sgd(gpu, model.paramLayout, given);
  assert.deepEqual(full.config, given);
  assert.throws(
    () => new Sgd(gpu, model.paramLayout, { momentum: -1 }),
    new RangeError("Sgd: momentum = -1, expected a finite number >= 0"),
  );
  assert.throws(
    () => new Sgd(gpu, model.paramLayout, { momentum: 0.9, weightDecay: -5 }),
    /Sgd: weightDecay = -5, expected a finite number >= 0/,
  );
  assert.throws(
    () => new Sgd(gpu, model.paramLayout, { nesterov: "yes" as unknown as boolean }),
    /Sgd: nesterov = yes, expected true or false/,
  );
  // a defaulted SGD steps as the explicit one: p - lr * g from zero momentum, no decay
  const grads = new Model(gpu, new Linear(D, C), 7);
  const p0 = await model.stateDict();
  const g = await grads.stateDict();
  defaults.step(model.params, grads.params, 0.5);
  const p1 = await model.stateDict();
  for (const [name, v] of p1) {
    v.forEach((x, i) => assert.equal(x, Math.fround(p0.get(name)![i] - 0.5 * g.get(name)![i])));
  }
  for (const o of [defaults, full]) o.destroy();
  for (const m of [model, grads]) m.destroy();
});

gpuTest("layers: an input of the wrong width names the layer and the width", async (gpu) => {
  const mlp = new Model(gpu, new Sequential(new Linear(8, 16), new ReLU(), new Linear(16, 3)), 0);
  const ctx = new Ctx(gpu, null);
  const x = Tensor.from(gpu, new Array(16 * 9).fill(1), [16, 9]);
  assert.throws(
    () => mlp.forward(ctx, x, EVAL),
    new Error('Linear layer "0": expected input [N, 8] (inFeatures 8), got [16,9]'),
  );
  const maps = Tensor.from(gpu, new Array(2 * 8 * 9).fill(1), [2, 2, 4, 9]);
  const flat = new Model(gpu, new Sequential(["head", new Linear(72, 3)]), 0);
  assert.throws(
    () => flat.forward(ctx, maps, EVAL),
    /Linear layer "head": expected input \[N, 72\].*got \[2,2,4,9\]; a Flatten before it/,
  );
  const conv = new Model(gpu, new Sequential(new Conv2d(1, 4), new ReLU()), 0);
  assert.throws(
    () => conv.forward(ctx, maps, EVAL),
    /Conv2d layer "0": expected input \[N, 1, H, W\] \(inChannels 1\).*got \[2,2,4,9\]/,
  );
  const big = new Model(gpu, new Conv2d(2, 4, { kernel: 7, pad: 1 }), 0);
  assert.throws(() => big.forward(ctx, maps, EVAL), /Conv2d layer \(root\).*kernel 7/);
  await gpu.sync(); // the refused forwards recorded nothing to run
  ctx.release();
  for (const t of [x, maps]) t.release(gpu);
  for (const m of [mlp, flat, conv, big]) m.destroy();
});

gpuTest("labels: ArraySource checks every label against numClasses when built", async (gpu) => {
  const { engine, destroy } = engineOf(gpu, 8);
  const { inputs, targets } = examples(20);
  targets[13] = 3;
  assert.throws(
    () => new ArraySource({ engine, inputs, targets, seed: 0, numClasses: C }),
    new RangeError("ArraySource: targets[13] = 3 is not a class label in [0, 3) (numClasses 3)"),
  );
  const fractional = Array.from(targets, (t, i) => (i === 4 ? 1.5 : t % C));
  assert.throws(
    () => new ArraySource({ engine, inputs, targets: fractional, seed: 0, numClasses: C }),
    /targets\[4\] = 1\.5 is not a class label/,
  );
  assert.throws(
    () => new ArraySource({ engine, inputs: new Float32Array(0), targets: [], seed: 0 }),
    /ArraySource: no examples/,
  );
  await gpu.sync();
  destroy();
});

gpuTest(
  "labels: without numClasses, the model's output width is learned and checked",
  async (gpu) => {
    // a bad label in the first batch: refused at the first forward, before its loss
    const first = engineOf(gpu, 8);
    const a = examples(20);
    a.targets[0] = 7;
    const data = new ArraySource({
      engine: first.engine,
      inputs: a.inputs,
      targets: a.targets,
      seed: 0,
      ordered: true,
    });
    const before = await first.model.stateDict();
    await assert.rejects(
      () => fit({ engine: first.engine, data, epochs: 1, lr: () => 0.1 }),
      new RangeError(
        "StepEngine: the label of example 0 is 7, not a class in [0, 3) (the model outputs 3 classes)",
      ),
    );
    assert.equal(first.engine.numClasses, C);
    assert.deepEqual(await first.model.stateDict(), before, "no step was taken");
    first.destroy();
    // a bad label later: the whole set is checked once the width is known (the next batch)
    const later = engineOf(gpu, 8);
    const b = examples(20);
    b.targets[17] = 3;
    const source = new ArraySource({
      engine: later.engine,
      inputs: b.inputs,
      targets: b.targets,
      seed: 0,
      ordered: true,
    });
    await assert.rejects(
      () => fit({ engine: later.engine, data: source, epochs: 1, lr: () => 0.1 }),
      new RangeError(
        "ArraySource: targets[17] = 3 is not a class label in [0, 3) (the model's output width 3)",
      ),
    );
    later.destroy();
  },
);

const META = { eta: 0.1, tau: 1, lookahead: "mean", rule: "meta", lookaheadWeights: "w" } as const;

/** engineOf's MLP split into its features (D-8, ReLU) and the head `fc` (8-C): a HeadSplit. */
class SplitMlp extends Sequential {
  readonly headName = "fc";
  readonly head = new Linear(8, C);
  constructor() {
    super(["body", new Linear(D, 8)], ["relu", new ReLU()]);
    this.layers.push(["fc", this.head]);
  }
  features(ctx: Ctx, x: Tensor, p: ParamScope, mode: ForwardMode): Tensor {
    const body = this.layers.slice(0, -1);
    return body.reduce((h, [name, layer]) => layer.forward(ctx, h, p.child(name), mode), x);
  }
}

/**
 * A meta step of devBatch 4 over an engine of batch 8 (the classifier-only one with `split`),
 * with `numClasses` class weights (default not given).
 */
function metaOf(gpu: Gpu, split = false, numClasses?: number) {
  const root = split
    ? new SplitMlp()
    : new Sequential(new Linear(D, 8), new ReLU(), new Linear(8, C));
  const model = new Model(gpu, root, 1);
  const optimizer = new Sgd(gpu, model.paramLayout, { momentum: 0.9 });
  const engine = new StepEngine(model, { loss: crossEntropy, optimizer, batch: 8, input: [D] });
  const meta = new MetaReweighter(engine, {
    devBatch: 4,
    params: split ? "classifier" : "all",
    numClasses,
  });
  const destroy = () => {
    meta.destroy();
    engine.destroy();
    optimizer.destroy();
    model.destroy();
  };
  return { model, engine, meta, destroy };
}

gpuTest(
  "labels: a bad dev label written before the first forward stops the meta step before it records",
  async (gpu) => {
    const batch = examples(8), dev = examples(4);
    const { model, engine, meta, destroy } = metaOf(gpu);
    engine.writeBatch(batch.inputs, batch.targets);
    dev.targets[2] = 5;
    meta.writeDevBatch(dev.inputs, dev.targets, [30, 31, 32, 33]); // C not known yet: kept
    dev.targets[2] = 2; // the caller reuses its array: the labels written are the ones checked
    const before = await model.stateDict();
    assert.throws(
      () => meta.step(0.1, META),
      new RangeError(
        "MetaReweighter: the label of dev example 32 is 5, not a class in [0, 3) " +
          "(the model outputs 3 classes)",
      ),
    );
    assert.equal(engine.numClasses, C, "checked once the batch's forward gave C");
    assert.deepEqual(await model.stateDict(), before, "no update");
    assert.deepEqual(await engine.readLossSum(), [0, 0], "no loss recorded");
    const look = new Float32Array(await gpu.read(meta.lookahead.all));
    assert.ok(look.every((v) => v === 0), "refused before the look-ahead and the dev pass");
    assert.equal(engine.stepIndex, 0);
    // the same engine steps once a good dev batch is written
    meta.writeDevBatch(dev.inputs, dev.targets);
    meta.step(0.1, META);
    assert.notDeepEqual(await model.stateDict(), before);
    destroy();
    // the classifier-only meta step learns C from the head's output and checks likewise
    const head = metaOf(gpu, true);
    head.engine.writeBatch(batch.inputs, batch.targets);
    head.meta.writeDevBatch(dev.inputs, Uint32Array.of(0, 1, 2, 3));
    const headBefore = await head.model.stateDict();
    assert.throws(
      () => head.meta.step(0.1, META),
      new RangeError(
        "MetaReweighter: the label of row 3 of the dev batch is 3, not a class in [0, 3) " +
          "(the model outputs 3 classes)",
      ),
    );
    assert.equal(head.engine.numClasses, C);
    assert.deepEqual(await head.model.stateDict(), headBefore);
    head.destroy();
    // ...and the batch's own labels, which it checked nowhere before
    const headBatch = metaOf(gpu, true);
    headBatch.engine.writeBatch(
      batch.inputs,
      Uint32Array.from(batch.targets, (y, i) => i === 6 ? 4 : y),
    );
    headBatch.meta.writeDevBatch(dev.inputs, dev.targets);
    assert.throws(
      () => headBatch.meta.step(0.1, META),
      /^RangeError: StepEngine: the label of row 6 of the batch is 4, not a class in \[0, 3\)/,
    );
    headBatch.destroy();
  },
);

gpuTest("labels: once C is known, a bad dev batch is refused when written", async (gpu) => {
  const batch = examples(8), dev = examples(4);
  const { engine, meta, destroy } = metaOf(gpu);
  engine.writeBatch(batch.inputs, batch.targets);
  meta.writeDevBatch(dev.inputs, Uint32Array.of(9, 9, 9, 9)); // kept, then overwritten below
  engine.step(0.1); // learns C (a plain step reads no dev batch)
  const kept = Uint32Array.of(2, 2, 1, 1);
  meta.writeDevBatch(dev.inputs, kept);
  const bad = Uint32Array.from(dev.targets, (y, i) => (i === 1 ? 3 : y));
  assert.throws(
    () => meta.writeDevBatch(dev.inputs, bad),
    new RangeError(
      "MetaReweighter: the label of row 1 of the dev batch is 3, not a class in [0, 3) " +
        "(the model outputs 3 classes)",
    ),
  );
  assert.throws(
    () => meta.writeDevBatch(dev.inputs, bad, [7, 8, 9, 10]),
    /^RangeError: MetaReweighter: the label of dev example 8 is 3, not a class in \[0, 3\)/,
  );
  assert.throws(
    () => meta.writeDevBatch(dev.inputs, Float32Array.from(dev.targets)),
    new TypeError(
      "MetaReweighter: dev targets must be a Uint32Array for u32 targets, got a Float32Array " +
        "(its bytes would be read as u32)",
    ),
  );
  assert.throws(
    () => engine.writeBatch(batch.inputs, Float32Array.from(batch.targets)),
    /^TypeError: StepEngine: targets must be a Uint32Array for u32 targets, got a Float32Array/,
  );
  assert.throws(
    () => meta.writeDevBatch(dev.inputs.subarray(D), dev.targets),
    new RangeError(
      "MetaReweighter: writeDevBatch got 18 input values, 4 targets; a dev batch of 4 examples " +
        "takes 24 input values, 4 targets",
    ),
  );
  assert.throws(
    () => meta.writeDevBatch(dev.inputs, dev.targets, [1, 2]),
    /got 24 input values, 4 targets and 2 rows; .* takes 24 input values, 4 targets and 4 rows/,
  );
  assert.deepEqual([...await meta.devTargets.read(gpu)], [...kept], "nothing more was written");
  meta.step(0.1, META); // the labels checked are the ones written last
  destroy();
});

const WY = { ...META, rule: "meta-update-wy" } as const;

gpuTest(
  "meta-update-wy: class weights that are not one per class are refused, naming numClasses",
  async (gpu) => {
    const batch = examples(8), dev = examples(4);
    // C learned by the meta step's own first forward: refused before the look-ahead
    const first = metaOf(gpu);
    first.engine.writeBatch(batch.inputs, batch.targets);
    first.meta.writeDevBatch(dev.inputs, dev.targets);
    const before = await first.model.stateDict();
    assert.throws(
      () => first.meta.step(0.1, WY),
      new RangeError(
        'MetaReweighter: rule "meta-update-wy" learns one weight per class, but classWeights ' +
          "has 1 (numClasses not given: 1) and the model outputs 3 classes; construct the " +
          "MetaReweighter with numClasses: 3",
      ),
    );
    assert.deepEqual(await first.model.stateDict(), before, "no update");
    assert.deepEqual(await first.engine.readLossSum(), [0, 0], "no loss recorded");
    const look = new Float32Array(await gpu.read(first.meta.lookahead.all));
    assert.ok(look.every((v) => v === 0), "refused before the look-ahead and the dev pass");
    assert.deepEqual([...await first.meta.classWeights.read(gpu)], [1], "nothing written");
    first.meta.step(0.1, META); // the rules that read no class weights take any count
    first.destroy();
    // C already known (a plain step first): refused before the step records anything
    for (const split of [false, true]) {
      const wide = metaOf(gpu, split, 5);
      wide.engine.writeBatch(batch.inputs, batch.targets);
      wide.meta.writeDevBatch(dev.inputs, dev.targets);
      wide.engine.step(0.1);
      await gpu.sync();
      const dispatches = gpu.stats.dispatches;
      assert.throws(
        () => wide.meta.step(0.1, WY),
        /^RangeError: .* classWeights has 5 \(numClasses: 5\) and the model outputs 3 classes; construct the MetaReweighter with numClasses: 3$/,
      );
      assert.equal(gpu.stats.dispatches, dispatches, "nothing recorded");
      wide.destroy();
    }
    // one per class steps, and learns them
    const right = metaOf(gpu, false, C);
    right.engine.writeBatch(batch.inputs, batch.targets);
    right.meta.writeDevBatch(dev.inputs, dev.targets);
    right.meta.step(0.1, { ...WY, lookahead: "sum", tau: 10 });
    const learned = await right.meta.classWeights.read(gpu);
    assert.ok(learned.every(Number.isFinite) && learned.some((w) => w !== 1), `${learned}`);
    right.destroy();
  },
);

gpuTest("meta-update-wy: targets that are not class labels are refused first", async (gpu) => {
  const model = new Model(gpu, new Linear(D, 2), 0);
  const optimizer = new Sgd(gpu, model.paramLayout);
  const engine = new StepEngine(model, {
    loss: crossEntropy,
    optimizer,
    batch: 4,
    input: [D],
    target: { shape: [2], dtype: "f32" },
  });
  const meta = new MetaReweighter(engine, { devBatch: 2 });
  await gpu.sync();
  const dispatches = gpu.stats.dispatches;
  assert.throws(
    () => meta.step(0.1, WY),
    new Error(
      'MetaReweighter: rule "meta-update-wy" learns a weight per class and needs class-label ' +
        "targets (u32, one per example); this engine's targets are f32 [4,2]",
    ),
  );
  assert.equal(gpu.stats.dispatches, dispatches, "nothing recorded");
  meta.destroy();
  engine.destroy();
  optimizer.destroy();
  model.destroy();
});

gpuTest("labels: a good dev batch steps as a raw upload of the same arrays", async (gpu) => {
  const batch = examples(8), dev = examples(4);
  const run = async (write: (meta: MetaReweighter) => void) => {
    const { model, engine, meta, destroy } = metaOf(gpu);
    engine.writeBatch(batch.inputs, batch.targets);
    write(meta);
    meta.step(0.1, META);
    const out = { eps: await meta.eps.read(gpu), params: await model.stateDict() };
    destroy();
    return out;
  };
  const raw = await run((meta) => {
    meta.devX.upload(gpu, dev.inputs);
    meta.devTargets.upload(gpu, dev.targets);
  });
  const checked = await run((meta) => {
    // a bad batch overwritten before the first forward is no error: only the last one counts
    meta.writeDevBatch(dev.inputs, Uint32Array.of(9, 9, 9, 9));
    meta.writeDevBatch(dev.inputs, dev.targets, [0, 1, 2, 3]);
  });
  assert.deepEqual(checked, raw);
  assert.ok(raw.eps.some((e) => e !== 0), "the dev batch moved eps");
});

gpuTest("labels: evaluateClassifier checks labels and the output width first", async (gpu) => {
  const { model, destroy } = engineOf(gpu, 8);
  const { inputs, targets } = examples(10);
  const o = { batch: 4, inputShape: [D], numClasses: C };
  targets[9] = 5;
  await assert.rejects(
    () => evaluateClassifier(model, inputs, targets, o),
    new RangeError("evaluateClassifier: labels[9] = 5 is not a class in [0, 3)"),
  );
  targets[9] = 0;
  await assert.rejects(
    () => evaluateClassifier(model, inputs, targets, { ...o, numClasses: 10 }),
    /numClasses 10, but the model's output is \[4,3\] for 4 examples; expected \[4, 10\]/,
  );
  await assert.rejects(
    () => evaluateClassifier(model, inputs.subarray(D), targets, o),
    /54 input values for 10 labels; expected 10 examples of 6/,
  );
  assert.equal((await evaluateClassifier(model, inputs, targets, o)).count, 10);
  destroy();
});

gpuTest("fit: run lengths are checked, naming the option", async (gpu) => {
  const { engine, destroy } = engineOf(gpu, 8);
  const { inputs, targets } = examples(20);
  const data = new ArraySource({ engine, inputs, targets, seed: 0 });
  const base = { engine, data, lr: () => 0.1 };
  await assert.rejects(
    () => fit({ ...base, epochs: 2.5 }),
    new RangeError("fit: epochs = 2.5, expected an integer >= 1"),
  );
  await assert.rejects(() => fit({ ...base, epochs: 0 }), /fit: epochs = 0/);
  await assert.rejects(
    () => fit({ ...base, epochs: 2, maxEpochs: 1.5 }),
    /fit: maxEpochs = 1\.5, expected an integer >= 0 or Infinity/,
  );
  await assert.rejects(() => fit({ ...base, epochs: 2, evalEvery: 0 }), /fit: evalEvery = 0/);
  await assert.rejects(
    () => fit({ engine, data, epochs: 1 } as unknown as Parameters<typeof fit>[0]),
    /fit: give the learning rate as exactly one of lr and schedule/,
  );
  await assert.rejects(
    () => fit({ ...base, lr: (_e, step) => (step === 1 ? NaN : 0.1), epochs: 1 }),
    new RangeError("fit: lr(0, 1) = NaN, expected a finite number >= 0"),
  );
  // a source whose epoch has no steps (fewer examples than the batch, last batch dropped)
  const empty = { epoch: () => ({ steps: 0, load: () => {} }) };
  await assert.rejects(
    () => fit({ ...base, data: empty, epochs: 1 }),
    /fit: epoch 0 of the data source has 0 steps, expected at least 1 \(a source with fewer examples than the batch of 8/,
  );
  destroy();
});

gpuTest("fit: a schedule gets each epoch's steps from the data source", async (gpu) => {
  const { engine, destroy } = engineOf(gpu, 8);
  const { inputs, targets } = examples(37); // 5 steps an epoch, the last one wrapped
  const data = new ArraySource({ engine, inputs, targets, seed: 3 });
  const schedule = linearWarmup(cosineLr(0.1, { epochs: 2, perStep: true }), { steps: 3 });
  const seen: number[] = [];
  const r = await fit({
    engine,
    data,
    epochs: 2,
    schedule,
    hooks: {
      stepKind: () => ({
        name: "plain",
        run: (lr) => {
          seen.push(lr);
          engine.step(lr);
        },
      }),
    },
  });
  const want = [0, 1].flatMap((epoch) =>
    [0, 1, 2, 3, 4].map((step) => schedule({ epoch, step, stepsPerEpoch: 5 }))
  );
  assert.deepEqual(seen, want);
  assert.deepEqual(r.history.map((h) => h.lr), [want[0], want[5]]);
  assert.ok(want[4] > want[5] && want[0] < want[3], "warm-up then cosine decay");
  destroy();
});

gpuTest("resume: the wrong file is refused naming it, its optimizer and ours", async (gpu) => {
  await withDir(async (dir) => {
    const { inputs, targets } = examples(20);
    const ckpt = `${dir}/ckpt.safetensors`, weights = `${dir}/w.safetensors`;
    const adam = engineOf(gpu, 8, (m) => new Adam(gpu, m.paramLayout));
    const run = (engine: StepEngine, epochs: number, resume = false) =>
      (async () =>
        fit({
          engine,
          data: new ArraySource({ engine, inputs, targets, seed: 0 }),
          epochs,
          lr: () => 0.01,
          checkpoint: { path: ckpt, format: "api-test/1" },
          resume: resume ? await readCheckpoint(ckpt) : null,
        }))();
    assert.equal((await run(adam.engine, 4)).status, "completed");
    await adam.model.save(weights);
    adam.destroy();
    const sgd = engineOf(gpu, 8);
    await assert.rejects(
      () => run(sgd.engine, 8, true),
      new Error(
        `fit: checkpoint ${ckpt} was written by optimizer adam, but this engine's optimizer ` +
          `is sgd; resume with adam, or start a new run`,
      ),
    );
    sgd.destroy();
    const again = engineOf(gpu, 8, (m) => new Adam(gpu, m.paramLayout));
    await assert.rejects(
      () => run(again.engine, 2, true),
      new RangeError(
        `fit: checkpoint ${ckpt} holds 4 epochs, more than epochs = 2; resume with ` +
          `epochs >= 4, or start a new run`,
      ),
    );
    assert.equal((await run(again.engine, 4, true)).status, "completed", "nothing left to run");
    await assert.rejects(
      async () =>
        fit({
          engine: again.engine,
          data: new ArraySource({ engine: again.engine, inputs, targets, seed: 0 }),
          epochs: 4,
          lr: () => 0.01,
          resume: await readCheckpoint(weights),
        }),
      new RegExp(`fit: checkpoint ${weights} holds no training state .*Model\\.save`),
    );
    // a checkpoint of another architecture names the file and the entry
    const wide = new Model(gpu, new Sequential(new Linear(D, 9), new ReLU(), new Linear(9, C)), 0);
    await assert.rejects(
      () => wide.load(ckpt),
      new Error(`checkpoint ${ckpt} 0.weight: F32 [8,6], expected F32 [9,6]`),
    );
    const file = (await readCheckpoint(ckpt))!;
    file.tensors.delete("optimizer.exp_avg_sq.2.bias");
    await assert.rejects(
      () =>
        fit({
          engine: again.engine,
          data: new ArraySource({ engine: again.engine, inputs, targets, seed: 0 }),
          epochs: 5,
          lr: () => 0.01,
          resume: file,
        }),
      new Error(`checkpoint ${ckpt} lacks optimizer.exp_avg_sq.2.bias`),
    );
    wide.destroy();
    again.destroy();
  });
});

gpuTest(
  "resume: a checkpoint without the reweighter's class weights, or of another count, is named",
  async (gpu) => {
    await withDir(async (dir) => {
      const { inputs, targets } = examples(16);
      const dev = examples(4);
      const ckpt = `${dir}/ckpt.safetensors`;
      const run = async (numClasses: number, state: boolean, resume: boolean) => {
        const { engine, meta, destroy } = metaOf(gpu, false, numClasses);
        meta.writeDevBatch(dev.inputs, dev.targets);
        try {
          return await fit({
            engine,
            data: new ArraySource({ engine, inputs, targets, seed: 0 }),
            epochs: 2,
            maxEpochs: 1,
            lr: () => 0.1,
            checkpoint: { path: ckpt, format: "api-test/1" },
            resume: resume ? await readCheckpoint(ckpt) : null,
            hooks: {
              stepKind: () => ({
                name: "meta",
                run: (lr) => void meta.step(lr, { ...WY, eta: lr }),
              }),
              checkpointState: state ? () => meta.checkpointState() : undefined,
              restore: (file) => meta.restore(file),
            },
          });
        } finally {
          destroy();
        }
      };
      assert.equal((await run(C, false, false)).status, "running");
      await assert.rejects(
        () => run(C, true, true),
        new Error(
          `MetaReweighter: checkpoint ${ckpt} holds no tensor meta.class_weights, expected the ` +
            "F32 class weights: it was written without the reweighter's checkpointState in fit's " +
            "hooks; resume a checkpoint written with them, or start a new run",
        ),
      );
      await Deno.remove(ckpt);
      assert.equal((await run(C, true, false)).status, "running");
      const file = (await readCheckpoint(ckpt))!;
      assert.equal(file.tensors.get("meta.class_weights")!.data.length, C);
      await assert.rejects(
        () => run(4, true, true),
        new Error(
          `MetaReweighter: checkpoint ${ckpt} holds 3 class weights in meta.class_weights, but ` +
            "this reweighter has 4 (numClasses); construct it with numClasses: 3",
        ),
      );
      assert.equal((await run(C, true, true)).status, "completed");
    });
  },
);

gpuTest(
  "fit: a hook that drains the running loss (takeMeanLoss) leaves each epoch's loss whole",
  async (gpu) => {
    const { inputs, targets } = examples(20); // 3 steps of 8 an epoch
    /** Two epochs; `drainAt(epoch, step)` says whether the hook drains after that step. */
    const run = async (drainAt: (epoch: number, step: number) => boolean) => {
      const { engine, model, destroy } = engineOf(gpu, 8);
      const data = new ArraySource({ engine, inputs, targets, seed: 0 });
      const drained: number[][] = [[], []];
      const r = await fit({
        engine,
        data,
        epochs: 2,
        lr: () => 0.1,
        hooks: {
          afterStep: async (e, s) => {
            if (drainAt(e, s)) drained[e].push(await engine.takeMeanLoss());
          },
        },
      });
      const params = await model.stateDict();
      destroy();
      return { losses: r.history.map((h) => h.trainLoss), drained, params };
    };
    const plain = await run(() => false);
    const every = await run(() => true); // each step's mean loss, drained as it is made
    const once = await run((_, s) => s === 0); // the first step's, in the middle of the epoch
    for (const [e, steps] of every.drained.entries()) {
      assert.equal(steps.length, 3);
      const mean = (steps[0] + steps[1] + steps[2]) / 3; // equal steps of 8
      const close = (got: number, want: number, tol: number, what: string) =>
        assert.ok(Math.abs(got - want) <= tol * want, `epoch ${e} ${what}: ${got} vs ${want}`);
      close(every.losses[e], mean, 1e-12, "drained every step");
      // the step sums add in f64 on the host, the undrained ones in f32 on the GPU
      close(plain.losses[e], mean, 1e-6, "no hook");
      close(once.losses[e], mean, 1e-6, "drained after step 0");
      assert.equal(once.drained[e][0], steps[0], "the same first step");
      // only what was left after the drain: the loss the epoch used to report
      const rest = (steps[1] + steps[2]) / 2;
      assert.ok(Math.abs(once.losses[e] - rest) > 1e-4, `epoch ${e}: ${once.losses[e]} ${rest}`);
    }
    assert.deepEqual(every.params, plain.params, "draining changes no training bit");
    assert.deepEqual(once.params, plain.params);
  },
);

gpuTest(
  "fit: an epoch's loss is its own steps', not a loss taken before fit or an aborted epoch's",
  async (gpu) => {
    const { inputs, targets } = examples(20); // 3 steps of 8
    const epochLoss = async (engine: StepEngine) => {
      const data = new ArraySource({ engine, inputs, targets, seed: 0 });
      return (await fit({ engine, data, epochs: 1, lr: () => 0 })).history[0].trainLoss;
    };
    const fresh = engineOf(gpu, 8);
    const want = await epochLoss(fresh.engine);
    fresh.destroy();
    // a batch unlike the data's (large inputs, one class), trained at lr 0: nothing is learnt
    const other = (engine: StepEngine) =>
      engine.writeBatch(new Float32Array(8 * D).fill(50), new Uint32Array(8).fill(2));

    // the caller's own step before fit, its loss taken with takeMeanLoss
    const warm = engineOf(gpu, 8);
    other(warm.engine);
    warm.engine.step(0);
    const warmLoss = await warm.engine.takeMeanLoss();
    assert.ok(Math.abs(warmLoss - want) > 1, `a loss unlike the epoch's: ${warmLoss} ${want}`);
    assert.equal(await epochLoss(warm.engine), want);
    warm.destroy();

    // an epoch that threw after its first step (its data source failed): that step's loss stays
    // in the running sum, but is not the next epoch's
    const aborted = engineOf(gpu, 8);
    const failing = {
      epoch: () => ({
        steps: 2,
        load: (s: number) => {
          if (s === 1) throw new Error("the disk is gone");
          other(aborted.engine);
        },
      }),
    };
    await assert.rejects(
      () => fit({ engine: aborted.engine, data: failing, epochs: 1, lr: () => 0 }),
      new Error("the disk is gone"),
    );
    assert.deepEqual(await aborted.engine.readLossSum(), [warmLoss * 8, 8]);
    assert.equal(await epochLoss(aborted.engine), want);
    aborted.destroy();
  },
);

gpuTest("takeMeanLoss with nothing recorded since its last call says so", async (gpu) => {
  const { engine, destroy } = engineOf(gpu, 8);
  const { inputs, targets } = examples(8);
  engine.writeBatch(inputs, targets);
  engine.step(0.1);
  assert.ok(Number.isFinite(await engine.takeMeanLoss()));
  await assert.rejects(
    () => engine.takeMeanLoss(),
    new Error(
      "StepEngine.takeMeanLoss: no loss was recorded since its last call (or since fit took " +
        "the epoch's loss at its end); call it after a step, or read the running sums with " +
        "engine.readLossSum(), which resets nothing",
    ),
  );
  destroy();
});

gpuTest(
  "fit: a checkpoint path that would overwrite a file or has no folder is refused first",
  async (gpu) => {
    await withDir(async (dir) => {
      const { engine, destroy } = engineOf(gpu, 8);
      const { inputs, targets } = examples(20);
      const data = new ArraySource({ engine, inputs, targets, seed: 0 });
      const base = { engine, data, epochs: 2, lr: () => 0.1 };
      const at = (path: string) => ({ path, format: "api-test/1" });
      const refused = (path: string, message: RegExp) => (e: unknown) => {
        assert.ok(e instanceof UserError, String(e));
        assert.equal(e.file, path);
        assert.match(e.message, message);
        return true;
      };
      // a user's file where the checkpoint would go: refused without a resume, left as it was
      const precious = `${dir}/precious.safetensors`;
      await Deno.writeTextFile(precious, "mine");
      await assert.rejects(
        () => fit({ ...base, checkpoint: at(precious) }),
        refused(
          precious,
          new RegExp(
            `^fit: checkpoint ${precious} already exists, and no resume was given: the run would ` +
              `overwrite it\n  to fix: pass resume: await readCheckpoint\\(path\\) to continue`,
          ),
        ),
      );
      const missing = `${dir}/absent/run.safetensors`;
      await assert.rejects(
        () => fit({ ...base, checkpoint: at(missing) }),
        refused(missing, new RegExp(`^fit: checkpoint ${missing}: ${dir}/absent does not exist\n`)),
      );
      await assert.rejects(
        () => fit({ ...base, checkpoint: at(dir) }),
        refused(dir, /is a folder; expected a file path/),
      );
      assert.equal(engine.stepIndex, 0, "no step was taken");
      // a run's own checkpoint continues; resuming it into the user's file (a fork) is refused
      const own = `${dir}/run.safetensors`;
      assert.equal((await fit({ ...base, checkpoint: at(own), maxEpochs: 1 })).epochsDone, 1);
      await assert.rejects(
        async () => fit({ ...base, checkpoint: at(precious), resume: await readCheckpoint(own) }),
        refused(precious, /holds a file, and the run resumes another one \(.*run\.safetensors\)/),
      );
      const rest = await fit({ ...base, checkpoint: at(own), resume: await readCheckpoint(own) });
      assert.equal(rest.status, "completed");
      assert.equal(rest.epochsDone, 2);
      assert.equal(await Deno.readTextFile(precious), "mine");
      assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [
        "precious.safetensors",
        "run.safetensors",
      ]);
      destroy();
    });
  },
);

gpuTest("save: a missing folder is named, and nothing is written", async (gpu) => {
  await withDir(async (dir) => {
    const model = new Model(gpu, new Linear(D, C), 0);
    const path = `${dir}/absent/w.safetensors`;
    await assert.rejects(() => model.save(path), (e) => {
      assert.ok(e instanceof UserError);
      assert.equal(e.file, path);
      assert.match(
        e.message,
        new RegExp(
          `^cannot write ${path}: the folder ${dir}/absent does not exist\n  to fix: create ${dir}/absent first`,
        ),
      );
      return true;
    });
    assert.deepEqual([...Deno.readDirSync(dir)], []);
    model.destroy();
  });
});

Deno.test("stopMessage names the step of the non-finite loss and the checkpoint kept", () => {
  const at = { step: 17, epoch: 2, stepInEpoch: 5 };
  const base = { status: "stopped" as const, steps: 16, history: [], nonFinite: at };
  assert.equal(
    stopMessage({ ...base, epochsDone: 2 }),
    "non-finite loss at step 17 (epoch 3, step 5 of the epoch); stopped, kept the checkpoint " +
      "of epoch 2",
  );
  assert.equal(
    stopMessage({ ...base, epochsDone: 0 }),
    "non-finite loss at step 17 (epoch 3, step 5 of the epoch); stopped, no checkpoint was written",
  );
});
