/**
 * Layers over the ops: each declares its parameters and buffers (PyTorch names and shapes),
 * draws its initial values, and runs its op. One class per layer, so a new op becomes a layer in
 * a dozen lines.
 */
import type { Ctx } from "../autograd/tape.ts";
import type { Rng } from "../random.ts";
import type { Tensor } from "../tensor.ts";
import { batchNorm } from "../ops/batchnorm.ts";
import { conv2d } from "../ops/conv.ts";
import { globalAvgPool, relu } from "../ops/elementwise.ts";
import { linear } from "../ops/linear.ts";
import { type ForwardMode, Module, type ParamScope } from "./module.ts";
import type { ParamSpec } from "./params.ts";

/** `size` draws of `std * N(0, 1)`. */
function normalValues(rng: Rng, size: number, std: number): Float32Array {
  const v = new Float32Array(size);
  for (let i = 0; i < size; i++) v[i] = rng.normal() * std;
  return v;
}

/** `size` draws of U(-bound, bound). */
function uniformValues(rng: Rng, size: number, bound: number): Float32Array {
  const v = new Float32Array(size);
  for (let i = 0; i < size; i++) v[i] = (2 * rng.nextFloat() - 1) * bound;
  return v;
}

/** Options of {@linkcode Linear}. */
export interface LinearOptions {
  /** Add a bias (default true). */
  bias?: boolean;
  /**
   * "uniform" (default, PyTorch's): weight and bias U(-1/sqrt(in), 1/sqrt(in)).
   * "he-normal": weight N(0, 2/in), bias 0 (the CIFAR ResNet's classifier).
   */
  init?: "uniform" | "he-normal";
}

/** Fully connected layer y = x W^T + b on [N, in] inputs; weight [out, in]. */
export class Linear extends Module {
  /** Input features. */
  readonly inFeatures: number;
  /** Output features. */
  readonly outFeatures: number;
  /** Whether the layer has a bias. */
  readonly bias: boolean;
  /** The init rule. */
  readonly initRule: "uniform" | "he-normal";

  /** A layer from `inFeatures` to `outFeatures`. */
  constructor(inFeatures: number, outFeatures: number, o: LinearOptions = {}) {
    super();
    this.inFeatures = inFeatures;
    this.outFeatures = outFeatures;
    this.bias = o.bias ?? true;
    this.initRule = o.init ?? "uniform";
  }

  /** `weight` [out, in] and `bias` [out]. */
  override params(): ParamSpec[] {
    const p = [{ name: "weight", shape: [this.outFeatures, this.inFeatures] }];
    if (this.bias) p.push({ name: "bias", shape: [this.outFeatures] });
    return p;
  }

  /** By the init rule (weight drawn first, then bias). */
  override init(rng: Rng): Map<string, Float32Array> {
    const size = this.outFeatures * this.inFeatures;
    const v = new Map<string, Float32Array>();
    if (this.initRule === "he-normal") {
      v.set("weight", normalValues(rng, size, Math.sqrt(2 / this.inFeatures)));
      if (this.bias) v.set("bias", new Float32Array(this.outFeatures));
    } else {
      const bound = 1 / Math.sqrt(this.inFeatures);
      v.set("weight", uniformValues(rng, size, bound));
      if (this.bias) v.set("bias", uniformValues(rng, this.outFeatures, bound));
    }
    return v;
  }

  /** x W^T + b. */
  forward(ctx: Ctx, x: Tensor, p: ParamScope): Tensor {
    return linear(ctx, x, p.param("weight"), this.bias ? p.param("bias") : null);
  }
}

/** Options of {@linkcode Conv2d}. */
export interface Conv2dOptions {
  /** Square kernel size (default 3). */
  kernel?: number;
  /** Stride (default 1). */
  stride?: number;
  /** Zero padding on each side (default 1). */
  pad?: number;
}

/**
 * 2-D convolution without bias on [N, C, H, W]; weight [out, in, k, k], He-normal init
 * N(0, 2 / fan_in) as the CIFAR ResNet (PyTorch's default is a uniform init).
 */
export class Conv2d extends Module {
  /** Input channels. */
  readonly inChannels: number;
  /** Output channels. */
  readonly outChannels: number;
  /** Square kernel size. */
  readonly kernel: number;
  /** Stride. */
  readonly stride: number;
  /** Zero padding on each side. */
  readonly pad: number;

