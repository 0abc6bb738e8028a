/**
 * The large-scale pipeline beside the step it feeds (`deno task bench --large`): JPEG decode
 * images/s (ImageNet-like 500x375 quality-90 4:2:0 files) on one core and through the worker pool
 * at all cores, the loader to 224x224 GPU batches, the torchvision ResNet-50 training step at
 * 224x224 (a small batch: a software adapter is slow), and the meta step of a ResNet-18 at a
 * small input in each variant (full, classifier-only with the backbone trained, and frozen).
 * Prints a table and writes it to <out>/large-<adapter>.md (`--out`, default bench/results). The
 * JPEG files go to <out>/.large-bench-tmp/, marked as this benchmark's: removed at the end, on
 * Ctrl-C, or by the next run when a killed one left it.
 */
import { join } from "node:path";
import { UserError } from "../src/errors.ts";
import { decodeJpeg } from "../src/data/jpeg/decode.ts";
import { DecodePool } from "../src/data/jpeg/pool.ts";
import { JpegLoader } from "../src/data/jpeg/loader.ts";
import { Gpu } from "../src/gpu/runtime.ts";
import { Model } from "../src/nn/model.ts";
import { type TorchvisionDepth, TorchvisionResNet } from "../src/nn/torchvision.ts";
import { Sgd } from "../src/optim/optimizer.ts";
import { StepEngine } from "../src/engine/step.ts";
import { crossEntropy, MetaReweighter } from "../src/engine/meta.ts";
import { callsPerSecond, writeTestJpegs } from "./lib.ts";

const rows: [string, string][] = [];
function report(name: string, value: string): void {
  rows.push([name, value]);
  console.log(`${name.padEnd(72)} ${value}`);
}

async function decodeRates(gpu: Gpu, dir: string): Promise<void> {
  const files = await writeTestJpegs(dir, 32);
  const bytes = await Promise.all(files.map((f) => Deno.readFile(f)));
  let k = 0;
  const one = await callsPerSecond(() => decodeJpeg(bytes[k++ % bytes.length]), 16, 3);
  report("JPEG decode, one core (500x375, 4:2:0)", `${one.toFixed(1)} images/s`);
  const pool = new DecodePool();
  const perRound = await callsPerSecond(() => Promise.all(files.map((f) => pool.decode(f))), 2, 3);
  report(
    `JPEG decode, worker pool (${pool.workers} workers)`,
    `${(perRound * 32).toFixed(1)} images/s`,
  );
  const list = {
    source: "bench",
    root: "/",
    paths: Array.from({ length: 128 }, (_, i) => files[i % files.length]),
    labels: new Int32Array(128),
    numClasses: 1,
    where: (i: number) => `bench:${i}`,
  };
  const loader = new JpegLoader(gpu, pool, list, { batchSize: 64, mode: "train" });
  let epoch = 0;
  const loaderRate = await callsPerSecond(
    async () => {
      for await (const _ of loader.epoch(epoch++)) await gpu.sync();
    },
    1,
    3,
  ) * 128;
  report(
    `loader to GPU batches of 64 at 224x224 (${pool.workers} workers)`,
    `${loaderRate.toFixed(1)} images/s`,
  );
  loader.dispose();
  pool.close();
}

type Variant = "plain" | "meta all" | "meta classifier" | "meta classifier, frozen";

/** Seconds per step of a torchvision ResNet at batch B and side S. */
async function stepSeconds(
  gpu: Gpu,
  depth: TorchvisionDepth,
  B: number,
  S: number,
  variant: Variant,
): Promise<number> {
  const model = new Model(gpu, new TorchvisionResNet({ depth, numClasses: 1000 }), 0);
  const optimizer = new Sgd(gpu, model.paramLayout, {
    momentum: 0.9,
    weightDecay: 5e-4,
    nesterov: false,
  });
  const engine = new StepEngine(model, {
    loss: crossEntropy,
    optimizer,
    batch: B,
    input: [3, S, S],
  });
  const meta = variant === "plain" ? null : new MetaReweighter(engine, {
    devBatch: B,
    numClasses: 1000,
    params: variant === "meta all" ? "all" : "classifier",
    freezeBackbone: variant === "meta classifier, frozen",
  });
  const x = Float32Array.from({ length: B * 3 * S * S }, (_, i) => Math.sin(i * 0.37));
  engine.x.upload(gpu, x);
  engine.targets.upload(gpu, Array.from({ length: B }, (_, i) => (i * 37) % 1000));
  meta?.devX.upload(gpu, x);
  meta?.devTargets.upload(gpu, Array.from({ length: B }, (_, i) => (i * 91) % 1000));
  const how = {
    eta: 0.01,
    tau: 1,
    lookahead: "mean",
    rule: "meta",
    lookaheadWeights: "w",
  } as const;
  const step = async () => {
    if (meta) meta.step(0.01, how);
    else engine.step(0.01);
    await gpu.sync();
  };
  const perSecond = await callsPerSecond(step, 2, 5);
  meta?.destroy();
  engine.destroy();
  optimizer.destroy();
  model.destroy();
  return 1 / perSecond;
}

