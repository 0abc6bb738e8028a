/**
 * torchvision-layout ResNets (torchvision.models.resnet, "v1.5": the stride of a bottleneck is on
 * its 3x3 convolution): ResNet-10/18/34/50/101/152 as modules with torchvision's state_dict names
 * and layouts (`conv1`, `bn1`, `layer1.0.conv1`, `layer2.0.downsample.0` / `.1`, `fc`), so an
 * ImageNet checkpoint saved as safetensors loads as it is ({@linkcode loadPretrained}).
 * ResNet-10 ([1, 1, 1, 1] basic blocks) is the long-tail literature's ImageNet-LT backbone.
 *
 * Init as torchvision: convolutions kaiming_normal (fan_out, gain sqrt(2)), batch norms 1 / 0,
 * `fc` PyTorch's default Linear init. `width` scales every stage (64 is torchvision's) for small
 * test networks.
 */
import type { Ctx } from "../autograd/tape.ts";
import type { Rng } from "../random.ts";
import type { Tensor } from "../tensor.ts";
import { addRelu } from "../ops/elementwise.ts";
import { describeError, UserError } from "../errors.ts";
import { decodeSafetensors, type SafetensorsFile } from "../checkpoint/safetensors.ts";
import { BatchNorm2d, Conv2d, GlobalAvgPool, Linear, MaxPool2d, Sequential } from "./layers.ts";
import { type ForwardMode, Module, moduleSpecs, type ParamScope } from "./module.ts";
import type { Model } from "./model.ts";
import type { ParamSpec } from "./params.ts";

/** The depths torchvision builds, plus ResNet-10. */
export const TORCHVISION_DEPTHS = [10, 18, 34, 50, 101, 152] as const;
/** A torchvision ResNet depth. */
export type TorchvisionDepth = typeof TORCHVISION_DEPTHS[number];

/** Block kind and blocks per stage of each depth (torchvision's table; 10 as the LT papers). */
const LAYOUTS: Record<TorchvisionDepth, { block: "basic" | "bottleneck"; blocks: number[] }> = {
  10: { block: "basic", blocks: [1, 1, 1, 1] },
  18: { block: "basic", blocks: [2, 2, 2, 2] },
  34: { block: "basic", blocks: [3, 4, 6, 3] },
  50: { block: "bottleneck", blocks: [3, 4, 6, 3] },
  101: { block: "bottleneck", blocks: [3, 4, 23, 3] },
  152: { block: "bottleneck", blocks: [3, 8, 36, 3] },
};

/** Architecture of a {@linkcode TorchvisionResNet}. */
export interface TorchvisionConfig {
  /** 10, 18, 34, 50, 101 or 152. */
  depth: TorchvisionDepth;
  /** Classifier outputs (torchvision's ImageNet models: 1000). */
  numClasses: number;
  /** Channels of the first stage (default 64, torchvision's); later stages double it. */
  width?: number;
  /** Input channels (default 3). */
  inChannels?: number;
}

/** A bias-free convolution with torchvision's init: N(0, 2 / (out * k * k)). */
class TvConv extends Conv2d {
  constructor(inC: number, outC: number, kernel: number, stride: number, pad: number) {
    super(inC, outC, { kernel, stride, pad, bias: false });
  }

  /** kaiming_normal_(mode="fan_out", nonlinearity="relu"). */
  override init(rng: Rng): Map<string, Float32Array> {
    const fanOut = this.outChannels * this.kernel * this.kernel;
    const std = Math.sqrt(2 / fanOut);
    const v = new Float32Array(fanOut * this.inChannels);
    for (let i = 0; i < v.length; i++) v[i] = rng.normal() * std;
    return new Map([["weight", v]]);
  }
}

/** A residual block: layers in order plus the (optional) projection shortcut, then relu(h + shortcut). */
export abstract class TvResidualBlock extends Module {
  readonly #layers: [string, Module][];

  /** A block of `layers` (named) and an optional `downsample` shortcut. */
  constructor(layers: [string, Module][], downsample: Sequential | null) {
    super();
    this.#layers = downsample ? [...layers, ["downsample", downsample]] : layers;
  }

