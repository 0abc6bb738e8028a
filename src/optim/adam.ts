/**
 * Adam and AdamW (PyTorch semantics, bias-corrected, no AMSGrad) as one fused kernel over the
 * flat parameter buffer. The step-dependent factors are computed on the host in float64 and
 * reach the kernel through a {@linkcode StepValues} slot, so they create no uniforms.
 */
import type { Gpu } from "../gpu/runtime.ts";
import { grid1d } from "../gpu/runtime.ts";
import { FlatTensors } from "../nn/params.ts";
import type { FlatLayout } from "../nn/params.ts";
import { adamKernel } from "../../shaders/optim.ts";
import type { Optimizer } from "./optimizer.ts";
import { StepValues } from "./step_values.ts";

/** Options of {@linkcode Adam}; the learning rate comes with each step. */
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
}

function checkConfig(c: Required<AdamConfig>): void {
  const bad = (what: string, v: number) => {
    throw new Error(`Adam: ${what} must be ${v}`);
  };
  if (!(c.beta1 >= 0 && c.beta1 < 1)) bad(`beta1 in [0, 1), got`, c.beta1);
  if (!(c.beta2 >= 0 && c.beta2 < 1)) bad(`beta2 in [0, 1), got`, c.beta2);
  if (!(c.eps >= 0)) bad(`eps >= 0, got`, c.eps);
  if (!(c.weightDecay >= 0)) bad(`weightDecay >= 0, got`, c.weightDecay);
}

/** Adam (or AdamW with `decoupled`) over one flat parameter layout. */
export class Adam implements Optimizer {
  /** "adam" or "adamw". */
  readonly name: string;
  /** The options with their defaults filled in. */
  readonly config: Readonly<Required<AdamConfig>>;
  /** First-moment averages (PyTorch `exp_avg`), zero at construction. */
  readonly expAvg: FlatTensors;
  /** Second-moment averages (PyTorch `exp_avg_sq`), zero at construction. */
  readonly expAvgSq: FlatTensors;
  readonly #gpu: Gpu;
  readonly #hyper: StepValues;
  #step = 0;

  /** Allocates the two moment buffers for parameters of `layout`. */
  constructor(gpu: Gpu, layout: FlatLayout, config: AdamConfig = {}) {
    const decoupled = config.decoupled ?? false;
    this.config = {
      beta1: config.beta1 ?? 0.9,
      beta2: config.beta2 ?? 0.999,
      eps: config.eps ?? 1e-8,
      weightDecay: config.weightDecay ?? (decoupled ? 0.01 : 0),
      decoupled,
    };
    checkConfig(this.config);
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
    adamKernel.dispatch(
      this.#gpu,
      [
        grads.all,
        params.all,
        this.expAvg.all,
        this.expAvgSq.all,
        this.#hyper.set([stepSize, bc2Sqrt, 1 - lr * c.weightDecay]),
      ],
      {
        n,
        decoupled: c.decoupled ? 1 : 0,
        beta1: c.beta1,
        beta2: c.beta2,
        omb1: 1 - c.beta1,
        omb2: 1 - c.beta2,
        eps: c.eps,
        wd: c.weightDecay,
      },
      grid1d(Math.ceil(n / 256)),
    );
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
  }
}
