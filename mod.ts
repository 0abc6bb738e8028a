/**
 * tailgrad: a WebGPU compute-shader training engine for Deno.
 *
 * Hand-written WGSL kernels and a tape-based autograd with forward-mode (JVP) replay run the
 * whole training loop on the GPU through Deno's `navigator.gpu`. This entry point is the engine:
 * the GPU runtime, tensors, the tape, ops, modules and models, optimizers, the step engine with
 * its meta re-weighting of per-example losses (`w_i + eps_i`, eps exact through one JVP), the
 * fit loop, metrics, checkpoints and dataset readers, each exported by name (the files under
 * `src/` hold more, for the trainers and tests; what is not exported here is not API). The
 * long-tail experiment built on it is `./longtail.ts`.
 *
 * Where to start, by use (the `@category` tags of the declarations, where given):
 *
 * - Core, to train a model: `Gpu.create`; a `Model` of layers (`Sequential`, `Linear`,
 *   `Conv2d`, `BatchNorm1d`/`BatchNorm2d`, `ReLU`, `MaxPool2d`, `Flatten`, `Dropout`, or a
 *   `Module` of your own); a `StepEngine` with a loss (`crossEntropy`, `classificationLoss`,
 *   `mseLoss`) and an optimizer (`Sgd`, `Adam`); `fit` over an `ArraySource`, with a schedule
 *   (`cosineLr`, `linearWarmup`, ...); `evaluateClassifier`, `predict`, `argmax`; `Progress`;
 *   `UserError` for mistakes a user can fix. `MetaReweighter` adds the meta step.
 * - Checkpoints: `fit`'s `checkpoint` and `resume` with `readCheckpoint`; `Model.save` and
 *   `Model.load` for weights alone (safetensors, PyTorch `state_dict` names).
 * - Data: `loadDataset` and the readers of MNIST-style and CIFAR files, `Batcher`,
 *   `GpuAugmenter`, and the JPEG decoder and loader of the large runs.
 * - Long-tail: shot groups (`shotGroups`, `withShots`) and confusion matrices; the trainer
 *   itself is `./longtail.ts`.
 * - CLI: `parseFlags`, `reportError`, `ConfigError`: what tailgrad's own scripts use.
 * - GPU internals, for new ops and layers: `Tensor`, `Ctx` and `Tape`, the ops (`linear`,
 *   `conv2d`, ...), `FlatLayout`/`FlatTensors`, the GEMM policy.
 *
 * @example Train an MLP
 * ```ts
 * import { ArraySource, classificationLoss, fit, Gpu, Linear, Model, ReLU, Sequential, Sgd,
 *   StepEngine } from "./mod.ts";
 * const gpu = await Gpu.create();
 * const model = new Model(gpu, new Sequential(new Linear(4, 16), new ReLU(), new Linear(16, 3)), 0);
 * const optimizer = new Sgd(gpu, model.paramLayout, { momentum: 0.9 });
 * const engine = new StepEngine(model, {
 *   loss: (ctx, y, t) => classificationLoss(ctx, y, t), optimizer, batch: 8, input: [4] });
 * const data = new ArraySource({ engine, inputs: new Float32Array(64 * 4), targets: new Uint32Array(64), seed: 0 });
 * await fit({ engine, data, epochs: 2, lr: () => 0.1 });
 * ```
 *
 * @module
 */

// The GPU and tensors.
export { AdapterLimitError, GpuUnavailableError } from "./src/gpu/device.ts";
export type { AcquireOptions, AdapterSummary } from "./src/gpu/device.ts";
export { Gpu } from "./src/gpu/runtime.ts";
export type {
  BindingKind,
  BufferView,
  DispatchObserver,
  GpuStats,
  PoolMemory,
  Program,
} from "./src/gpu/runtime.ts";
export { Tensor } from "./src/tensor.ts";
export type { DType } from "./src/tensor.ts";
export { Rng } from "./src/random.ts";
export type { RngState } from "./src/random.ts";

