/**
 * More of what a program importing mod.ts meets, each asserted by value or message:
 *
 * - fit's options of the wrong type (a number for `lr`, a path for `resume`) are TypeErrors
 *   naming the option, before any step;
 * - `maxEpochs` short of the run is refused without a checkpoint to continue from, and
 *   `hooks.stopAfter` ends a run early, resumable bit for bit;
 * - a resume with another batch, data, seed or epochs than its checkpoint's is refused naming
 *   the setting and the file (a fork may train longer; a checkpoint written before these were
 *   recorded is accepted);
 * - Adam and AdamW with parameters exempt from weight decay against the float64 reference (the
 *   others bit-identical to the plain kernel's), and their options out of range as RangeErrors;
 * - Model: `numParams` without the layout's gaps; `save` refuses a file already there unless
 *   told to overwrite it; `loadStateDict` refuses entries the model does not have (unless not
 *   strict) and missing ones, before uploading anything;
 * - a UserError's message is its problem and its hint; `problem` and `hint` hold them apart;
 * - predict: eval-mode outputs in batches, as one forward of them all gives; argmax; and
 *   evaluateClassifier with the input shape and classes taken from the data and the model.
 */
import assert from "node:assert/strict";
import {
  Adam,
  argmax,
  ArraySource,
  BatchNorm1d,
  createOptimizer,
  Ctx,
  Dropout,
  type EpochEnd,
  EVAL,
  evaluateClassifier,
  fit,
  type FitOptions,
  FlatLayout,
  FlatTensors,
  type Gpu,
  Linear,
  Model,
  predict,
  problemOf,
  readCheckpoint,
  ReLU,
  Sequential,
  Tensor,
  UserError,
} from "../mod.ts";
import { C, D, engineOf, examples, withDir } from "./engine_fixtures.ts";
import { gpuTest } from "./gpu_harness.ts";
import * as ref from "./reference/mod.ts";
import { expectClose, randn } from "./op_check.ts";

/** A predicate for assert.rejects: a UserError about `file` with this message and hint. */
function userError(file: string, message: string, hint: string) {
  return (e: unknown) => {
    assert.ok(e instanceof UserError, String(e));
    assert.equal(e.file, file);
    assert.equal(e.hint, hint);
    assert.equal(e.problem, message);
    assert.equal(problemOf(e), message);
    assert.equal(e.message, `${message}\n  to fix: ${hint}`);
    return true;
  };
}

gpuTest("fit: options of the wrong type are TypeErrors naming the option", async (gpu) => {
  const { engine, destroy } = engineOf(gpu, 8);
  const { inputs, targets } = examples(20);
  const data = new ArraySource({ engine, inputs, targets, seed: 0 });
  const base = { engine, data, epochs: 1, lr: () => 0.1 };
  // what a caller in plain JavaScript can pass
  const untyped = (o: Record<string, unknown>) => fit(o as unknown as FitOptions<unknown, unknown>);
  await assert.rejects(
    () => untyped({ ...base, lr: 0.1 }),
    new TypeError(
      "fit: lr must be a function (epoch, step) => rate, got the number 0.1; for a constant " +
        "rate pass lr: () => 0.1",
    ),
  );
  await assert.rejects(
    () => untyped({ ...base, lr: undefined, schedule: "cosine" }),
    new TypeError('fit: schedule must be a Schedule (e.g. cosineLr(...)), got "cosine"'),
  );
  await assert.rejects(
    () => untyped({ ...base, resume: "run/ck.safetensors" }),
    new TypeError(
      'fit: resume must be a checkpoint from readCheckpoint(path), or null, got "run/ck.' +
        'safetensors"; read it with resume: await readCheckpoint("run/ck.safetensors")',
    ),
  );
  await assert.rejects(
    () => untyped({ ...base, checkpoint: "run/ck.safetensors" }),
    new TypeError(
      'fit: checkpoint must be { path: string, format: string }, got "run/ck.safetensors"',
    ),
  );
  await assert.rejects(
    () => untyped({ ...base, checkpoint: { path: "run/ck.safetensors" } }),
    new TypeError("fit: checkpoint must be { path: string, format: string }, got an object"),
  );
  await assert.rejects(
    () => untyped({ ...base, data: inputs }),
    new TypeError(
      "fit: data must be a DataSource (epoch(e) gives its batches), got a Float32Array",
    ),
  );
  await assert.rejects(
    () => untyped({ ...base, epochs: "2" }),
    new TypeError('fit: epochs must be a number, got "2"'),
  );
  await assert.rejects(
    () => untyped({ ...base, hooks: { epochEnd: "log" } }),
    new TypeError('fit: hooks.epochEnd must be a function, got "log"'),
  );
  await assert.rejects(
    () => untyped({ ...base, evaluate: true }),
    new TypeError("fit: evaluate must be a function (epoch) => metrics, got the boolean true"),
  );
  assert.equal(engine.stepIndex, 0, "no step was taken");
  destroy();
});

