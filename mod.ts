/**
 * tailgrad: a WebGPU compute-shader training engine for Deno.
 *
 * Hand-written WGSL kernels and a tape-based autograd with forward-mode (JVP) replay run the
 * whole training loop on the GPU through Deno's `navigator.gpu`. This entry point is the engine:
 * the GPU runtime, tensors, the tape, ops, modules and models, optimizers, the step engine with
 * its meta re-weighting of per-example losses (`w_i + eps_i`, eps exact through one JVP), the
 * fit loop, metrics, checkpoints and dataset readers. The long-tail experiment built on it is
 * `./longtail.ts`.
 *
 * @example Train an MLP
 * ```ts
 * import { ArraySource, classificationLoss, fit, Gpu, Linear, Model, ReLU, Sequential, Sgd,
 *   StepEngine } from "./mod.ts";
 * const gpu = await Gpu.create();
 * const model = new Model(gpu, new Sequential(new Linear(4, 16), new ReLU(), new Linear(16, 3)), 0);
 * const optimizer = new Sgd(gpu, model.paramLayout, { momentum: 0.9, weightDecay: 0, nesterov: false });
 * const engine = new StepEngine(model, {
 *   loss: (ctx, y, t) => classificationLoss(ctx, y, t), optimizer, batch: 8, input: [4] });
 * const data = new ArraySource({ engine, inputs: new Float32Array(64 * 4), targets: new Uint32Array(64), seed: 0 });
 * await fit({ engine, data, epochs: 2, lr: () => 0.1 });
 * ```
 *
 * @module
 */

export {
  acquireDevice,
  AdapterLimitError,
  ENGINE_LIMITS,
  GpuUnavailableError,
  summarizeAdapter,
} from "./src/gpu/device.ts";
export type { AcquiredDevice, AcquireOptions, AdapterSummary } from "./src/gpu/device.ts";
export { Gpu, grid1d } from "./src/gpu/runtime.ts";
export type {
  BindingKind,
  BufferView,
  DispatchObserver,
  GpuStats,
  PoolMemory,
  Program,
} from "./src/gpu/runtime.ts";
export { bind, Tensor } from "./src/tensor.ts";
export type { DType } from "./src/tensor.ts";
export { Ctx, Tape } from "./src/autograd/tape.ts";
export type { OpRecord } from "./src/autograd/tape.ts";
export { conv2d, convOutSize } from "./src/ops/conv.ts";
export type { ConvOptions } from "./src/ops/conv.ts";
export { linear, matmul, matmulInto, rowNormalize } from "./src/ops/linear.ts";
export { batchNorm } from "./src/ops/batchnorm.ts";
export type { BatchNormOptions } from "./src/ops/batchnorm.ts";
export { add, addRelu, globalAvgPool, relu, shortcutA } from "./src/ops/elementwise.ts";
export { classificationLoss } from "./src/ops/loss.ts";
export type { LossOptions } from "./src/ops/loss.ts";
export { normalizedWeights } from "./src/ops/loss.ts";
export { chooseTile, defaultGemmPolicy, gemmPolicy, setGemmPolicy } from "./src/ops/gemm.ts";
export type { GemmPolicy } from "./src/ops/gemm.ts";
export type { GemmFamily, GemmTile } from "./shaders/gemm.ts";
export { sgdStep } from "./src/optim/sgd.ts";
export type { DecayExemption, SgdOptions } from "./src/optim/sgd.ts";
export * from "./src/nn/mod.ts";
export { priorBias, torchLinearBias, unitNormRows } from "./src/nn/init.ts";
export { Rng } from "./src/random.ts";
export type { RngState } from "./src/random.ts";
export * from "./src/engine/mod.ts";
export * from "./src/checkpoint/mod.ts";
export { avgPool2d, maxPool2d } from "./src/ops/pool.ts";
export type { PoolOptions } from "./src/ops/pool.ts";
export { flatten, reshape } from "./src/ops/shape.ts";
export { l1Loss, mseLoss } from "./src/ops/regression.ts";
export { channelBias } from "./src/ops/bias.ts";
export { dropout } from "./src/ops/dropout.ts";
export type { GpuSeed } from "./src/ops/dropout.ts";
export { sigmoid, tanh } from "./src/ops/activation.ts";
export { createOptimizer, Sgd } from "./src/optim/optimizer.ts";
export type { Optimizer, OptimizerSpec, SgdConfig, SgdSettings } from "./src/optim/optimizer.ts";
export { Adam } from "./src/optim/adam.ts";
export type { AdamConfig } from "./src/optim/adam.ts";
export { StepValues } from "./src/optim/step_values.ts";
export {
  constantLr,
  cosineLr,
  globalStep,
  linearWarmup,
  multiStepLr,
  pointAt,
  stepLr,
} from "./src/optim/schedule.ts";
export type { Schedule, SchedulePoint } from "./src/optim/schedule.ts";
export * from "./src/data/readers.ts";