// The tape and the ops a module's forward or a loss is written with.
export { Ctx, Tape } from "./src/autograd/tape.ts";
export type { OpRecord } from "./src/autograd/tape.ts";
export { linear, matmul, rowNormalize } from "./src/ops/linear.ts";
export { conv2d, convOutSize } from "./src/ops/conv.ts";
export type { ConvOptions } from "./src/ops/conv.ts";
export { batchNorm } from "./src/ops/batchnorm.ts";
export type { BatchNormOptions } from "./src/ops/batchnorm.ts";
export { add, addRelu, globalAvgPool, relu } from "./src/ops/elementwise.ts";
export { sigmoid, tanh } from "./src/ops/activation.ts";
export { avgPool2d, maxPool2d } from "./src/ops/pool.ts";
export type { PoolOptions } from "./src/ops/pool.ts";
export { flatten, reshape } from "./src/ops/shape.ts";
export { channelBias } from "./src/ops/bias.ts";
export { dropout } from "./src/ops/dropout.ts";
export type { GpuSeed } from "./src/ops/dropout.ts";
export { classificationLoss } from "./src/ops/loss.ts";
export type { LossOptions } from "./src/ops/loss.ts";
export { l1Loss, mseLoss } from "./src/ops/regression.ts";
export { defaultGemmPolicy, gemmPolicy, setGemmPolicy } from "./src/ops/gemm.ts";
export type { GemmPolicy } from "./src/ops/gemm.ts";
export type { GemmFamily, GemmTile } from "./shaders/gemm.ts";

// Modules, layers and models.
export { EVAL, Module, ParamScope, TRAIN, TRAIN_NO_UPDATE } from "./src/nn/module.ts";
export type { ForwardMode, Noise } from "./src/nn/module.ts";
export {
  AvgPool2d,
  BatchNorm1d,
  BatchNorm2d,
  Conv2d,
  Dropout,
  Flatten,
  GlobalAvgPool,
  Linear,
  MaxPool2d,
  Pool2d,
  ReLU,
  Sequential,
  Sigmoid,
  Tanh,
} from "./src/nn/layers.ts";
export type { Conv2dOptions, LinearOptions, WeightInit } from "./src/nn/layers.ts";
export { BasicBlock, CosineLinear, ResNet } from "./src/nn/resnet.ts";
export type { ResNetConfig } from "./src/nn/resnet.ts";
export {
  applyPretrained,
  checkPretrained,
  loadPretrained,
  pretrainedProblems,
  TORCHVISION_DEPTHS,
  TorchvisionResNet,
  TvBasicBlock,
  TvBottleneck,
  TvResidualBlock,
} from "./src/nn/torchvision.ts";
export type { PretrainedLoad, TorchvisionConfig, TorchvisionDepth } from "./src/nn/torchvision.ts";
export { Model } from "./src/nn/model.ts";
export type { LoadStateDictOptions, ModelSaveOptions } from "./src/nn/model.ts";
export { FlatLayout, FlatTensors } from "./src/nn/params.ts";
export type { ParamSpec } from "./src/nn/params.ts";

// Optimizers and learning-rate schedules.
export { createOptimizer, Sgd } from "./src/optim/optimizer.ts";
export type { Optimizer, OptimizerSpec, SgdConfig, SgdSettings } from "./src/optim/optimizer.ts";
export { Adam } from "./src/optim/adam.ts";
export type { AdamConfig, AdamSettings } from "./src/optim/adam.ts";
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

// The step engine, the meta step, the fit loop, in-memory data, metrics and progress.
export { StepEngine } from "./src/engine/step.ts";
export type { LossFn, SeedRule, StepEngineOptions } from "./src/engine/step.ts";
export { crossEntropy, isHeadSplit, MetaReweighter } from "./src/engine/meta.ts";
export type {
  HeadSplit,
  MetaOptions,
  MetaReweighterOptions,
  MetaStepResult,
} from "./src/engine/meta.ts";
export type { MetaWeightRule } from "./shaders/meta.ts";
export { fit, stopMessage } from "./src/engine/fit.ts";
export type {
  CheckpointExtra,
  DataSource,
  EpochBatches,
  EpochEnd,
  FitHooks,
  FitOptions,
  FitRate,
  FitResult,
  FitRunOptions,
  NonFiniteAt,
  StepKind,
} from "./src/engine/fit.ts";
export { ArraySource } from "./src/engine/data.ts";
export type { ArraySourceOptions } from "./src/engine/data.ts";
export {
  argmax,
  evaluateClassifier,
  MetricAccumulator,
  predict,
  SHOT_THRESHOLDS,
  shotGroups,
  withShots,
} from "./src/engine/metrics.ts";
export type {
  EvalMetrics,
  EvaluateOptions,
  PredictOptions,
  ShotGroups,
} from "./src/engine/metrics.ts";
export {
  confusionClasses,
  confusionRowTotals,
  DENSE_CONFUSION_CLASSES,
  denseConfusion,
  isSparseConfusion,
  sparseConfusion,
} from "./src/engine/confusion.ts";
export type { Confusion, SparseConfusion } from "./src/engine/confusion.ts";
export { Progress, stdoutSink } from "./src/engine/progress.ts";
export type { ProgressSink } from "./src/engine/progress.ts";