gpuTest("fit: maxEpochs short of the run needs a checkpoint to continue from", async (gpu) => {
  const { engine, destroy } = engineOf(gpu, 8);
  const { inputs, targets } = examples(20);
  const data = new ArraySource({ engine, inputs, targets, seed: 0 });
  const base = { engine, data, epochs: 3, lr: () => 0.1 };
  await assert.rejects(
    () => fit({ ...base, maxEpochs: 1 }),
    new RangeError(
      "fit: maxEpochs = 1 stops the run after 1 of the 3 epochs left, but without checkpoint " +
        "it cannot be continued (another fit would start again at epoch 0); pass checkpoint: " +
        "{ path, format } to resume it later, or epochs: 1",
    ),
  );
  assert.equal(engine.stepIndex, 0, "no step was taken");
  // 0 trains nothing (restores a resume, if any); the whole run needs no checkpoint
  const none = await fit({ ...base, maxEpochs: 0 });
  assert.deepEqual([none.status, none.epochsDone, engine.stepIndex], ["running", 0, 0]);
  const all = await fit({ ...base, maxEpochs: 3 });
  assert.deepEqual([all.status, all.epochsDone, all.steps], ["completed", 3, 9]);
  destroy();
});

gpuTest(
  "fit: hooks.stopAfter ends a run early; its checkpoint continues it exactly",
  async (gpu) => {
    await withDir(async (dir) => {
      const { inputs, targets } = examples(20);
      const run = async (path: string | null, stopAt: number | null) => {
        const { model, engine, destroy } = engineOf(gpu, 8);
        const seen: number[] = [];
        const result = await fit({
          engine,
          data: new ArraySource({ engine, inputs, targets, seed: 3 }),
          epochs: 3,
          lr: () => 0.1,
          ...(path
            ? { checkpoint: { path, format: "api2/1" }, resume: await readCheckpoint(path) }
            : {}),
          hooks: {
            stopAfter: (record: EpochEnd<unknown>, epoch) => {
              assert.equal(record.epoch, epoch);
              seen.push(epoch);
              return epoch === stopAt;
            },
          },
        });
        const state = await model.stateDict();
        destroy();
        return { result, state, seen };
      };
      const whole = await run(null, null);
      assert.deepEqual([whole.result.status, whole.seen], ["completed", [0, 1, 2]]);
      const path = `${dir}/run.safetensors`;
      const first = await run(path, 0);
      assert.deepEqual([first.result.status, first.result.epochsDone, first.seen], [
        "running",
        1,
        [0],
      ]);
      const rest = await run(path, null);
      assert.deepEqual([rest.result.status, rest.result.epochsDone, rest.seen], [
        "completed",
        3,
        [1, 2],
      ]);
      assert.deepEqual(
        rest.result.history.map((h) => h.trainLoss),
        whole.result.history.map((h) => h.trainLoss),
      );
      for (const [name, v] of whole.state) assert.deepEqual(rest.state.get(name), v, name);
    });
  },
);