  /** conv/bn pairs, then `downsample` when the shape changes. */
  override children(): [string, Module][] {
    return this.#layers;
  }

  /** relu(residual(x) + shortcut(x)). */
  forward(ctx: Ctx, x: Tensor, p: ParamScope, mode: ForwardMode): Tensor {
    let h = x, shortcut = x;
    for (const [name, layer] of this.#layers) {
      if (name === "downsample") shortcut = layer.forward(ctx, x, p.child(name), mode);
      else h = layer.forward(ctx, h, p.child(name), mode);
    }
    return addRelu(ctx, h, shortcut);
  }
}

/** `downsample`: 1x1 convolution with the block's stride, then batch norm. */
function projection(inC: number, outC: number, stride: number): Sequential {
  return new Sequential(new TvConv(inC, outC, 1, stride, 0), new BatchNorm2d(outC));
}

/** torchvision's BasicBlock: 3x3 (stride) - BN - ReLU - 3x3 - BN, plus the shortcut. */
export class TvBasicBlock extends TvResidualBlock {
  /** Output channels per input channel of the block's width. */
  static readonly expansion = 1;

  /** A block from `inPlanes` to `planes` channels. */
  constructor(inPlanes: number, planes: number, stride: number) {
    super(
      [
        ["conv1", new TvConv(inPlanes, planes, 3, stride, 1)],
        ["bn1", new BatchNorm2d(planes, { relu: true })],
        ["conv2", new TvConv(planes, planes, 3, 1, 1)],
        ["bn2", new BatchNorm2d(planes)],
      ],
      stride !== 1 || inPlanes !== planes ? projection(inPlanes, planes, stride) : null,
    );
  }
}

/**
 * torchvision's Bottleneck (v1.5): 1x1 - BN - ReLU - 3x3 (stride) - BN - ReLU - 1x1 (4x) - BN,
 * plus the shortcut.
 */
export class TvBottleneck extends TvResidualBlock {
  /** Output channels per channel of the block's width. */
  static readonly expansion = 4;

  /** A block from `inPlanes` to `4 * planes` channels. */
  constructor(inPlanes: number, planes: number, stride: number) {
    const out = planes * 4;
    super(
      [
        ["conv1", new TvConv(inPlanes, planes, 1, 1, 0)],
        ["bn1", new BatchNorm2d(planes, { relu: true })],
        ["conv2", new TvConv(planes, planes, 3, stride, 1)],
        ["bn2", new BatchNorm2d(planes, { relu: true })],
        ["conv3", new TvConv(planes, out, 1, 1, 0)],
        ["bn3", new BatchNorm2d(out)],
      ],
      stride !== 1 || inPlanes !== out ? projection(inPlanes, out, stride) : null,
    );
  }
}

/**
 * A torchvision ResNet: conv1 (7x7, stride 2, pad 3), bn1 + ReLU, max-pool 3x3 stride 2 pad 1,
 * layer1-4, global average pooling, `fc`. Splits into {@linkcode TorchvisionResNet.features} and
 * the head `fc` (for the classifier-only meta step).
 */
export class TorchvisionResNet extends Module {
  /** The architecture. */
  readonly config: Required<TorchvisionConfig>;
  /** Features entering `fc` (512 or 2048 times width / 64). */
  readonly featureSize: number;
  /** Name of the head child. */
  readonly headName = "fc";
  /** The classifier. */
  readonly head: Linear;
  readonly #body: [string, Module][];

