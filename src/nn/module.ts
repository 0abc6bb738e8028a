/**
 * The module contract: a module declares its parameters and buffers under local names, its
 * children under names that prefix theirs (a child `layer1.0` of a Sequential contributes
 * `layer1.0.conv1.weight`: PyTorch's state_dict names), draws its own initial values from a
 * seeded {@linkcode Rng}, and computes a forward pass over tensors that a {@linkcode ParamScope}
 * finds by name in flat buffers. A module holds no GPU state: the same module runs over the real
 * parameters and over look-ahead ones of the same layout.
 */
import type { Ctx } from "../autograd/tape.ts";
import type { Rng } from "../random.ts";
import type { Tensor } from "../tensor.ts";
import type { BufferView } from "../gpu/runtime.ts";
import type { FlatTensors, ParamSpec } from "./params.ts";

/**
 * Randomness of one forward pass for random layers (dropout): a u32 seed on the GPU that the
 * step engine rewrites every step (derived from the run's seed and the step index, so a resumed
 * run draws the same masks), and the pass's stream (the batch pass and the meta step's dev pass
 * differ). Each layer mixes in its own name.
 */
export interface Noise {
  /** One u32 value, the step's seed. */
  seed: BufferView;
  /** Stream of this pass (0: the batch pass). */
  stream: number;
}

/** Behaviour of one forward pass. */
export interface ForwardMode {
  /**
   * "train": batch statistics in batch norm, random layers active; "eval": running statistics,
   * random layers are the identity.
   */
  bn: "train" | "eval";
  /** Train-mode passes that may update running statistics (only the real update pass). */
  updateRunningStats: boolean;
  /** Randomness of random layers; a train-mode pass through a Dropout needs it. */
  noise?: Noise;
}

/** Train mode that updates running statistics: the pass of a training step. */
export const TRAIN: ForwardMode = { bn: "train", updateRunningStats: true };
/** Batch statistics without updating running statistics (look-ahead and dev passes). */
export const TRAIN_NO_UPDATE: ForwardMode = { bn: "train", updateRunningStats: false };
/** Eval mode: running statistics, nothing updated. */
export const EVAL: ForwardMode = { bn: "eval", updateRunningStats: false };

/** Parameter and buffer tensors by name, under a prefix, over flat buffers. */
export class ParamScope {
  /** Flat parameters (the real ones or look-ahead ones). */
  readonly params: FlatTensors;
  /** Flat buffers (running statistics); null for a model without buffers. */
  readonly buffers: FlatTensors | null;
  /** Prefix of every name looked up, with its trailing dot ("" at the root). */
  readonly prefix: string;
  readonly #children = new Map<string, ParamScope>();

  /** A scope over `params` and `buffers` at `prefix`. */
  constructor(params: FlatTensors, buffers: FlatTensors | null, prefix = "") {
    this.params = params;
    this.buffers = buffers;
    this.prefix = prefix;
  }

  /** The parameter `prefix + name`. */
  param(name: string): Tensor {
    return this.params.get(this.prefix + name);
  }

  /** The buffer `prefix + name`. */
  buffer(name: string): Tensor {
    if (!this.buffers) throw new Error(`no buffers for ${this.prefix + name}`);
    return this.buffers.get(this.prefix + name);
  }

  /** The scope of child `name` (cached, so a warm forward allocates nothing new). */
  child(name: string): ParamScope {
    let c = this.#children.get(name);
    if (!c) {
      c = new ParamScope(this.params, this.buffers, `${this.prefix}${name}.`);
      this.#children.set(name, c);
    }
    return c;
  }
}

/** A layer or a network: named parameters, buffers and children, init, and forward. */
export abstract class Module {
  /** Own trainable parameters, local names, in state_dict order. */
  params(): ParamSpec[] {
    return [];
  }

  /** Own buffers (not trained, e.g. running statistics), local names. */
  buffers(): ParamSpec[] {
    return [];
  }

  /** Named children, in state_dict order. */
  children(): [string, Module][] {
    return [];
  }

  /**
   * Initial values of the own parameters and buffers by local name. Draws from `rng` in
   * parameter order; called once per module in state_dict order.
   */
  init(_rng: Rng): Map<string, Float32Array> {
    return new Map();
  }

  /** The output of `x`, reading parameters and buffers through `p` (scoped to this module). */
  abstract forward(ctx: Ctx, x: Tensor, p: ParamScope, mode: ForwardMode): Tensor;
}

/** Every parameter and buffer of `root` with its full (prefixed) name, in state_dict order. */
export function moduleSpecs(root: Module): { params: ParamSpec[]; buffers: ParamSpec[] } {
  const params: ParamSpec[] = [];
  const buffers: ParamSpec[] = [];
  walk(root, "", (m, prefix) => {
    for (const s of m.params()) params.push({ name: prefix + s.name, shape: s.shape });
    for (const s of m.buffers()) buffers.push({ name: prefix + s.name, shape: s.shape });
  });
  return { params, buffers };
}

/** Initial values of every parameter and buffer of `root` (full names), drawn from `rng`. */
export function moduleInit(root: Module, rng: Rng): Map<string, Float32Array> {
  const values = new Map<string, Float32Array>();
  walk(root, "", (m, prefix) => {
    for (const [k, v] of m.init(rng)) values.set(prefix + k, v);
  });
  return values;
}

function walk(m: Module, prefix: string, visit: (m: Module, prefix: string) => void): void {
  visit(m, prefix);
  for (const [name, child] of m.children()) walk(child, `${prefix}${name}.`, visit);
}

/**
 * Throws a RangeError naming `owner` and `option` unless `value` is an integer >= `min`
 * (default 1): the check of every size a layer or engine is built with, so a zero or fractional
 * size fails at construction instead of as a zero-size GPU buffer or a wrong shape later.
 */
export function checkSize(owner: string, option: string, value: number, min = 1): void {
  if (!Number.isInteger(value) || value < min) {
    throw new RangeError(`${owner}: ${option} = ${value}, expected an integer >= ${min}`);
  }
}

/** The name of the layer at scope `p` in messages: its state_dict prefix, or "(root)". */
export function layerName(p: ParamScope): string {
  return p.prefix ? JSON.stringify(p.prefix.slice(0, -1)) : "(root)";
}
