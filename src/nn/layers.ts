/**
 * Layers over the ops: each declares its parameters and buffers (PyTorch names and shapes),
 * draws its initial values, and runs its op. One class per layer, so a new op becomes a layer in
 * a dozen lines.
 */
import type { Ctx } from "../autograd/tape.ts";
import { Rng } from "../random.ts";
import type { Tensor } from "../tensor.ts";
import { batchNorm } from "../ops/batchnorm.ts";
import { conv2d } from "../ops/conv.ts";
import { globalAvgPool, relu } from "../ops/elementwise.ts";
import { linear } from "../ops/linear.ts";
import { channelBias } from "../ops/bias.ts";
import { avgPool2d, maxPool2d, type PoolOptions } from "../ops/pool.ts";
import { flatten } from "../ops/shape.ts";
import { dropout } from "../ops/dropout.ts";
import { sigmoid, tanh } from "../ops/activation.ts";
import { checkSize, type ForwardMode, layerName, Module, type ParamScope } from "./module.ts";
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

/**
 * Throws naming the layer (its state_dict prefix) unless `x` is f32 maps [N, C, H, W] (with
 * `channels` channels when given): a host check before anything is dispatched. `hint` follows
 * for a 2-D input, the usual slip of a map layer placed after a Linear or a Flatten.
 */
function checkMaps(kind: string, x: Tensor, p: ParamScope, channels?: number): void {
  const C = channels ?? "C";
  if (x.shape.length === 4 && x.dtype === "f32" && (channels ?? x.shape[1]) === x.shape[1]) return;
  const flat = x.shape.length === 2
    ? `; [N, features] rows (after a Linear or a Flatten) have no H and W: place ${kind} ` +
      "before them"
    : "";
  throw new Error(
    `${kind} layer ${layerName(p)}: expected f32 maps [N, ${C}, H, W]` +
      `${channels ? ` (channels ${channels})` : ""}, got [${x.shape}] ${x.dtype}${flat}`,
  );
}

/** Init rule of a weight (and bias) layer. */
export type WeightInit = "uniform" | "he-normal";

/**
 * Weight (`size` values) then bias (`biasSize`, 0 for none) by `rule` with fan-in `fanIn`:
 * "uniform" is PyTorch's default for Linear and Conv2d (kaiming_uniform with a = sqrt(5), i.e.
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same bound for the bias); "he-normal" draws the
 * weight from N(0, 2 / fan_in) and sets the bias to 0.
 */
