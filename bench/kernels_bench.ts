/**
 * `deno bench` view of the GEMM-family kernels: matmul 1024^3 and conv forward / dX / dW at every
 * ResNet-32 shape, batch 100, one GPU sync per iteration. Deno reports time per iteration; the
 * GFLOP/s of each case (useful FLOPs / mean time) is printed at the end. `deno task bench`
 * (scripts/bench.ts) measures the same cases with medians and writes the results files.
 *
 *   DENO_WEBGPU_BACKEND=vulkan deno bench --allow-read bench/kernels_bench.ts
 */
import { Gpu } from "../src/gpu/runtime.ts";
import { gemmCases, type PreparedCase } from "./lib.ts";

const gpu = await Gpu.create();
const cases = gemmCases(100);
const prepared = new Map<string, PreparedCase>();
const times = new Map<string, number[]>();

for (const c of cases) {
  Deno.bench({
    name: `${c.name.replace(" (batch 100)", "")} [${(c.flops / 1e9).toFixed(3)} GFLOP]`,
    group: c.kind,
    baseline: c.kind === "conv-fwd" && c.shape.startsWith("16->16"),
    n: 4,
    warmup: 1,
    async fn(b) {
      let p = prepared.get(c.name);
      if (!p) prepared.set(c.name, p = c.prepare(gpu));
      b.start();
      const t = performance.now();
      p.run();
      await gpu.sync();
      const ms = performance.now() - t;
      b.end();
      let list = times.get(c.name);
      if (!list) times.set(c.name, list = []);
      list.push(ms);
    },
  });
}

globalThis.addEventListener("unload", () => {
  const matmul = cases[0];
  const rate = (name: string, flops: number) => {
    const t = times.get(name);
    if (!t?.length) return NaN;
    const sorted = [...t].sort((a, b) => a - b);
    return flops / sorted[sorted.length >> 1] / 1e6;
  };
  const mm = rate(matmul.name, matmul.flops);
  console.log(`\n${gpu.adapter.description}: GFLOP/s (median iteration, warm-up included)`);
  for (const c of cases) {
    const g = rate(c.name, c.flops);
    console.log(
      `  ${c.name.padEnd(38)} ${g.toFixed(2).padStart(7)}  x${(g / mm).toFixed(2)} matmul`,
    );
  }
  for (const p of prepared.values()) p.dispose();
});
