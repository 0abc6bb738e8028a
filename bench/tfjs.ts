/**
 * The TensorFlow.js 4.22 WebGPU baseline of `scripts/bench.ts --tfjs`: matmul, conv2d forward
 * at every ResNet-32 shape, and a ResNet-8/-32 training step built from tfjs-core ops, timed the
 * way the engine is timed (record, then wait for the queue: tfjs's `submitQueue()` plus
 * `onSubmittedWorkDone()`, the same wait as the engine's `gpu.sync()`).
 *
 * Only the benchmark imports this module (dynamically, with --tfjs); the engine never does.
 * TF.js uses NHWC activations and HWIO filters; FLOP counts are the same as the engine's.
 */
// The TF.js packages stay out of deno.json's import map on purpose: only this benchmark module
// uses them, and the engine must not look like it depends on TF.js.
// deno-lint-ignore no-import-prefix
import * as tf from "npm:@tensorflow/tfjs-core@4.22.0";
// deno-lint-ignore no-import-prefix
import "npm:@tensorflow/tfjs-backend-webgpu@4.22.0";
// tfjs-core's gradient functions are registered only by its ESM module
// dist/register_all_gradients.js, whose extensionless imports Deno cannot resolve inside an npm
// package; the union package's Node bundle carries the same registrations and requires the same
// tfjs-core 4.22.0 instance, so importing it registers them (nothing else of it is used).
// deno-lint-ignore no-import-prefix
import "npm:@tensorflow/tfjs@4.22.0";
import { randomArray, timeCalls, type Timing } from "./lib.ts";

/** What the tfjs backend reports after initialisation. */
export interface TfjsInfo {
  version: string;
  backend: string;
  adapter: string;
}

interface WebGpuBackendLike {
  device: GPUDevice;
  commandEncoder: GPUCommandEncoder | null;
  endComputePassEncoder(): void;
  submitQueue(): void;
  adapterInfo?: { description?: string; device?: string; vendor?: string };
}

function backend(): WebGpuBackendLike {
  return tf.backend() as unknown as WebGpuBackendLike;
}

/** WebGPU validation errors seen on tfjs's device (a run with any is not valid). */
export const tfjsErrors: string[] = [];

/** Selects the WebGPU backend; throws with the reason when it cannot. */
export async function initTfjs(): Promise<TfjsInfo> {
  const ok = await tf.setBackend("webgpu");
  if (!ok || tf.getBackend() !== "webgpu") {
    throw new Error(`tf.setBackend("webgpu") failed (backend is ${tf.getBackend()})`);
  }
  await tf.ready();
  const b = backend();
  b.device.addEventListener("uncapturederror", (e) => {
    tfjsErrors.push((e as GPUUncapturedErrorEvent).error.message.split("\n")[0]);
  });
  // the device's adapterInfo (WebGPU) has the name; tfjs's own AdapterInfo keeps vendor only
  // deno-lint-ignore no-explicit-any
  const info = ((b.device as any).adapterInfo ?? b.adapterInfo ?? {}) as any;
  return {
    version: tf.version_core,
    backend: tf.getBackend(),
    adapter: String(info.description || info.device || info.vendor || "unknown"),
  };
}

/** Waits until tfjs's queued GPU work is done (the engine's gpu.sync() equivalent). */
export async function tfSync(): Promise<void> {
  const b = backend();
  // submitQueue() finishes the encoder without ending an open compute pass (tfjs itself ends
  // the pass first); a finish() with the pass open invalidates the whole command buffer.
  b.endComputePassEncoder();
  if (b.commandEncoder) b.submitQueue();
  await b.device.queue.onSubmittedWorkDone();
}

/** lib.ts's timeCalls with tfjs's queue as the wait. */
export function timeTf(
  fn: () => void,
  o: { runs: number; minSampleMs: number; maxReps?: number },
): Promise<Timing> {
  return timeCalls(fn, tfSync, o);
}

/** matmul n^3: returns a function that records one product (its result disposed). */
export function tfMatmul(n: number): { run(): void; dispose(): void } {
  const a = tf.tensor2d(randomArray(n * n, 1), [n, n]);
  const b = tf.tensor2d(randomArray(n * n, 2), [n, n]);
  return {
    run: () => tf.matMul(a, b).dispose(),
    dispose: () => {
      a.dispose();
      b.dispose();
    },
  };
}