function weightAndBias(
  rng: Rng,
  rule: WeightInit,
  size: number,
  fanIn: number,
  biasSize: number,
): Map<string, Float32Array> {
  const v = new Map<string, Float32Array>();
  if (rule === "he-normal") {
    v.set("weight", normalValues(rng, size, Math.sqrt(2 / fanIn)));
    if (biasSize) v.set("bias", new Float32Array(biasSize));
  } else {
    const bound = 1 / Math.sqrt(fanIn);
    v.set("weight", uniformValues(rng, size, bound));
    if (biasSize) v.set("bias", uniformValues(rng, biasSize, bound));
  }
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
  init?: WeightInit;
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
  readonly initRule: WeightInit;

  /** A layer from `inFeatures` to `outFeatures` (integers >= 1; a RangeError names a bad one). */
  constructor(inFeatures: number, outFeatures: number, o: LinearOptions = {}) {
    super();
    checkSize(new.target.name, "inFeatures", inFeatures);
    checkSize(new.target.name, "outFeatures", outFeatures);
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
    const biasSize = this.bias ? this.outFeatures : 0;
    return weightAndBias(rng, this.initRule, size, this.inFeatures, biasSize);
  }

  /** x W^T + b; `x` must be [N, inFeatures] (checked here, naming the layer). */
  forward(ctx: Ctx, x: Tensor, p: ParamScope): Tensor {
    this.checkInput(x, p);
    return linear(ctx, x, p.param("weight"), this.bias ? p.param("bias") : null);
  }

  /**
   * Throws naming the layer (its state_dict prefix) and the expected width unless `x` is
   * [N, inFeatures]: a host check before anything is dispatched.
   */
  protected checkInput(x: Tensor, p: ParamScope): void {
    if (x.shape.length === 2 && x.shape[1] === this.inFeatures) return;
    const flat = x.shape.length > 2 ? "; a Flatten before it makes [N, C, H, W] rows" : "";
    throw new Error(
      `${this.constructor.name} layer ${layerName(p)}: expected input [N, ${this.inFeatures}] ` +
        `(inFeatures ${this.inFeatures}), got [${x.shape}]${flat}`,
    );
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
  /** Add a per-output-channel bias (default true, as PyTorch). */
  bias?: boolean;
  /**
   * "uniform" (default, PyTorch's): weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
   * "he-normal": weight N(0, 2 / fan_in), bias 0 (the CIFAR ResNet's convolutions).
   */
  init?: WeightInit;
}

/**
 * 2-D convolution on [N, C, H, W] (conv2d, then channelBias when it has a bias); weight
 * [out, in, k, k], bias [out]; fan_in = in * k * k.
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
  /** Whether the layer has a bias. */
  readonly bias: boolean;
  /** The init rule. */
  readonly initRule: WeightInit;

  /**
   * A convolution from `inChannels` to `outChannels`; channels, kernel and stride are integers
   * >= 1 and pad an integer >= 0 (a RangeError names a bad one).
   */
  constructor(inChannels: number, outChannels: number, o: Conv2dOptions = {}) {
    super();
    this.inChannels = inChannels;
    this.outChannels = outChannels;
    this.kernel = o.kernel ?? 3;
    this.stride = o.stride ?? 1;
    this.pad = o.pad ?? 1;
    checkSize("Conv2d", "inChannels", inChannels);
    checkSize("Conv2d", "outChannels", outChannels);
    checkSize("Conv2d", "kernel", this.kernel);
    checkSize("Conv2d", "stride", this.stride);
    checkSize("Conv2d", "pad", this.pad, 0);
    this.bias = o.bias ?? true;
    this.initRule = o.init ?? "uniform";
  }

  /** `weight` [out, in, k, k] and `bias` [out]. */
  override params(): ParamSpec[] {
    const k = this.kernel;
    const p = [{ name: "weight", shape: [this.outChannels, this.inChannels, k, k] }];
    if (this.bias) p.push({ name: "bias", shape: [this.outChannels] });
    return p;
  }

  /** By the init rule (weight drawn first, then bias). */
  override init(rng: Rng): Map<string, Float32Array> {
    const fanIn = this.inChannels * this.kernel * this.kernel;
    const biasSize = this.bias ? this.outChannels : 0;
    return weightAndBias(rng, this.initRule, this.outChannels * fanIn, fanIn, biasSize);
  }

  /** The convolution (plus bias); `x` must be [N, inChannels, H, W] (checked, naming the layer). */
  forward(ctx: Ctx, x: Tensor, p: ParamScope): Tensor {
    const [, C, H, W] = x.shape;
    const fits = (size: number) => size + 2 * this.pad >= this.kernel;
    if (x.shape.length !== 4 || C !== this.inChannels || !fits(H) || !fits(W)) {
      throw new Error(
        `Conv2d layer ${layerName(p)}: expected input [N, ${this.inChannels}, H, W] ` +
          `(inChannels ${this.inChannels}) with H and W + 2 * pad >= kernel ${this.kernel}, ` +
          `got [${x.shape}]`,
      );
    }
    const y = conv2d(ctx, x, p.param("weight"), { stride: this.stride, pad: this.pad });
    return this.bias ? channelBias(ctx, y, p.param("bias")) : y;
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

  /** Batch norm over `channels` (an integer >= 1); `relu` fuses the activation that follows. */
  constructor(channels: number, o: { relu?: boolean } = {}) {
    super();
    checkSize(new.target.name, "channels", channels);
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

  /** Normalised (and rectified) activations; `x` must be [N, channels, H, W] (checked). */
  forward(ctx: Ctx, x: Tensor, p: ParamScope, mode: ForwardMode): Tensor {
    checkMaps("BatchNorm2d", x, p, this.channels);
    return this.normalize(ctx, x, p, mode);
  }

  /**
   * The batch norm op over `x` with this layer's parameters and buffers; `tail` fuses a
   * residual add and sets the ReLU (default: this layer's `relu`, no residual).
   */
  protected normalize(
    ctx: Ctx,
    x: Tensor,
    p: ParamScope,
    mode: ForwardMode,
    tail: { relu?: boolean; residual?: Tensor } = {},
  ): Tensor {
    return batchNorm(
      ctx,
      x,
      p.param("weight"),
      p.param("bias"),
      p.buffer("running_mean"),
      p.buffer("running_var"),
      {
        mode: mode.bn,
        updateRunningStats: mode.updateRunningStats,
        relu: tail.relu ?? this.relu,
        ...(tail.residual ? { residual: tail.residual } : {}),
      },
    );
  }

  /**
   * relu(bn(x) + residual): a residual block's tail in the normalisation's own pass (the
   * parameters are this layer's; the ReLU is applied whatever `relu` says).
   */
  forwardResidual(
    ctx: Ctx,
    x: Tensor,
    residual: Tensor,
    p: ParamScope,
    mode: ForwardMode,
  ): Tensor {
    checkMaps("BatchNorm2d", x, p, this.channels);
    return this.normalize(ctx, x, p, mode, { relu: true, residual });
  }
}

/**
 * Batch norm over the features of [N, C] (PyTorch's BatchNorm1d on 2-D input: same parameters,
 * buffers, statistics and running-statistics update as {@linkcode BatchNorm2d}, which treats
 * [N, C] as [N, C, 1, 1]).
 */
export class BatchNorm1d extends BatchNorm2d {
  /** Normalised (and rectified) features; `x` must be [N, C]. */
  override forward(ctx: Ctx, x: Tensor, p: ParamScope, mode: ForwardMode): Tensor {
    if (x.shape.length !== 2 || x.shape[1] !== this.channels || x.dtype !== "f32") {
      throw new Error(
        `BatchNorm1d layer ${layerName(p)}: expected [N, ${this.channels}] (channels ` +
          `${this.channels}), got [${x.shape}] ${x.dtype}`,
      );
    }
    return this.normalize(ctx, x, p, mode);
  }
}

/** max(x, 0). */
export class ReLU extends Module {
  /** The activation. */
  forward(ctx: Ctx, x: Tensor): Tensor {
    return relu(ctx, x);
  }
}

/** 1 / (1 + exp(-x)). */
export class Sigmoid extends Module {
  /** The activation. */
  forward(ctx: Ctx, x: Tensor): Tensor {
    return sigmoid(ctx, x);
  }
}

/** tanh(x). */
export class Tanh extends Module {
  /** The activation. */
  forward(ctx: Ctx, x: Tensor): Tensor {
    return tanh(ctx, x);
  }
}

/** A pooling window over [N, C, H, W]: square `kernel`, stride default `kernel`, pad default 0. */
export abstract class Pool2d extends Module {
  /** The window. */
  readonly window: PoolOptions;

  /**
   * A `kernel` x `kernel` window (stride default `kernel`, pad default 0); kernel and stride are
   * integers >= 1, pad an integer >= 0.
   */
  constructor(kernel: number, o: { stride?: number; pad?: number } = {}) {
    super();
    checkSize(new.target.name, "kernel", kernel);
    checkSize(new.target.name, "stride", o.stride ?? kernel);
    checkSize(new.target.name, "pad", o.pad ?? 0, 0);
    this.window = { kernel, stride: o.stride ?? kernel, pad: o.pad ?? 0 };
  }

  /**
   * Throws naming the layer unless `x` is f32 maps [N, C, H, W] the window fits (H and W
   * + 2 * pad >= kernel); the op's own checks then never fire for a model's layer.
   */
  protected checkInput(x: Tensor, p: ParamScope): void {
    const kind = this.constructor.name;
    checkMaps(kind, x, p);
    const { kernel, pad = 0 } = this.window;
    const [, , H, W] = x.shape;
    if (H + 2 * pad < kernel || W + 2 * pad < kernel) {
      throw new Error(
        `${kind} layer ${layerName(p)}: a ${kernel}x${kernel} window with pad ${pad} does not ` +
          `fit maps [${x.shape}]`,
      );
    }
  }
}

/** Max pooling of [N, C, H, W] (PyTorch semantics; padding never wins). */
export class MaxPool2d extends Pool2d {
  /** The pooled maps; `x` must be [N, C, H, W] (checked, naming the layer). */
  forward(ctx: Ctx, x: Tensor, p: ParamScope): Tensor {
    this.checkInput(x, p);
    return maxPool2d(ctx, x, this.window);
  }
}

/** Average pooling of [N, C, H, W] (padding counts in the average, as PyTorch's default). */
export class AvgPool2d extends Pool2d {
  /** The pooled maps; `x` must be [N, C, H, W] (checked, naming the layer). */
  forward(ctx: Ctx, x: Tensor, p: ParamScope): Tensor {
    this.checkInput(x, p);
    return avgPool2d(ctx, x, this.window);
  }
}

/** [N, ...] -> [N, product of the rest], recorded on the tape. */
export class Flatten extends Module {
  /** The flattened rows. */
  forward(ctx: Ctx, x: Tensor): Tensor {
    return flatten(ctx, x);
  }
}

/**
 * Inverted dropout: in a train-mode pass each element is zeroed with probability `p` and the
 * rest scaled by 1 / (1 - p); the identity in eval mode. The mask is a GPU hash of the pass's
 * seed (`mode.noise`: the step's seed and the pass's stream) and the layer's name, so it is
 * fresh every step and layer, and the same again for the same run seed and step.
 */
export class Dropout extends Module {
  /** Probability of zeroing an element. */
  readonly p: number;

  /** Dropout with probability `p` in [0, 1) (default 0.5, as PyTorch). */
  constructor(p = 0.5) {
    super();
    if (!(p >= 0 && p < 1)) throw new Error(`Dropout: p = ${p}, expected a number in [0, 1)`);
    this.p = p;
  }

  /** Masked and scaled `x` in train mode, `x` in eval mode. */
  forward(ctx: Ctx, x: Tensor, p: ParamScope, mode: ForwardMode): Tensor {
    if (mode.bn === "eval" || this.p === 0) return x;
    if (!mode.noise) {
      throw new Error(
        `Dropout layer ${layerName(p)}: a train-mode forward needs mode.noise (the step's ` +
          `seed); the StepEngine passes it, a hand-written pass can take engine.noise(stream)`,
      );
    }
    const salt = new Rng(mode.noise.stream, "dropout", p.prefix).nextU32();
    return dropout(ctx, x, this.p, { seeds: mode.noise.seed, salt });
  }
}

/** Mean over the spatial positions: [N, C, H, W] -> [N, C]. */
export class GlobalAvgPool extends Module {
  /** The pooled features; `x` must be [N, C, H, W] (checked, naming the layer). */
  forward(ctx: Ctx, x: Tensor, p: ParamScope): Tensor {
    checkMaps("GlobalAvgPool", x, p);
    return globalAvgPool(ctx, x);
  }
}

/** Children applied in order, named "0", "1", ... (or by the given names). */
export class Sequential extends Module {
  /** The named layers, in order. */
  readonly layers: [string, Module][];

  /**
   * Layers named by position, or `[name, module]` pairs; the names must be distinct non-empty
   * strings (they prefix the layers' state_dict keys).
   */
  constructor(...layers: (Module | [string, Module])[]) {
    super();
    this.layers = layers.map((l, i) => (l instanceof Module ? [String(i), l] : l));
    const at = new Map<string, number>();
    this.layers.forEach(([name], i) => {
      if (typeof name !== "string" || name === "") {
        throw new Error(
          `Sequential: layer ${i} is named ${JSON.stringify(name)}; a name must be a non-empty ` +
            "string",
        );
      }
      const first = at.get(name);
      if (first !== undefined) {
        throw new Error(
          `Sequential: layers ${first} and ${i} are both named "${name}"; give each layer its ` +
            "own name (they prefix the state_dict keys)",
        );
      }
      at.set(name, i);
    });
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
