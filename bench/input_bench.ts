/**
 * The input pipeline against the training step: images/s of gathering a batch of 100
 * Fashion-MNIST images on the host, uploading them and augmenting them on the GPU (reflect-pad,
 * crop, flip, normalise), next to images/s of a ResNet-8 plain step on the same 1x28x28 batch.
 * The pipeline must not be the bottleneck: the ratio printed at the end should be far above 1.
 *
 *   DENO_WEBGPU_BACKEND=vulkan deno bench --allow-read --allow-env=TAILGRAD_DATA bench/input_bench.ts
 */
import { Gpu } from "../src/gpu/runtime.ts";
import { Tensor } from "../src/tensor.ts";
import { loadDataset } from "../src/data/load.ts";
import { Batcher } from "../src/data/batcher.ts";
import { augmentParamsFor, GpuAugmenter } from "../src/data/augment.ts";
import { epochPermutation } from "../src/data/sampler.ts";
import { ResNet } from "../src/nn/resnet.ts";
import { Model } from "../src/nn/model.ts";
import { Sgd } from "../src/optim/optimizer.ts";
import { crossEntropy } from "../src/engine/meta.ts";
import { StepEngine } from "../src/engine/step.ts";

const BATCH = 100;
const gpu = await Gpu.create();
const { train } = await loadDataset("fashion-mnist", { allowDownload: false });
const [C, H, W] = [train.channels, train.height, train.width];
const batcher = new Batcher(train, BATCH);
const augmenter = new GpuAugmenter(gpu, {
  channels: C,
  height: H,
  width: W,
  mean: [0.286],
  std: [0.353],
  maxBatch: BATCH,
});
const out = Tensor.empty(gpu, [BATCH, C, H, W]);
const order = epochPermutation(train.count, 0, 0);
let step = 0;

const model = new Model(gpu, new ResNet({ depth: 8, inChannels: C, numClasses: 10 }), 0);
const optimizer = new Sgd(gpu, model.paramLayout, {
  momentum: 0.9,
  weightDecay: 5e-4,
  nesterov: true,
});
const engine = new StepEngine(model, {
  loss: crossEntropy,
  optimizer,
  batch: BATCH,
  input: [C, H, W],
});
engine.targets.upload(gpu, Array.from({ length: BATCH }, (_, i) => i % 10));

const ms: Record<string, number[]> = { input: [], step: [] };

function inputBatch(): void {
  const at = (step++ * BATCH) % (train.count - BATCH);
  const batch = batcher.gather(order.subarray(at, at + BATCH));
  augmenter.run(batch.pixels, augmentParamsFor(0, 0, step, BATCH), BATCH, out.view);
}

Deno.bench({
  name: "input pipeline: gather + upload + GPU augment, batch 100 (1x28x28)",
  group: "input",
  baseline: true,
  n: 20,
  warmup: 2,
  async fn(b) {
    b.start();
    const t = performance.now();
    inputBatch();
    await gpu.sync();
    ms.input.push(performance.now() - t);
    b.end();
  },
});

Deno.bench({
  name: "ResNet-8 plain step, batch 100 (1x28x28)",
  group: "input",
  n: 3,
  warmup: 1,
  async fn(b) {
    b.start();
    const t = performance.now();
    engine.step(0.1);
    await gpu.sync();
    ms.step.push(performance.now() - t);
    b.end();
  },
});

globalThis.addEventListener("unload", () => {
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  if (!ms.input.length || !ms.step.length) return;
  const input = (BATCH / median(ms.input)) * 1000;
  const stepRate = (BATCH / median(ms.step)) * 1000;
  console.log(
    `input pipeline ${input.toFixed(0)} images/s, training step ${stepRate.toFixed(1)} images/s: ` +
      `the pipeline is ${(input / stepRate).toFixed(0)}x faster than the step it feeds`,
  );
});
