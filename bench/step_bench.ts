/**
 * `deno bench` view of training steps at batch 100 (3x32x32 inputs, 10 classes): plain and meta
 * steps of ResNet-8 and ResNet-32, one GPU sync per step. A ResNet-32 meta step takes tens of
 * seconds on a 2-core software adapter, so iteration counts are minimal. Images/s and the meta
 * step's cost over a plain step are printed at the end; `deno task bench` (scripts/bench.ts)
 * measures the same with medians and writes the results files.
 *
 *   DENO_WEBGPU_BACKEND=vulkan deno bench --allow-read bench/step_bench.ts
 */
import { Gpu } from "../src/gpu/runtime.ts";
import { type StepHarness, stepHarness } from "./lib.ts";

const gpu = await Gpu.create();
const harness = new Map<number, StepHarness>();
const times = new Map<string, number[]>();
const BATCH = 100;

for (const depth of [8, 32]) {
  for (const kind of ["plain", "meta"] as const) {
    const name = `ResNet-${depth} ${kind} step (batch ${BATCH})`;
    Deno.bench({
      name,
      group: `ResNet-${depth}`,
      baseline: kind === "plain",
      n: depth <= 8 ? 3 : 1,
      warmup: 1,
      async fn(b) {
        let h = harness.get(depth);
        if (!h) harness.set(depth, h = stepHarness(gpu, depth, BATCH));
        b.start();
        const t = performance.now();
        if (kind === "plain") h.plain();
        else h.meta();
        await gpu.sync();
        const ms = performance.now() - t;
        b.end();
        let list = times.get(name);
        if (!list) times.set(name, list = []);
        list.push(ms);
      },
    });
  }
}

globalThis.addEventListener("unload", () => {
  const med = (name: string) => {
    const t = [...(times.get(name) ?? [])].sort((a, b) => a - b);
    return t.length ? t[t.length >> 1] : NaN;
  };
  console.log(`\n${gpu.adapter.description}: images/s (median iteration, warm-up included)`);
  for (const depth of [8, 32]) {
    const plain = med(`ResNet-${depth} plain step (batch ${BATCH})`);
    const meta = med(`ResNet-${depth} meta step (batch ${BATCH})`);
    console.log(
      `  ResNet-${depth}: plain ${(BATCH * 1000 / plain).toFixed(1)}, meta ${
        (BATCH * 1000 / meta).toFixed(1)
      } images/s; meta step ${(meta / plain).toFixed(2)}x a plain step`,
    );
  }
  for (const h of harness.values()) h.dispose();
});
