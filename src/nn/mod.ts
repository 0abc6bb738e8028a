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
  sizeOf,
  TRAIN,
  TRAIN_NO_UPDATE,
} from "./module.ts";
export type { ForwardMode } from "./module.ts";
export { BatchNorm2d, Conv2d, GlobalAvgPool, Linear, ReLU, Sequential } from "./layers.ts";
export type { Conv2dOptions, LinearOptions } from "./layers.ts";
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
