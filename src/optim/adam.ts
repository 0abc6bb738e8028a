/**
 * Adam and AdamW (PyTorch semantics, bias-corrected, no AMSGrad) as one fused kernel over the
 * flat parameter buffer. The step-dependent factors are computed on the host in float64 and
 * reach the kernel through a {@linkcode StepValues} slot, so they create no uniforms.
 */
import type { Gpu } from "../gpu/runtime.ts";
import { grid1d } from "../gpu/runtime.ts";
import { FlatTensors } from "../nn/params.ts";
import type { FlatLayout } from "../nn/params.ts";
import { adamExemptKernel, adamKernel } from "../../shaders/optim.ts";
import type { Optimizer } from "./optimizer.ts";
import { type DecayExemption, exemptRanges } from "./sgd.ts";
import { StepValues } from "./step_values.ts";

/**
 * Options of {@linkcode Adam}; the learning rate comes with each step.
 *
 * @category Core
 */
export interface AdamConfig {
  /** Decay of the first-moment average; default 0.9. */
  beta1?: number;
  /** Decay of the second-moment average; default 0.999. */
  beta2?: number;
  /** Added to the denominator; default 1e-8. */
  eps?: number;
  /** Weight decay; default 0 (Adam), or 0.01 when `decoupled` (PyTorch's AdamW default). */
  weightDecay?: number;
  /** AdamW: decay the weights directly (p *= 1 - lr * wd) instead of adding wd * p to g. */
  decoupled?: boolean;
  /**
   * Parameters that take no weight decay (PyTorch's param group with `weight_decay: 0`), by
   * full name, as Sgd's `decayExempt`; default none. Biases and batch-norm weights, the usual
   * choice, are the parameters of one dimension:
   * `model.specs.params.filter((s) => s.shape.length === 1).map((s) => s.name)`.
   */
  decayExempt?: readonly string[];
}

/**
 * The options of an {@linkcode Adam}: defaults filled in, `decayExempt` as given.
 *
 * @category Core
 */
export type AdamSettings =
  & Readonly<Required<Omit<AdamConfig, "decayExempt">>>
  & Pick<AdamConfig, "decayExempt">;

/** Throws a RangeError naming the first option of `c` that is out of range. */
function checkConfig(c: AdamSettings): void {
  const bad = (what: string, v: unknown, expected: string) => {
    throw new RangeError(`Adam: ${what} = ${v}, expected ${expected}`);
  };
  if (!(c.beta1 >= 0 && c.beta1 < 1)) bad("beta1", c.beta1, "a number in [0, 1)");
  if (!(c.beta2 >= 0 && c.beta2 < 1)) bad("beta2", c.beta2, "a number in [0, 1)");
  if (!(c.eps >= 0 && Number.isFinite(c.eps))) bad("eps", c.eps, "a finite number >= 0");
  if (!(c.weightDecay >= 0 && Number.isFinite(c.weightDecay))) {
    bad("weightDecay", c.weightDecay, "a finite number >= 0");
  }
  if (typeof c.decoupled !== "boolean") bad("decoupled", c.decoupled, "true or false");
}

/**
 * Adam (or AdamW with `decoupled`) over one flat parameter layout.
 *
 * @category Core
 */
export class Adam implements Optimizer {
  /** "adam" or "adamw". */
  readonly name: string;
  /** The options with their defaults filled in (`decayExempt` only when given). */
  readonly config: AdamSettings;
  /** First-moment averages (PyTorch `exp_avg`), zero at construction. */
  readonly expAvg: FlatTensors;
  /** Second-moment averages (PyTorch `exp_avg_sq`), zero at construction. */
  readonly expAvgSq: FlatTensors;
  readonly #gpu: Gpu;
  readonly #hyper: StepValues;
  readonly #exempt: DecayExemption | undefined;
  #step = 0;

  /**
   * Allocates the two moment buffers for parameters of `layout` (and the index ranges of
   * `config.decayExempt`); throws a RangeError naming an option out of range, an Error naming
   * an unknown parameter.
   */
  constructor(gpu: Gpu, layout: FlatLayout, config: AdamConfig = {}) {
    const decoupled = config.decoupled ?? false;
    this.config = {
      beta1: config.beta1 ?? 0.9,
      beta2: config.beta2 ?? 0.999,
      eps: config.eps ?? 1e-8,
      weightDecay: config.weightDecay ?? (decoupled ? 0.01 : 0),
      decoupled,
      ...(config.decayExempt ? { decayExempt: config.decayExempt } : {}),
    };
    checkConfig(this.config);
    this.#exempt = exemptRanges(gpu, layout, this.config.decayExempt ?? [], "Adam");
    this.name = decoupled ? "adamw" : "adam";
    this.#gpu = gpu;
    this.expAvg = new FlatTensors(gpu, layout, false);
    this.expAvgSq = new FlatTensors(gpu, layout, false);
    this.expAvg.clear();
    this.expAvgSq.clear();
    this.#hyper = new StepValues(gpu, 3);
  }

  /** Steps taken so far (PyTorch's `state["step"]`). */
  get stepCount(): number {
    return this.#step;
  }

  /** One fused update of every parameter: step t = stepCount + 1. */
  step(params: FlatTensors, grads: FlatTensors, lr: number): void {
    const c = this.config;
    const t = ++this.#step;
    const stepSize = lr / (1 - c.beta1 ** t);
    const bc2Sqrt = Math.sqrt(1 - c.beta2 ** t);
    const n = params.layout.length;
    const bound = [
      grads.all,
      params.all,
      this.expAvg.all,
      this.expAvgSq.all,
      this.#hyper.set([stepSize, bc2Sqrt, 1 - lr * c.weightDecay]),
    ];
    const uniforms = {
      n,
      decoupled: c.decoupled ? 1 : 0,
      beta1: c.beta1,
      beta2: c.beta2,
      omb1: 1 - c.beta1,
      omb2: 1 - c.beta2,
      eps: c.eps,
      wd: c.weightDecay,
    };
    const grid = grid1d(Math.ceil(n / 256));
    const exempt = this.#exempt;
    if (!exempt) adamKernel.dispatch(this.#gpu, bound, uniforms, grid);
    else {
      adamExemptKernel.dispatch(
        this.#gpu,
        [...bound, exempt.ranges],
        { ...uniforms, ranges: exempt.count },
        grid,
      );
    }
  }

  /** `optimizer.exp_avg.<name>` and `optimizer.exp_avg_sq.<name>`. */
  stateBuffers(): Map<string, FlatTensors> {
    return new Map([
      ["optimizer.exp_avg.", this.expAvg],
      ["optimizer.exp_avg_sq.", this.expAvgSq],
    ]);
  }

  /** `{ step }`: the bias corrections depend on it. */
  scalars(): Record<string, number> {
    return { step: this.#step };
  }

  /** Restores the step count. */
  loadScalars(values: Record<string, number>): void {
    const t = values.step;
    if (!Number.isInteger(t) || t < 0) {
      throw new Error(`Adam: checkpoint scalar "step" must be an integer >= 0, got ${t}`);
    }
    this.#step = t;
  }

  /** Frees the moment buffers (after submitting recorded work, which may still use them). */
  destroy(): void {
    this.#gpu.submit();
    this.expAvg.destroy();
    this.expAvgSq.destroy();
    this.#hyper.destroy();
    if (this.#exempt) this.#gpu.destroy(this.#exempt.ranges.buffer);
  }
}
