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
 */
import assert from "node:assert/strict";
import {
  ArraySource,
  crossEntropy,
  type EpochEnd,
  fit,
  type FitOptions,
  type Gpu,
  Linear,
  Model,
  type Optimizer,
  readCheckpoint,
  ReLU,
  Sequential,
  Sgd,
  StepEngine,
  UserError,
} from "../mod.ts";
import { gpuTest } from "./gpu_harness.ts";

const D = 6, C = 3;

/** An MLP engine D-8-C with batch `batch` and the optimizer `make` builds. */
function engineOf(
  gpu: Gpu,
  batch: number,
  make: (m: Model) => Optimizer = (m) => new Sgd(gpu, m.paramLayout, { momentum: 0.9 }),
) {
  const model = new Model(gpu, new Sequential(new Linear(D, 8), new ReLU(), new Linear(8, C)), 1);
  const optimizer = make(model);
  const engine = new StepEngine(model, { loss: crossEntropy, optimizer, batch, input: [D] });
  const destroy = () => {
    engine.destroy();
    optimizer.destroy();
    model.destroy();
  };
  return { model, optimizer, engine, destroy };
}

/** `n` examples of D inputs and labels i % C. */
function examples(n: number) {
  return {
    inputs: Float32Array.from({ length: n * D }, (_, i) => Math.sin(i * 0.61)),
    targets: Uint32Array.from({ length: n }, (_, i) => i % C),
  };
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A predicate for assert.rejects: a UserError about `file` with this message and hint. */
function userError(file: string, message: string, hint: string) {
  return (e: unknown) => {
    assert.ok(e instanceof UserError, String(e));
    assert.equal(e.file, file);
    assert.equal(e.hint, hint);
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
      // a checkpoint written before these were recorded resumes as before
      delete file.metadata.fit;
      const old = start(8, 20, 7, 2);
      const resumed = await fit(old.options(file));
      assert.deepEqual([resumed.status, resumed.epochsDone], ["completed", 2]);
      old.destroy();
    });
  },
);