  /** A convolution from `inChannels` to `outChannels`. */
  constructor(inChannels: number, outChannels: number, o: Conv2dOptions = {}) {
    super();
    this.inChannels = inChannels;
    this.outChannels = outChannels;
    this.kernel = o.kernel ?? 3;
    this.stride = o.stride ?? 1;
    this.pad = o.pad ?? 1;
  }

  /** `weight` [out, in, k, k]. */
  override params(): ParamSpec[] {
    const k = this.kernel;
    return [{ name: "weight", shape: [this.outChannels, this.inChannels, k, k] }];
  }

  /** He-normal weight. */
  override init(rng: Rng): Map<string, Float32Array> {
    const fanIn = this.inChannels * this.kernel * this.kernel;
    const size = this.outChannels * fanIn;
    return new Map([["weight", normalValues(rng, size, Math.sqrt(2 / fanIn))]]);
  }

  /** The convolution. */
  forward(ctx: Ctx, x: Tensor, p: ParamScope): Tensor {
    return conv2d(ctx, x, p.param("weight"), { stride: this.stride, pad: this.pad });
  }
}

/**
 * Batch norm over the channels of [N, C, H, W] (momentum 0.1, eps 1e-5, unbiased running
 * variance, as PyTorch), optionally fused with the ReLU that follows it.
 */
export class BatchNorm2d extends Module {
  /** Channels. */
  readonly channels: number;
  /** Whether a ReLU is fused after the normalisation. */
  readonly relu: boolean;

  /** Batch norm over `channels`; `relu` fuses the activation that follows. */
  constructor(channels: number, o: { relu?: boolean } = {}) {
    super();
    this.channels = channels;
    this.relu = o.relu ?? false;
  }

  /** `weight` (gamma) and `bias` (beta), [C]. */
  override params(): ParamSpec[] {
    return [{ name: "weight", shape: [this.channels] }, { name: "bias", shape: [this.channels] }];
  }

  /** `running_mean` and `running_var`, [C]. */
  override buffers(): ParamSpec[] {
    return [
      { name: "running_mean", shape: [this.channels] },
      { name: "running_var", shape: [this.channels] },
    ];
  }

  /** gamma 1, beta 0, running mean 0, running variance 1 (no draws). */
  override init(): Map<string, Float32Array> {
    const c = this.channels;
    return new Map([
      ["weight", new Float32Array(c).fill(1)],
      ["bias", new Float32Array(c)],
      ["running_mean", new Float32Array(c)],
      ["running_var", new Float32Array(c).fill(1)],
    ]);
  }

  /** Normalised (and rectified) activations. */
  forward(ctx: Ctx, x: Tensor, p: ParamScope, mode: ForwardMode): Tensor {
    return batchNorm(
      ctx,
      x,
      p.param("weight"),
      p.param("bias"),
      p.buffer("running_mean"),
      p.buffer("running_var"),
      { mode: mode.bn, updateRunningStats: mode.updateRunningStats, relu: this.relu },
    );
  }
}

/** max(x, 0). */
export class ReLU extends Module {
  /** The activation. */
  forward(ctx: Ctx, x: Tensor): Tensor {
    return relu(ctx, x);
  }
}

/** Mean over the spatial positions: [N, C, H, W] -> [N, C]. */
export class GlobalAvgPool extends Module {
  /** The pooled features. */
  forward(ctx: Ctx, x: Tensor): Tensor {
    return globalAvgPool(ctx, x);
  }
}

/** Children applied in order, named "0", "1", ... (or by the given names). */
export class Sequential extends Module {
  /** The named layers, in order. */
  readonly layers: [string, Module][];

  /** Layers named by position, or `[name, module]` pairs. */
  constructor(...layers: (Module | [string, Module])[]) {
    super();
    this.layers = layers.map((l, i) => (l instanceof Module ? [String(i), l] : l));
  }

  /** The layers. */
  override children(): [string, Module][] {
    return this.layers;
  }

  /** Each layer on the output of the previous one. */
  forward(ctx: Ctx, x: Tensor, p: ParamScope, mode: ForwardMode): Tensor {
    let h = x;
    for (const [name, layer] of this.layers) h = layer.forward(ctx, h, p.child(name), mode);
    return h;
  }
}
