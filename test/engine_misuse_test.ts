/**
 * Misuse of the engine's objects by a program importing mod.ts, each refused on the host with a
 * message that says what happened and what to do, instead of wrong numbers or a validation error:
 *
 * - a forward output used after its Ctx was released (read, written, bound to a kernel), while
 *   `ctx.release([out])` keeps it;
 * - a Gpu used after dispose(), a model, optimizer or engine used after destroy();
 * - a layer given input of the wrong rank (a map layer after a Linear), named by its prefix;
 * - custom modules: a child missing from children(), one instance reached twice, two children of
 *   one name; Dropout's name in its message;
 * - a regression loss, or integer targets on a one-output model, with the default label targets;
 * - a step refused after its forward was recorded (a bad batch or dev label): nothing of it runs,
 *   the same step again is refused again (the labels are still on the GPU), and the next good
 *   step is bit for bit a fresh engine's; a refusal after a loss submitted work (an upload)
 *   says the engine may be partly updated and what to do;
 * - an ArraySource with a batch larger than the data set, and the wrap of a partial batch (fit
 *   reports the epoch's distinct examples, not its rows); a source's examples its steps cannot
 *   hold.
 */
import assert from "node:assert/strict";
import {
  ArraySource,
  BatchNorm1d,
  BatchNorm2d,
  crossEntropy,
  Ctx,
  Dropout,
  EVAL,
  fit,
  GlobalAvgPool,
  globalAvgPool,
  Gpu,
  Linear,
  type LossFn,
  MaxPool2d,
  MetaReweighter,
  Model,
  Module,
  mseLoss,
  type ParamScope,
  ReLU,
  relu,
  Sequential,
  Sgd,
  StepEngine,
  Tensor,
  TRAIN,
} from "../mod.ts";
import { gpuTest } from "./gpu_harness.ts";

const D = 6, C = 3;

function mlp(gpu: Gpu): Model {
  return new Model(gpu, new Sequential(new Linear(D, 8), new ReLU(), new Linear(8, C)), 1);
}

function inputs(n: number, phase = 0): Float32Array {
  return Float32Array.from({ length: n * D }, (_, i) => Math.sin(i * 0.61 + phase));
}

const RELEASED =
  /^Error: tensor \[4,3\] used after its Ctx was released .*; read it before release, or keep it: ctx\.release\(\[out\]\)$/;

gpuTest(
  "Ctx.release: its outputs refuse to be read, written or bound; kept ones stay",
  async (gpu) => {
    const model = mlp(gpu);
    const x = Tensor.from(gpu, inputs(4), [4, D]);
    const ctx = new Ctx(gpu, null);
    const out = model.forward(ctx, x, EVAL);
    const view = out.reshape([12]);
    const good = await out.read(gpu);
    ctx.release();
    // another forward takes the released buffers: reading `out` would now give its numbers
    const ctx2 = new Ctx(gpu, null);
    const other = model.forward(ctx2, Tensor.from(gpu, inputs(4, 1), [4, D]), EVAL);
    await assert.rejects(() => out.read(gpu), (e) => RELEASED.test(`${e}`));
    assert.throws(() => out.upload(gpu, new Float32Array(12)), (e) => RELEASED.test(`${e}`));
    assert.throws(() => relu(ctx2, out), (e) => RELEASED.test(`${e}`));
    await assert.rejects(() => view.read(gpu), /tensor \[12\] used after its Ctx was released/);
    assert.notDeepEqual(Array.from(await other.read(gpu)), Array.from(good));
    ctx2.release();

    // kept: the same values after release and after other forwards
    const ctx3 = new Ctx(gpu, null);
    const kept = model.forward(ctx3, x, EVAL);
    ctx3.release([kept]);
    const ctx4 = new Ctx(gpu, null);
    model.forward(ctx4, Tensor.from(gpu, inputs(4, 2), [4, D]), EVAL);
    assert.deepEqual(Array.from(await kept.read(gpu)), Array.from(good));
    ctx4.release();
    ctx3.release();
    await assert.rejects(() => kept.read(gpu), (e) => RELEASED.test(`${e}`));
    x.release(gpu);
    model.destroy();
  },
);

