/**
 * CIFAR ResNet-(6n+2) (He et al. 2016, section 4.2) with option-A shortcuts: ResNet-8 (n=1),
 * -20 (n=3), -32 (n=5), widths 16/32/64, for any input size and channel count. Parameter and
 * buffer names follow PyTorch's state_dict of the usual CIFAR ResNet, so checkpoints load there.
 * With `cosine` (LDAM), the classifier is a cosine one: normalised features times normalised
 * class weights, no bias.
 */
import type { Ctx } from "../autograd/tape.ts";
import type { Gpu } from "../gpu/runtime.ts";
import { Rng } from "../random.ts";
import type { Tensor } from "../tensor.ts";
import { batchNorm } from "../ops/batchnorm.ts";
import { conv2d } from "../ops/conv.ts";
import { globalAvgPool, shortcutA } from "../ops/elementwise.ts";
import { linear, rowNormalize } from "../ops/linear.ts";
import { FlatLayout, type FlatTensors, type ParamSpec } from "./params.ts";

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

/** BN behaviour of one forward pass. */
export interface ForwardMode {
  /** "train": batch statistics; "eval": running statistics. */
  bn: "train" | "eval";
  /** Train-mode passes that may update running statistics (only the real update pass). */
  updateRunningStats: boolean;
}

const WIDTHS = [16, 32, 64];

/** Blocks per stage for a depth. */
export function blocksPerStage(depth: number): number {
  if ((depth - 2) % 6 !== 0 || depth < 8) {
    throw new Error(`ResNet depth must be 6n+2 (8, 20, 32, ...), got ${depth}`);
  }
  return (depth - 2) / 6;
}

/** Parameters (trainable) and buffers (running statistics), each in PyTorch order. */
export function resnetSpecs(cfg: ResNetConfig): { params: ParamSpec[]; buffers: ParamSpec[] } {
  const n = blocksPerStage(cfg.depth);
  const params: ParamSpec[] = [];
  const buffers: ParamSpec[] = [];
  const bn = (prefix: string, c: number) => {
    params.push({ name: `${prefix}.weight`, shape: [c] }, { name: `${prefix}.bias`, shape: [c] });
    buffers.push(
      { name: `${prefix}.running_mean`, shape: [c] },
      { name: `${prefix}.running_var`, shape: [c] },
    );
  };
  params.push({ name: "conv1.weight", shape: [16, cfg.inChannels, 3, 3] });
  bn("bn1", 16);
  let inPlanes = 16;
  WIDTHS.forEach((planes, stage) => {
    for (let b = 0; b < n; b++) {
      const p = `layer${stage + 1}.${b}`;
      params.push({ name: `${p}.conv1.weight`, shape: [planes, inPlanes, 3, 3] });
      bn(`${p}.bn1`, planes);
      params.push({ name: `${p}.conv2.weight`, shape: [planes, planes, 3, 3] });
      bn(`${p}.bn2`, planes);
      inPlanes = planes;
    }
  });
  params.push({ name: "linear.weight", shape: [cfg.numClasses, 64] });
  if (!cfg.cosine) params.push({ name: "linear.bias", shape: [cfg.numClasses] });
  return { params, buffers };
}

/**
 * Kaiming-normal init (fan-in, gain sqrt(2)) for convolutions and the classifier weight,
 * BN gamma 1 and beta 0, classifier bias 0, running mean 0 and var 1. Deterministic in `seed`.
 */
export function resnetInit(cfg: ResNetConfig, seed: number): Map<string, Float32Array> {
  const rng = Rng.derive(seed, "init");
  const { params, buffers } = resnetSpecs(cfg);
  const values = new Map<string, Float32Array>();
  for (const s of [...params, ...buffers]) {
    const size = s.shape.reduce((a, b) => a * b, 1);
    const v = new Float32Array(size);
    if (s.name.endsWith("running_var")) v.fill(1);
    else if (s.name.includes("bn") && s.name.endsWith(".weight")) v.fill(1);
    else if (s.name.endsWith(".weight")) {
      const fanIn = size / s.shape[0];
      const std = Math.sqrt(2 / fanIn);
      for (let i = 0; i < size; i++) v[i] = rng.normal() * std;
    }
    values.set(s.name, v);
  }
  return values;
}

/** A CIFAR ResNet: its layout, and a forward pass over any parameter set of that layout. */
export class ResNet {
  /** The architecture. */
  readonly config: ResNetConfig;
  /** Layout of the trainable parameters. */
  readonly paramLayout: FlatLayout;
  /** Layout of the BN running statistics. */
  readonly bufferLayout: FlatLayout;
  /** Residual blocks per stage, n = (depth - 2) / 6. */
  readonly blocks: number;

  /** Validates the depth and builds the layouts, aligned for `gpu`'s storage bindings. */
  constructor(gpu: Gpu, config: ResNetConfig) {
    this.config = config;
    this.blocks = blocksPerStage(config.depth);
    const { params, buffers } = resnetSpecs(config);
    this.paramLayout = new FlatLayout(params, gpu.offsetAlignment);
    this.bufferLayout = new FlatLayout(buffers, gpu.offsetAlignment);
  }

  /**
   * Logits [N, classes] of images x [N, C, H, W] with parameters `params` (any flat set of this
   * layout: the real ones, look-ahead ones) and BN buffers `buffers`.
   */
  forward(
    ctx: Ctx,
    x: Tensor,
    params: FlatTensors,
    buffers: FlatTensors,
    mode: ForwardMode,
  ): Tensor {
    const P = (name: string) => params.get(name);
    const bn = (prefix: string, input: Tensor, relu: boolean, residual?: Tensor) =>
      batchNorm(
        ctx,
        input,
        P(`${prefix}.weight`),
        P(`${prefix}.bias`),
        buffers.get(`${prefix}.running_mean`),
        buffers.get(`${prefix}.running_var`),
        { mode: mode.bn, updateRunningStats: mode.updateRunningStats, relu, residual },
      );
    let h = bn("bn1", conv2d(ctx, x, P("conv1.weight"), { stride: 1, pad: 1 }), true);
    let inPlanes = 16;
    WIDTHS.forEach((planes, stage) => {
      for (let b = 0; b < this.blocks; b++) {
        const p = `layer${stage + 1}.${b}`;
        const stride = stage > 0 && b === 0 ? 2 : 1;
        const o = bn(`${p}.bn1`, conv2d(ctx, h, P(`${p}.conv1.weight`), { stride, pad: 1 }), true);
        const shortcut = stride !== 1 || inPlanes !== planes ? shortcutA(ctx, h, planes) : h;
        // relu(bn2(conv2(o)) + shortcut), fused into the batchnorm's pass
        const o2 = conv2d(ctx, o, P(`${p}.conv2.weight`), { stride: 1, pad: 1 });
        h = bn(`${p}.bn2`, o2, true, shortcut);
        inPlanes = planes;
      }
    });
    const features = globalAvgPool(ctx, h);
    if (this.config.cosine) {
      return linear(ctx, rowNormalize(ctx, features), rowNormalize(ctx, P("linear.weight")), null);
    }
    return linear(ctx, features, P("linear.weight"), P("linear.bias"));
  }
}