  /** Builds the layers of `config` (throws on an unknown depth). */
  constructor(config: TorchvisionConfig) {
    super();
    const layout = LAYOUTS[config.depth];
    if (!layout) {
      throw new UserError(
        `ResNet depth ${config.depth} is not one of ${TORCHVISION_DEPTHS.join(", ")}`,
      );
    }
    const width = config.width ?? 64;
    // defaults for fields left out or given as undefined
    this.config = { ...config, width, inChannels: config.inChannels ?? 3 };
    const Block = layout.block === "basic" ? TvBasicBlock : TvBottleneck;
    const body: [string, Module][] = [
      ["conv1", new TvConv(this.config.inChannels, width, 7, 2, 3)],
      ["bn1", new BatchNorm2d(width, { relu: true })],
      ["maxpool", new MaxPool2d(3, { stride: 2, pad: 1 })],
    ];
    let inPlanes = width;
    layout.blocks.forEach((n, stage) => {
      const planes = width << stage;
      const blocks: Module[] = [];
      for (let b = 0; b < n; b++) {
        blocks.push(new Block(inPlanes, planes, stage > 0 && b === 0 ? 2 : 1));
        inPlanes = planes * Block.expansion;
      }
      body.push([`layer${stage + 1}`, new Sequential(...blocks)]);
    });
    body.push(["avgpool", new GlobalAvgPool()]);
    this.#body = body;
    this.featureSize = inPlanes;
    this.head = new Linear(inPlanes, config.numClasses);
  }

