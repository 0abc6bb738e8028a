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
import { type SgdOptions, sgdStep } from "./sgd.ts";
import { StepValues } from "./step_values.ts";
import { Adam, type AdamConfig } from "./adam.ts";

/** An optimizer over one flat parameter layout. */
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

/** Options of {@linkcode Sgd}: momentum, Nesterov and L2 weight decay (PyTorch semantics). */
export type SgdConfig = Omit<SgdOptions, "lr">;

/** SGD with momentum (dampening 0), optional Nesterov and weight decay, as PyTorch. */
export class Sgd implements Optimizer {
  /** "sgd". */
  readonly name = "sgd";
  /** Momentum, Nesterov and weight decay. */
  readonly config: SgdConfig;
  /** The momentum buffer, zero at construction. */
  readonly momentum: FlatTensors;
  readonly #gpu: Gpu;
  readonly #lr: StepValues;

  /** Allocates the momentum buffer for parameters of `layout`. */
  constructor(gpu: Gpu, layout: FlatLayout, config: SgdConfig) {
    this.#gpu = gpu;
    this.config = config;
    this.momentum = new FlatTensors(gpu, layout, false);
    this.momentum.clear();
    this.#lr = new StepValues(gpu, 1);
  }

  /** One fused update of every parameter. */
  step(params: FlatTensors, grads: FlatTensors, lr: number): void {
    sgdStep(this.#gpu, params.all, grads.all, this.momentum.all, params.layout.length, {
      lr,
      ...this.config,
    }, this.#lr);
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
  }
}

/** Which optimizer {@linkcode createOptimizer} makes, with its options. */
export type OptimizerSpec =
  | ({ kind: "sgd" } & SgdConfig)
  | ({ kind: "adam" } & Omit<AdamConfig, "decoupled">)
  | ({ kind: "adamw" } & Omit<AdamConfig, "decoupled">);

/** An optimizer over `layout` from a spec: SGD, Adam, or AdamW (Adam with decoupled decay). */
export function createOptimizer(gpu: Gpu, layout: FlatLayout, spec: OptimizerSpec): Optimizer {
  switch (spec.kind) {
    case "sgd":
      return new Sgd(gpu, layout, {
        momentum: spec.momentum,
        weightDecay: spec.weightDecay,
        nesterov: spec.nesterov,
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
