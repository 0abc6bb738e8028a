/**
 * The mistakes a program importing mod.ts can make, each refused with a message that names the
 * option, layer, example or file, before any GPU work where the host can tell:
 *
 * - sizes of layers and engines (zero, fractional) and of SGD's options;
 * - class labels outside the model's classes (given, or learned from the first forward);
 * - inputs of the wrong width for a Linear or Conv2d layer;
 * - run lengths (fractional epochs, a checkpoint of more epochs, an epoch with no steps);
 * - resuming the wrong file: another optimizer's checkpoint, a weights file, a missing tensor;
 * - saving into a folder that does not exist.
 *
 * And the API that replaces the glue: `fit({ schedule })` fills `stepsPerEpoch` from the data.
 */
import assert from "node:assert/strict";
import { Linear, Model, Sgd } from "../mod.ts";
import { gpuTest } from "./gpu_harness.ts";

const D = 6, C = 3;

gpuTest("Sgd: PyTorch's defaults, and out-of-range options named", async (gpu) => {
  const model = new Model(gpu, new Linear(D, C), 0);
  const defaults = new Sgd(gpu, model.paramLayout);
  assert.deepEqual(defaults.config, { momentum: 0, weightDecay: 0, nesterov: false });
  const given = { momentum: 0.9, weightDecay: 5e-4, nesterov: true, decayExempt: ["bias"] };
  const full = new Sgd(gpu, model.paramLayout, given);
  assert.deepEqual(full.config, given);
  assert.throws(
    () => new Sgd(gpu, model.paramLayout, { momentum: -1 }),
    new RangeError("Sgd: momentum = -1, expected a finite number >= 0"),
  );
  assert.throws(
    () => new Sgd(gpu, model.paramLayout, { momentum: 0.9, weightDecay: -5 }),
    /Sgd: weightDecay = -5, expected a finite number >= 0/,
  );
  assert.throws(
    () => new Sgd(gpu, model.paramLayout, { nesterov: "yes" as unknown as boolean }),
    /Sgd: nesterov = yes, expected true or false/,
  );
  // a defaulted SGD steps as the explicit one: p - lr * g from zero momentum, no decay
  const grads = new Model(gpu, new Linear(D, C), 7);
  const p0 = await model.stateDict();
  const g = await grads.stateDict();
  defaults.step(model.params, grads.params, 0.5);
  const p1 = await model.stateDict();
  for (const [name, v] of p1) {
    v.forEach((x, i) => assert.equal(x, Math.fround(p0.get(name)![i] - 0.5 * g.get(name)![i])));
  }
  for (const o of [defaults, full]) o.destroy();
  for (const m of [model, grads]) m.destroy();
});