  /** conv1, bn1, layer1-4, fc (pooling layers have no state, so add no names). */
  override children(): [string, Module][] {
    return [...this.#body, ["fc", this.head]];
  }

  /** Pooled features [N, featureSize] of images [N, C, H, W]. */
  features(ctx: Ctx, x: Tensor, p: ParamScope, mode: ForwardMode): Tensor {
    let h = x;
    for (const [name, layer] of this.#body) h = layer.forward(ctx, h, p.child(name), mode);
    return h;
  }

  /** Logits [N, numClasses]. */
  forward(ctx: Ctx, x: Tensor, p: ParamScope, mode: ForwardMode): Tensor {
    return this.head.forward(ctx, this.features(ctx, x, p, mode), p.child("fc"));
  }
}

/** What {@linkcode loadPretrained} did. */
export interface PretrainedLoad {
  /** Tensors taken from the file. */
  loaded: number;
  /** Whether `fc` kept its fresh init because the file's class count differs. */
  classifierReset: boolean;
  /** Classes of the file's `fc`. */
  fileClasses: number;
}

/**
 * What in a torchvision ResNet checkpoint `file` does not fit the ResNet of `arch`, one line per
 * tensor: one the model does not have, one it lacks, one of another shape, or one that is not F32
 * or F64. `num_batches_tracked` is ignored, and an `fc` of another class count on the same
 * features is no problem (the model keeps its own `fc`). Empty when the file fits. Needs no GPU:
 * the names and shapes come from the module tree of `arch`.
 */
export function pretrainedProblems(file: SafetensorsFile, arch: TorchvisionConfig): string[] {
  const root = new TorchvisionResNet(arch);
  return problemsFor(file, root, moduleSpecs(root));
}

/** {@linkcode pretrainedProblems} against a module tree `root` with its `specs`. */
function problemsFor(
  file: SafetensorsFile,
  root: TorchvisionResNet,
  specs: { params: ParamSpec[]; buffers: ParamSpec[] },
): string[] {
  const want = [...specs.params, ...specs.buffers];
  const known = new Set(want.map((s) => s.name));
  const problems: string[] = [];
  for (const name of file.tensors.keys()) {
    if (!known.has(name) && !name.endsWith(".num_batches_tracked")) {
      problems.push(`holds ${name}, which the model does not have`);
    }
  }
  const resetFc = keepsOwnFc(file, root);
  for (const s of want) {
    if (resetFc && (s.name === "fc.weight" || s.name === "fc.bias")) continue;
    const t = file.tensors.get(s.name);
    if (!t) problems.push(`lacks ${s.name} [${s.shape}]`);
    else if (t.shape.join(",") !== s.shape.join(",")) {
      problems.push(`${s.name} is [${t.shape}], the model's is [${s.shape}]`);
    } else if (t.dtype !== "F32" && t.dtype !== "F64") {
      problems.push(`${s.name} is ${t.dtype}, expected F32 or F64 (convert with .float())`);
    }
  }
  return problems;
}

/**
 * Throws a {@linkcode UserError} naming `--pretrained`, `path` and (up to six of) the
 * {@linkcode pretrainedProblems} of `file` for `arch`; returns when the file fits.
 */
export function checkPretrained(
  file: SafetensorsFile,
  path: string,
  arch: TorchvisionConfig,
): void {
  throwIfProblems(pretrainedProblems(file, arch), path, arch.depth, arch.width ?? 64);
}

/** The error of {@linkcode checkPretrained}: none when `problems` is empty. */
function throwIfProblems(problems: string[], path: string, depth: number, width: number): void {
  if (!problems.length) return;
  const shown = problems.slice(0, 6).map((p) => `\n  - ${p}`).join("");
  const more = problems.length > 6 ? `\n  - ... and ${problems.length - 6} more` : "";
  throw new UserError(
    `--pretrained ${path} does not fit this run's ResNet-${depth} (width ${width}):` +
      shown + more,
    {
      file: path,
      flag: "--pretrained",
      hint: `pass a checkpoint of torchvision's resnet${depth} (width ${width}), or ` +
        "train from scratch without --pretrained",
    },
  );
}

/** Whether `file`'s `fc` has another class count on `root`'s features (then `fc` keeps its init). */
function keepsOwnFc(file: SafetensorsFile, root: TorchvisionResNet): boolean {
  const fc = file.tensors.get("fc.weight");
  return fc !== undefined && fc.shape.length === 2 && fc.shape[0] !== root.config.numClasses &&
    fc.shape[1] === root.featureSize;
}

/**
 * Loads a torchvision ResNet checkpoint saved as safetensors (`safetensors.torch.save_file(
 * model.state_dict(), FILE)`) into `model`, as it is: every parameter and running statistic by
 * name, F32 or F64, `num_batches_tracked` ignored. When the file's `fc` has another class count,
 * `fc` keeps the model's own init (said by the result). A file that does not fit otherwise is a
 * {@linkcode UserError} listing the {@linkcode pretrainedProblems}.
 */
export async function loadPretrained(
  model: Model<TorchvisionResNet>,
  path: string,
): Promise<PretrainedLoad> {
  return await applyPretrained(model, await readPretrainedFile(path), path);
}

/**
 * The decoded safetensors file `path` of `--pretrained`: a {@linkcode UserError} naming it when
 * it does not exist, cannot be read or is not a safetensors file. Checks nothing else.
 */
export async function readPretrainedFile(path: string): Promise<SafetensorsFile> {
  const fail = (what: string, cause: unknown): never => {
    throw new UserError(`--pretrained ${path} ${what}`, {
      file: path,
      flag: "--pretrained",
      hint: "pass a torchvision ResNet state_dict saved with safetensors.torch.save_file",
      cause,
    });
  };
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) fail("does not exist", e);
    return fail(`cannot be read (${describeError(e)})`, e);
  }
  try {
    return decodeSafetensors(bytes);
  } catch (e) {
    return fail(`is not a readable safetensors file (${(e as Error).message})`, e);
  }
}

/**
 * {@linkcode loadPretrained} of an already decoded file (`path` names it in messages): checks it
 * with {@linkcode checkPretrained}, then copies its values into `model`.
 */
export async function applyPretrained(
  model: Model<TorchvisionResNet>,
  file: SafetensorsFile,
  path: string,
): Promise<PretrainedLoad> {
  const { root } = model;
  throwIfProblems(problemsFor(file, root, model.specs), path, root.config.depth, root.config.width);
  const reset = keepsOwnFc(file, root);
  const values = new Map<string, Float32Array>();
  let loaded = 0;
  for (const s of [...model.specs.params, ...model.specs.buffers]) {
    if (reset && (s.name === "fc.weight" || s.name === "fc.bias")) {
      // the model keeps its own classifier: read back just these two
      values.set(s.name, await model.params.get(s.name).read(model.gpu));
      continue;
    }
    const t = file.tensors.get(s.name)!; // present, of this shape, F32 or F64: checked above
    values.set(s.name, Float32Array.from(t.data as Float32Array | Float64Array));
    loaded++;
  }
  model.loadStateDict(values);
  return { loaded, classifierReset: reset, fileClasses: file.tensors.get("fc.weight")!.shape[0] };
}
