/**
 * The meta step's dev loss (`--dev-loss`): for every training loss and option, the per-example
 * dev losses, their gradient and their JVP against the float64 reference of the loss the option
 * names (and central differences of it), and the option wired into a run: with cross-entropy
 * training the three options are the same loss, with LDAM's cosine head they are not.
 */
import assert from "node:assert/strict";
import { Tensor } from "../src/tensor.ts";
import { Gpu } from "../src/gpu/runtime.ts";
import { DEV_LOSSES, type DevLossName, type LossName } from "../src/train/config.ts";
import { devLossFn, devLossOptions, LDAM_SCALE } from "../src/train/devloss.ts";
import { ldamMargins, train, type TrainOptions } from "../src/train/mod.ts";
import * as ref from "./reference/mod.ts";
import { f32, gpuTest } from "./gpu_harness.ts";
import { checkOp, randn, T } from "./op_check.ts";
import { syntheticData } from "./train_fixtures.ts";

/** What each option must compute, written out independently of src/train/devloss.ts. */
function expected(
  dev: DevLossName,
  loss: LossName,
  margins: number[],
): { scale?: number; gamma?: number; margins?: number[] | null } {
  if (dev === "ce") return loss === "ldam" ? { scale: 30 } : {};
  if (dev === "ce-raw") return {};
  if (loss === "focal") return { gamma: 2 };
  if (loss === "ldam") return { scale: 30, margins };
  return {};
}

for (const loss of ["ce", "focal", "ldam"] as const) {
  for (const dev of DEV_LOSSES) {
    gpuTest(`dev loss ${dev} with ${loss} training vs the float64 reference`, async (gpu) => {
      const B = 13, C = 10;
      const rng = new ref.Rng(700 + B + dev.length * 7 + loss.length);
      const cosine = loss === "ldam";
      // the cosine head's outputs lie in [-1, 1]; plain logits are N(0, 2)
      const z = cosine ? f32(rng.uniformArray(B * C, -1, 1)) : randn(rng, B * C, 0, 2);
      const labels = rng.intArray(B, C);
      const margins = Array.from(f32(ldamMargins([500, 300, 180, 100, 60, 35, 20, 12, 8, 5])));
      const marginsT = Tensor.from(gpu, margins, [C]);
      const trainOptions = loss === "ce"
        ? {}
        : loss === "focal"
        ? { gamma: 2 }
        : { scale: LDAM_SCALE, margins: marginsT };
      const options = devLossOptions(dev, trainOptions, cosine);
      const want = expected(dev, loss, margins);
      const labelsT = Tensor.from(gpu, labels, [B], "u32");
      const fn = devLossFn(() => options);
      await checkOp(gpu, rng, {
        label: `dev loss ${dev}/${loss}`,
        shapes: [[B, C]],
        inputs: [z],
        run: (ctx, [zt]) => fn(ctx, zt, labelsT),
        f: (v) => ref.lossForward(T([B, C], v[0]), labels, want).losses,
        vjp: (
          v,
          r,
        ) => [ref.lossBackward(ref.lossForward(T([B, C], v[0]), labels, want).cache, r).data],
        jvp: (v, t) =>
          ref.lossJvp(
            ref.lossForward(T([B, C], v[0]), labels, want).cache,
            t[0] && T([B, C], t[0]),
          ),
      });
      // the option's point: on cosines, unscaled cross-entropy is nearly flat
      if (dev === "ce-raw" && cosine) {
        const scaled = ref.lossForward(T([B, C], z), labels, { scale: 30 }).losses;
        const raw = ref.lossForward(T([B, C], z), labels, {}).losses;
        const spread = (xs: Float64Array) => Math.max(...xs) - Math.min(...xs);
        assert.ok(spread(raw) * 10 < spread(scaled), "raw cosine CE barely separates examples");
      }
      labelsT.release(gpu);
      marginsT.release(gpu);
    });
  }
}

Deno.test({
  name: "dev loss in a run: the same loss for CE training, a different one for LDAM's cosines",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const gpu = await Gpu.create();
    try {
      const base: TrainOptions = {
        data: syntheticData(),
        gpu,
        dataset: "mnist",
        method: "meta",
        imbalance: 10,
        maxPerClass: 30,
        testPerClass: 5,
        batch: 16,
        epochs: 2,
        metaStart: 1,
        lrDecayEpochs: [],
        tau: 1,
        progress: null,
      };
      const eps = async (loss: LossName, devLoss: DevLossName) => {
        const out = await Deno.makeTempDir({ prefix: "tg-devloss-" });
        try {
          const s = await train({ ...base, loss, devLoss, out });
          assert.equal(s.config.devLoss, devLoss);
          return s.meta!.meanEps;
        } finally {
          await Deno.remove(out, { recursive: true });
        }
      };
      // a linear head: "ce", "ce-raw" and "train" are all plain cross-entropy, bit for bit
      const ce = await eps("ce", "ce");
      assert.deepEqual(await eps("ce", "ce-raw"), ce);
      assert.deepEqual(await eps("ce", "train"), ce);
      // the cosine head: s = 30 (and the margins of "train") change the meta-gradient
      const scaled = await eps("ldam", "ce");
      const raw = await eps("ldam", "ce-raw");
      const ldam = await eps("ldam", "train");
      assert.notDeepEqual(raw, scaled);
      assert.notDeepEqual(ldam, scaled);
      const size = (xs: (number | null)[]) => xs.reduce((a: number, x) => a + Math.abs(x ?? 0), 0);
      assert.ok(size(scaled) > size(raw), "the scaled dev loss gives the larger signal");
    } finally {
      gpu.dispose();
    }
  },
});