Deno.test({
  name: "Gpu.dispose: every later use throws 'Gpu used after dispose()', freeing does not",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const gpu = await Gpu.create();
    const model = mlp(gpu);
    const optimizer = new Sgd(gpu, model.paramLayout);
    const engine = new StepEngine(model, { loss: crossEntropy, optimizer, batch: 4, input: [D] });
    const targets = Uint32Array.from({ length: 12 }, (_, i) => i % C);
    const data = new ArraySource({ engine, inputs: inputs(12), targets, seed: 0 });
    const x = Tensor.from(gpu, inputs(4), [4, D]);
    const ctx = new Ctx(gpu, null);
    const out = model.forward(ctx, x, EVAL);
    gpu.dispose();
    assert.equal(gpu.disposed, true);
    const disposed = /^Error: Gpu used after dispose\(\): .*create a new Gpu \(Gpu\.create\(\)\)/;
    await assert.rejects(() => out.read(gpu), disposed);
    assert.throws(() => Tensor.from(gpu, [1, 2, 3], [3]), disposed);
    assert.throws(() => mlp(gpu), disposed);
    assert.throws(() => model.forward(new Ctx(gpu, null), x, EVAL), disposed);
    await assert.rejects(() => fit({ engine, data, epochs: 1, lr: () => 0.1 }), disposed);
    await assert.rejects(() => gpu.sync(), disposed);
    // freeing after dispose is a no-op, in any order
    ctx.release();
    x.release(gpu);
    engine.destroy();
    optimizer.destroy();
    model.destroy();
    gpu.dispose();
  },
});

