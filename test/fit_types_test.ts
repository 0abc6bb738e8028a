/**
 * The types of `fit` as a mod.ts user sees them, checked by the type checker (`deno test` and
 * `deno task check` type-check this file; a wrong type fails them): the record of each epoch
 * carries `evaluate`'s return type into the history and the hooks without annotations, a
 * `hooks.epochEnd` record replaces it, and the learning rate is `lr` or `schedule`, not both.
 * The one runtime test asserts what the types promise on a real run.
 */
import assert from "node:assert/strict";
import {
  ArraySource,
  constantLr,
  crossEntropy,
  type EpochEnd,
  type EvalMetrics,
  evaluateClassifier,
  fit,
  Linear,
  Model,
  Sgd,
  StepEngine,
} from "../mod.ts";
import { gpuTest } from "./gpu_harness.ts";

/** true when A and B are the same type (not merely assignable). */
type Same<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true
  : false;
/** Compiles only for `true`. */
function sameType<_ extends true>(): void {}

/** Never called: its body only has to type-check. */
async function typed(engine: StepEngine, data: ArraySource, model: Model) {
  const evaluate = () =>
    evaluateClassifier(model, new Float32Array(4), [0], {
      batch: 1,
      inputShape: [4],
      numClasses: 3,
    });
  // evaluate's type reaches the history and the hooks' records
  const r = await fit({
    engine,
    data,
    epochs: 1,
    lr: () => 0.1,
    evaluate,
    hooks: {
      saved: (h) => {
        sameType<Same<typeof h, EpochEnd<EvalMetrics>>>();
        const top1: number | undefined = h.metrics?.top1Error;
        return void top1;
      },
    },
  });
  sameType<Same<(typeof r.history)[number]["metrics"], EvalMetrics | null>>();
  // a record of the client's own replaces EpochEnd
  const own = await fit({
    engine,
    data,
    epochs: 1,
    schedule: constantLr(0.1),
    evaluate,
    hooks: { epochEnd: (e) => ({ epoch: e.epoch, error: e.metrics?.top1Error ?? null }) },
  });
  sameType<Same<(typeof own.history)[number], { epoch: number; error: number | null }>>();
  // without evaluate, the metrics are unknown
  const bare = await fit({ engine, data, epochs: 1, lr: () => 0.1 });
  sameType<Same<(typeof bare.history)[number], EpochEnd<unknown>>>();
  // @ts-expect-error: the learning rate is lr or schedule, not both
  await fit({ engine, data, epochs: 1, lr: () => 0.1, schedule: constantLr(0.1) });
}

gpuTest("fit types: the history holds evaluate's metrics", async (gpu) => {
  const model = new Model(gpu, new Linear(4, 3), 0);
  const optimizer = new Sgd(gpu, model.paramLayout);
  const engine = new StepEngine(model, { loss: crossEntropy, optimizer, batch: 2, input: [4] });
  const inputs = Float32Array.from({ length: 16 }, (_, i) => i / 16);
  const targets = Uint32Array.from([0, 1, 2, 0]);
  const data = new ArraySource({ engine, inputs, targets, seed: 0 });
  const o = { batch: 2, inputShape: [4], numClasses: 3 };
  const r = await fit({
    engine,
    data,
    epochs: 1,
    lr: () => 0.1,
    evaluate: () => evaluateClassifier(model, inputs, targets, o),
  });
  const metrics = r.history[0].metrics!;
  assert.equal(metrics.count, 4);
  assert.equal(metrics.perClassAccuracy.length, 3);
  assert.equal(typeof typed, "function");
  engine.destroy();
  optimizer.destroy();
  model.destroy();
});
