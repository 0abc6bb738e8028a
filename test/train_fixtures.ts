/**
 * Shared helpers of the training tests: a tiny synthetic image dataset (in memory, or written
 * as raw IDX files a subprocess can load as "mnist"), and a runner for `scripts/train.ts` as a
 * subprocess with narrow permissions.
 */
import { join } from "node:path";
import type { ImageDataset } from "../src/data/dataset.ts";
import { Rng } from "../src/random.ts";
import { sha256Hex } from "../src/data/download.ts";

/** Side of the synthetic square images (ResNet-8 handles 8x8: 8 -> 4 -> 2). */
export const SYN_SIZE = 8;

/**
 * A learnable 10-class dataset of 8x8 grey images: class c lights a class-specific pair of
 * rows and columns over uniform noise.
 */
export function syntheticSplit(
  split: "train" | "test",
  perClass: number,
  seed: number,
  size = SYN_SIZE,
): ImageDataset {
  const C = 10;
  const count = C * perClass;
  const per = size * size;
  const images = new Uint8Array(count * per);
  const labels = new Uint8Array(count);
  const rng = new Rng(seed, split);
  for (let i = 0; i < count; i++) {
    const c = i % C;
    labels[i] = c;
    for (let p = 0; p < per; p++) {
      const y = Math.floor(p / size), x = p % size;
      const on = y === c % size || x === (c * 3) % size;
      images[i * per + p] = Math.min(255, (on ? 150 : 0) + rng.nextInt(100));
    }
  }
  return {
    name: "synthetic",
    split,
    count,
    channels: 1,
    height: size,
    width: size,
    numClasses: C,
    images,
    labels,
  };
}

/** Train (60 per class) and test (20 per class) splits. */
export function syntheticData(): { train: ImageDataset; test: ImageDataset } {
  return { train: syntheticSplit("train", 60, 1), test: syntheticSplit("test", 20, 2) };
}

function idx(magic: number, dims: number[], data: Uint8Array): Uint8Array {
  const head = new Uint8Array(4 + 4 * dims.length);
  const v = new DataView(head.buffer);
  v.setUint32(0, magic);
  dims.forEach((d, i) => v.setUint32(4 + 4 * i, d));
  const out = new Uint8Array(head.length + data.length);
  out.set(head);
  out.set(data, head.length);
  return out;
}

/** Writes the synthetic dataset as raw IDX files into `<root>/mnist/`; returns `root`. */
export async function writeSyntheticIdx(root: string): Promise<string> {
  const dir = join(root, "mnist");
  await Deno.mkdir(dir, { recursive: true });
  const { train, test } = syntheticData();
  const files: [string, Uint8Array][] = [
    ["train-images-idx3-ubyte", idx(0x803, [train.count, SYN_SIZE, SYN_SIZE], train.images)],
    ["train-labels-idx1-ubyte", idx(0x801, [train.count], train.labels)],
    ["t10k-images-idx3-ubyte", idx(0x803, [test.count, SYN_SIZE, SYN_SIZE], test.images)],
    ["t10k-labels-idx1-ubyte", idx(0x801, [test.count], test.labels)],
  ];
  for (const [name, bytes] of files) await Deno.writeFile(join(dir, name), bytes);
  return root;
}

/** Flags of a tiny run on the synthetic IDX data in `dataRoot`. */
export function tinyArgs(dataRoot: string, out: string, extra: string[] = []): string[] {
  return [
    "--dataset",
    "mnist",
    "--data-dir",
    dataRoot,
    "--no-download",
    "--imbalance",
    "10",
    "--max-per-class",
    "40",
    "--test-per-class",
    "10",
    "--model",
    "resnet8",
    "--batch",
    "16",
    "--epochs",
    "3",
    "--meta-start",
    "1",
    "--lr-decay-epochs",
    "2",
    "--lr-decay-factor",
    "0.1",
    "--out",
    out,
    ...extra,
  ];
}

const SCRIPT = new URL("../scripts/train.ts", import.meta.url).pathname;

/**
 * `deno run` of the train script (or another script of the trainer's, e.g. export_meta_step.ts)
 * with narrow permissions (read anywhere, write `writeRoot`).
 */
export function trainCommand(args: string[], writeRoot: string, script = SCRIPT): Deno.Command {
  return new Deno.Command("deno", {
    args: [
      "run",
      "--quiet",
      "--no-lock",
      "--allow-read",
      `--allow-write=${writeRoot}`,
      "--allow-env=TAILGRAD_DATA",
      script,
      ...args,
    ],
    env: { DENO_WEBGPU_BACKEND: "vulkan" },
    stdout: "piped",
    stderr: "piped",
  });
}

/** Runs the train script to completion. */
export async function runTrain(
  args: string[],
  writeRoot: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const r = await trainCommand(args, writeRoot).output();
  const dec = new TextDecoder();
  return { code: r.code, stdout: dec.decode(r.stdout), stderr: dec.decode(r.stderr) };
}

/** Every file under `dir` with its SHA-256 (what "byte-identical" compares). */
export async function snapshot(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (d: string) => {
    for await (const e of Deno.readDir(d)) {
      const p = join(d, e.name);
      if (e.isDirectory) {
        out.set(p + "/", "dir");
        await walk(p);
      } else out.set(p, await sha256Hex(await Deno.readFile(p)));
    }
  };
  await walk(dir);
  return out;
}

/** metrics.jsonl lines without the fields that vary between identical runs (timing). */
export async function stableMetrics(out: string): Promise<unknown[]> {
  const text = await Deno.readTextFile(join(out, "metrics.jsonl"));
  return text.trim().split("\n").map((l) => {
    const r = JSON.parse(l);
    delete r.timing;
    return r;
  });
}

/** summary.json without wall time. */
export async function stableSummary(out: string): Promise<Record<string, unknown>> {
  const s = JSON.parse(await Deno.readTextFile(join(out, "summary.json")));
  delete s.wallSeconds;
  delete s.config.out;
  return s;
}
