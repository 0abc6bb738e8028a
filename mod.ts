/**
 * tailgrad: a WebGPU compute-shader training engine for Deno.
 *
 * Hand-written WGSL kernels and a tape-based autograd with forward-mode (JVP) replay run the
 * whole training loop on the GPU through Deno's `navigator.gpu`. Its first job is long-tailed
 * classification with the two-component example weights `w_y + eps_i` of "Rethinking
 * Class-Balanced Methods for Long-Tailed Visual Recognition from a Domain Adaptation
 * Perspective", with `eps_i` meta-learned exactly through one JVP per step.
 *
 * @example Train a model from a script
 * ```ts
 * import { train } from "./mod.ts";
 * const summary = await train({ preset: "default", method: "meta", out: "runs/meta" });
 * console.log(summary.last?.top1Error);
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
export { chooseTile, defaultGemmPolicy, gemmPolicy, setGemmPolicy } from "./src/ops/gemm.ts";
export type { GemmPolicy } from "./src/ops/gemm.ts";
export type { GemmFamily, GemmTile } from "./shaders/gemm.ts";
export { sgdStep } from "./src/optim/sgd.ts";
export type { SgdOptions } from "./src/optim/sgd.ts";
export { FlatLayout, FlatTensors } from "./src/nn/params.ts";
export type { ParamSpec } from "./src/nn/params.ts";
export { blocksPerStage, ResNet, resnetInit, resnetSpecs } from "./src/nn/resnet.ts";
export type { ForwardMode, ResNetConfig } from "./src/nn/resnet.ts";
export { Rng } from "./src/random.ts";
export { TrainState } from "./src/train/step.ts";
export type { MetaOptions, MetaStepResult, MetaWeightRule, StepShapes } from "./src/train/step.ts";
export * from "./src/data/mod.ts";
export * from "./src/train/mod.ts";
export * from "./src/checkpoint/mod.ts";
export * from "./src/report/mod.ts";
export { avgPool2d, maxPool2d } from "./src/ops/pool.ts";
export type { PoolOptions } from "./src/ops/pool.ts";
export { flatten, reshape } from "./src/ops/shape.ts";
export { l1Loss, mseLoss } from "./src/ops/regression.ts";
export { channelBias } from "./src/ops/bias.ts";
export { dropout } from "./src/ops/dropout.ts";
export { sigmoid, tanh } from "./src/ops/activation.ts";
export { createOptimizer, Sgd } from "./src/optim/optimizer.ts";
export type { Optimizer, OptimizerSpec, SgdConfig } from "./src/optim/optimizer.ts";
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
