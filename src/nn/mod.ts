/**
 * Modules and models: the {@linkcode Module} contract with PyTorch state_dict names, the layers,
 * the CIFAR ResNet built from them, and {@linkcode Model}, which holds a module's parameters and
 * buffers in flat GPU buffers.
 *
 * @module
 */
export {
  EVAL,
  Module,
  moduleInit,
  moduleSpecs,
  ParamScope,
  TRAIN,
  TRAIN_NO_UPDATE,
} from "./module.ts";
export type { ForwardMode, Noise } from "./module.ts";
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
} from "./layers.ts";
export type { Conv2dOptions, LinearOptions, WeightInit } from "./layers.ts";
export {
  BasicBlock,
  blocksPerStage,
  CosineLinear,
  ResNet,
  resnetInit,
  resnetSpecs,
} from "./resnet.ts";
export type { ResNetConfig } from "./resnet.ts";
export { Model } from "./model.ts";
export { FlatLayout, FlatTensors } from "./params.ts";
export type { ParamSpec } from "./params.ts";
export {
  applyPretrained,
  loadPretrained,
  TORCHVISION_DEPTHS,
  TorchvisionResNet,
  TvBasicBlock,
  TvBottleneck,
  TvResidualBlock,
} from "./torchvision.ts";
export type { PretrainedLoad, TorchvisionConfig, TorchvisionDepth } from "./torchvision.ts";