gpuTest(
  "destroy(): a model, optimizer or engine used afterwards names what was destroyed",
  async (gpu) => {
    const model = mlp(gpu);
    const x = Tensor.from(gpu, inputs(4), [4, D]);
    const weight = model.params.get("0.weight");
    assert.equal(model.params.find("0.weight"), weight);
    assert.equal(model.params.find("0.nothing"), undefined);
    assert.throws(() => model.params.get("0.nothing"), /^Error: no entry named 0\.nothing in /);
    // work recorded before destroy() still runs: the buffer goes after it is submitted
    const ctx = new Ctx(gpu, null);
    const out = model.forward(ctx, x, EVAL);
    model.destroy();
    assert.equal((await out.read(gpu)).length, 4 * C);
    ctx.release();
    model.destroy(); // a second destroy does nothing
    assert.throws(
      () => model.params.find("0.weight"),
      /0\.weight \.\.\. 2\.bias used after destroy/,
    );
    assert.throws(
      () => model.forward(new Ctx(gpu, null), x, EVAL),
      /^Error: tensors 0\.weight \.\.\. 2\.bias used after destroy\(\) \(of the Model, StepEngine/,
    );
    await assert.rejects(
      () => model.stateDict(),
      /tensors 0\.weight \.\.\. 2\.bias used after destroy/,
    );
    await assert.rejects(
      () => weight.read(gpu),
      /^Error: tensor "0\.weight" \[8,6\] used after its buffer was destroyed \(destroy\(\) of the Model/,
    );

    const m2 = mlp(gpu);
    const optimizer = new Sgd(gpu, m2.paramLayout, { momentum: 0.9 });
    const engine = new StepEngine(m2, { loss: crossEntropy, optimizer, batch: 4, input: [D] });
    engine.destroy();
    engine.destroy(); // a second destroy does nothing
    assert.throws(
      () => engine.writeBatch(inputs(4), new Uint32Array(4)),
      new Error("StepEngine used after destroy() (writeBatch): create a new StepEngine"),
    );
    assert.throws(
      () => engine.step(0.1),
      new Error("StepEngine used after destroy() (a step): create a new StepEngine"),
    );
    optimizer.destroy();
    m2.destroy();
    x.release(gpu);
    assert.deepEqual(gpu.errors, []);
  },
);

gpuTest("layers name themselves when given input of the wrong rank or channels", async (gpu) => {
  const rows = Tensor.from(gpu, inputs(4), [4, D]);
  const maps = Tensor.from(gpu, new Float32Array(2 * 3 * 2 * 2), [2, 3, 2, 2]);
  const ctx = new Ctx(gpu, null);
  const cases: [Module, Tensor, string][] = [
    [
      new Sequential(new Linear(D, 4), new GlobalAvgPool()),
      rows,
      'GlobalAvgPool layer "1": expected f32 maps [N, C, H, W], got [4,4] f32; [N, features] ' +
      "rows (after a Linear or a Flatten) have no H and W: place GlobalAvgPool before them",
    ],
    [
      new Sequential(["features", new Sequential(new ReLU(), new MaxPool2d(2))]),
      rows,
      'MaxPool2d layer "features.1": expected f32 maps [N, C, H, W], got [4,6] f32; [N, ' +
      "features] rows (after a Linear or a Flatten) have no H and W: place MaxPool2d before them",
    ],
    [
      new MaxPool2d(3),
      maps,
      "MaxPool2d layer (root): a 3x3 window with pad 0 does not fit maps [2,3,2,2]",
    ],
    [
      new Sequential(new BatchNorm2d(4)),
      maps,
      'BatchNorm2d layer "0": expected f32 maps [N, 4, H, W] (channels 4), got [2,3,2,2] f32',
    ],
  ];
  for (const [root, x, message] of cases) {
    const model = new Model(gpu, root, 0);
    assert.throws(() => model.forward(ctx, x, EVAL), new Error(message));
    model.destroy();
  }
  // Dropout names itself by its prefix, without a stray dot
  const drop = new Model(gpu, new Sequential(new Linear(D, 4), new Dropout(0.5)), 0);
  assert.throws(
    () => drop.forward(ctx, rows, TRAIN),
    /^Error: Dropout layer "1": a train-mode forward needs mode\.noise/,
  );
  drop.destroy();
  // the op itself, called without its layer, checks its input as well
  assert.throws(
    () => globalAvgPool(ctx, rows),
    new Error("globalAvgPool: expected f32 maps [N, C, H, W], got [4,6] f32"),
  );
  ctx.release();
  rows.release(gpu);
  maps.release(gpu);
  await gpu.sync();
  assert.deepEqual(gpu.errors, [], "nothing invalid reached the device");
});

gpuTest("custom modules: a missing children(), a shared instance, duplicate names", async (gpu) => {
  class Forgot extends Module {
    fc = new Linear(D, C);
    forward(ctx: Ctx, x: Tensor, p: ParamScope) {
      return this.fc.forward(ctx, x, p.child("fc"));
    }
  }
  const model = new Model(gpu, new Forgot(), 0);
  const x = Tensor.from(gpu, inputs(4), [4, D]);
  assert.throws(
    () => model.forward(new Ctx(gpu, null), x, EVAL),
    new Error(
      "no parameter named fc.weight (the model has no parameters): is the child listed in children(), under " +
        "the name its parent's forward passes to p.child()? A module's parameters and buffers " +
        "exist only when the model reaches it through children()",
    ),
  );
  model.destroy();

  const shared = new Linear(4, 4);
  assert.throws(
    () => new Model(gpu, new Sequential(new Linear(D, 4), shared, new ReLU(), shared), 0),
    new Error(
      'the same Linear instance is reached at "1" and "3": each place would get its own ' +
        "parameters, not shared ones (sharing parameters between places is not supported); " +
        "give each place its own instance (new Linear(...))",
    ),
  );
  // a module without parameters may be placed twice: nothing is copied
  const act = new ReLU();
  const twice = new Model(gpu, new Sequential(new Linear(D, 4), act, new Linear(4, C), act), 0);
  assert.deepEqual(twice.specs.params.map((s) => s.name), [
    "0.weight",
    "0.bias",
    "2.weight",
    "2.bias",
  ]);
  twice.destroy();

  assert.throws(
    () => new Sequential(["a", new Linear(D, 4)], ["a", new Linear(4, 3)]),
    new Error(
      'Sequential: layers 0 and 1 are both named "a"; give each layer its own name (they prefix ' +
        "the state_dict keys)",
    ),
  );
  class Twins extends Module {
    a = new Linear(D, 4);
    b = new Linear(4, 3);
    override children(): [string, Module][] {
      return [["fc", this.a], ["fc", this.b]];
    }
    forward(_ctx: Ctx, x: Tensor) {
      return x;
    }
  }
  assert.throws(
    () => new Model(gpu, new Twins(), 0),
    /^Error: two parameters or buffers are named fc\.weight: give the children of one module distinct names/,
  );
  x.release(gpu);
  await gpu.sync();
  assert.deepEqual(gpu.errors, [], "nothing invalid reached the device");
});

gpuTest(
  "mseLoss on the default class-label targets says how to ask for f32 targets",
  async (gpu) => {
    const model = new Model(gpu, new Sequential(new Linear(D, 1)), 0);
    const optimizer = new Sgd(gpu, model.paramLayout);
    const ctx = new Ctx(gpu, null);
    const pred = model.forward(ctx, Tensor.from(gpu, inputs(4), [4, D]), EVAL);
    const labels = Tensor.from(gpu, [0, 1, 0, 1], [4], "u32");
    assert.throws(
      () => mseLoss(ctx, pred, labels),
      new Error(
        "mseLoss: pred and target must be f32 [B, ...] of one shape, got [4,1] f32 and [4] u32; " +
          "targets are u32 class labels by default; for regression pass target: { shape: [1], " +
          'dtype: "f32" } to StepEngine',
      ),
    );
    // f32 targets of the wrong shape: the same hint, without the class labels
    const engine = new StepEngine(model, {
      loss: mseLoss,
      optimizer,
      batch: 4,
      input: [D],
      target: { dtype: "f32" },
    });
    engine.writeBatch(inputs(4), new Float32Array(4));
    assert.throws(
      () => engine.step(0.1),
      new Error(
        "mseLoss: pred and target must be f32 [B, ...] of one shape, got [4,1] f32 and [4] f32; " +
          'for regression pass target: { shape: [1], dtype: "f32" } to StepEngine',
      ),
    );
    // integer targets on a one-output model: the label check says it looks like a regression
    const labelled = new StepEngine(model, { loss: mseLoss, optimizer, batch: 4, input: [D] });
    labelled.writeBatch(inputs(4), Uint32Array.from([0, 1, 0, 1]));
    assert.throws(
      () => labelled.step(0.1),
      new RangeError(
        "StepEngine: the label of row 1 of the batch is 1, not a class in [0, 1) (the model " +
          "outputs 1 class); a model with one output is a regression: pass target: { shape: [1], " +
          'dtype: "f32" } to StepEngine, or give the last layer one output per class',
      ),
    );
    labelled.destroy();
    ctx.release();
    labels.release(gpu);
    engine.destroy();
    optimizer.destroy();
    model.destroy();
    await gpu.sync();
    assert.deepEqual(gpu.errors, [], "nothing invalid reached the device");
  },
);

gpuTest(
  "ArraySource: a batch larger than the data is refused; a partial batch wraps round",
  async (gpu) => {
    const model = mlp(gpu);
    const optimizer = new Sgd(gpu, model.paramLayout);
    const engine = new StepEngine(model, { loss: crossEntropy, optimizer, batch: 4, input: [D] });
    const targets = (n: number) => Uint32Array.from({ length: n }, (_, i) => i % C);
    assert.throws(
      () => new ArraySource({ engine, inputs: inputs(3), targets: targets(3), seed: 0 }),
      new RangeError(
        "ArraySource: the engine's batch is 4, larger than the 3 examples of the data set: each " +
          "step would see examples twice; build the StepEngine with batch <= 3",
      ),
    );
    // 10 examples in batches of 4: 3 steps, the last takes examples 8, 9 and wraps to 0, 1
    const data = new ArraySource({
      engine,
      inputs: inputs(10),
      targets: targets(10),
      seed: 0,
      ordered: true,
    });
    const epoch = data.epoch(0);
    assert.equal(epoch.steps, 3);
    const seen: number[][] = [];
    for (let s = 0; s < epoch.steps; s++) {
      epoch.load(s);
      seen.push(Array.from(data.batchIndices));
    }
    assert.deepEqual(seen, [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 1]]);
    assert.equal(epoch.examples, 10, "10 distinct examples in 12 rows");
    const run = await fit({ engine, data, epochs: 1, lr: () => 0.1 });
    assert.deepEqual([run.history[0].steps, run.history[0].examples], [3, 10]);
    // exactly as many examples as the batch: one step, each example once
    const whole = new ArraySource({ engine, inputs: inputs(4), targets: targets(4), seed: 3 });
    assert.equal(whole.epoch(0).steps, 1);
    // a source that says nothing: every step a batch of new examples; one that says too many
    const source = (examples?: number) => ({
      epoch: () => ({ steps: 2, examples, load: (s: number) => whole.epoch(0).load(s % 1) }),
    });
    const own = await fit({ engine, data: source(), epochs: 1, lr: () => 0.1 });
    assert.equal(own.history[0].examples, 8);
    for (const bad of [9, 0, 7.5]) {
      await assert.rejects(
        () => fit({ engine, data: source(bad), epochs: 1, lr: () => 0.1 }),
        new Error(
          `fit: epoch 0 of the data source has ${bad} examples, expected an integer in [1, 8] ` +
            "(its 2 steps of 4 examples)",
        ),
      );
    }
    engine.destroy();
    optimizer.destroy();
    model.destroy();
    await gpu.sync();
    assert.deepEqual(gpu.errors, [], "nothing invalid reached the device");
  },
);

gpuTest(
  "a step refused after its forward leaves the engine as it was: the next is a fresh engine's",
  async (gpu) => {
    // batch norm (running statistics a forward updates) and dropout (masks drawn per step)
    const build = () => {
      const root = new Sequential(
        new Linear(D, 8),
        new BatchNorm1d(8),
        new ReLU(),
        new Dropout(0.25),
        new Linear(8, C),
      );
      const model = new Model(gpu, root, 1);
      const optimizer = new Sgd(gpu, model.paramLayout, { momentum: 0.9 });
      const engine = new StepEngine(model, { loss: crossEntropy, optimizer, batch: 8, input: [D] });
      const meta = new MetaReweighter(engine, { devBatch: 4, params: "all" });
      const state = async () => ({
        model: await model.stateDict(),
        loss: await engine.readLossSum(),
        eps: await meta.eps.read(gpu),
        stepIndex: engine.stepIndex,
      });
      const destroy = () => {
        meta.destroy();
        engine.destroy();
        optimizer.destroy();
        model.destroy();
      };
      return { engine, meta, state, destroy };
    };
    const META = {
      eta: 0.1,
      tau: 1,
      lookahead: "mean",
      rule: "meta",
      lookaheadWeights: "w",
    } as const;
    const x = inputs(8), y = Uint32Array.from({ length: 8 }, (_, i) => i % C);
    const devX = inputs(4, 1), devY = Uint32Array.of(0, 1, 2, 0);
    const good = async (b: ReturnType<typeof build>) => {
      b.engine.writeBatch(x, y);
      b.engine.step(0.1);
      b.meta.writeDevBatch(devX, devY);
      b.meta.step(0.1, META);
      return await b.state();
    };
    const fresh = build();
    const { eps: _, ...initial } = await fresh.state();
    const want = await good(fresh);
    fresh.destroy();

    // each refusal comes before the first forward has given C (later a label is refused when
    // written): a bad batch label, and a bad dev label of the meta step, seen after its forward
    const refusals = [
      {
        write: (b: ReturnType<typeof build>, label: number) =>
          b.engine.writeBatch(x, Uint32Array.from(y, (v, i) => i === 2 ? label : v)),
        step: (b: ReturnType<typeof build>) => b.engine.step(0.1),
        error: (label: number) =>
          new RangeError(
            `StepEngine: the label of row 2 of the batch is ${label}, not a class in [0, 3) ` +
              "(the model outputs 3 classes)",
          ),
      },
      {
        write: (b: ReturnType<typeof build>, label: number) => {
          b.engine.writeBatch(x, y);
          b.meta.writeDevBatch(devX, Uint32Array.of(0, label, 2, 0));
        },
        step: (b: ReturnType<typeof build>) => b.meta.step(0.1, META),
        error: (label: number) =>
          new RangeError(
            `MetaReweighter: the label of row 1 of the dev batch is ${label}, not a class in ` +
              "[0, 3) (the model outputs 3 classes)",
          ),
      },
    ];
    for (const { write, step, error } of refusals) {
      const b = build();
      const inUse = gpu.memory.inUseBytes;
      write(b, 7);
      assert.throws(() => step(b), error(7));
      assert.equal(gpu.memory.inUseBytes, inUse, "its tensors went back to the pool");
      // the refused labels are still the ones written: the same step again is refused again
      assert.throws(() => step(b), error(7), "a retry without a new batch");
      // another bad batch, refused when written now that C is known, leaves them in place
      assert.throws(() => write(b, 5), error(5));
      assert.throws(() => step(b), error(7), "the labels still written");
      assert.equal(gpu.memory.inUseBytes, inUse);
      const { eps: _, ...now } = await b.state(); // eps: whatever its pooled buffer held
      assert.deepEqual(now, initial, "nothing of the refused steps ran");
      assert.deepEqual(await good(b), want, "bit for bit a fresh engine's steps");
      b.destroy();
    }
    await gpu.sync();
    assert.deepEqual(gpu.errors, [], "nothing invalid reached the device");
  },
);

gpuTest(
  "a step refused after something in it submitted says the engine may be partly updated",
  async (gpu) => {
    const build = (loss: LossFn) => {
      const model = new Model(gpu, new Sequential(new Linear(D, 8), new BatchNorm1d(8)), 1);
      const optimizer = new Sgd(gpu, model.paramLayout);
      const engine = new StepEngine(model, { loss, optimizer, batch: 4, input: [D] });
      engine.writeBatch(inputs(4), new Uint32Array(4));
      const destroy = () => {
        engine.destroy();
        optimizer.destroy();
        model.destroy();
      };
      return { model, engine, destroy };
    };
    const refusal = new Error("my loss: the batch is not what I expected");
    // a loss that uploads a constant (a submit: the forward recorded before it runs), then throws
    const uploads: LossFn = (ctx) => {
      ctx.empty([2]).upload(gpu, [1, 2]);
      throw refusal;
    };
    const a = build(uploads);
    const before = await a.model.stateDict();
    const inUse = gpu.memory.inUseBytes;
    assert.throws(
      () => a.engine.step(0.1),
      (e) => {
        assert.ok(e instanceof Error);
        assert.equal(
          e.message,
          "StepEngine: a step was refused (Error: my loss: the batch is not what I expected) " +
            "after part of it had run: something it recorded submitted the work recorded before " +
            "(a loss or seed rule that uploads, writes or reads a buffer, e.g. Tensor.from or " +
            "tensor.upload), so the engine may be partly updated (a forward's running " +
            "statistics, state the seed rule keeps); rebuild the model, optimizer and " +
            "StepEngine, or reload a checkpoint, before training on, and upload such constants " +
            "once, before the steps",
        );
        assert.equal(e.cause, refusal);
        return true;
      },
    );
    assert.equal(gpu.memory.inUseBytes, inUse, "its tensors went back to the pool");
    const after = await a.model.stateDict();
    // what the message warns of: the forward's batch statistics reached the running mean
    assert.notDeepEqual(after.get("1.running_mean"), before.get("1.running_mean"));
    assert.deepEqual(after.get("0.weight"), before.get("0.weight"), "no update ran");
    a.destroy();
    // the same refusal without a submit: the error as it was, nothing ran
    const b = build(() => {
      throw refusal;
    });
    const bBefore = await b.model.stateDict();
    assert.throws(() => b.engine.step(0.1), (e) => e === refusal);
    assert.deepEqual(await b.model.stateDict(), bBefore);
    b.destroy();
    await gpu.sync();
    assert.deepEqual(gpu.errors, [], "nothing invalid reached the device");
  },
);
