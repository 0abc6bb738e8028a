/**
 * A user-defined model trained with the meta re-weighting of mod.ts on a long-tailed split of
 * Fashion-MNIST: every example's loss is weighted by `w_y + eps_i`, where `w_y` is the
 * effective-number class weight and `eps_i` is the exact meta-gradient of a balanced dev batch's
 * loss (one JVP per step), after plain cross-entropy pre-training.
 *
 * The model is a small residual MLP written here as a {@linkcode Module}: its own forward over
 * two `Linear` children and a classifier, with a skip connection (`addRelu`).
 *
 * Full size (the default): at most 1,000 training images per class with imbalance factor 50
 * (1000 ... 20), a dev set of 20 per class, 10 epochs (meta from epoch 6), the 10,000 test images.
 * `--size small`: at most 200 per class, 5 epochs (meta from epoch 3), 1,000 test images.
 *
 *   DENO_WEBGPU_BACKEND=vulkan deno run --allow-read=.,/usr/share/datasets \
 *     --allow-env=TAILGRAD_DATA,TAILGRAD_DEBUG \
 *     examples/meta_reweight.ts [--size small] [--data-dir DIR]
 *
 * The last line printed is JSON: test accuracy, per-class accuracy and mean eps per class.
 */
import {
  addRelu,
  ArraySource,
  classificationLoss,
  type Ctx,
  evaluateClassifier,
  fit,
  type ForwardMode,
  Gpu,
  Linear,
  loadDataset,
  MetaReweighter,
  Model,
  Module,
  type ParamScope,
  relu,
  Rng,
  Sgd,
  StepEngine,
  type Tensor,
} from "../mod.ts";
import { DATA_DIR_FLAG, exampleFlags, reportErrors, SIZE_FLAG, sizeOf } from "./_flags.ts";

/** x -> relu(fc1 x) = h -> relu(fc2 h + h) -> head. */
class ResidualMlp extends Module {
  readonly fc1: Linear;
  readonly fc2: Linear;
  readonly head: Linear;

  constructor(inputs: number, hidden: number, classes: number) {
    super();
    this.fc1 = new Linear(inputs, hidden);
    this.fc2 = new Linear(hidden, hidden);
    this.head = new Linear(hidden, classes);
  }

  override children(): [string, Module][] {
    return [["fc1", this.fc1], ["fc2", this.fc2], ["head", this.head]];
  }

  forward(ctx: Ctx, x: Tensor, p: ParamScope, _mode: ForwardMode): Tensor {
    const h = relu(ctx, this.fc1.forward(ctx, x, p.child("fc1")));
    const h2 = addRelu(ctx, this.fc2.forward(ctx, h, p.child("fc2")), h);
    return this.head.forward(ctx, h2, p.child("head"));
  }
}

const SIZES = {
  full: { nMax: 1000, epochs: 10, metaStart: 6, test: 10000 },
  small: { nMax: 200, epochs: 5, metaStart: 3, test: 1000 },
};
reportErrors(); // a mistake (flags, data, no GPU) is one `error:` line, as in deno task train
const flags = exampleFlags("usage: deno task example:meta [--size small] [--data-dir DIR]", {
  size: SIZE_FLAG,
  "data-dir": DATA_DIR_FLAG,
});
const size = sizeOf(flags);
const { nMax, epochs, metaStart, test: nTest } = SIZES[size];
const C = 10, IMBALANCE = 50, DEV_PER_CLASS = 20, BATCH = 100, SEED = 0;