gpuTest(
  "fit: a resume with another batch, data, seed or epochs is refused naming it and the file",
  async (gpu) => {
    await withDir(async (dir) => {
      const path = `${dir}/run.safetensors`;
      const start = (batch: number, n: number, seed: number, epochs: number) => {
        const parts = engineOf(gpu, batch);
        const { inputs, targets } = examples(n);
        const data = new ArraySource({ engine: parts.engine, inputs, targets, seed });
        const options = (resume: Awaited<ReturnType<typeof readCheckpoint>>, at = path) => ({
          engine: parts.engine,
          data,
          epochs,
          lr: () => 0.1,
          checkpoint: { path: at, format: "api2/1" },
          resume,
        });
        return { ...parts, options };
      };
      const first = start(8, 20, 0, 2);
      assert.equal((await fit({ ...first.options(null), maxEpochs: 1 })).epochsDone, 1);
      first.destroy();
      const file = (await readCheckpoint(path))!;
      assert.deepEqual(JSON.parse(file.metadata.fit), { batch: 8, epochs: 2, epochSteps: 3 });
      const bytes = await Deno.readFile(path);
      const refused = async (
        batch: number,
        n: number,
        seed: number,
        epochs: number,
        message: string,
        hint: string,
      ) => {
        const other = start(batch, n, seed, epochs);
        await assert.rejects(
          () => fit(other.options(file)),
          userError(path, `fit: checkpoint ${path}: ${message}`, hint),
        );
        assert.equal(other.engine.stepIndex, 0, "no step was taken");
        other.destroy();
      };
      const newRun = ", or start a new run (another checkpoint path)";
      await refused(
        16,
        20,
        0,
        2,
        "written with batch 8, but this engine's batch is 16",
        "resume with an engine of batch 8" + newRun,
      );
      await refused(
        8,
        30,
        0,
        2,
        "epoch 1 of its data had 3 steps, but the data source's has 4 (other data?)",
        "resume with the data the run was started with" + newRun,
      );
      await refused(
        8,
        20,
        7,
        2,
        "the data source's random state at epoch 2 is not the checkpoint's (another seed?)",
        "resume with the data source (and seed) the run was started with" + newRun,
      );
      await refused(
        8,
        20,
        0,
        4,
        "a run of 2 epochs, but epochs = 4",
        "resume with epochs: 2; to train it longer, fork it (resume from it with " +
          "checkpoint.path set to a new file)" + newRun,
      );
      assert.deepEqual(await Deno.readFile(path), bytes, "the checkpoint is left as it was");
      // a fork may train longer, and records its own epochs
      const fork = start(8, 20, 0, 4);
      const forked = await fit(fork.options(file, `${dir}/fork.safetensors`));
      assert.deepEqual([forked.status, forked.epochsDone, forked.steps], ["completed", 4, 12]);
      const forkFile = (await readCheckpoint(`${dir}/fork.safetensors`))!;
      assert.deepEqual(JSON.parse(forkFile.metadata.fit), { batch: 8, epochs: 4, epochSteps: 3 });
      fork.destroy();
      file.metadata.fit = '{"batch":8}';
      const damaged = start(8, 20, 0, 2);
      await assert.rejects(
        () => fit(damaged.options(file)),
        new Error(
          `fit: checkpoint ${path}: metadata "fit" is {"batch":8}, expected {"batch", "epochs", ` +
            `"epochSteps"} of integers >= 1`,
        ),
      );
      damaged.destroy();
      // a checkpoint written before these were recorded resumes as before
      delete file.metadata.fit;
      const old = start(8, 20, 7, 2);
      const resumed = await fit(old.options(file));
      assert.deepEqual([resumed.status, resumed.epochsDone], ["completed", 2]);
      old.destroy();
    });
  },
);

/** Three parameters of sizes that fill no alignment unit, so the layout has gaps. */
function optimLayout(gpu: Gpu): FlatLayout {
  return new FlatLayout([
    { name: "a.weight", shape: [5, 7] },
    { name: "a.bias", shape: [5] },
    { name: "b.weight", shape: [3, 17, 3] },
  ], gpu.offsetAlignment);
}