/** The padding of a 3x3 convolution in NHWC: 1 on each side of H and W. */
const PAD_3X3: [[number, number], [number, number], [number, number], [number, number]] = [
  [0, 0],
  [1, 1],
  [1, 1],
  [0, 0],
];

/** conv2d forward, NHWC input [batch, H, H, C], HWIO filter [3, 3, C, O], pad 1. */
export function tfConvForward(
  c: { batch: number; C: number; O: number; H: number; stride: number },
): { run(): void; dispose(): void } {
  const x = tf.tensor4d(randomArray(c.batch * c.H * c.H * c.C, 3), [c.batch, c.H, c.H, c.C]);
  const w = tf.tensor4d(randomArray(9 * c.C * c.O, 4), [3, 3, c.C, c.O]);
  return {
    run: () => tf.conv2d(x, w, c.stride, PAD_3X3).dispose(),
    dispose: () => {
      x.dispose();
      w.dispose();
    },
  };
}

/** A batch norm's weight and bias (trained) and running statistics (updated in train mode). */
interface TfBatchNorm {
  g: tf.Variable;
  b: tf.Variable;
  rm: tf.Variable;
  rv: tf.Variable;
}

/** One basic block: two 3x3 convs with their batch norms, and the shape it maps. */
interface TfBlock {
  w1: tf.Variable;
  b1: TfBatchNorm;
  w2: tf.Variable;
  b2: TfBatchNorm;
  stride: number;
  inPlanes: number;
  planes: number;
}

/** The weights of a CIFAR ResNet: `vars` are the trained ones, in the update's order. */
interface TfResnet {
  vars: tf.Variable[];
  running: tf.Variable[];
  conv1: tf.Variable;
  bn1: TfBatchNorm;
  blocks: TfBlock[];
  fcW: tf.Variable;
  fcB: tf.Variable;
}

/** A CIFAR ResNet-(depth)'s weights: He-like conv and small linear weights, unit batch norms. */
function tfResnetWeights(depth: number, classes: number): TfResnet {
  const n = (depth - 2) / 6;
  const vars: tf.Variable[] = [];
  const running: tf.Variable[] = [];
  let seed = 100;
  const convW = (cin: number, cout: number) => {
    const std = Math.sqrt(2 / (9 * cin));
    const v = tf.variable(
      tf.tensor4d(randomArray(9 * cin * cout, seed++).map((x) => x * std * 1.7), [3, 3, cin, cout]),
    );
    vars.push(v);
    return v;
  };
  const bnP = (c: number): TfBatchNorm => {
    const g = tf.variable(tf.ones([c]));
    const b = tf.variable(tf.zeros([c]));
    vars.push(g, b);
    const rm = tf.variable(tf.zeros([c]), false);
    const rv = tf.variable(tf.ones([c]), false);
    running.push(rm, rv);
    return { g, b, rm, rv };
  };
  const conv1 = convW(3, 16);
  const bn1 = bnP(16);
  const blocks: TfBlock[] = [];
  let inPlanes = 16;
  [16, 32, 64].forEach((planes, stage) => {
    for (let b = 0; b < n; b++) {
      const stride = stage > 0 && b === 0 ? 2 : 1;
      blocks.push({
        w1: convW(inPlanes, planes),
        b1: bnP(planes),
        w2: convW(planes, planes),
        b2: bnP(planes),
        stride,
        inPlanes,
        planes,
      });
      inPlanes = planes;
    }
  });
  const fcW = tf.variable(tf.tensor2d(randomArray(64 * classes, seed++).map((x) => x * 0.2), [
    64,
    classes,
  ]));
  const fcB = tf.variable(tf.zeros([classes]));
  vars.push(fcW, fcB);
  return { vars, running, conv1, bn1, blocks, fcW, fcB };
}

/**
 * The option-A shortcut of a block that halves the size: h[:, ::2, ::2, :] (through reshape +
 * slice: tfjs has no StridedSlice gradient), its channels zero-padded from `inPlanes` to `planes`.
 */
