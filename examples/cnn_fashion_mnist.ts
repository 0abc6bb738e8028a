/**
 * A small CNN on Fashion-MNIST through the engine of mod.ts alone:
 *
 *   [1, 28, 28] -> Conv 3x3 (8) - BN - ReLU - MaxPool 2 -> [8, 14, 14]
 *               -> Conv 3x3 (16) - BN - ReLU - MaxPool 2 -> [16, 7, 7]
 *               -> Flatten -> Dropout 0.25 -> Linear 784 -> 10
 *
 * (9,122 parameters: 72 + 1,152 in the convolutions, which have no bias as the batch norm that
 * follows has one, 16 + 32 in the batch norms, 7,850 in the classifier),
 * cross-entropy, AdamW (lr 3e-3, weight decay 1e-4) with a 100-step linear warm-up and a
 * per-step cosine decay, batch 100.
 *
 * Full size (the default): all 60,000 training images, 3 epochs, evaluated on the 10,000 test
 * images: 89.3% test accuracy (89.25%, measured on Mesa's llvmpipe adapter, 2 cores shared
 * with other jobs, seed 0; 4 min 50 s, about 90 s per epoch). `--size small` (what the test
 * suite runs): 3,000 training and 1,000 test images, 3 epochs.
 *
 *   DENO_WEBGPU_BACKEND=vulkan deno run --allow-read=.,/usr/share/datasets \
 *     --allow-env=TAILGRAD_DATA,TAILGRAD_DEBUG \
 *     examples/cnn_fashion_mnist.ts [--size small] [--data-dir DIR]
 *
 * The last line printed is JSON: `{"testAccuracy": ..., "epochs": ..., "train": ..., "test": ...}`.
 */
import {
  Adam,
  ArraySource,
  BatchNorm2d,
  classificationLoss,
  Conv2d,
  cosineLr,
  Dropout,
  evaluateClassifier,
  fit,
  Flatten,
  Gpu,
  Linear,
  linearWarmup,
  loadDataset,
  MaxPool2d,
  Model,
  ReLU,
  Sequential,
  StepEngine,
} from "../mod.ts";
import { DATA_DIR_FLAG, exampleFlags, reportErrors, SIZE_FLAG, sizeOf } from "./_flags.ts";

const SIZES = {
  full: { train: 60000, test: 10000, epochs: 3 },
  small: { train: 3000, test: 1000, epochs: 3 },
};
reportErrors(); // a mistake (flags, data, no GPU) is one `error:` line, as in deno task train
const flags = exampleFlags("usage: deno task example:cnn [--size small] [--data-dir DIR]", {
  size: SIZE_FLAG,
  "data-dir": DATA_DIR_FLAG,
});
const size = sizeOf(flags);
const { train: nTrain, test: nTest, epochs } = SIZES[size];
const BATCH = 100;

/** The first `n` images as standardised [1, 28, 28] maps, and their labels. */
function images(d: { images: Uint8Array; labels: Uint8Array }, n: number) {
  const x = new Float32Array(n * 784);
  for (let i = 0; i < x.length; i++) x[i] = (d.images[i] / 255 - 0.286) / 0.353;
  return { x, y: Uint32Array.from(d.labels.subarray(0, n)) };
}

const data = await loadDataset("fashion-mnist", { dataDir: flags.dataDir });
const train = images(data.train, nTrain);
const test = images(data.test, nTest);

/** Conv 3x3 (no bias: the batch norm has one) - BN - ReLU - MaxPool 2. */
const stage = (inCh: number, outCh: number) => [
  new Conv2d(inCh, outCh, { bias: false }),
  new BatchNorm2d(outCh),
  new ReLU(),
  new MaxPool2d(2),
];
const net = new Sequential(
  ...stage(1, 8),
  ...stage(8, 16),
  new Flatten(),
  new Dropout(0.25),
  new Linear(16 * 7 * 7, 10),
);

const gpu = await Gpu.create();
const model = new Model(gpu, net, 0);
const optimizer = new Adam(gpu, model.paramLayout, { decoupled: true, weightDecay: 1e-4 });
const engine = new StepEngine(model, {
  loss: (ctx, logits, labels) => classificationLoss(ctx, logits, labels),
  optimizer,
  batch: BATCH,
  input: [1, 28, 28],
});
const source = new ArraySource({ engine, inputs: train.x, targets: train.y, seed: 0 });
const stepsPerEpoch = Math.ceil(nTrain / BATCH);
const schedule = linearWarmup(cosineLr(3e-3, { epochs, perStep: true }), { steps: 100 });
const result = await fit({
  engine,
  data: source,
  epochs,
  lr: (epoch, step) => schedule({ epoch, step, stepsPerEpoch }),
  hooks: {
    epochEnd: (e) => {
      const s = e.seconds.toFixed(0);
      console.log(`epoch ${e.epoch + 1}/${epochs}: train loss ${e.trainLoss.toFixed(4)}, ${s} s`);
      return e;
    },
  },
});
const metrics = await evaluateClassifier(model, test.x, test.y, {
  batch: 500,
  inputShape: [1, 28, 28],
  numClasses: 10,
});
console.log(JSON.stringify({
  testAccuracy: 1 - metrics.top1Error,
  epochs: result.epochsDone,
  train: nTrain,
  test: nTest,
}));
engine.destroy();
optimizer.destroy();
model.destroy();
gpu.dispose();