for (const decoupled of [false, true]) {
  const name = decoupled ? "adamw" : "adam";
  gpuTest(
    `${name}: parameters exempt from weight decay follow the float64 reference`,
    async (gpu) => {
      const l = optimLayout(gpu);
      const rng = new ref.Rng(decoupled ? 31 : 30);
      const random = (std: number) =>
        new Map(
          l.specs.map((s) => [s.name, Float32Array.from(randn(rng, ref.numel(s.shape), 0, std))]),
        );
      const init = random(1);
      const grads = Array.from({ length: 20 }, () => random(0.5));
      const config = { beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1, decoupled };
      const lr = 0.01, exempt = ["a.bias", "b.weight"];
      const run = async (decayExempt?: string[]) => {
        const opt = createOptimizer(gpu, l, { kind: name, ...config, decayExempt }) as Adam;
        assert.deepEqual(opt.config.decayExempt, decayExempt);
        const params = new FlatTensors(gpu, l), g = new FlatTensors(gpu, l);
        params.upload(init);
        const created = () => {
          const s = gpu.stats;
          return [s.buffersCreated, s.uniformsCreated, s.bindGroupsCreated, s.pipelinesCreated];
        };
        let warm: number[] = [];
        grads.forEach((step, t) => {
          g.upload(step);
          opt.step(params, g, lr);
          gpu.submit();
          if (t === 0) warm = created();
        });
        assert.deepEqual(created(), warm, "warm steps created GPU objects");
        const out = {
          params: await params.download(),
          m: await opt.expAvg.download(),
          v: await opt.expAvgSq.download(),
        };
        for (const f of [params, g]) f.destroy();
        opt.destroy();
        return out;
      };
      const masked = await run(exempt), plain = await run();
      for (const s of l.specs) {
        const reference = (weightDecay: number) => {
          const n = ref.numel(s.shape);
          const p = Float64Array.from(init.get(s.name)!);
          const m = new Float64Array(n), v = new Float64Array(n);
          grads.forEach((step, t) => {
            const g = Float64Array.from(step.get(s.name)!);
            ref.adamStep(p, g, m, v, t + 1, { lr, ...config, weightDecay });
          });
          return { p, m, v };
        };
        const want = reference(exempt.includes(s.name) ? 0 : config.weightDecay);
        const got = (k: "params" | "m" | "v") => Float64Array.from(masked[k].get(s.name)!);
        expectClose(`${name} exempt: ${s.name}`, got("params"), want.p, 1e-6);
        expectClose(`${name} exempt: exp_avg ${s.name}`, got("m"), want.m, 1e-6);
        expectClose(`${name} exempt: exp_avg_sq ${s.name}`, got("v"), want.v, 1e-6);
        if (exempt.includes(s.name)) {
          // the decay the exemption removes is well above the tolerance
          const decayed = reference(config.weightDecay).p;
          assert.ok(ref.relError(want.p, decayed) > 1e-4, `${s.name}: decay too small to see`);
        } else {
          // the others compute exactly what the plain kernel computes
          assert.deepEqual(masked.params.get(s.name), plain.params.get(s.name), s.name);
          assert.deepEqual(masked.v.get(s.name), plain.v.get(s.name), s.name);
        }
      }
    },
  );
}

gpuTest("adam: options out of range are RangeErrors naming them; unknown exemptions", (gpu) => {
  const l = optimLayout(gpu);
  const refused = (config: ConstructorParameters<typeof Adam>[2], message: string) =>
    assert.throws(() => new Adam(gpu, l, config), new RangeError(message));
  refused({ beta1: 1.5 }, "Adam: beta1 = 1.5, expected a number in [0, 1)");
  refused({ beta2: -0.1 }, "Adam: beta2 = -0.1, expected a number in [0, 1)");
  refused({ eps: -1 }, "Adam: eps = -1, expected a finite number >= 0");
  refused({ weightDecay: NaN }, "Adam: weightDecay = NaN, expected a finite number >= 0");
  assert.throws(
    () => new Adam(gpu, l, { decayExempt: ["a.bias", "fc.bias"] }),
    new Error(
      'Adam: decayExempt names "fc.bias", which is not a parameter; parameters: a.weight, ' +
        "a.bias, b.weight",
    ),
  );
  return Promise.resolve();
});

