/**
 * The optimizer contract over the flat parameter layout: an optimizer owns its state buffers
 * (same layout as the parameters), updates every parameter with one fused kernel, and exposes
 * its state under PyTorch-like names for checkpoints.
 *
 * Values that change from step to step (the learning rate of a schedule, Adam's bias
 * corrections) are written into a small storage buffer each step rather than passed as
 * uniforms, so a schedule that changes the learning rate every step still creates no GPU
 * objects in the steady state.
 */
import type { Gpu } from "../gpu/runtime.ts";
import { FlatTensors } from "../nn/params.ts";
import type { FlatLayout } from "../nn/params.ts";
import { type DecayExemption, exemptRanges, sgdStep } from "./sgd.ts";
import { StepValues } from "./step_values.ts";
import { Adam, type AdamConfig } from "./adam.ts";

/**
 * An optimizer over one flat parameter layout.
 *
 * @category Core
 */
export interface Optimizer {
  /** Short name for logs and checkpoints ("sgd", "adam", "adamw"). */
  readonly name: string;
  /**
   * Records one update of `params` from `grads` (both laid out by the optimizer's layout) at
   * learning rate `lr`. Creates no GPU objects after the first call.
   */
  step(params: FlatTensors, grads: FlatTensors, lr: number): void;
  /**
   * State buffers by checkpoint prefix (for example `optimizer.momentum.`), each laid out like
   * the parameters; entries are saved as `prefix + parameter name`.
   */
  stateBuffers(): Map<string, FlatTensors>;
  /** Host-side scalar state (step counts), saved in checkpoint metadata. */
  scalars(): Record<string, number>;
  /** Restores the host-side scalars saved by {@linkcode Optimizer.scalars}. */
  loadScalars(values: Record<string, number>): void;
  /** Frees the state buffers. */
  destroy(): void;
}

/**
 * Options of {@linkcode Sgd}: momentum, Nesterov and L2 weight decay (PyTorch semantics and
 * defaults), and the names of parameters exempt from the decay (e.g. `["linear.bias"]`, as Cui
 * et al.'s sigmoid classifier). The learning rate comes with each step.
 *
 * @category Core
 */
export interface SgdConfig {
  /** Momentum factor, a number >= 0 (dampening 0, as PyTorch); default 0. */
  momentum?: number;
  /** L2 weight decay, a number >= 0, added to the gradient as `weightDecay * param`; default 0. */
  weightDecay?: number;
  /** Use Nesterov momentum; default false. */
  nesterov?: boolean;
  /** Parameters that take no weight decay; default none. */
  decayExempt?: readonly string[];
}

/**
 * The options of an {@linkcode Sgd}: defaults filled in, `decayExempt` as given.
 *
 * @category Core
 */
export type SgdSettings =
  & Readonly<Required<Omit<SgdConfig, "decayExempt">>>
  & Pick<SgdConfig, "decayExempt">;

/** Throws naming the first option of `c` that is out of range. */
function checkSgdConfig(c: SgdSettings): void {
  const bad = (what: string, v: unknown, expected: string) => {
    throw new RangeError(`Sgd: ${what} = ${v}, expected ${expected}`);
  };
  if (!(c.momentum >= 0 && Number.isFinite(c.momentum))) {
    bad("momentum", c.momentum, "a finite number >= 0");
  }
  if (!(c.weightDecay >= 0 && Number.isFinite(c.weightDecay))) {
    bad("weightDecay", c.weightDecay, "a finite number >= 0");
  }
  if (typeof c.nesterov !== "boolean") bad("nesterov", c.nesterov, "true or false");
}

/**
 * SGD with momentum (dampening 0), optional Nesterov and weight decay, as PyTorch.
 *
 * @category Core
 */
export class Sgd implements Optimizer {
  /** "sgd". */
  readonly name = "sgd";
  /** The options with their defaults filled in (`decayExempt` only when given). */
  readonly config: SgdSettings;
  /** The momentum buffer, zero at construction. */
  readonly momentum: FlatTensors;
  readonly #gpu: Gpu;
  readonly #lr: StepValues;
  readonly #exempt: DecayExemption | undefined;

