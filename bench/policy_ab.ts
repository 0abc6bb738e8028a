/**
 * A/B of two GEMM policies in one process, measurements interleaved case by case so that other
 * load on the machine falls on both alike: the adapter's default policy ("A") against a policy
 * given as JSON ("B"). Prints GFLOP per CPU-second ("c", robust to other processes) and wall
 * GFLOP/s ("w") for every GEMM-family case, then ResNet-8 / ResNet-32 plain-step times.
 *
 *   DENO_WEBGPU_BACKEND=vulkan deno run --allow-read --allow-env bench/policy_ab.ts \
 *     --b='{"tiles":[{"wx":8,"wy":4,"tm":16,"tn":16},{"wx":8,"wy":2,"tm":16,"tn":16},
 *           {"wx":8,"wy":1,"tm":16,"tn":16}],"minWorkgroups":8,"minKPerSplit":256}' [--no-steps]
 */
import { Gpu } from "../src/gpu/runtime.ts";
import { defaultGemmPolicy, type GemmPolicy, setGemmPolicy } from "../src/ops/gemm.ts";
import { gemmCases, median, processCpuMs, stepHarness, timeGpu } from "./lib.ts";

const arg = Deno.args.find((a) => a.startsWith("--b="));
if (!arg) {
  console.log("usage: bench/policy_ab.ts --b='<GemmPolicy JSON>' [--no-steps] [--no-kernels]");
  Deno.exit(2);
}
const gpu = await Gpu.create();
const variants: [string, GemmPolicy][] = [
  ["A", defaultGemmPolicy(gpu)],
  ["B", JSON.parse(arg.slice(4)) as GemmPolicy],
];
console.log(
  `A = default: ${JSON.stringify(variants[0][1])}\nB = ${JSON.stringify(variants[1][1])}`,
);

if (!Deno.args.includes("--no-kernels")) {
  for (const c of gemmCases()) {
    const p = c.prepare(gpu);
    const out: string[] = [];
    for (const [name, policy] of variants) {
      setGemmPolicy(gpu, policy);
      const r = await timeGpu(gpu, p.run, { runs: 3, minSampleMs: 200, maxReps: 8 });
      out.push(
        `${name} ${(c.flops / r.cpuMs / 1e6).toFixed(2)}c/${
          (c.flops / r.medianMs / 1e6).toFixed(2)
        }w`,
      );
    }
    p.dispose();
    console.log(c.name.replace(" (batch 100)", "").padEnd(30), out.join("  "));
  }
}
if (!Deno.args.includes("--no-steps")) {
  for (const depth of [8, 32]) {
    const h = stepHarness(gpu, depth, 100);
    const res = new Map(variants.map(([n]) => [n, { cpu: [] as number[], wall: [] as number[] }]));
    for (const [, policy] of variants) {
      setGemmPolicy(gpu, policy);
      h.plain(); // builds this policy's pipelines
      await gpu.sync();
    }
    for (let r = 0; r < (depth <= 8 ? 3 : 2); r++) {
      for (const [name, policy] of variants) {
        setGemmPolicy(gpu, policy);
        const c0 = processCpuMs();
        const t = performance.now();
        h.plain();
        await gpu.sync();
        res.get(name)!.wall.push(performance.now() - t);
        res.get(name)!.cpu.push(processCpuMs() - c0);
      }
    }
    console.log(
      `ResNet-${depth} plain step:`,
      [...res].map(([n, v]) =>
        `${n} CPU ${median(v.cpu).toFixed(0)} ms, wall ${median(v.wall).toFixed(0)} ms`
      ).join(" | "),
    );
    h.dispose();
    gpu.trim();
  }
}
setGemmPolicy(gpu, defaultGemmPolicy(gpu));
gpu.dispose();