gpuTest("model: numParams counts the parameters, not the layout's gaps", (gpu) => {
  const model = new Model(
    gpu,
    new Sequential(new Linear(D, 5), new BatchNorm1d(5), new ReLU(), new Linear(5, C)),
    0,
  );
  assert.equal(model.numParams, D * 5 + 5 + 5 + 5 + 5 * C + C);
  assert.ok(model.paramLayout.length > model.numParams, "the layout has gaps");
  model.destroy();
  return Promise.resolve();
});

gpuTest(
  "model: save refuses a file already there unless overwrite, leaving it as it is",
  async (gpu) => {
    await withDir(async (dir) => {
      const model = new Model(gpu, new Linear(D, C), 0);
      const path = `${dir}/mine.safetensors`;
      await Deno.writeTextFile(path, "precious");
      const hint =
        "pass { overwrite: true } to replace it (a file this program wrote), or choose " +
        "another path";
      await assert.rejects(
        () => model.save(path),
        userError(path, `Model.save: ${path} already exists; saving would overwrite it`, hint),
      );
      assert.equal(await Deno.readTextFile(path), "precious");
      // a new file is written; saving again over it needs overwrite, which replaces it
      const own = `${dir}/w.safetensors`;
      await model.save(own);
      await assert.rejects(() => model.save(own), /already exists; saving would overwrite it/);
      model.init(5);
      await model.save(own, { overwrite: true, metadata: { round: "2" } });
      const other = new Model(gpu, new Linear(D, C), 9);
      assert.equal((await other.load(own)).metadata.round, "2");
      assert.deepEqual(await other.stateDict(), await model.stateDict());
      assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [
        "mine.safetensors",
        "w.safetensors",
      ]);
      model.destroy();
      other.destroy();
    });
  },
);

gpuTest(
  "model: loadStateDict refuses entries it lacks or does not have, loading nothing",
  async (gpu) => {
    const model = new Model(gpu, new Sequential(new Linear(D, 4), new BatchNorm1d(4)), 0);
    const before = await model.stateDict();
    const donor = new Model(gpu, new Sequential(new Linear(D, 4), new BatchNorm1d(4)), 3);
    const values = await donor.stateDict();
    const extra = new Map([...values, ["2.weight", new Float32Array(4)], [
      "fc.bias",
      new Float32Array(1),
    ]]);
    assert.throws(
      () => model.loadStateDict(extra),
      new Error(
        'loadStateDict: "2.weight", "fc.bias" are no parameter or buffer of the model; pass ' +
          "{ strict: false } to ignore them",
      ),
    );
    const partial = new Map(values);
    partial.delete("1.running_var");
    assert.throws(
      () => model.loadStateDict(partial, { strict: false }),
      new Error('loadStateDict: no value for the model\'s "1.running_var"'),
    );
    assert.deepEqual(await model.stateDict(), before, "nothing was loaded");
    // not strict: the extras are ignored; PyTorch's num_batches_tracked is always accepted
    model.loadStateDict(extra, { strict: false });
    assert.deepEqual(await model.stateDict(), values);
    model.init(0);
    model.loadStateDict(new Map([...values, ["1.num_batches_tracked", new Float32Array([7])]]));
    assert.deepEqual(await model.stateDict(), values);
    model.destroy();
    donor.destroy();
  },
);

/** A trained-looking MLP with batch norm and dropout (eval mode differs from train mode). */
async function evalModel(gpu: Gpu) {
  const model = new Model(
    gpu,
    new Sequential(
      new Linear(D, 8),
      new BatchNorm1d(8),
      new ReLU(),
      new Dropout(0.5),
      new Linear(8, C),
    ),
    4,
  );
  const state = await model.stateDict();
  state.set("1.running_mean", Float32Array.from({ length: 8 }, (_, i) => 0.1 * i));
  state.set("1.running_var", Float32Array.from({ length: 8 }, (_, i) => 1 + 0.2 * i));
  model.loadStateDict(state);
  return model;
}

