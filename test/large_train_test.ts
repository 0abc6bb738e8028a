/**
 * The large-scale trainer end to end on miniatures of each layout (ImageNet-LT and Places-LT list
 * files, iNaturalist 2017/2018 JSON), written by the test with its JPEG encoder: data checks
 * before anything is written, a CE epoch and meta epochs with the full and the classifier-only
 * meta step (backbone trained and frozen), evaluation with many/medium/few-shot accuracy, a
 * torchvision checkpoint loaded with the classifier re-initialised, and a resume that ends
 * bit-identical to the uninterrupted run. ResNet-10 of width 4 on 32x32 crops.
 *
 * Per-class eps of every meta variant: the per-epoch and whole-stage means the trainer sums on the
 * GPU and reads once per epoch match float64 sums of the eps vectors this test reads back after
 * every step; a class in no batch is null; eps / w_y is eps over the fixed w_y; a warm meta step
 * creates no GPU objects and reads nothing back.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { testImage } from "./support/images.ts";
import { encodeJpeg } from "./support/jpeg_encoder.ts";
import { type LargeConfig, largeLr, type LargePreset, largePreset } from "../src/large/config.ts";
import { LAYOUT_FILES, loadLargeData } from "../src/large/data.ts";
import {
  type LargeStepInspector,
  type LargeSummary,
  type MetaStepTensors,
  trainLarge,
} from "../src/large/trainer.ts";
import { largeMain, largeUsage, parseLargeArgs, wantsLargePreset } from "../src/large/cli.ts";
import { UsageError } from "../src/cli/flags.ts";
import { ConfigError } from "../src/errors.ts";
import { Model } from "../src/nn/model.ts";
import { TorchvisionResNet } from "../src/nn/torchvision.ts";
import { readCheckpoint } from "../src/checkpoint/checkpoint.ts";
import { encodeSafetensors } from "../src/checkpoint/safetensors.ts";
import { type Confusion, denseConfusion, isSparseConfusion } from "../src/engine/confusion.ts";
import { DataError } from "../src/data/errors.ts";
import { DecodePool } from "../src/data/jpeg/pool.ts";
import { JpegLoader } from "../src/data/jpeg/loader.ts";
import type { EpochRecord } from "../src/report/summary.ts";
import type { Gpu } from "../src/gpu/runtime.ts";
import { gpuTest } from "./gpu_harness.ts";
import { runTrain, snapshot } from "./train_fixtures.ts";
import { moduleSpecs } from "../src/nn/module.ts";
import { readPretrained } from "../src/large/pretrained.ts";

/** Training images per class (before the dev image of each): many / medium / few at scale 1/10. */
const COUNTS = [9, 6, 4];
const EVAL_PER_CLASS = 2;

/** Encoded test images by seed (the encoder is the slow part of writing a miniature). */
const encoded = new Map<number, Uint8Array>();

async function jpeg(root: string, rel: string, seed: number): Promise<void> {
  const path = join(root, rel);
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  const w = 36 + (seed % 7), h = 34 + (seed % 5);
  if (!encoded.has(seed)) {
    encoded.set(seed, encodeJpeg(testImage(w, h, seed), w, h, { quality: 85 }).bytes);
  }
  await Deno.writeFile(path, encoded.get(seed)!);
}

/**
 * Writes a miniature dataset of `preset`'s layout under a new folder; returns it. With `images`,
 * only that many different pictures, repeated (a miniature of many classes, quicker to write).
 */
async function miniature(preset: LargePreset, counts = COUNTS, images?: number): Promise<string> {
  const root = await Deno.makeTempDir({ prefix: `tg-${preset}-` });
  const files = LAYOUT_FILES[preset];
  const split = async (name: string, perClass: number[]) => {
    const entries: [string, number][] = [];
    for (let c = 0; c < perClass.length; c++) {
      for (let k = 0; k < perClass[c]; k++) {
        const rel = `${name}/class${c}/img_${k}.jpg`;
        const seed = 1000 * c + k + (name === "train" ? 0 : 500);
        await jpeg(root, rel, images ? seed % images : seed);
        entries.push([rel, c]);
      }
    }
    return entries;
  };
  const train = await split("train", counts);
  const evals = await split("val", counts.map(() => EVAL_PER_CLASS));
  if (preset.startsWith("inat")) {
    const json = (entries: [string, number][]) =>
      JSON.stringify({
        images: entries.map(([p], i) => ({ id: 100 + i, file_name: p })),
        annotations: entries.map(([, c], i) => ({ id: i, image_id: 100 + i, category_id: 7 + c })),
        categories: counts.map((_, c) => ({ id: 7 + c, name: `species ${c}` })),
      });
    await Deno.writeTextFile(join(root, files.train), json(train));
    await Deno.writeTextFile(join(root, files.val), json(evals));
  } else {
    const text = (entries: [string, number][]) => entries.map(([p, c]) => `${p} ${c}\n`).join("");
    await Deno.writeTextFile(join(root, files.train), text(train));
    await Deno.writeTextFile(join(root, files.val), text(evals));
    await Deno.writeTextFile(join(root, files.test), text(evals));
  }
  return root;
}