/** Marks the temp folder as this benchmark's (only a folder holding it is ever removed). */
export const LARGE_BENCH_MARK = ".tailgrad-large-bench";

/**
 * The temp folder of the JPEG files in `out`, made anew: a folder of that name a killed run left
 * (it holds the mark) is removed first; one without the mark is not ours and is refused.
 */
export async function freshTempDir(out: string): Promise<string> {
  const tmp = join(out, ".large-bench-tmp");
  const marked = await Deno.stat(join(tmp, LARGE_BENCH_MARK)).then(() => true, () => false);
  if (marked) {
    await Deno.remove(tmp, { recursive: true });
    console.log(`removed ${tmp}, left by a run that was stopped`);
  } else if (await Deno.stat(tmp).then(() => true, () => false)) {
    throw new UserError(`${tmp} exists and was not made by bench --large`, {
      file: tmp,
      hint: "move it away (bench --large keeps its JPEG files there), or choose another --out",
    });
  }
  await Deno.mkdir(tmp, { recursive: true });
  await Deno.writeTextFile(
    join(tmp, LARGE_BENCH_MARK),
    "bench --large's JPEG files; safe to remove\n",
  );
  return tmp;
}

/** Removes the temp folder when the process is interrupted, then exits as interrupted. */
export function removeOnSignal(tmp: string): () => void {
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  const handler = () => {
    Deno.removeSync(tmp, { recursive: true });
    Deno.exit(130);
  };
  for (const s of signals) Deno.addSignalListener(s, handler);
  return () => {
    for (const s of signals) Deno.removeSignalListener(s, handler);
  };
}

/** Runs the large-pipeline benchmark and writes its table to `out` (see the module doc). */
export async function runLargeBench(out: string): Promise<void> {
  await Deno.mkdir(out, { recursive: true });
  const tmp = await freshTempDir(out);
  const unlisten = removeOnSignal(tmp);
  let adapter = "";
  try {
    const gpu = await Gpu.create();
    adapter = gpu.adapter.description;
    console.log(`adapter: ${adapter}; ${navigator.hardwareConcurrency} cores`);
    await decodeRates(gpu, tmp);
    const B50 = Number(Deno.env.get("TAILGRAD_BENCH_R50_BATCH") ?? 2);
    const s50 = await stepSeconds(gpu, 50, B50, 224, "plain");
    report(
      `ResNet-50 training step, 224x224, batch ${B50}`,
      `${s50.toFixed(2)} s (${(B50 / s50).toFixed(2)} images/s)`,
    );
    for (const v of ["plain", "meta all", "meta classifier", "meta classifier, frozen"] as const) {
      const s = await stepSeconds(gpu, 18, 8, 64, v);
      report(`ResNet-18 ${v} step, 64x64, batch 8 (dev batch 8)`, `${s.toFixed(3)} s`);
    }
    gpu.dispose();
  } finally {
    await Deno.remove(tmp, { recursive: true });
    unlisten();
  }
  const slug = `large-${adapter.replace(/[^a-z0-9]+/gi, "-").replace(/^-|-$/g, "").toLowerCase()}`;
  const md = ["| measurement | value |", "|---|--:|", ...rows.map(([a, b]) => `| ${a} | ${b} |`)];
  await Deno.writeTextFile(join(out, `${slug}.md`), md.join("\n") + "\n");
  console.log(`wrote ${join(out, `${slug}.md`)}`);
}

if (import.meta.main) await runLargeBench(join("bench", "results"));