gpuTest(
  "predict: eval-mode outputs in batches equal one forward of all the examples",
  async (gpu) => {
    const model = await evalModel(gpu);
    const { inputs } = examples(10);
    const got = await predict(model, inputs, { batch: 4, inputShape: [D] }); // 4 + 4 + 2
    const x = Tensor.from(gpu, inputs, [10, D]);
    const ctx = new Ctx(gpu, null);
    const want = await model.forward(ctx, x, EVAL).read(gpu);
    ctx.release();
    x.release(gpu);
    assert.equal(got.length, 10 * C);
    assert.deepEqual(got, want);
    assert.deepEqual(await predict(model, inputs, { batch: 32, inputShape: [D] }), want);
    await assert.rejects(
      () => predict(model, inputs.subarray(1), { batch: 4, inputShape: [D] }),
      new Error(
        "predict: 59 input values are not a whole number >= 1 of examples of 6 (inputShape [6])",
      ),
    );
    await assert.rejects(
      () => predict(model, inputs, { batch: 0, inputShape: [D] }),
      new RangeError("predict: batch = 0, expected an integer >= 1"),
    );
    await assert.rejects(
      () => predict(model, inputs, { batch: 4, inputShape: [2, 3] }),
      /Linear layer "0": expected input \[N, 6\]/,
    );
    model.destroy();
  },
);

Deno.test("argmax: the first largest of each row; NaN is never the largest", () => {
  assert.deepEqual(
    argmax([0.1, 0.7, 0.2, /**/ 3, 3, 1, /**/ NaN, -1, -2, /**/ NaN, NaN, NaN], 3),
    Uint32Array.from([1, 0, 1, 0]),
  );
  assert.throws(
    () => argmax([1, 2, 3, 4], 3),
    new RangeError("argmax: classes = 3, expected an integer >= 1 that divides the 4 outputs"),
  );
  assert.throws(() => argmax([1, 2], 0), /classes = 0/);
});

gpuTest(
  "evaluateClassifier: input shape and classes default to the data's and the model's",
  async (gpu) => {
    const model = await evalModel(gpu);
    const { inputs, targets } = examples(10);
    const given = await evaluateClassifier(model, inputs, targets, {
      batch: 4,
      inputShape: [D],
      numClasses: C,
    });
    const defaulted = await evaluateClassifier(model, inputs, targets, { batch: 4 });
    assert.deepEqual(defaulted, given);
    // its top-1 error is what argmax of predict's outputs gives
    const predicted = argmax(await predict(model, inputs, { batch: 4, inputShape: [D] }), C);
    const wrong = predicted.filter((c, i) => c !== targets[i]).length;
    assert.equal(given.top1Error, wrong / 10);
    assert.ok(wrong > 0 && wrong < 10, `${wrong} wrong: the check has teeth`);
    targets[7] = C;
    await assert.rejects(
      () => evaluateClassifier(model, inputs, targets, { batch: 4 }),
      new RangeError(
        "evaluateClassifier: labels[7] = 3 is not a class in [0, 3) (the model's output width)",
      ),
    );
    await assert.rejects(
      () => evaluateClassifier(model, inputs.subarray(1), targets, { batch: 4 }),
      new Error(
        "evaluateClassifier: 59 input values for 10 labels are not 10 examples of one size",
      ),
    );
    await assert.rejects(
      () => evaluateClassifier(model, inputs, [], { batch: 4 }),
      new Error("evaluateClassifier: no examples (labels is empty)"),
    );
    model.destroy();
  },
);

Deno.test("UserError: the message is the problem and its hint, also held apart", () => {
  const e = new UserError("the run has 3 epochs", { hint: "pass epochs: 3", file: "a/b" });
  assert.equal(e.message, "the run has 3 epochs\n  to fix: pass epochs: 3");
  assert.deepEqual([e.problem, e.hint, e.file, e.exitCode], [
    "the run has 3 epochs",
    "pass epochs: 3",
    "a/b",
    1,
  ]);
  const bare = new UserError("no hint here");
  assert.deepEqual([bare.message, bare.problem, bare.hint], [
    "no hint here",
    "no hint here",
    undefined,
  ]);
  assert.equal(problemOf(e), "the run has 3 epochs");
  assert.equal(problemOf(new RangeError("plain")), "plain");
  assert.equal(problemOf("thrown string"), "thrown string");
});
