/**
 * Saving and loading through mod.ts: an MLP trained on Fashion-MNIST by the fit loop with a
 * checkpoint at every epoch end, stopped after the first epochs and resumed from its checkpoint;
 * then its weights saved alone (`Model.save`, PyTorch state_dict names in safetensors) and loaded
 * into a fresh model that predicts exactly the same.
 *
 * Full size (the default): 20,000 training images, 2 + 2 epochs; `--size small`: 2,000, 1 + 1.
 * Files go to `--out DIR` (default runs/example-checkpoint, the one folder the task may write):
 * `train.safetensors` and `mlp.safetensors`, never over files already there (an earlier run's
 * are refused: move them away, or choose another --out).
 *
 *   DENO_WEBGPU_BACKEND=vulkan deno run --allow-read=.,/usr/share/datasets \
 *     --allow-write=runs/example-checkpoint --allow-env=TAILGRAD_DATA,TAILGRAD_DEBUG \
 *     examples/checkpoint.ts [--size small] [--data-dir DIR] [--out DIR]
 *
 * The last line printed is JSON: epochs done, test accuracy, and whether the loaded model's
 * test logits equal the trained model's bit for bit.
 */
import {
  ArraySource,
  classificationLoss,
  ConfigError,
  Ctx,
  EVAL,
  fit,
  Gpu,
  Linear,
  loadDataset,
  Model,
  readCheckpoint,
  ReLU,
  reportError,
  Sequential,
  Sgd,
  StepEngine,
  Tensor,
} from "../mod.ts";
import { DATA_DIR_FLAG, exampleFlags, reportErrors, SIZE_FLAG, sizeOf } from "./_flags.ts";

/**
 * --out before any work: a folder (or absent) this process may write, created, without the
 * files this example writes (`files`); else exit 2.
 */
async function prepareOut(dir: string, files: string[]): Promise<void> {
  const fail = (what: string, hint: string): never =>
    Deno.exit(reportError(new ConfigError(`--out ${dir} ${what}`, { flag: "--out", hint })));
  const perm = await Deno.permissions.query({ name: "write", path: dir });
  if (perm.state !== "granted") {
    fail(
      "may not be written by this process",
      `the example:checkpoint task may write only ${DEFAULT_OUT}: leave --out out, or run ` +
        "examples/checkpoint.ts with deno run --allow-write=DIR (and --allow-read=DIR)",
    );
  }
  const kind = await Deno.stat(dir).then((s) => (s.isDirectory ? "dir" : "file"), () => "none");
  if (kind === "file") fail("is a file; expected a folder", "choose another --out");
  const present = [];
  for (const f of files) if (await Deno.lstat(f).then(() => true, () => false)) present.push(f);
  if (present.length) {
    fail(
      `already holds ${present.join(", ")}; this example writes new files only`,
      "move them away (an earlier run of the example wrote them), or choose another --out",
    );
  }
  await Deno.mkdir(dir, { recursive: true }).catch((e) =>
    fail(`cannot be created (${(e as Error).message})`, "choose another --out")
  );
}

const DEFAULT_OUT = "runs/example-checkpoint";
reportErrors(); // a mistake (flags, data, no GPU) is one `error:` line, as in deno task train
const usage = "usage: deno task example:checkpoint [--size small] [--data-dir DIR] [--out DIR]";
const flags = exampleFlags(usage, {
  size: SIZE_FLAG,
  "data-dir": DATA_DIR_FLAG,
  out: {
    key: "out",
    kind: "string",
    help: `folder for the checkpoint and the weights; the example:checkpoint task may write ` +
      `only ${DEFAULT_OUT}`,
    defaultText: DEFAULT_OUT,
  },
});
const size = sizeOf(flags);
const out = flags.out ?? DEFAULT_OUT;
const trainPath = `${out}/train.safetensors`, weightsPath = `${out}/mlp.safetensors`;
await prepareOut(out, [trainPath, weightsPath]);
const nTrain = size === "full" ? 20000 : 2000, half = size === "full" ? 2 : 1, nTest = 1000;

const data = await loadDataset("fashion-mnist", { dataDir: flags.dataDir });
const rows = (d: { images: Uint8Array; labels: Uint8Array }, n: number) => ({
  x: Float32Array.from(d.images.subarray(0, n * 784), (p) => (p / 255 - 0.286) / 0.353),
  y: Uint32Array.from(d.labels.subarray(0, n)),
});
const train = rows(data.train, nTrain), test = rows(data.test, nTest);
const gpu = await Gpu.create();
const mlp = () => new Sequential(new Linear(784, 128), new ReLU(), new Linear(128, 10));

/** Trains (or resumes) the run in `trainPath` up to `maxEpochs` more epochs. */
async function session(maxEpochs: number, resume: boolean): Promise<Model> {
  const model = new Model(gpu, mlp(), 0);
  const optimizer = new Sgd(gpu, model.paramLayout, {
    momentum: 0.9,
    weightDecay: 5e-4,
    nesterov: true,
  });
  const engine = new StepEngine(model, {
    loss: (ctx, logits, labels) => classificationLoss(ctx, logits, labels),
    optimizer,
    batch: 100,
    input: [784],
  });
  const r = await fit({
    engine,
    data: new ArraySource({ engine, inputs: train.x, targets: train.y, seed: 1 }),
    epochs: 2 * half,
    lr: () => 0.05,
    checkpoint: { path: trainPath, format: "example-mlp/1" },
    resume: resume ? await readCheckpoint(trainPath) : null,
    maxEpochs,
  });
  console.log(`${resume ? "resumed" : "started"}: ${r.epochsDone} epochs done (${r.status})`);
  engine.destroy();
  optimizer.destroy();
  return model;
}

/** Test logits of a model (eval mode). */
async function logits(model: Model): Promise<Float32Array> {
  const x = Tensor.from(gpu, test.x, [nTest, 784]);
  const ctx = new Ctx(gpu, null);
  const values = await model.forward(ctx, x, EVAL).read(gpu);
  ctx.release();
  x.release(gpu);
  return values;
}

// a run stopped after `half` epochs, then resumed from its checkpoint to the end
(await session(half, false)).destroy();
const trained = await session(Infinity, true);
await trained.save(weightsPath, { metadata: { architecture: "784-128-10 MLP" } });

const loaded = new Model(gpu, mlp(), 123); // other init, then the saved weights
const file = await loaded.load(weightsPath);
const a = await logits(trained), b = await logits(loaded);
let hits = 0;
for (let i = 0; i < nTest; i++) {
  const row = a.subarray(i * 10, i * 10 + 10);
  if (row.indexOf(Math.max(...row)) === test.y[i]) hits++;
}
console.log(JSON.stringify({
  epochs: 2 * half,
  saved: [...file.tensors.keys()],
  testAccuracy: hits / nTest,
  identical: a.every((v, i) => Object.is(v, b[i])),
}));
trained.destroy();
loaded.destroy();
gpu.dispose();