function tiny(preset: LargePreset, root: string, over: Partial<LargeConfig> = {}): LargeConfig {
  return {
    ...largePreset(preset),
    dataRoot: root,
    out: join(root, "run"),
    depth: 10,
    width: 4,
    pretrained: null,
    epochs: 3,
    batch: 4,
    lr: 0.05,
    lrDecayEvery: 1,
    metaStart: 1,
    metaLr: null,
    size: 32,
    resize: 36,
    devPerClass: 1,
    workers: 1,
    ...over,
  };
}

async function checkpointBits(dir: string): Promise<Map<string, string>> {
  const f = await readCheckpoint(join(dir, "checkpoint.safetensors"));
  const out = new Map<string, string>();
  for (const [k, t] of f!.tensors) {
    out.set(k, Array.from(new Uint8Array((t.data as Float32Array).buffer)).join(","));
  }
  return out;
}

/** Per-class float64 sums of one epoch's eps, read back by the test after every meta step. */
interface HostEpsSums {
  sumEps: number[];
  sumAbsEps: number[];
  count: number[];
}

/**
 * Reads eps, w and the labels back after every meta step (the trainer itself never does) and
 * sums eps per class and epoch in float64; records the GPU objects each meta step created and the
 * readbacks it made, between the step's start and the end of its recording.
 */
class EpsRecorder implements LargeStepInspector {
  readonly epochs = new Map<number, HostEpsSums>();
  /** [epoch, step, objects created, readbacks] of every meta step, in order. */
  readonly steps: [number, number, number, number][] = [];
  /** The weight w of each class's examples (float32), which must not vary. */
  readonly weightOf = new Map<number, number>();
  #at = [0, 0];

  constructor(readonly gpu: Gpu, readonly numClasses: number) {}