  /**
   * Allocates the momentum buffer for parameters of `layout` (and the index ranges of
   * `config.decayExempt`); throws naming an option out of range or an unknown parameter.
   */
  constructor(gpu: Gpu, layout: FlatLayout, config: SgdConfig = {}) {
    this.config = {
      momentum: config.momentum ?? 0,
      weightDecay: config.weightDecay ?? 0,
      nesterov: config.nesterov ?? false,
      ...(config.decayExempt ? { decayExempt: config.decayExempt } : {}),
    };
    checkSgdConfig(this.config);
    this.#gpu = gpu;
    this.momentum = new FlatTensors(gpu, layout, false);
    this.momentum.clear();
    this.#lr = new StepValues(gpu, 1);
    this.#exempt = exemptRanges(gpu, layout, this.config.decayExempt ?? [], "Sgd");
  }

  /** One fused update of every parameter. */
  step(params: FlatTensors, grads: FlatTensors, lr: number): void {
    const { momentum, weightDecay, nesterov } = this.config;
    sgdStep(
      this.#gpu,
      params.all,
      grads.all,
      this.momentum.all,
      params.layout.length,
      { lr, momentum, weightDecay, nesterov },
      this.#lr,
      this.#exempt,
    );
  }

  /**
   * The same update over the flat range [offset, offset + count) of floats only (a frozen
   * backbone's head), with the same momentum and decay exemptions as {@linkcode step}.
   */
  stepRange(params: FlatTensors, grads: FlatTensors, offset: number, count: number, lr: number) {
    const { momentum, weightDecay, nesterov } = this.config;
    const view = (b: GPUBuffer) => ({ buffer: b, offset: 4 * offset, size: 4 * count });
    sgdStep(
      this.#gpu,
      view(params.buffer),
      view(grads.buffer),
      view(this.momentum.buffer),
      count,
      { lr, momentum, weightDecay, nesterov },
      this.#lr,
      this.#exempt,
      offset,
    );
  }

  /** `optimizer.momentum.<name>`. */
  stateBuffers(): Map<string, FlatTensors> {
    return new Map([["optimizer.momentum.", this.momentum]]);
  }

  /** SGD keeps no host-side state. */
  scalars(): Record<string, number> {
    return {};
  }

  /** Nothing to restore. */
  loadScalars(_values: Record<string, number>): void {}

  /** Frees the momentum buffer (after submitting recorded work, which may still use it). */
  destroy(): void {
    this.#gpu.submit();
    this.momentum.destroy();
    this.#lr.destroy();
    if (this.#exempt) this.#gpu.destroy(this.#exempt.ranges.buffer);
  }
}

/**
 * Which optimizer {@linkcode createOptimizer} makes, with its options.
 *
 * @category Core
 */
export type OptimizerSpec =
  | ({ kind: "sgd" } & SgdConfig)
  | ({ kind: "adam" } & Omit<AdamConfig, "decoupled">)
  | ({ kind: "adamw" } & Omit<AdamConfig, "decoupled">);

/**
 * An optimizer over `layout` from a spec: SGD, Adam, or AdamW (Adam with decoupled decay).
 *
 * @category Core
 */
export function createOptimizer(gpu: Gpu, layout: FlatLayout, spec: OptimizerSpec): Optimizer {
  switch (spec.kind) {
    case "sgd":
      return new Sgd(gpu, layout, {
        momentum: spec.momentum,
        weightDecay: spec.weightDecay,
        nesterov: spec.nesterov,
        decayExempt: spec.decayExempt,
      });
    case "adam":
    case "adamw": {
      const { kind, ...config } = spec;
      return new Adam(gpu, layout, { ...config, decoupled: kind === "adamw" });
    }
    default:
      throw new Error(
        `createOptimizer: unknown kind ${JSON.stringify((spec as { kind: unknown }).kind)}; ` +
          `expected "sgd", "adam" or "adamw"`,
      );
  }
}
