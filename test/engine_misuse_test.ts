/**
 * Misuse of the engine's objects by a program importing mod.ts, each refused on the host with a
 * message that says what happened and what to do, instead of wrong numbers or a validation error:
 *
 * - a forward output used after its Ctx was released (read, written, bound to a kernel), while
 *   `ctx.release([out])` keeps it;
 * - a Gpu used after dispose(), a model or optimizer used after destroy();
 */
import assert from "node:assert/strict";
import {
  ArraySource,
  crossEntropy,
  Ctx,
  EVAL,
  fit,
  Gpu,
  Linear,
  Model,
  ReLU,
  relu,
  Sequential,
  Sgd,
  StepEngine,
  Tensor,
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
    // work recorded before destroy() still runs: the buffer goes after it is submitted
    const ctx = new Ctx(gpu, null);
    const out = model.forward(ctx, x, EVAL);
    model.destroy();
    assert.equal((await out.read(gpu)).length, 4 * C);
    ctx.release();
    model.destroy(); // a second destroy does nothing
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
    assert.throws(
      () => engine.writeBatch(inputs(4), new Uint32Array(4)),
      /^Error: tensor \[4,6\] used after its Ctx was released \(or its owner destroyed\)/,
    );
    optimizer.destroy();
    m2.destroy();
    x.release(gpu);
    assert.deepEqual(gpu.errors, []);
  },
);