  #counters(): number[] {
    const s = this.gpu.stats;
    return [
      s.buffersCreated + s.bindGroupsCreated + s.pipelinesCreated + s.uniformsCreated,
      s.readbacks,
    ];
  }

  beforeStep(): void {
    this.#at = this.#counters();
  }

  async afterMetaStep(epoch: number, step: number, t: MetaStepTensors): Promise<void> {
    const [created, readbacks] = this.#counters();
    this.steps.push([epoch, step, created - this.#at[0], readbacks - this.#at[1]]);
    const [eps, w, labels] = [
      await t.eps.read(this.gpu),
      await t.weights.read(this.gpu),
      await t.labels.read(this.gpu), // u32 labels come back as their values
    ];
    const C = this.numClasses;
    if (!this.epochs.has(epoch)) {
      const zeros = () => new Array(C).fill(0);
      this.epochs.set(epoch, { sumEps: zeros(), sumAbsEps: zeros(), count: zeros() });
    }
    const h = this.epochs.get(epoch)!;
    labels.forEach((y, i) => {
      // w_y is fixed: every example of a class has the same weight in every step
      assert.equal(w[i], this.weightOf.get(y) ?? w[i], `w of example ${i}, class ${y}`);
      this.weightOf.set(y, w[i]);
      h.sumEps[y] += eps[i];
      h.sumAbsEps[y] += Math.abs(eps[i]);
      h.count[y]++;
    });
  }
}

/** Sums of several epochs' host sums. */
function addHost(parts: HostEpsSums[]): HostEpsSums {
  const C = parts[0].count.length;
  const sum = (k: keyof HostEpsSums) =>
    Array.from({ length: C }, (_, c) => parts.reduce((a, p) => a + p[k][c], 0));
  return { sumEps: sum("sumEps"), sumAbsEps: sum("sumAbsEps"), count: sum("count") };
}

/**
 * The recorded per-class eps of a meta record against the host sums: counts equal; a class in
 * no batch null; otherwise finite, the mean within float32 summation error of the float64 mean,
 * and mean eps / w_y = mean eps / w_y.
 */
function assertEpsStats(
  what: string,
  m: EpochRecord["meta"],
  host: HostEpsSums,
  classWeights: number[],
): void {
  assert.ok(m, `${what}: no per-class meta statistics`);
  assert.deepEqual(m.count, host.count, `${what}: counts`);
  for (let c = 0; c < classWeights.length; c++) {
    const at = `${what}, class ${c}`;
    if (host.count[c] === 0) {
      assert.equal(m.meanEps[c], null, `${at}: in no batch, so null`);
      assert.equal(m.meanEpsOverW[c], null, `${at}: in no batch, so null`);
      continue;
    }
    const got = m.meanEps[c]!, overW = m.meanEpsOverW[c]!;
    assert.ok(Number.isFinite(got) && Number.isFinite(overW), `${at}: ${got}, ${overW}`);
    const want = host.sumEps[c] / host.count[c];
    const tol = 1e-5 * host.sumAbsEps[c] / host.count[c] + 1e-30;
    assert.ok(Math.abs(got - want) <= tol, `${at}: mean eps ${got}, host ${want}`);
    const ratio = got / classWeights[c];
    assert.ok(
      Math.abs(overW - ratio) <= 1e-5 * Math.abs(ratio) + 1e-30,
      `${at}: mean eps / w_y ${overW}, mean eps / w_y ${ratio}`,
    );
  }
}

/**
 * Every meta epoch's record and the summary (last epoch, whole stage) against the recorder; the
 * eps are not all zero; warm meta steps (all but the run's first two) create no GPU objects and
 * read nothing back.
 */
async function assertRecordedEps(s: LargeSummary, out: string, rec: EpsRecorder): Promise<void> {
  const history: EpochRecord[] = (await Deno.readTextFile(join(out, "metrics.jsonl")))
    .trim().split("\n").map((l) => JSON.parse(l));
  const metaEpochs = history.filter((h) => h.phase === "meta").map((h) => h.epoch);
  assert.deepEqual([...rec.epochs.keys()], metaEpochs, "meta epochs");
  for (const h of history) {
    if (h.phase !== "meta") assert.equal(h.meta, null, `epoch ${h.epoch} is plain`);
    else assertEpsStats(`epoch ${h.epoch}`, h.meta, rec.epochs.get(h.epoch)!, s.classWeights);
  }
  const lastEpoch = metaEpochs[metaEpochs.length - 1];
  assert.deepEqual(s.metaLastEpoch, { ...history[lastEpoch].meta, epoch: lastEpoch });
  assertEpsStats("meta stage", s.meta, addHost([...rec.epochs.values()]), s.classWeights);
  for (const [c, w] of rec.weightOf) assert.equal(w, Math.fround(s.classWeights[c]), `w_${c}`);
  const summary = JSON.parse(await Deno.readTextFile(join(out, "summary.json")));
  assert.deepEqual(summary.meta, s.meta);
  assert.ok([...rec.epochs.values()].some((h) => h.sumAbsEps.some((v) => v > 0)), "eps all 0");
  const warm = rec.steps.slice(2);
  assert.ok(warm.length > 0);
  for (const [epoch, step, created, readbacks] of warm) {
    assert.deepEqual([created, readbacks], [0, 0], `meta step ${step} of epoch ${epoch}`);
  }
}

gpuTest(
  "large run, ImageNet-LT lists: CE then full meta, shot groups, exact resume",
  async (gpu) => {
    const root = await miniature("imagenet-lt");
    try {
      const lines: string[] = [];
      const progress = { line: (m: string) => lines.push(m) };
      const cfg = tiny("imagenet-lt", root);
      const rec = new EpsRecorder(gpu, COUNTS.length);
      const s = await trainLarge(cfg, { gpu, progress, inspect: rec });
      assert.equal(s.status, "completed");
      assert.deepEqual(s.data.trainCounts, COUNTS.map((n) => n - 1));
      assert.equal(s.epochsDone, 3);
      const shots = s.last!.shots!;
      // counts 8, 5, 3 are all below 20: the miniature's classes are few-shot
      assert.deepEqual(shots.classes, { many: 0, medium: 0, few: 3 });
      assert.ok(shots.few! >= 0 && shots.few! <= 1);
      assert.equal(s.last!.count, COUNTS.length * EVAL_PER_CLASS);
      assert.ok(Number.isFinite(s.last!.top1Error) && s.last!.top5Error === 0);
      const metrics = (await Deno.readTextFile(join(cfg.out, "metrics.jsonl"))).trim().split("\n");
      assert.deepEqual(metrics.map((l) => JSON.parse(l).phase), ["plain", "meta", "meta"]);
      assert.ok(JSON.parse(metrics[2]).test.shots.classes.few === 3);
      assert.match(await Deno.readTextFile(join(cfg.out, "report.html")), /few-shot acc\./);
      await assertRecordedEps(s, cfg.out, rec);
      assert.ok(
        lines.some((l) => /many\/medium\/few-shot accuracy – \/ – \/ \d/.test(l)),
        lines.join("\n"),
      );
      assert.match(
        lines.join("\n"),
        /^tailgrad large: imagenet-lt, ResNet-10 \(width 4\), 3 classes, train 16 \(IF 2\.7\), dev 3, eval 6; 3 epochs, meta \(all\) from 1; batch 4; 1 decode workers; \S/m,
      );
      // stopped after 2 epochs and resumed: bit-identical to the uninterrupted run
      const cfg2 = { ...cfg, out: join(root, "run2") };
      const part = await trainLarge(cfg2, { gpu, progress: null, maxEpochs: 2 });
      assert.equal(part.status, "running");
      await assert.rejects(() => trainLarge(cfg2, { gpu, progress: null }), /pass --resume/);
      const done = await trainLarge(cfg2, { gpu, progress: null, resume: true });
      assert.equal(done.status, "completed");
      assert.deepEqual(done.last, s.last);
      assert.deepEqual([done.meta, done.metaLastEpoch], [s.meta, s.metaLastEpoch]);
      assert.deepEqual(await checkpointBits(cfg2.out), await checkpointBits(cfg.out));
      // resuming the completed run trains nothing and rewrites nothing
      const files = ["checkpoint.safetensors", "metrics.jsonl", "summary.json", "report.html"];
      const stamp = () =>
        Promise.all(files.map(async (f) => {
          const path = join(cfg2.out, f);
          return [(await Deno.stat(path)).mtime?.getTime(), await Deno.readFile(path)];
        }));
      const before = await stamp();
      const again = await trainLarge(cfg2, { gpu, progress: null, resume: true });
      assert.deepEqual(again, JSON.parse(await Deno.readTextFile(join(cfg2.out, "summary.json"))));
      assert.deepEqual(await stamp(), before);
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
);

gpuTest(
  "large run, Places-LT lists: classifier-only meta, backbone trained, pretrained file",
  async (gpu) => {
    const root = await miniature("places-lt");
    try {
      // a torchvision-named checkpoint of the same network with 1000 classes: fc re-initialised
      const file = join(root, "resnet10.safetensors");
      const donor = new Model(
        gpu,
        new TorchvisionResNet({ depth: 10, numClasses: 1000, width: 4 }),
        7,
      );
      await donor.save(file);
      const donorConv = (await donor.stateDict()).get("conv1.weight")!;
      donor.destroy();
      const lines: string[] = [];
      const cfg = tiny("places-lt", root, {
        pretrained: file,
        metaParams: "classifier",
        epochs: 2,
        lr: 1e-3,
      });
      const rec = new EpsRecorder(gpu, COUNTS.length);
      const s = await trainLarge(cfg, {
        gpu,
        progress: { line: (m) => lines.push(m) },
        inspect: rec,
      });
      assert.equal(s.status, "completed");
      assert.ok(
        lines.some((l) => /fc re-initialised \(1000 classes in the file, 3 here\)/.test(l)),
      );
      const ck = await readCheckpoint(join(cfg.out, "checkpoint.safetensors"));
      const conv = ck!.tensors.get("conv1.weight")!.data as Float32Array;
      // trained from the loaded weights: nearer to them than to the seed's own init
      const own = new Model(gpu, new TorchvisionResNet({ depth: 10, numClasses: 3, width: 4 }), 0);
      const ownConv = (await own.stateDict()).get("conv1.weight")!;
      own.destroy();
      const dist = (a: Float32Array, b: Float32Array) =>
        a.reduce((s, v, i) => s + (v - b[i]) ** 2, 0);
      assert.notDeepEqual(conv, donorConv);
      assert.ok(dist(conv, donorConv) < 0.1 * dist(conv, ownConv), "started from the file");
      await assertRecordedEps(s, cfg.out, rec);
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
);

gpuTest(
  "large run, iNaturalist 2017 JSON: classifier-only meta with a frozen backbone",
  async (gpu) => {
    const root = await miniature("inat2017");
    try {
      const cfg = tiny("inat2017", root, {
        metaParams: "classifier",
        freezeBackbone: true,
        metaStart: 1,
        metaLr: 0.01,
        epochs: 3,
      });
      const before = await trainLarge({ ...cfg, epochs: 1, out: join(root, "stage1") }, {
        gpu,
        progress: null,
      });
      assert.equal(before.status, "completed");
      const rec = new EpsRecorder(gpu, COUNTS.length);
      const s = await trainLarge(cfg, { gpu, progress: null, inspect: rec });
      assert.equal(s.status, "completed");
      await assertRecordedEps(s, cfg.out, rec);
      // the backbone after the CE epoch is the backbone at the end: frozen in the meta stage
      const a = await readCheckpoint(join(root, "stage1", "checkpoint.safetensors"));
      const b = await readCheckpoint(join(cfg.out, "checkpoint.safetensors"));
      for (const name of ["conv1.weight", "layer4.0.bn2.running_var"]) {
        assert.deepEqual(b!.tensors.get(name)!.data, a!.tensors.get(name)!.data, name);
      }
      assert.notDeepEqual(b!.tensors.get("fc.weight")!.data, a!.tensors.get("fc.weight")!.data);
      assert.equal(s.last!.shots!.classes.few, 3);
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
);

/** The first seed whose training order of `epoch` leaves every image of class `cls` out. */
async function seedLeavingOut(
  gpu: Gpu,
  cfg: LargeConfig,
  cls: number,
  epoch: number,
): Promise<number> {
  const pool = new DecodePool({ workers: 0 });
  try {
    for (let seed = 0; seed < 100; seed++) {
      const data = await loadLargeData({ ...cfg, seed });
      const loader = new JpegLoader(gpu, pool, data.train, {
        batchSize: cfg.batch,
        mode: "train",
        seed,
        indices: data.split.train,
        size: cfg.size,
      });
      const used = loader.order(epoch).slice(0, loader.batchesPerEpoch * cfg.batch);
      loader.dispose();
      if (!used.some((i) => data.train.labels[i] === cls)) return seed;
    }
  } finally {
    pool.close();
  }
  throw new Error(`no seed below 100 leaves class ${cls} out of epoch ${epoch}`);
}

gpuTest(
  "large run, iNaturalist 2018 JSON: full meta step; a class in no meta batch is null",
  async (gpu) => {
    // 8, 5 and 1 training images in batches of 4: each epoch leaves 2 images out, here the one
    // image of class 2 in the only meta epoch
    const root = await miniature("inat2018", [9, 6, 2]);
    try {
      const base = tiny("inat2018", root, { epochs: 2 });
      const cfg = { ...base, seed: await seedLeavingOut(gpu, base, 2, 1) };
      const rec = new EpsRecorder(gpu, 3);
      const s = await trainLarge(cfg, { gpu, progress: null, inspect: rec });
      assert.equal(s.status, "completed");
      assert.equal(s.data.numClasses, 3);
      const seen = rec.epochs.get(1)!.count;
      assert.deepEqual([seen[2], seen[0] + seen[1]], [0, 12], "class 2 in no batch of 12 images");
      assert.equal(s.meta!.count[2], 0);
      assert.equal(s.meta!.meanEps[2], null);
      assert.equal(s.metaLastEpoch!.meanEpsOverW[2], null);
      assert.ok(s.meta!.meanEps[0] !== null && s.meta!.meanEps[1] !== null);
      await assertRecordedEps(s, cfg.out, rec);
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
);

gpuTest(
  "large run of more than 100 classes: sparse confusion matrices in summary.json and the " +
    "checkpoint; an older checkpoint's dense ones resume in that form, a damaged one is refused",
  async (gpu) => {
    // 101 classes of 1 training image (and 1 dev image) each: one CE epoch is enough
    const C = 101;
    const root = await miniature("places-lt", new Array(C).fill(2), 16);
    try {
      const cfg = tiny("places-lt", root, { epochs: 2 });
      const part = await trainLarge(cfg, { gpu, progress: null, maxEpochs: 1 });
      const confusion = part.last!.confusion;
      assert.ok(isSparseConfusion(confusion) && confusion.classes === C);
      assert.equal(confusion.entries.reduce((n, e) => n + e[2], 0), C * EVAL_PER_CLASS);
      const summaryOf = async () =>
        JSON.parse(await Deno.readTextFile(join(cfg.out, "summary.json"))) as LargeSummary;
      assert.deepEqual((await summaryOf()).last!.confusion, confusion);
      const path = join(cfg.out, "checkpoint.safetensors");
      const ckpt = (await readCheckpoint(path))!;
      assert.deepEqual(JSON.parse(ckpt.metadata.last).confusion, confusion);
      // the checkpoint as the code before the sparse form wrote it: dense rows
      const rewrite = (k: string, f: (c: Confusion) => unknown) => {
        const m = JSON.parse(ckpt.metadata[k]);
        return JSON.stringify({ ...m, confusion: f(m.confusion) });
      };
      const old = { last: rewrite("last", denseConfusion), best: rewrite("best", denseConfusion) };
      await Deno.writeFile(path, encodeSafetensors(ckpt.tensors, { ...ckpt.metadata, ...old }));
      const resumed = await trainLarge(cfg, { gpu, progress: null, resume: true, maxEpochs: 0 });
      assert.deepEqual([resumed.last, resumed.best], [part.last, part.best]);
      assert.deepEqual((await summaryOf()).best!.confusion, confusion);
      // a matrix that is neither form: refused before any work, naming the file and the field
      const bad = rewrite("best", (c) => ({ ...(c as object), entries: [[0, C, 1]] }));
      await Deno.writeFile(path, encodeSafetensors(ckpt.tensors, { ...ckpt.metadata, best: bad }));
      await assert.rejects(
        () => trainLarge(cfg, { gpu, progress: null, resume: true }),
        /checkpoint .*checkpoint\.safetensors: metadata "best": confusion matrix: entry 0 is \[0,101,1\]/,
      );
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
);

gpuTest("large data errors: named, and nothing written to --out", async (gpu) => {
  const root = await miniature("imagenet-lt");
  try {
    const out = join(root, "run");
    const list = join(root, LAYOUT_FILES["imagenet-lt"].train);
    const text = await Deno.readTextFile(list);
    await Deno.remove(join(root, "train/class1/img_2.jpg"));
    await assert.rejects(
      () => trainLarge(tiny("imagenet-lt", root), { gpu, progress: null }),
      (e: Error) =>
        e instanceof DataError &&
        /ImageNet_LT_train\.txt:12: image .*img_2\.jpg does not exist/.test(e.message),
    );
    await Deno.writeTextFile(
      list,
      text.replace("train/class0/img_3.jpg 0", "train/class0/img_3.jpg x"),
    );
    await assert.rejects(
      () => trainLarge(tiny("imagenet-lt", root), { gpu, progress: null }),
      /ImageNet_LT_train\.txt:4: label "x" is not a non-negative integer/,
    );
    await assert.rejects(
      () => trainLarge(tiny("imagenet-lt", join(root, "nowhere")), { gpu, progress: null }),
      /--data-root .*nowhere does not exist/,
    );
    await assert.rejects(() => Deno.stat(out), Deno.errors.NotFound);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("large run errors: named, with a to-fix line and the exit status, before any write", async () => {
  const root = await miniature("imagenet-lt");
  try {
    const out = join(root, "run");
    const base = ["--preset", "imagenet-lt", "--data-root", root, "--depth", "10", "--width", "4"];
    const sizes = ["--size", "32", "--resize", "36", "--epochs", "1", "--meta-start", "0"];
    const small = [...sizes, "--batch", "4"];
    const refuses = async (args: string[], code: number, patterns: RegExp[]) => {
      const before = await snapshot(root);
      const r = await runTrain(args, root);
      const what = `${args.join(" ")}\n${r.stderr}`;
      assert.equal(r.code, code, `exit ${r.code}: ${what}`);
      assert.match(r.stderr, /^error: /, what);
      assert.equal(r.stderr.match(/^ {2}to fix: /gm)?.length, 1, `one to-fix line: ${what}`);
      for (const p of patterns) assert.match(r.stderr, p, what);
      assert.doesNotMatch(r.stderr, /^\s+at /m, what);
      assert.deepEqual(await snapshot(root), before, `files changed: ${what}`);
    };
    // --resume with nothing to resume
    await refuses([...base, ...small, "--out", out, "--resume"], 2, [
      /--resume: .*\/run holds no checkpoint\.safetensors \(the folder does not exist\)/,
      /to fix: drop --resume to start a new run, or check --out/,
    ]);
    // --pretrained: absent, not safetensors, another network's tensors
    const pre = (file: string) => [...base, ...small, "--out", out, "--pretrained", file];
    await refuses(pre(join(root, "none.safetensors")), 1, [
      /^error: --pretrained .*none\.safetensors does not exist$/m,
      /to fix: pass a torchvision ResNet state_dict saved with safetensors\.torch\.save_file/,
    ]);
    const garbage = join(root, "garbage.safetensors");
    await Deno.writeTextFile(garbage, "not safetensors");
    await refuses(pre(garbage), 1, [/--pretrained .*garbage\.safetensors is not a readable/]);
    const weights = async (file: string, depth: 10 | 18, numClasses: number) => {
      const specs = moduleSpecs(new TorchvisionResNet({ depth, width: 4, numClasses }));
      const tensors = new Map([...specs.params, ...specs.buffers].map((p) => [p.name, {
        dtype: "F32" as const,
        shape: [...p.shape],
        data: new Float32Array(p.shape.reduce((a, b) => a * b, 1)),
      }]));
      await Deno.writeFile(file, encodeSafetensors(tensors, {}));
    };
    const r18 = join(root, "r18.safetensors");
    await weights(r18, 18, 3);
    await refuses(pre(r18), 1, [
      /--pretrained .*r18\.safetensors does not fit this run's ResNet-10 \(width 4\):/,
      /- holds layer1\.1\.conv1\.weight, which the model does not have/,
      /- \.\.\. and 34 more$/m, // its 4 second blocks: 40 tensors, 6 shown
      /to fix: pass a checkpoint of torchvision's resnet10 \(width 4\), or train from scratch/,
    ]);
    // a ResNet-10 with 1000 classes fits (its fc is re-initialised): the check passes it
    const r10 = join(root, "r10.safetensors");
    await weights(r10, 10, 1000);
    const file = await readPretrained(r10, { depth: 10, width: 4, numClasses: 3 });
    assert.equal(file.tensors.get("fc.weight")!.shape[0], 1000);
    await Deno.remove(r10);
    // a batch larger than the training set (19 images, 3 of them the dev set)
    await refuses([...base, ...sizes, "--out", out, "--batch", "100"], 2, [
      /^error: --batch 100 is larger than the training set: 16 images of .*ImageNet_LT_train\.txt \(after the 3 dev images are taken out\)/m,
      /to fix: pass a --batch of at most 16$/m,
    ]);
    // settings, the data root, the layout's files
    await refuses(["--preset", "imagenet-lt", "--data-root", root, "--depth", "33"], 2, [
      /--depth: expected one of 10, 18, 34, 50, 101, 152, got 33/,
      /to fix: pass one of those depths, or leave it out for imagenet-lt's 10/,
    ]);
    // numbers out of range, before the data is read or the GPU taken
    await refuses([...base, ...small, "--out", out, "--beta", "2"], 2, [
      /^error: --beta: expected a number in \[0, 1\), got 2$/m,
      /to fix: pass --beta in \[0, 1\), or leave it out for imagenet-lt's 0\.9999$/m,
    ]);
    await refuses([...base, ...small, "--out", out, "--max-epochs", "0"], 2, [
      /^error: --max-epochs: expected a positive integer, got 0$/m,
    ]);
    await refuses(["--preset", "imagenet-lt"], 2, [
      /--data-root: the dataset folder is required/,
      /to fix: pass --data-root DIR, the folder holding the preset's list or annotation files/,
    ]);
    const empty = join(root, "empty");
    await Deno.mkdir(empty);
    await refuses(["--preset", "imagenet-lt", "--data-root", empty, "--out", out], 1, [
      /list file .*empty\/ImageNet_LT_train\.txt does not exist: --data-root .*empty lacks the imagenet-lt layout's training file/,
      /to fix: put the layout's files \(ImageNet_LT_train\.txt, ImageNet_LT_val\.txt, ImageNet_LT_test\.txt\) in --data-root .* or name the file with --train-list/,
    ]);
    await refuses([...base, "--train-list", join(root, "nope.txt"), "--out", out], 1, [
      /--train-list .*nope\.txt: the list file does not exist/,
      /to fix: check the path given to --train-list/,
    ]);
    // --out holding another kind of run's checkpoint
    const foreign = join(root, "foreign");
    await Deno.mkdir(foreign);
    await Deno.writeFile(
      join(foreign, "checkpoint.safetensors"),
      encodeSafetensors(new Map(), { format: "tailgrad-train-checkpoint/1" }),
    );
    await refuses([...base, ...small, "--out", foreign], 2, [
      /--out .*foreign already holds a run \(checkpoint\.safetensors\)/,
      /to fix: pass --resume to continue it, or choose another --out/,
    ]);
    await refuses([...base, ...small, "--out", foreign, "--resume"], 2, [
      /checkpoint .*foreign\/checkpoint\.safetensors: not a large-run checkpoint \(format "tailgrad-train-checkpoint\/1", expected "tailgrad-large-checkpoint\/1"\)/,
      /to fix: the file was not written by a large run/,
    ]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("large command line: presets route, flags parse, bad values are named", () => {
  assert.ok(wantsLargePreset(["--preset", "imagenet-lt"]));
  assert.ok(wantsLargePreset(["--preset=inat2018"]));
  assert.ok(!wantsLargePreset(["--preset", "default"]));
  const p = parseLargeArgs([
    "--preset",
    "places-lt",
    "--data-root",
    "/data/places",
    "--meta-params",
    "classifier",
    "--freeze-backbone",
  ]);
  assert.equal(p.cfg.depth, 152);
  assert.equal(p.cfg.lr, 0.01);
  assert.equal(p.cfg.lrDecayEvery, 10);
  assert.equal(p.cfg.freezeBackbone, true);
  const i = parseLargeArgs(["--preset", "inat2018", "--data-root", "d"]).cfg;
  assert.deepEqual([i.depth, i.batch, i.lr, i.metaLr], [50, 64, 0.01, 0.001]);
  const n = parseLargeArgs(["--preset", "imagenet-lt", "--data-root", "d"]).cfg;
  assert.deepEqual([n.depth, n.lr, n.lrDecayEvery, n.metaStart, n.batch], [10, 0.1, 35, 35, 64]);
  assert.throws(() => parseLargeArgs(["--preset", "imagenet-lt"]), /--data-root/);
  assert.throws(
    () => parseLargeArgs(["--preset", "imagenet-lt", "--data-root", "d", "--freeze-backbone"]),
    /--freeze-backbone: needs --meta-params classifier/,
  );
  assert.throws(
    () => parseLargeArgs(["--preset", "imagenet-lt", "--data-root", "d", "--depth", "12"]),
    /--depth: expected one of 10, 18, 34, 50, 101, 152/,
  );
});

Deno.test("large command line: numbers out of range are refused, naming the flag, the range and what to pass", () => {
  const base = ["--preset", "imagenet-lt", "--data-root", "d"];
  const refused = (args: string[], problem: RegExp, fix: RegExp) =>
    assert.throws(() => parseLargeArgs([...base, ...args]), (e) => {
      assert.ok(e instanceof ConfigError && e.exitCode === 2, String(e));
      assert.equal(e.flag, args[0]);
      const [message, ...rest] = e.message.split("\n  to fix: ");
      assert.equal(rest.length, 1, `one to-fix line: ${e.message}`);
      assert.match(message, problem);
      assert.match(rest[0], fix);
      return true;
    });
  for (const v of ["2", "1", "-1"]) {
    refused(
      ["--beta", v],
      new RegExp(`^--beta: expected a number in \\[0, 1\\), got ${v}$`),
      /^pass --beta in \[0, 1\), or leave it out for imagenet-lt's 0\.9999$/,
    );
  }
  for (const v of ["5", "-1"]) {
    refused(
      ["--momentum", v],
      /^--momentum: expected a number in \[0, 1\)/,
      /for imagenet-lt's 0\.9$/,
    );
  }
  refused(["--weight-decay", "-1"], /^--weight-decay: expected a number >= 0, got -1$/, /0\.0005$/);
  refused(["--tau", "-1"], /^--tau: expected a number >= 0, got -1$/, /^pass --tau >= 0, or/);
  refused(["--meta-lr", "0"], /^--meta-lr: expected a number > 0, got 0$/, /^pass --meta-lr > 0/);
  for (const v of ["2.5", "0", "-5"]) {
    refused(
      ["--lr-decay-every", v],
      new RegExp(
        `^--lr-decay-every: expected a whole number of epochs >= 1, or none \\(never decay\\), got ${v}$`,
      ),
      /^pass --lr-decay-every N >= 1, or none for a constant learning rate, or leave it out for imagenet-lt's fraction of the run$/,
    );
  }
  refused(
    ["--max-epochs", "0"],
    /^--max-epochs: expected a positive integer, got 0$/,
    /up to --epochs$/,
  );
  refused(["--epochs", "0"], /^--epochs: expected a positive integer, got 0$/, /imagenet-lt's 90$/);
  // was taken: 99999999999 epochs, meta from epoch 38888888888
  refused(
    ["--epochs", "99999999999"],
    /^--epochs: expected at most 100000, got 99999999999$/,
    /^pass --epochs from 1 to 100000, or leave it out for imagenet-lt's 90$/,
  );
  refused(["--seed", "4294967296"], /^--seed: expected an integer in \[0, 4294967295\]/, /--seed/);
  // 9999 threads were started (and hung the run) before
  refused(
    ["--workers", "9999"],
    /^--workers: expected an integer in \[0, 256\] \(0: decode on the main thread\) or none, got 9999$/,
    /^pass --workers from 0 to 256 \(at most the cores: more only add memory\), or none for all cores but one$/,
  );
  assert.equal(parseLargeArgs([...base, "--workers", "256"]).cfg.workers, 256);
  // 0 decode threads is a choice (decode on the main thread), none all cores but one
  assert.equal(parseLargeArgs([...base, "--workers", "0"]).cfg.workers, 0);
  // the valid ends of the ranges pass
  const ok = parseLargeArgs([...base, "--beta", "0", "--momentum", "0", "--tau", "0"]).cfg;
  assert.deepEqual([ok.beta, ok.momentum, ok.tau], [0, 0, 0]);
  assert.equal(largeLr({ ...ok, lrDecayEvery: null }, 1000), 0.1, "none: never decays");
});

Deno.test("large command line: the schedule keeps the preset's fractions of --epochs unless given", () => {
  const cfg = (preset: string, ...args: string[]) =>
    parseLargeArgs(["--preset", preset, "--data-root", "d", ...args]).cfg;
  const at = (c: LargeConfig) => [c.epochs, c.metaStart, c.lrDecayEvery];
  assert.deepEqual(at(cfg("imagenet-lt")), [90, 35, 35]);
  // the reviewer's case: 35 was past a 30-epoch run
  assert.deepEqual(at(cfg("imagenet-lt", "--epochs", "30")), [30, 11, 11]);
  assert.deepEqual(at(cfg("imagenet-lt", "--epochs", "180")), [180, 70, 70]);
  // a run too short for a whole decay interval decays every epoch, never every 0
  assert.deepEqual(at(cfg("imagenet-lt", "--epochs", "2")), [2, 0, 1]);
  assert.deepEqual(at(cfg("places-lt", "--epochs", "15")), [15, 5, 5]);
  assert.deepEqual(at(cfg("inat2018", "--epochs", "30")), [30, 20, null]);
  // given values are kept, and still checked against the run
  assert.deepEqual(at(cfg("imagenet-lt", "--epochs", "30", "--meta-start", "3")), [30, 3, 11]);
  assert.deepEqual(at(cfg("imagenet-lt", "--epochs", "30", "--lr-decay-every", "none")), [
    30,
    11,
    null,
  ]);
  assert.throws(
    () => cfg("imagenet-lt", "--epochs", "30", "--meta-start", "35"),
    /--meta-start: expected an epoch in \[0, 30\] \(30: no meta stage\), got 35\n {2}to fix: pass a --meta-start from 0 to 30, or leave it out for imagenet-lt's fraction of the run, or more --epochs$/,
  );
});

Deno.test("large command line: bad flags are usage errors that name the flag and what is valid", async () => {
  const base = ["--preset", "imagenet-lt", "--data-root", "d"];
  const refused = (args: string[], re: RegExp) =>
    assert.throws(() => parseLargeArgs(args), (e) => {
      assert.ok(e instanceof UsageError && e.exitCode === 2, String(e));
      assert.match(e.message, re);
      assert.match(e.message, /to fix: run with --help to see every flag and its default/);
      return true;
    });
  refused(
    [...base, "--meta-params", "x"],
    /^invalid --meta-params "x": expected one of all, classifier/,
  );
  refused(
    [...base, "--bogus"],
    /^unknown flag --bogus; valid flags: --preset, --data-root, .*--max-epochs, --help/,
  );
  refused([...base, "--depth", "ten"], /^invalid --depth "ten": expected an integer/);
  refused([...base, "--lr", "fast"], /^invalid --lr "fast": expected a number/);
  refused([...base, "--meta-lr", "x"], /^invalid --meta-lr "x": expected a number or none/);
  refused([...base, "--epochs"], /^--epochs needs a value: an integer/);
  refused([...base, "--resume=yes"], /^--resume takes no value \(use --resume or --no-resume\)/);
  refused([...base, "--batch", "8", "--batch=16"], /^--batch is given twice; give each flag once/);
  refused([...base, "stray"], /^unexpected argument "stray": every setting is a flag/);
  refused(["--data-root", "d"], /^--preset is required: one of imagenet-lt, places-lt, inat2017/);
  // a negative number reaches validation as the flag's value
  assert.throws(
    () => parseLargeArgs([...base, "--lr", "-1"]),
    /--lr: expected a number > 0, got -1/,
  );
  // "none" is null for the nullable settings; run options are not config fields
  const p = parseLargeArgs([
    ...base,
    ...[
      "--meta-lr",
      "none",
      "--lr-decay-every",
      "none",
      "--workers",
      "none",
      "--pretrained",
      "none",
    ],
    ...["--resume", "--max-epochs", "2"],
  ]);
  assert.deepEqual([p.cfg.metaLr, p.cfg.lrDecayEvery, p.cfg.workers, p.cfg.pretrained], [
    null,
    null,
    null,
    null,
  ]);
  assert.deepEqual([p.resume, p.maxEpochs, "resume" in p.cfg, "maxEpochs" in p.cfg], [
    true,
    2,
    false,
    false,
  ]);
  assert.equal(parseLargeArgs([...base, "--lr-decay-every", "7"]).cfg.lrDecayEvery, 7);
  // --help skips validation and shows the preset's defaults
  assert.equal(parseLargeArgs(["--preset", "places-lt", "--help"]).help, true);
  const help = largeUsage("places-lt");
  assert.match(
    help,
    /--depth <value>\n {6}ResNet depth: 10, 18, 34, 50, 101, 152 \(default: 152\)/,
  );
  assert.match(help, /--out <value>\n {6}output folder \(default: runs\/places-lt\)/);
  assert.match(
    help,
    /--meta-params <all\|classifier>\n {6}parameters of the meta step \(default: classifier\)/,
  );
  assert.match(help, /--max-epochs <value>\n {6}stop after N epochs in this call\n/);
  // the schedule's defaults say that they follow --epochs
  assert.match(
    help,
    /--meta-start <value>\n {6}first epoch of the meta stage \(default: 10 of 30 epochs; floor\(10 \* epochs \/ 30\) at other --epochs\)/,
  );
  assert.match(
    help,
    /--lr-decay-every <value>\n.*\(default: 10 of 30 epochs; max\(1, floor\(10 \* epochs \/ 30\)\) at/,
  );
  assert.match(largeUsage("inat2018"), /--lr-decay-every <value>\n.*\(default: none\)/);
  assert.match(help, /--workers <value>\n {6}JPEG decode threads \(0: decode on the main thread;/);
  // the exit status of a bad command line is 2, before any work
  const error = console.error;
  const printed: unknown[] = [];
  console.error = (...a: unknown[]) => printed.push(...a);
  try {
    assert.equal(await largeMain([...base, "--bogus"]), 2);
  } finally {
    console.error = error;
  }
  assert.match(String(printed[0]), /^error: unknown flag --bogus; valid flags:/);
});
