/**
 * The large-scale trainer end to end on miniatures of each layout (ImageNet-LT and Places-LT list
 * files, iNaturalist 2017/2018 JSON), written by the test with its JPEG encoder: data checks
 * before anything is written, a CE epoch and meta epochs with the full and the classifier-only
 * meta step (backbone trained and frozen), evaluation with many/medium/few-shot accuracy, a
 * torchvision checkpoint loaded with the classifier re-initialised, and a resume that ends
 * bit-identical to the uninterrupted run. ResNet-10 of width 4 on 32x32 crops.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { testImage } from "./support/images.ts";
import { encodeJpeg } from "./support/jpeg_encoder.ts";
import { type LargeConfig, type LargePreset, largePreset } from "../src/large/config.ts";
import { LAYOUT_FILES } from "../src/large/data.ts";
import { trainLarge } from "../src/large/trainer.ts";
import { largeMain, largeUsage, parseLargeArgs, wantsLargePreset } from "../src/large/cli.ts";
import { UsageError } from "../src/cli/flags.ts";
import { Model } from "../src/nn/model.ts";
import { TorchvisionResNet } from "../src/nn/torchvision.ts";
import { readCheckpoint } from "../src/checkpoint/checkpoint.ts";
import { DataError } from "../src/data/errors.ts";
import { gpuTest } from "./gpu_harness.ts";

/** Training images per class (before the dev image of each): many / medium / few at scale 1/10. */
const COUNTS = [9, 6, 4];
const EVAL_PER_CLASS = 2;

async function jpeg(root: string, rel: string, seed: number): Promise<void> {
  const path = join(root, rel);
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  const w = 36 + (seed % 7), h = 34 + (seed % 5);
  await Deno.writeFile(path, encodeJpeg(testImage(w, h, seed), w, h, { quality: 85 }).bytes);
}

/** Writes a miniature dataset of `preset`'s layout under a new folder; returns it. */
async function miniature(preset: LargePreset): Promise<string> {
  const root = await Deno.makeTempDir({ prefix: `tg-${preset}-` });
  const files = LAYOUT_FILES[preset];
  const split = async (name: string, perClass: number[]) => {
    const entries: [string, number][] = [];
    for (let c = 0; c < perClass.length; c++) {
      for (let k = 0; k < perClass[c]; k++) {
        const rel = `${name}/class${c}/img_${k}.jpg`;
        await jpeg(root, rel, 1000 * c + k + (name === "train" ? 0 : 500));
        entries.push([rel, c]);
      }
    }
    return entries;
  };
  const train = await split("train", COUNTS);
  const evals = await split("val", COUNTS.map(() => EVAL_PER_CLASS));
  if (preset.startsWith("inat")) {
    const json = (entries: [string, number][]) =>
      JSON.stringify({
        images: entries.map(([p], i) => ({ id: 100 + i, file_name: p })),
        annotations: entries.map(([, c], i) => ({ id: i, image_id: 100 + i, category_id: 7 + c })),
        categories: COUNTS.map((_, c) => ({ id: 7 + c, name: `species ${c}` })),
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

gpuTest(
  "large run, ImageNet-LT lists: CE then full meta, shot groups, exact resume",
  async (gpu) => {
    const root = await miniature("imagenet-lt");
    try {
      const lines: string[] = [];
      const progress = { line: (m: string) => lines.push(m) };
      const cfg = tiny("imagenet-lt", root);
      const s = await trainLarge(cfg, { gpu, progress });
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
      assert.ok(
        lines.some((l) => /many\/medium\/few-shot accuracy – \/ – \/ \d/.test(l)),
        lines.join("\n"),
      );
      // stopped after 2 epochs and resumed: bit-identical to the uninterrupted run
      const cfg2 = { ...cfg, out: join(root, "run2") };
      const part = await trainLarge(cfg2, { gpu, progress: null, maxEpochs: 2 });
      assert.equal(part.status, "running");
      await assert.rejects(() => trainLarge(cfg2, { gpu, progress: null }), /pass --resume/);
      const done = await trainLarge(cfg2, { gpu, progress: null, resume: true });
      assert.equal(done.status, "completed");
      assert.deepEqual(done.last, s.last);
      assert.deepEqual(await checkpointBits(cfg2.out), await checkpointBits(cfg.out));
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
      const s = await trainLarge(cfg, { gpu, progress: { line: (m) => lines.push(m) } });
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
      const s = await trainLarge(cfg, { gpu, progress: null });
      assert.equal(s.status, "completed");
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

gpuTest("large run, iNaturalist 2018 JSON: full meta step", async (gpu) => {
  const root = await miniature("inat2018");
  try {
    const s = await trainLarge(tiny("inat2018", root, { epochs: 2 }), { gpu, progress: null });
    assert.equal(s.status, "completed");
    assert.equal(s.data.numClasses, 3);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

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

Deno.test("large command line: bad flags are usage errors that name the flag and what is valid", async () => {
  const base = ["--preset", "imagenet-lt", "--data-root", "d"];
  const refused = (args: string[], re: RegExp) =>
    assert.throws(() => parseLargeArgs(args), (e) => {
      assert.ok(e instanceof UsageError && e.exitCode === 2, String(e));
      assert.match(e.message, re);
      assert.match(e.message, /to fix: run with --help to see every flag and its default/);
      return true;
    });
  refused([...base, "--meta-params", "x"], /^invalid --meta-params "x": one of all, classifier/);
  refused(
    [...base, "--bogus"],
    /^unknown flag --bogus; valid flags: --preset, --data-root, .*--max-epochs, --help/,
  );
  refused([...base, "--depth", "ten"], /^invalid --depth "ten": an integer/);
  refused([...base, "--lr", "fast"], /^invalid --lr "fast": a number/);
  refused([...base, "--meta-lr", "x"], /^invalid --meta-lr "x": a number or none/);
  refused([...base, "--epochs"], /^--epochs needs a value: an integer/);
  refused([...base, "--resume=yes"], /^--resume takes no value \(use --resume or --no-resume\)/);
  refused([...base, "--batch", "8", "--batch=16"], /^--batch is given more than once/);
  refused([...base, "stray"], /^unexpected argument "stray": every setting is a flag/);
  refused(["--data-root", "d"], /^--preset is required: one of imagenet-lt, places-lt, inat2017/);
  // a negative number reaches validation as the flag's value
  assert.throws(
    () => parseLargeArgs([...base, "--lr", "-1"]),
    /--lr: expected a positive number, got -1/,
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
  assert.equal(parseLargeArgs([...base, "--lr-decay-every", "7.5"]).cfg.lrDecayEvery, 7.5);
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