// Checkpoints: safetensors files with PyTorch state_dict names, replaced atomically.
export { readCheckpoint, writeCheckpoint } from "./src/checkpoint/checkpoint.ts";
export type { ReadCheckpointOptions } from "./src/checkpoint/checkpoint.ts";
export {
  decodeSafetensors,
  encodeSafetensors,
  SafetensorsError,
} from "./src/checkpoint/safetensors.ts";
export type {
  SafeData,
  SafeDType,
  SafeTensor,
  SafetensorsFile,
} from "./src/checkpoint/safetensors.ts";
export { writeFileAtomic } from "./src/checkpoint/atomic.ts";

// Errors, and a script's command line: the error types and reporter and the flag parser of
// tailgrad's own tasks, for programs that want the same behaviour (examples/ use them).
export { ConfigError, problemOf, reportError, UserError } from "./src/errors.ts";
export type { UserErrorOptions } from "./src/errors.ts";
export { parseFlags, UsageError, usageLines } from "./src/cli/flags.ts";
export type {
  FlagKind,
  FlagSpec,
  FlagTable,
  FlagValue,
  ParsedFlags,
  ParseFlagsOptions,
} from "./src/cli/flags.ts";

// Data sets: finding, downloading and reading them, batches and augmentation on the GPU.
export { DataError } from "./src/data/errors.ts";
export { DATASET_NAMES, DATASET_STATS } from "./src/data/dataset.ts";
export type { ChannelStats, DatasetName, ImageDataset } from "./src/data/dataset.ts";
export { downloadDataset, ensureDataset, findDataset, loadDataset } from "./src/data/load.ts";
export type { FindOptions, LoadedDataset, LoadOptions } from "./src/data/load.ts";
export type { DatasetSource, RemoteFile } from "./src/data/sources.ts";
export { loadIdxDataset, parseIdx, readIdxFile } from "./src/data/idx.ts";
export type { IdxArray, IdxDatasetOptions } from "./src/data/idx.ts";
export { loadCifarDataset, parseCifar, readCifarFile } from "./src/data/cifar.ts";
export type { CifarRecords, CifarVariant } from "./src/data/cifar.ts";
export { gunzip } from "./src/data/gzip.ts";
export { readTar } from "./src/data/tar.ts";
export type { TarEntry } from "./src/data/tar.ts";
export { downloadVerified } from "./src/data/download.ts";
export type { DownloadOptions } from "./src/data/download.ts";
export { Batcher } from "./src/data/batcher.ts";
export type { HostBatch } from "./src/data/batcher.ts";
export { GpuAugmenter } from "./src/data/augment.ts";
export type { AugmentConfig, GpuAugmenterOptions } from "./src/data/augment.ts";
export { decodeJpeg, readJpegInfo } from "./src/data/jpeg/decode.ts";
export type { JpegInfo, RgbImage } from "./src/data/jpeg/decode.ts";
export { JpegError } from "./src/data/jpeg/huffman.ts";
export { DecodePool } from "./src/data/jpeg/pool.ts";
export type { DecodePoolOptions } from "./src/data/jpeg/pool.ts";
export { JpegLoader } from "./src/data/jpeg/loader.ts";
export type { GpuImageBatch, JpegLoaderOptions } from "./src/data/jpeg/loader.ts";
export type { ImageList } from "./src/data/lists.ts";
export { IMAGENET_MEAN, IMAGENET_STD } from "./src/data/jpeg/transforms.ts";
export type { SampleBox } from "./src/data/jpeg/transforms.ts";
