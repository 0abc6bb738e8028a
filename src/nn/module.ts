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

  /** The parameter `prefix + name`; throws naming it, with a hint, when the model has none. */
  param(name: string): Tensor {
    const full = this.prefix + name;
    const t = this.params.find(full);
    if (!t) throw missingEntry("parameter", full, this.params);
    return t;
  }

  /** The buffer `prefix + name`; throws naming it, with a hint, when the model has none. */
  buffer(name: string): Tensor {
    const full = this.prefix + name;
    const t = this.buffers?.find(full);
    if (!t) throw missingEntry("buffer", full, this.buffers);
    return t;
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

/**
 * The error of a forward that asks for a parameter or buffer the model does not have: most often
 * a child module missing from its parent's `children()` (so the model never declared its
 * parameters), or a `p.child(name)` under another name than `children()` gives it.
 */
function missingEntry(kind: string, name: string, flat: FlatTensors | null): Error {
  const names = flat?.layout.specs.map((s) => s.name) ?? [];
  const shown = names.length > 8 ? [...names.slice(0, 8), "..."] : names;
  const has = names.length
    ? `the model's ${kind}s are ${shown.join(", ")}`
    : `the model has no ${kind}s`;
  return new Error(
    `no ${kind} named ${name} (${has}): is the child listed in children(), under the name ` +
      "its parent's forward passes to p.child()? A module's parameters and buffers exist only " +
      "when the model reaches it through children()",
  );
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

/**
 * Every parameter and buffer of `root` with its full (prefixed) name, in state_dict order.
 * Refuses a tree where two parameters or buffers get one name (children of one parent with the
 * same name) and one module instance with parameters or buffers reached at two paths: each
 * path would get its own copy, silently not the sharing its author meant.
 */
export function moduleSpecs(root: Module): { params: ParamSpec[]; buffers: ParamSpec[] } {
  const params: ParamSpec[] = [];
  const buffers: ParamSpec[] = [];
  const reached = new Map<Module, string>();
  walk(root, "", (m, prefix) => {
    const path = prefix ? JSON.stringify(prefix.slice(0, -1)) : "(root)";
    const first = reached.get(m);
    if (first !== undefined && hasState(m)) throw sharedModuleError(m, first, path);
    reached.set(m, path);
    for (const s of m.params()) params.push({ name: prefix + s.name, shape: s.shape });
    for (const s of m.buffers()) buffers.push({ name: prefix + s.name, shape: s.shape });
  });
  const seen = new Set<string>();
  for (const { name } of [...params, ...buffers]) {
    if (seen.has(name)) {
      throw new Error(
        `two parameters or buffers are named ${name}: give the children of one module ` +
          "distinct names (in Sequential's [name, module] pairs or in children())",
      );
    }
    seen.add(name);
  }
  return { params, buffers };
}

/** Whether `m` or a module below it declares parameters or buffers. */
function hasState(m: Module): boolean {
  return m.params().length > 0 || m.buffers().length > 0 ||
    m.children().some(([, c]) => hasState(c));
}

function sharedModuleError(m: Module, first: string, second: string): Error {
  const kind = m.constructor.name;
  return new Error(
    `the same ${kind} instance is reached at ${first} and ${second}: each place would get its ` +
      `own parameters, not shared ones (sharing parameters between places is not supported); ` +
      `give each place its own instance (new ${kind}(...))`,
  );
}

/** Initial values of every parameter and buffer of `root` (full names), drawn from `rng`. */
export function moduleInit(root: Module, rng: Rng): Map<string, Float32Array> {
  const values = new Map<string, Float32Array>();
  walk(root, "", (m, prefix) => {
    for (const [k, v] of m.init(rng)) values.set(prefix + k, v);
  });
  return values;
}

function walk(
  m: Module,
  prefix: string,
  visit: (m: Module, prefix: string) => void,
  above: Module[] = [],
): void {
  if (above.includes(m)) {
    throw new Error(`module ${JSON.stringify(prefix.slice(0, -1))} contains itself (a cycle)`);
  }
  visit(m, prefix);
  above.push(m);
  for (const [name, child] of m.children()) walk(child, `${prefix}${name}.`, visit, above);
  above.pop();
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
