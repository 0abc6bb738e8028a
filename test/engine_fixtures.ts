/**
 * Shared helpers of the engine-API tests (test/engine_api_test.ts, test/engine_api2_test.ts): a
 * small MLP engine, examples with labels, and a temporary folder.
 */
import {
  crossEntropy,
  type Gpu,
  Linear,
  Model,
  type Optimizer,
  ReLU,
  Sequential,
  Sgd,
  StepEngine,
} from "../mod.ts";

/** Input width and classes of the MLP. */
export const D = 6, C = 3;

/** An MLP engine D-8-C with batch `batch` and the optimizer `make` builds. */
export function engineOf(
  gpu: Gpu,
  batch: number,
  make: (m: Model) => Optimizer = (m) => new Sgd(gpu, m.paramLayout, { momentum: 0.9 }),
) {
  const model = new Model(gpu, new Sequential(new Linear(D, 8), new ReLU(), new Linear(8, C)), 1);
  const optimizer = make(model);
  const engine = new StepEngine(model, { loss: crossEntropy, optimizer, batch, input: [D] });
  const destroy = () => {
    engine.destroy();
    optimizer.destroy();
    model.destroy();
  };
  return { model, optimizer, engine, destroy };
}

/** `n` examples of D inputs and labels i % C. */
export function examples(n: number) {
  return {
    inputs: Float32Array.from({ length: n * D }, (_, i) => Math.sin(i * 0.61)),
    targets: Uint32Array.from({ length: n }, (_, i) => i % C),
  };
}

/** Runs `fn` with a fresh temporary folder, removed afterwards. */
export async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