function optionAShortcut(h: tf.Tensor4D, inPlanes: number, planes: number): tf.Tensor4D {
  const [N, H, W, C] = h.shape;
  const pairs = tf.reshape(h, [N * (H / 2), 2, W / 2, 2 * C]);
  const sub = tf.reshape(
    tf.slice(pairs, [0, 0, 0, 0], [N * (H / 2), 1, W / 2, C]),
    [N, H / 2, W / 2, C],
  ) as tf.Tensor4D;
  const p = (planes - inPlanes) / 2;
  return tf.pad(sub, [[0, 0], [0, 0], [0, 0], [p, p]]);
}

/**
 * A CIFAR ResNet-(depth) training step in tfjs-core ops: conv (no bias) / batch norm in train
 * mode (batch statistics, running statistics updated) / relu, option-A shortcuts, global
 * average pooling, linear, mean softmax cross-entropy; gradients by tf.variableGrads; SGD with
 * Nesterov momentum 0.9 and weight decay 5e-4, as the engine's plain step.
 */
export function tfResnetStep(
  depth: number,
  batch: number,
  classes = 10,
): { run(): void; loss(): Promise<number>; dispose(): void } {
  const { vars, running, conv1, bn1, blocks, fcW, fcB } = tfResnetWeights(depth, classes);
  const momentum = vars.map((v) => tf.variable(tf.zerosLike(v), false));
  const x = tf.tensor4d(randomArray(batch * 32 * 32 * 3, 11), [batch, 32, 32, 3]);
  const labels = tf.oneHot(
    tf.tensor1d(Array.from({ length: batch }, (_, i) => (i * 7 + 3) % classes), "int32"),
    classes,
  );
  const updates: [tf.Variable, tf.Tensor][] = [];
  const bn = (h: tf.Tensor4D, p: TfBatchNorm, relu: boolean) => {
    const { mean, variance } = tf.moments(h, [0, 1, 2]);
    const count = h.shape[0] * h.shape[1] * h.shape[2];
    // kept: variableGrads disposes what the forward does not return
    updates.push(
      [p.rm, tf.keep(tf.add(tf.mul(p.rm, 0.9), tf.mul(mean, 0.1)))],
      [p.rv, tf.keep(tf.add(tf.mul(p.rv, 0.9), tf.mul(variance, 0.1 * count / (count - 1))))],
    );
    const y = tf.batchNorm(h, mean, variance, p.b, p.g, 1e-5) as tf.Tensor4D;
    return relu ? tf.relu(y) : y;
  };
  const forward = () => {
    let h = bn(tf.conv2d(x, conv1 as tf.Tensor4D, 1, PAD_3X3), bn1, true);
    for (const b of blocks) {
      const o = bn(tf.conv2d(h, b.w1 as tf.Tensor4D, b.stride, PAD_3X3), b.b1, true);
      const o2 = bn(tf.conv2d(o, b.w2 as tf.Tensor4D, 1, PAD_3X3), b.b2, false);
      const shapeChanges = b.stride !== 1 || b.inPlanes !== b.planes;
      h = tf.relu(tf.add(o2, shapeChanges ? optionAShortcut(h, b.inPlanes, b.planes) : h));
    }
    const feat = tf.mean(h, [1, 2]) as tf.Tensor2D;
    const logits = tf.add(tf.matMul(feat, fcW), fcB);
    return tf.losses.softmaxCrossEntropy(labels, logits) as tf.Scalar;
  };
  const lr = 0.1, mu = 0.9, wd = 5e-4;
  let lastLoss: tf.Scalar | null = null;
  return {
    loss: async () => (lastLoss ? (await lastLoss.data())[0] : NaN),
    run: () => {
      tf.tidy(() => {
        updates.length = 0;
        const { value, grads } = tf.variableGrads(forward, vars);
        lastLoss?.dispose();
        lastLoss = tf.keep(value);
        for (const [v, t] of updates) {
          v.assign(t);
          t.dispose();
        }
        vars.forEach((v, i) => {
          const g = tf.add(grads[v.name], tf.mul(v, wd));
          const m = tf.add(tf.mul(momentum[i], mu), g);
          momentum[i].assign(m);
          v.assign(tf.sub(v, tf.mul(tf.add(g, tf.mul(m, mu)), lr)));
        });
      });
    },
    dispose: () => {
      lastLoss?.dispose();
      for (const v of [...vars, ...running, ...momentum]) v.dispose();
      x.dispose();
      labels.dispose();
    },
  };
}