// ---- a long-tailed split: n_c = nMax * IF^(-c / (C - 1)), a balanced dev set from the rest
const data = await loadDataset("fashion-mnist", { dataDir: flags.dataDir });
const counts = Array.from({ length: C }, (_, c) => Math.round(nMax * IMBALANCE ** (-c / (C - 1))));
const trainIdx: number[] = [], devIdx: number[] = [];
const taken = new Array(C).fill(0), devTaken = new Array(C).fill(0);
data.train.labels.forEach((y, i) => {
  if (devTaken[y] < DEV_PER_CLASS) (devTaken[y]++, devIdx.push(i));
  else if (taken[y] < counts[y]) (taken[y]++, trainIdx.push(i));
});
const rows = (d: { images: Uint8Array; labels: Uint8Array }, idx: number[]) => {
  const x = new Float32Array(idx.length * 784);
  idx.forEach((i, k) => {
    for (let j = 0; j < 784; j++) x[k * 784 + j] = (d.images[i * 784 + j] / 255 - 0.286) / 0.353;
  });
  return { x, y: Uint32Array.from(idx, (i) => d.labels[i]) };
};
const train = rows(data.train, trainIdx);
const dev = rows(data.train, devIdx);
const test = rows(data.test, Array.from({ length: nTest }, (_, i) => i));
// effective-number class weights (1 - beta) / (1 - beta^n), normalised to sum C
const beta = 0.999;
const raw = counts.map((n) => (1 - beta) / (1 - beta ** n));
const classW = raw.map((w) => (w * C) / raw.reduce((a, b) => a + b, 0));

// ---- the model, its step engine and the meta re-weighting
const gpu = await Gpu.create();
const model = new Model(gpu, new ResidualMlp(784, 128, C), SEED);
const optimizer = new Sgd(gpu, model.paramLayout, {
  momentum: 0.9,
  weightDecay: 5e-4,
  nesterov: true,
});
const engine = new StepEngine(model, {
  loss: (ctx, logits, labels) => classificationLoss(ctx, logits, labels),
  optimizer,
  batch: BATCH,
  input: [784],
});
const meta = new MetaReweighter(engine, { devBatch: BATCH, numClasses: C });
const source = new ArraySource({ engine, inputs: train.x, targets: train.y, seed: SEED });
const devX = new Float32Array(BATCH * 784), devY = new Uint32Array(BATCH);
const devRows = new Int32Array(BATCH); // each dev example's index in the dev set
const weights = new Float32Array(BATCH);
const epsSum = new Array(C).fill(0), epsCount = new Array(C).fill(0);
const lr = (epoch: number) => (epoch < metaStart ? 0.05 : 0.005);

await fit({
  engine,
  data: source,
  epochs,
  lr,
  hooks: {
    stepKind: (epoch) =>
      epoch < metaStart ? { name: "plain", run: (rate) => engine.step(rate) } : {
        name: "meta",
        run: async (rate, step) => {
          // w_y of the batch, and a dev batch drawn from the balanced dev set
          source.batchIndices.forEach((i, k) => (weights[k] = classW[train.y[i]]));
          engine.weights.upload(gpu, weights);
          const rng = new Rng(SEED, "dev", epoch, step);
          for (let k = 0; k < BATCH; k++) {
            const j = rng.nextInt(devIdx.length);
            devX.set(dev.x.subarray(j * 784, (j + 1) * 784), k * 784);
            devY[k] = dev.y[j];
            devRows[k] = j;
          }
          meta.writeDevBatch(devX, devY, devRows);
          const res = meta.step(rate, {
            eta: rate,
            tau: 1,
            lookahead: "mean",
            rule: "meta",
            lookaheadWeights: "w",
          });
          const eps = await res.eps.read(gpu);
          source.batchIndices.forEach((i, k) => {
            epsSum[train.y[i]] += eps[k];
            epsCount[train.y[i]]++;
          });
        },
      },
    epochEnd: (e) => {
      console.log(`epoch ${e.epoch + 1}/${epochs} ${e.kind}: train loss ${e.trainLoss.toFixed(4)}`);
      return e;
    },
  },
});
const metrics = await evaluateClassifier(model, test.x, test.y, {
  batch: 500,
  inputShape: [784],
  numClasses: C,
});
const round = (v: number) => Number(v.toPrecision(4));
console.log(JSON.stringify({
  testAccuracy: 1 - metrics.top1Error,
  trainCounts: counts,
  perClassAccuracy: metrics.perClassAccuracy.map(round),
  meanEps: epsSum.map((s, c) => round(s / Math.max(1, epsCount[c]))),
}));
meta.destroy();
engine.destroy();
optimizer.destroy();
model.destroy();
gpu.dispose();
