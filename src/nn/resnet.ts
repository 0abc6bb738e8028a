/**
 * CIFAR ResNet-(6n+2) (He et al. 2016, section 4.2) with option-A shortcuts: ResNet-8 (n=1),
 * -20 (n=3), -32 (n=5), widths 16/32/64, for any input size and channel count, built from the
 * layers of layers.ts. Parameter and buffer names follow PyTorch's state_dict of the usual CIFAR
 * ResNet, so checkpoints load there. With `cosine` (LDAM), the classifier is a cosine one:
 * normalised features times normalised class weights, no bias.
 */
import type { Ctx } from "../autograd/tape.ts";
import { Rng } from "../random.ts";
import type { Tensor } from "../tensor.ts";
import { shortcutA } from "../ops/elementwise.ts";
import { linear, rowNormalize } from "../ops/linear.ts";
import { BatchNorm2d, Conv2d, GlobalAvgPool, Linear, Sequential } from "./layers.ts";
import { type ForwardMode, Module, moduleInit, moduleSpecs, type ParamScope } from "./module.ts";
import type { ParamSpec } from "./params.ts";

export type { ForwardMode } from "./module.ts";

/** Architecture of a CIFAR ResNet. */
export interface ResNetConfig {
  /** Total depth 6n+2: 8, 20, 32, 44, 56, 110. */
  depth: number;
  /** Channels of the input images. */
  inChannels: number;
  /** Number of classes (classifier outputs). */
  numClasses: number;
  /** LDAM's normalised classifier instead of linear + bias. */
  cosine?: boolean;
}

const WIDTHS = [16, 32, 64];
/** The ResNet's convolutions: 3x3, no bias, He-normal init. */
const CONV = { bias: false, init: "he-normal" } as const;

/** Blocks per stage for a depth. */
export function blocksPerStage(depth: number): number {
  if ((depth - 2) % 6 !== 0 || depth < 8) {
    throw new Error(`ResNet depth must be 6n+2 (8, 20, 32, ...), got ${depth}`);
  }
  return (depth - 2) / 6;
}

/**
 * The CIFAR basic block: conv-BN-ReLU, conv-BN, plus the input (option A when the shape
 * changes: every second pixel, channels zero-padded), then ReLU.
 */
export class BasicBlock extends Module {
  /** Input channels. */
  readonly inPlanes: number;
  /** Output channels. */
  readonly planes: number;
  /** Stride of the first convolution. */
  readonly stride: number;
  readonly #layers: [string, Module][];

  /** A block from `inPlanes` to `planes` channels. */
  constructor(inPlanes: number, planes: number, stride: number) {
    super();
    this.inPlanes = inPlanes;
    this.planes = planes;
    this.stride = stride;
    this.#layers = [
      ["conv1", new Conv2d(inPlanes, planes, { ...CONV, stride })],
      ["bn1", new BatchNorm2d(planes, { relu: true })],
      ["conv2", new Conv2d(planes, planes, CONV)],
      ["bn2", new BatchNorm2d(planes)],
    ];
  }

  /** conv1, bn1, conv2, bn2. */
  override children(): [string, Module][] {
    return this.#layers;
  }

  /** relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), the tail fused into bn2's pass. */
  forward(ctx: Ctx, x: Tensor, p: ParamScope, mode: ForwardMode): Tensor {
    const [[, conv1], [, bn1], [, conv2], [, bn2]] = this.#layers;
    let h = bn1.forward(ctx, conv1.forward(ctx, x, p.child("conv1"), mode), p.child("bn1"), mode);
    const changes = this.stride !== 1 || this.inPlanes !== this.planes;
    const shortcut = changes ? shortcutA(ctx, x, this.planes) : x;
    h = conv2.forward(ctx, h, p.child("conv2"), mode);
    return (bn2 as BatchNorm2d).forwardResidual(ctx, h, shortcut, p.child("bn2"), mode);
  }
}

/** LDAM's cosine classifier: normalised features times normalised class weights, no bias. */
export class CosineLinear extends Linear {
  /** A classifier from `inFeatures` to `outFeatures` classes (He-normal weight). */
  constructor(inFeatures: number, outFeatures: number) {
    super(inFeatures, outFeatures, { bias: false, init: "he-normal" });
  }

  /** Cosine similarities [N, out]. */
  override forward(ctx: Ctx, x: Tensor, p: ParamScope): Tensor {
    this.checkInput(x, p);
    return linear(ctx, rowNormalize(ctx, x), rowNormalize(ctx, p.param("weight")), null);
  }
}

/** A CIFAR ResNet as a module: conv1, bn1, layer1-3, global pooling, classifier `linear`. */
export class ResNet extends Module {
  /** The architecture. */
  readonly config: ResNetConfig;
  /** Residual blocks per stage, n = (depth - 2) / 6. */
  readonly blocks: number;
  readonly #layers: [string, Module][];

  /** Validates the depth and builds the layers. */
  constructor(config: ResNetConfig) {
    super();
    this.config = config;
    this.blocks = blocksPerStage(config.depth);
    const layers: [string, Module][] = [
      ["conv1", new Conv2d(config.inChannels, 16, CONV)],
      ["bn1", new BatchNorm2d(16, { relu: true })],
    ];
    let inPlanes = 16;
    WIDTHS.forEach((planes, stage) => {
      const blocks: Module[] = [];
      for (let b = 0; b < this.blocks; b++) {
        blocks.push(new BasicBlock(inPlanes, planes, stage > 0 && b === 0 ? 2 : 1));
        inPlanes = planes;
      }
      layers.push([`layer${stage + 1}`, new Sequential(...blocks)]);
    });
    layers.push(["pool", new GlobalAvgPool()]);
    layers.push([
      "linear",
      config.cosine
        ? new CosineLinear(64, config.numClasses)
        : new Linear(64, config.numClasses, { init: "he-normal" }),
    ]);
    this.#layers = layers;
  }

  /** The layers, in order (the pooling has no parameters, so it adds no names). */
  override children(): [string, Module][] {
    return this.#layers;
  }

  /** Logits [N, classes] of images [N, C, H, W]. */
  forward(ctx: Ctx, x: Tensor, p: ParamScope, mode: ForwardMode): Tensor {
    let h = x;
    for (const [name, layer] of this.#layers) h = layer.forward(ctx, h, p.child(name), mode);
    return h;
  }
}

/** Parameters (trainable) and buffers (running statistics), each in PyTorch order. */
export function resnetSpecs(cfg: ResNetConfig): { params: ParamSpec[]; buffers: ParamSpec[] } {
  return moduleSpecs(new ResNet(cfg));
}

/**
 * Kaiming-normal init (fan-in, gain sqrt(2)) for convolutions and the classifier weight,
 * BN gamma 1 and beta 0, classifier bias 0, running mean 0 and var 1, drawn from the stream
 * `(seed, "init")` in parameter order.
 */
export function resnetInit(cfg: ResNetConfig, seed: number): Map<string, Float32Array> {
  return moduleInit(new ResNet(cfg), Rng.derive(seed, "init"));
}
