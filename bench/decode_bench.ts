/**
 * The JPEG pipeline benchmark: decoded images/s of ImageNet-like JPEGs (500x375, quality 90,
 * 4:2:0, written by the test encoder) on one core and through the worker pool, and the whole
 * loader (decode on workers, upload, GPU random-resized-crop to 224, flip, normalise) in
 * training batches of 64.
 *
 *   deno run --allow-read --allow-write=/tmp bench/decode_bench.ts \
 *     [--dir=FOLDER] [--native] [--jpeg-js] [--no-gpu] [--seconds=S]
 *
 * --dir also times the JPEGs of FOLDER (e.g. real ImageNet files); --native times Deno's own
 * createImageBitmap decode (its pixels cannot be read back, so it is a reference, not an
 * option); --jpeg-js times the npm jpeg-js decoder (needs npm access).
 */
import { join } from "node:path";
import { decodeJpeg } from "../src/data/jpeg/decode.ts";
import { DecodePool } from "../src/data/jpeg/pool.ts";
import { JpegLoader } from "../src/data/jpeg/loader.ts";
import { Gpu } from "../src/gpu/runtime.ts";
import { callsPerSecond, writeTestJpegs } from "./lib.ts";

const args = new Map(Deno.args.map((a) => {
  const [k, v] = a.replace(/^--/, "").split("=");
  return [k, v ?? "true"];
}));
const seconds = Number(args.get("seconds") ?? 3);
const cores = navigator.hardwareConcurrency ?? 1;

/** Calls per second of `fn` for about `seconds` (at least `minCalls` calls). */
function rate(fn: () => unknown, minCalls = 3): Promise<number> {
  return callsPerSecond(fn, minCalls, seconds);
}

async function filesOf(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile && /\.jpe?g$/i.test(e.name)) out.push(join(dir, e.name));
  }
  return out.sort().slice(0, 256);
}

const rows: [string, string][] = [];
function report(name: string, value: string): void {
  rows.push([name, value]);
  console.log(`${name.padEnd(58)} ${value}`);
}

const tmp = await Deno.makeTempDir({ prefix: "tailgrad-decode-bench-" });
try {
  const sets: [string, string[]][] = [[
    "synthetic 500x375 q90 4:2:0",
    await writeTestJpegs(tmp, 16),
  ]];
  if (args.has("dir")) sets.push([`folder ${args.get("dir")}`, await filesOf(args.get("dir")!)]);
  console.log(`cores: ${cores}, load average: ${Deno.loadavg?.().join(" ") ?? "?"}`);
  for (const [name, files] of sets) {
    const bytes = await Promise.all(files.map((f) => Deno.readFile(f)));
    let k = 0;
    const one = await rate(() => decodeJpeg(bytes[k++ % bytes.length]));
    report(`${name}: TypeScript decoder, 1 core (in memory)`, `${one.toFixed(1)} images/s`);
    if (args.has("native")) {
      const blob = (b: Uint8Array) => new Blob([b as Uint8Array<ArrayBuffer>]);
      const ok: Uint8Array[] = [];
      for (const b of bytes) await createImageBitmap(blob(b)).then(() => ok.push(b), () => {});
      const native = ok.length ? await rate(() => createImageBitmap(blob(ok[k++ % ok.length]))) : 0;
      const failed = bytes.length - ok.length;
      report(
        `${name}: Deno createImageBitmap, 1 core (no pixel access)`,
        `${native.toFixed(1)} images/s${
          failed ? ` (failed on ${failed} of ${bytes.length} files)` : ""
        }`,
      );
    }
    if (args.has("jpeg-js")) {
      const { decodeWithJpegJs } = await import([".", "jpegjs.ts"].join("/"));
      const js = await rate(() => decodeWithJpegJs(bytes[k++ % bytes.length]));
      report(`${name}: jpeg-js 0.4.4, 1 core (in memory)`, `${js.toFixed(1)} images/s`);
    }
    for (const workers of [...new Set([1, Math.max(1, cores - 1), cores])]) {
      const pool = new DecodePool({ workers });
      const batch = files.length;
      const perSecond = await rate(async () => {
        await Promise.all(files.map((f) => pool.decode(f)));
      }) * batch;
      pool.close();
      report(
        `${name}: worker pool, ${workers} worker(s), from disk`,
        `${perSecond.toFixed(1)} images/s`,
      );
    }
    if (!args.has("no-gpu")) await loaderRate(name, files);
  }
} finally {
  await Deno.remove(tmp, { recursive: true });
}

/** The whole loader: batches of 64 at 224, training transforms, waiting for the GPU each batch. */
async function loaderRate(name: string, files: string[]): Promise<void> {
  const gpu = await Gpu.create();
  const pool = new DecodePool();
  const list = {
    source: "bench",
    root: "/",
    paths: Array.from({ length: 64 * 4 }, (_, i) => files[i % files.length]),
    labels: new Int32Array(64 * 4),
    numClasses: 1,
    where: (i: number) => `bench:${i}`,
  };
  const loader = new JpegLoader(gpu, pool, list, { batchSize: 64, mode: "train" });
  let epoch = 0;
  const perSecond = await rate(async () => {
    for await (const _ of loader.epoch(epoch++)) await gpu.sync();
  }, 1) * list.paths.length;
  report(
    `${name}: loader to GPU 224x224 (${pool.workers} workers, ${gpu.adapter.description ?? "gpu"})`,
    `${perSecond.toFixed(1)} images/s`,
  );
  loader.dispose();
  pool.close();
  gpu.dispose();
}
