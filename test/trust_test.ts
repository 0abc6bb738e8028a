/**
 * Trust (issue 11): a wrong path, a foreign checkpoint, a mismatched resume or a bad flag ends
 * with a named error that says what to do, a non-zero exit and no stack trace, before any work
 * starts, and leaves every existing file byte-identical; a user's file is never deleted; a
 * multi-member gzip file reads; the main job and the tests need no npm package.
 */
import assert from "node:assert/strict";
import { longTailCounts } from "../src/data/split.ts";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import {
  DataError,
  findDataset,
  loadDataset,
  readIdxFile,
  sha256Hex,
  writeTar,
} from "../src/data/mod.ts";
import { UserError } from "../src/errors.ts";
import {
  decodeSafetensors,
  encodeSafetensors,
  readCheckpoint,
  type SafeTensor,
  SafetensorsError,
} from "../src/checkpoint/mod.ts";
import { resnetSpecs } from "../src/nn/resnet.ts";
import { hasStage2, METHODS, presetConfig, resolveTrainConfig } from "../src/train/config.ts";
import { phaseOf } from "../src/train/methods.ts";
import { parseTrainArgs, usage } from "../src/train/cli.ts";
import { parseBenchFlags } from "../bench/flags.ts";
import { Gpu } from "../src/gpu/runtime.ts";
import { train as trainInProcess, type TrainOptions } from "../src/train/trainer.ts";
import { snapshot, SYN_SIZE, syntheticSplit, writeSyntheticIdx } from "./train_fixtures.ts";

const NO_STACK = /^\s+at /m;
const SCRIPT = new URL("../scripts/train.ts", import.meta.url).pathname;
const ROOT = new URL("..", import.meta.url).pathname;

/** Runs scripts/train.ts like the task does: read anywhere, write only under `writeRoot`. */
async function train(args: string[], writeRoot: string, env: Record<string, string> = {}) {
  const r = await new Deno.Command("deno", {
    args: [
      "run",
      "--quiet",
      "--no-lock",
      "--allow-read",
      `--allow-write=${writeRoot}`,
      "--allow-env=TAILGRAD_DATA,TAILGRAD_DEBUG",
      SCRIPT,
      ...args,
    ],
    env: { DENO_WEBGPU_BACKEND: "vulkan", TAILGRAD_DATA: "", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, stdout: dec.decode(r.stdout), stderr: dec.decode(r.stderr) };
}

/** A CLI run that must fail: exit code, message, no stack, and `root` left exactly as it was. */
async function refuses(
  root: string,
  args: string[],
  code: number,
  patterns: RegExp[],
  env: Record<string, string> = {},
): Promise<string> {
  const before = await snapshot(root);
  const r = await train(args, root, env);
  const what = `${args.join(" ")}\n${r.stderr}`;
  assert.equal(r.code, code, `exit ${r.code}: ${what}`);
  assert.match(r.stderr, /^error: /m, what);
  for (const p of patterns) assert.match(r.stderr, p, what);
  assert.doesNotMatch(r.stderr, NO_STACK, what);
  assert.doesNotMatch(r.stdout, /epoch 1\//, `it trained: ${what}`);
  assert.deepEqual(await snapshot(root), before, `files changed: ${what}`);
  return r.stderr;
}

async function withTmp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "tg-trust-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
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

/** Flags of a tiny run on the synthetic IDX data under `<root>/mnist`; `set` replaces values. */
function tiny(root: string, out: string, set: Record<string, string> = {}, extra: string[] = []) {
  const flags: Record<string, string> = {
    "dataset": "mnist",
    "data-dir": root,
    "imbalance": "10",
    "max-per-class": "40",
    "dev-per-class": "2",
    "test-per-class": "10",
    "batch": "16",
    "method": "ce",
    "epochs": "1",
    "lr-decay-epochs": "none",
    "out": out,
    ...set,
  };
  return [...Object.entries(flags).flatMap(([k, v]) => [`--${k}`, v]), "--no-download", ...extra];
}

// ---------------------------------------------------------------- silent fallback to other data

Deno.test("data: a wrong --data-dir or $TAILGRAD_DATA never falls back to the system copy", async () => {
  await withTmp(async (root) => {
    const fm = ["--dataset", "fashion-mnist", "--no-download", "--epochs", "1"];
    const out = ["--out", join(root, "out")];
    // a folder that does not exist
    await refuses(root, [...fm, "--data-dir", join(root, "nope"), ...out], 1, [
      /--data-dir .*nope does not exist/,
      /Fashion-MNIST was not found/,
    ]);
    // downloads allowed (the default): still refused before any download, nothing created
    const download = ["--dataset", "fashion-mnist", "--epochs", "1"];
    await refuses(root, [...download, "--data-dir", join(root, "nope"), ...out], 1, [
      /^error: --data-dir .*\/nope does not exist, so Fashion-MNIST was not found: a folder named there is the only place looked in/m,
      /to fix: check the path; create the folder to download Fashion-MNIST into .*\/nope\/fashion-mnist, or leave --data-dir out to use \.\/data\/fashion-mnist$/m,
    ]);
    await refuses(root, [...download, ...out], 1, [
      /^error: \$TAILGRAD_DATA .*\/nope does not exist/m,
      /to fix: .*or unset \$TAILGRAD_DATA to use \.\/data\/fashion-mnist$/m,
    ], { TAILGRAD_DATA: join(root, "nope") });
    // a folder with one file missing, and one where a file is a folder
    const partial = join(root, "partial", "fashion-mnist");
    await Deno.mkdir(partial, { recursive: true });
    for (const f of ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"]) {
      await Deno.writeFile(join(partial, `${f}.gz`), new Uint8Array([1, 2, 3]));
    }
    await Deno.mkdir(join(partial, "t10k-images-idx3-ubyte.gz"));
    await refuses(root, [...fm, "--data-dir", join(root, "partial"), ...out], 1, [
      /incomplete or damaged copy of Fashion-MNIST/,
      /t10k-images-idx3-ubyte\.gz is a folder, expected the file/,
      /t10k-labels-idx1-ubyte\.gz \(or t10k-labels-idx1-ubyte\) is missing/,
      /to fix: /,
    ]);
    // $TAILGRAD_DATA: a folder that does not exist, a partial copy, the files themselves
    await refuses(root, [...fm, ...out], 1, [/\$TAILGRAD_DATA .*nope does not exist/], {
      TAILGRAD_DATA: join(root, "nope"),
    });
    await refuses(root, [...fm, ...out], 1, [/incomplete or damaged/], {
      TAILGRAD_DATA: join(root, "partial"),
    });
    const flat = join(root, "flat");
    await writeSyntheticIdx(root);
    await Deno.rename(join(root, "mnist"), flat);
    await refuses(root, [...fm, ...out], 1, [
      /\$TAILGRAD_DATA \(.*flat\) holds dataset files directly/,
      /move the files into .*flat\/fashion-mnist, or pass --data-dir/,
    ], { TAILGRAD_DATA: flat });
  });
});

Deno.test("data: $TAILGRAD_DATA naming the dataset's own folder is accepted, another name refused", async () => {
  await withTmp(async (root) => {
    await writeSyntheticIdx(root);
    const own = join(root, "mnist");
    const opts = { cwd: root, systemDirs: false };
    assert.equal(await findDataset("mnist", { ...opts, env: { TAILGRAD_DATA: own } }), own);
    assert.equal(await findDataset("mnist", { ...opts, env: { TAILGRAD_DATA: root } }), own);
    await assert.rejects(
      findDataset("fashion-mnist", { ...opts, env: { TAILGRAD_DATA: own } }),
      (e) => e instanceof DataError && /holds dataset files directly/.test(e.message),
    );
    // --data-dir may name the files' folder itself, whatever its name
    assert.equal(await findDataset("fashion-mnist", { ...opts, dataDir: own }), own);
  });
});

// ---------------------------------------------------------------- a user's file deleted

function fakeCifarArchive(): Uint8Array {
  const rec = (y: number) => Uint8Array.from({ length: 3073 }, (_, i) => (i ? i * 7 + y : y));
  const members = [1, 2, 3, 4, 5].map((i) => ({
    name: `cifar-10-batches-bin/data_batch_${i}.bin`,
    data: rec(i),
  }));
  members.push({ name: "cifar-10-batches-bin/test_batch.bin", data: rec(7) });
  return new Uint8Array(gzipSync(writeTar(members)));
}

Deno.test("data: a CIFAR archive the user placed is checked against its digest and never removed", async () => {
  await withTmp(async (root) => {
    const dir = join(root, "cifar10");
    await Deno.mkdir(dir);
    const archive = join(dir, "cifar-10-binary.tar.gz");
    const bytes = fakeCifarArchive();
    await Deno.writeFile(archive, bytes);
    // through the CLI: the pinned digest of the official archive does not match
    await refuses(
      root,
      ["--dataset", "cifar10", "--data-dir", root, "--no-download", "--out", join(root, "o")],
      1,
      [
        /cifar-10-binary\.tar\.gz: SHA-256 [0-9a-f]{64} does not match the pinned digest/,
        /left untouched/,
      ],
    );
    // with its own digest pinned it is unpacked, and kept
    const opts = { dataDir: root, cwd: root, env: {}, systemDirs: false };
    const digests = { "cifar-10-binary.tar.gz": await sha256Hex(bytes) };
    const d = await loadDataset("cifar10", { ...opts, digests });
    assert.deepEqual([...d.train.labels], [1, 2, 3, 4, 5]);
    assert.deepEqual(await Deno.readFile(archive), bytes, "the archive is kept as it was");
    // a .bin file already there is never overwritten
    const mine = Uint8Array.from({ length: 3073 }, (_, i) => (i ? 200 : 3));
    await Deno.writeFile(join(dir, "data_batch_2.bin"), mine);
    await Deno.remove(join(dir, "data_batch_1.bin"));
    const again = await loadDataset("cifar10", { ...opts, digests });
    assert.deepEqual([...again.train.labels], [1, 3, 3, 4, 5]);
    assert.deepEqual(await Deno.readFile(join(dir, "data_batch_2.bin")), mine);
  });
});

Deno.test("data: a CIFAR folder missing one batch file names that file", async () => {
  await withTmp(async (root) => {
    const dir = join(root, "cifar10", "cifar-10-batches-bin");
    await Deno.mkdir(dir, { recursive: true });
    for (
      const f of ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "test_batch.bin"]
    ) {
      await Deno.writeFile(join(dir, f), new Uint8Array(3073));
    }
    await Deno.writeFile(join(dir, "data_batch_5.bin"), new Uint8Array(3073));
    await refuses(
      root,
      ["--dataset", "cifar10", "--data-dir", root, "--no-download", "--out", join(root, "o")],
      1,
      [/incomplete or damaged copy of CIFAR-10/, /data_batch_4\.bin is missing/],
    );
  });
});

// ---------------------------------------------------------------- shapes and class counts

Deno.test("data: image sizes, empty classes and zero-size images are refused before training", async () => {
  await withTmp(async (root) => {
    await writeSyntheticIdx(root);
    const dir = join(root, "mnist");
    const out = join(root, "out");
    const put = (f: string, b: Uint8Array) => Deno.writeFile(join(dir, f), b);
    const train = syntheticSplit("train", 60, 1);
    const good = await Deno.readFile(join(dir, "train-images-idx3-ubyte"));
    // 1x1 training images with 8x8 test images
    await put(
      "train-images-idx3-ubyte",
      idx(0x803, [train.count, 1, 1], new Uint8Array(train.count)),
    );
    await refuses(root, tiny(root, out), 1, [
      /t10k-images-idx3-ubyte: test images are 1x8x8 but the training images .* are 1x1x1/,
    ]);
    // zero-size images
    await put("train-images-idx3-ubyte", idx(0x803, [train.count, 0, 8], new Uint8Array()));
    await refuses(root, tiny(root, out), 1, [/images of size 1x0x8 \(zero pixels\)/]);
    await put("train-images-idx3-ubyte", good);
    // no training image of class 3
    const labels = train.labels.map((y) => (y === 3 ? 4 : y));
    await put("train-labels-idx1-ubyte", idx(0x801, [train.count], labels));
    await refuses(root, tiny(root, out), 1, [
      /train-images-idx3-ubyte: class 3 has 0 training images; every class needs at least 3/,
    ]);
    // a class with too few for --dev-per-class
    await put("train-labels-idx1-ubyte", idx(0x801, [train.count], train.labels));
    await refuses(root, tiny(root, out, { "dev-per-class": "60" }), 1, [
      /class 0 has 60 training images; every class needs at least 61/,
      /lower --dev-per-class to 59/,
    ]);
  });
});

// ---------------------------------------------------------------- labels outside the classes

/** A GPU that fails any use: a run refused with it was refused before any GPU work. */
const NO_GPU = new Proxy({}, {
  get(_, key) {
    throw new Error(`the GPU was used (${String(key)}) before the data was checked`);
  },
}) as Gpu;

Deno.test("data: a label outside the classes in data given in memory is refused before the GPU", async () => {
  await withTmp(async (root) => {
    const base: TrainOptions = {
      dataset: "mnist",
      imbalance: 10,
      maxPerClass: 30,
      devPerClass: 2,
      batch: 16,
      epochs: 1,
      lrDecayEpochs: [],
      gpu: NO_GPU,
      progress: null,
    };
    type Split = "train" | "test";
    const fresh = () => ({
      train: syntheticSplit("train", 60, 1),
      test: syntheticSplit("test", 20, 2),
    });
    const fix =
      /to fix: every label must be a class index in \[0, 10\): correct the label, or give the split the numClasses its labels need$/;
    const cases: [Split, number, number, number | null][] = [
      ["train", 0, 10, null], // the dev set and the long-tailed set are drawn from it
      ["train", 537, 255, null],
      ["test", 17, 10, null], // the whole test split is evaluated
      ["test", 3, 200, 10], // a balanced test subset would have dropped it silently
      ["train", 5, -1, null], // an Int32Array of labels from a JavaScript caller
    ];
    let n = 0;
    for (const [split, at, value, testPerClass] of cases) {
      const data = fresh();
      if (value < 0) {
        data[split].labels = Int32Array.from(data[split].labels) as unknown as Uint8Array;
      }
      data[split].labels[at] = value;
      const out = join(root, `out${n++}`);
      await assert.rejects(
        trainInProcess({ ...base, data, out, testPerClass }),
        (e: Error) => {
          assert.ok(e instanceof UserError, e.stack);
          assert.match(
            e.message,
            new RegExp(
              `^data\\.${split} \\(in memory\\): label ${value} at index ${at} is out of ` +
                "range: the classes are \\[0, 10\\)\n",
            ),
          );
          assert.match(e.message, fix);
          assert.equal(e.file, `data.${split} (in memory)`);
          return true;
        },
      );
      await assert.rejects(Deno.stat(out), Deno.errors.NotFound, "nothing written");
    }
    // arrays that disagree with the split's fields
    const wrong: [string, (d: ReturnType<typeof fresh>) => void, RegExp][] = [
      [
        "labels",
        (d) => (d.test.labels = d.test.labels.subarray(1)),
        /^data\.test \(in memory\): labels holds 199 labels for 200 images/,
      ],
      [
        "images",
        (d) => (d.train.images = d.train.images.subarray(64)),
        /^data\.train \(in memory\): images holds 38336 bytes, expected 38400 \(600 images of 1x8x8\)/,
      ],
      [
        "numClasses",
        (d) => (d.train.numClasses = 2.5),
        /^data\.train \(in memory\): numClasses is 2\.5, expected an integer >= 1/,
      ],
    ];
    const other = fresh();
    other.test.numClasses = 11;
    await assert.rejects(
      trainInProcess({ ...base, data: other, out: join(root, "c") }),
      (e: Error) => {
        assert.ok(e instanceof UserError, e.stack);
        assert.match(
          e.message,
          /^data\.test \(in memory\): 11 classes, but the training split has 10\n/,
        );
        assert.match(
          e.message,
          /to fix: use the test split of the same dataset as the training split/,
        );
        return true;
      },
    );
    for (const [what, edit, problem] of wrong) {
      const data = fresh();
      edit(data);
      await assert.rejects(trainInProcess({ ...base, data, out: join(root, what) }), (e: Error) => {
        assert.ok(e instanceof UserError, e.stack);
        assert.match(e.message, problem);
        assert.match(
          e.message,
          /\n {2}to fix: give the split consistent fields: count images of channels x height x width bytes each/,
        );
        return true;
      });
    }
  });
});

Deno.test("data: a damaged dataset file is named, with what to do, before training", async () => {
  await withTmp(async (root) => {
    await writeSyntheticIdx(root);
    const dir = join(root, "mnist");
    const put = (f: string, b: Uint8Array) => Deno.writeFile(join(dir, f), b);
    const train = syntheticSplit("train", 60, 1);
    const good = await Deno.readFile(join(dir, "train-labels-idx1-ubyte"));
    const replace =
      /to fix: delete the file and run again with --download \(option allowDownload\) to fetch a verified copy in its place, or point --data-dir at a good copy of the dataset$/m;
    // a label file cut short
    await put("train-labels-idx1-ubyte", good.subarray(0, good.length - 100));
    await refuses(root, tiny(root, join(root, "out")), 1, [
      /^error: .*train-labels-idx1-ubyte: truncated IDX data: dims \[600\] need 600 bytes, file has 500$/m,
      replace,
    ]);
    // a label outside the dataset's 10 classes
    const labels = train.labels.slice();
    labels[123] = 10;
    await put("train-labels-idx1-ubyte", idx(0x801, [train.count], labels));
    await refuses(root, tiny(root, join(root, "out")), 1, [
      /^error: .*train-labels-idx1-ubyte: label 10 at index 123 is out of range \[0, 10\)/m,
      replace,
    ]);
    // a labels file where the images file should be
    await put("train-labels-idx1-ubyte", good);
    await Deno.copyFile(join(dir, "t10k-labels-idx1-ubyte"), join(dir, "t10k-images-idx3-ubyte"));
    await refuses(root, tiny(root, join(root, "out")), 1, [
      /t10k-images-idx3-ubyte: wrong magic number 0x00000801 \(a labels file's\) for an images file/,
      /to fix: the file is misnamed or damaged: give each file its dataset's name/,
    ]);
  });
});

// ---------------------------------------------------------------- resume

/** A checkpoint of a tiny 1-epoch run (trained once for all the resume cases). */
let tinyRun: { root: string; out: string } | null = null;
async function trainedRun(): Promise<{ root: string; out: string }> {
  if (tinyRun) return tinyRun;
  const root = await Deno.makeTempDir({ prefix: "tg-trust-run-" });
  await writeSyntheticIdx(root);
  const out = join(root, "run");
  const r = await train(tiny(root, out), root);
  assert.equal(r.code, 0, r.stderr);
  tinyRun = { root, out };
  return tinyRun;
}

async function copyRun(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const e of Deno.readDir(from)) {
    await Deno.copyFile(join(from, e.name), join(to, e.name));
  }
}

/** Rewrites `out`'s checkpoint through `edit` (tensors and metadata). */
async function editCheckpoint(
  out: string,
  edit: (t: Map<string, SafeTensor>, m: Record<string, string>) => void,
): Promise<void> {
  const path = join(out, "checkpoint.safetensors");
  const f = decodeSafetensors(await Deno.readFile(path));
  edit(f.tensors, f.metadata);
  await Deno.writeFile(path, encodeSafetensors(f.tensors, f.metadata));
}

Deno.test({
  name: "resume: other data, impossible metadata, foreign tensors and damaged files are refused",
  sanitizeResources: false,
  fn: async () => {
    const { root, out } = await trainedRun();
    try {
      const args = (o: string, set: Record<string, string> = {}) =>
        tiny(root, o, set, ["--resume"]);
      let n = 0;
      const variant = async (
        edit: ((t: Map<string, SafeTensor>, m: Record<string, string>) => void) | null,
        patterns: RegExp[],
        set: Record<string, string> = {},
      ) => {
        const o = join(root, `v${n++}`);
        await copyRun(out, o);
        if (edit) await editCheckpoint(o, edit);
        await refuses(root, args(o, set), 1, patterns);
      };
      // other data: the same files with one pixel changed, in another --data-dir
      const other = join(root, "other");
      await writeSyntheticIdx(other);
      const img = join(other, "mnist", "train-images-idx3-ubyte");
      const bytes = await Deno.readFile(img);
      bytes[100] ^= 1;
      await Deno.writeFile(img, bytes);
      await variant(null, [
        /--resume: checkpoint .* was trained on other data: the train split/,
        /resume with the data of the original run/,
      ], { "data-dir": other });
      // metadata: epoch "abc", epoch 99 of 1, a config that is not JSON, an earlier version
      await variant((_, m) => (m.epoch = "abc"), [
        /metadata "epoch" is "abc", expected an integer in \[1, 1\]/,
      ]);
      await variant((_, m) => (m.epoch = "99"), [/metadata "epoch" is "99"/]);
      await variant((_, m) => (m.config = "{not json"), [/metadata "config" is not valid JSON/]);
      await variant((_, m) => delete m.data_fingerprint, [
        /written by an earlier version of tailgrad that did not record which data/,
      ]);
      // tensors: a deeper ResNet's, one missing, one of the wrong shape
      await variant((t) => {
        const deep = resnetSpecs({ depth: 20, inChannels: 1, numClasses: 10, cosine: false });
        for (const s of deep.params) {
          const n = s.shape.reduce((a, b) => a * b, 1);
          t.set(s.name, { dtype: "F32", shape: [...s.shape], data: new Float32Array(n) });
        }
      }, [
        /does not match the model of this run \(--model resnet8\)/,
        /holds layer1\.1\.conv1\.weight, which this model does not have/,
      ]);
      await variant((t) => t.delete("conv1.weight"), [
        /lacks conv1\.weight \(F32 \[16, 1, 3, 3\]\)/,
      ]);
      await variant((t) => {
        t.set("train.class_weights", { dtype: "F32", shape: [3], data: new Float32Array(3) });
      }, [/train\.class_weights is F32 \[3\], expected F32 \[10\]/]);
      // not a safetensors file at all: named as a checkpoint
      const o = join(root, "garbage");
      await copyRun(out, o);
      await Deno.writeFile(join(o, "checkpoint.safetensors"), new TextEncoder().encode("hello"));
      await refuses(root, args(o), 1, [
        /checkpoint .*garbage\/checkpoint\.safetensors is not a valid safetensors file/,
      ]);
      // the untouched checkpoint still resumes (nothing left to train: the run is complete)
      const ok = await train(args(out), root);
      assert.equal(ok.code, 0, ok.stderr);
      // its report names the commit, the date and the command line
      const report = await Deno.readTextFile(join(out, "report.html"));
      assert.match(report, /<th>commit<\/th><td><code>([0-9a-f]{40}|unknown)<\/code>/);
      assert.match(
        report,
        /<th>command<\/th><td><code>deno run .*scripts\/train\.ts --dataset mnist/,
      );
      assert.match(report, /<th>written<\/th><td>\d{4}-\d\d-\d\dT/);
    } finally {
      await Deno.remove(root, { recursive: true });
      tinyRun = null;
    }
  },
});

Deno.test({
  name: 'resume: --resume where --out holds no checkpoint is refused; resume "if-any" starts',
  sanitizeResources: false,
  fn: async () => {
    await withTmp(async (root) => {
      await writeSyntheticIdx(root);
      const hint = /to fix: drop --resume to start a new run, or check --out$/m;
      // a folder that does not exist, an empty one, one that is a file
      const none = join(root, "none");
      await refuses(root, tiny(root, none, {}, ["--resume"]), 2, [
        /^error: --resume: .*\/none holds no checkpoint\.safetensors \(the folder does not exist\)$/m,
        hint,
      ]);
      const empty = join(root, "empty");
      await Deno.mkdir(empty);
      await refuses(root, tiny(root, empty, {}, ["--resume"]), 2, [
        /^error: --resume: .*\/empty holds no checkpoint\.safetensors$/m,
        hint,
      ]);
      // the library's "if-any" (scripts/reproduce.ts): starts the run, then continues it
      const gpu = await Gpu.create();
      try {
        const options: TrainOptions = {
          dataset: "mnist",
          dataDir: root,
          imbalance: 10,
          maxPerClass: 40,
          devPerClass: 2,
          testPerClass: 10,
          batch: 16,
          method: "ce",
          epochs: 1,
          lrDecayEpochs: [],
          download: false,
          out: join(root, "if-any"),
          gpu,
          progress: null,
          resume: "if-any",
        };
        const first = await trainInProcess(options);
        assert.deepEqual([first.status, first.epochsDone], ["completed", 1]);
        const again = await trainInProcess(options);
        assert.deepEqual([again.status, again.epochsDone], ["completed", 1]);
        assert.deepEqual(again.last, first.last, "the second call continued the first run");
      } finally {
        gpu.dispose();
      }
    });
  },
});

Deno.test("checkpoint: safetensors errors name the file and say checkpoint", async () => {
  await withTmp(async (dir) => {
    const p = join(dir, "c.safetensors");
    await Deno.writeFile(p, new Uint8Array([255, 255, 255, 255, 0, 0, 0, 0, 1]));
    await assert.rejects(readCheckpoint(p), (e) => {
      assert.ok(e instanceof SafetensorsError && e instanceof UserError);
      assert.match(e.message, new RegExp(`checkpoint ${p} is not a valid safetensors file`));
      assert.match(e.message, /header length/);
      // a library's advice names no command-line flag; a caller gives its own
      assert.match(e.message, /\n {2}to fix: the file is damaged or is not a checkpoint; move/);
      assert.doesNotMatch(e.message, /--out/);
      return true;
    });
    await assert.rejects(readCheckpoint(p, { hint: "pass --checkpoint FILE" }), (e: Error) => {
      assert.match(e.message, /\n {2}to fix: the file is damaged .*; pass --checkpoint FILE$/);
      assert.equal(e.message.match(/to fix:/g)?.length, 1);
      return true;
    });
  });
});

// ---------------------------------------------------------------- flags

Deno.test("flags: stage 2 and lr decays outside the run, repeated flags and bad --out are refused", async () => {
  await withTmp(async (root) => {
    await writeSyntheticIdx(root);
    const out = join(root, "out");
    const base = ["--data-dir", root, "--dataset", "mnist", "--no-download"];
    await refuses(root, [...base, "--epochs", "3", "--meta-start", "5", "--out", out], 2, [
      /--meta-start 5 is not below --epochs 3: --method meta would never reach stage 2/,
    ]);
    await refuses(root, [...base, "--epochs", "3", "--lr-decay-epochs", "1,3", "--out", out], 2, [
      /--lr-decay-epochs 1,3: epoch 3 is not below --epochs 3/,
    ]);
    await refuses(root, [...base, "--epochs", "3", "--epochs=4", "--out", out], 2, [
      /--epochs is given twice; give each flag once/,
    ]);
    await refuses(root, [...base, "--download", "--no-download", "--out", out], 2, [
      /--download is given more than once \(--no-download and --download\)/,
    ]);
    // --out: a file, outside what the process may write, a run's outputs without a checkpoint
    const file = join(root, "a-file");
    await Deno.writeTextFile(file, "mine");
    await refuses(root, [...base, "--out", file], 2, [
      /--out .*a-file is a file; expected a folder/,
    ]);
    await refuses(root, [...base, "--out", join(file, "sub")], 2, [
      /a-file is a file, so the folder cannot be created/,
    ]);
    await refuses(root, [...base, "--out", "/var/tailgrad-not-allowed"], 2, [
      /--out \/var\/tailgrad-not-allowed: this process may not write there/,
      /runs\/ and data\//,
    ]);
    const foreign = join(root, "foreign");
    await Deno.mkdir(foreign);
    await Deno.writeTextFile(join(foreign, "summary.json"), "my notes");
    await refuses(root, [...base, "--out", foreign], 2, [
      /holds summary\.json but no checkpoint\.safetensors: a new run would overwrite/,
    ]);
  });
});

Deno.test({
  name: "flags: --out may be created under a folder that is itself not writable by the process",
  sanitizeResources: false,
  fn: async () => {
    await withTmp(async (root) => {
      await writeSyntheticIdx(root);
      // as with the train task: runs/ absent, only runs/ writable, the parent not
      const out = join(root, "runs", "a", "b");
      const r = await train(tiny(root, out), join(root, "runs"));
      assert.equal(r.code, 0, r.stderr);
      assert.ok((await Deno.stat(join(out, "checkpoint.safetensors"))).isFile);
      assert.deepEqual(
        (await Array.fromAsync(Deno.readDir(root))).map((e) => e.name).sort(),
        ["mnist", "runs"],
        "no probe or other file left behind",
      );
    });
  },
});

Deno.test("flags: the stage schedule follows --epochs as fractions of the preset's run", () => {
  const d = presetConfig("default");
  assert.deepEqual([d.epochs, d.metaStart, d.lrDecayEpochs], [15, 12, [12, 14]]);
  const same = resolveTrainConfig({ epochs: 15 });
  assert.deepEqual([same.metaStart, same.lrDecayEpochs], [12, [12, 14]]);
  const ten = resolveTrainConfig({ epochs: 10 });
  assert.deepEqual([ten.metaStart, ten.lrDecayEpochs], [8, [8, 9]]);
  const three = resolveTrainConfig({ epochs: 3 });
  assert.deepEqual([three.metaStart, three.lrDecayEpochs], [2, [2]]);
  const paper = resolveTrainConfig({ preset: "paper-cifar", epochs: 20 });
  assert.deepEqual([paper.metaStart, paper.lrDecayEpochs], [16, [16, 18]]);
  const explicit = resolveTrainConfig({ epochs: 10, metaStart: 3 });
  assert.deepEqual([explicit.metaStart, explicit.lrDecayEpochs], [3, [8, 9]]);
  // methods with one stage may leave --meta-start outside the run
  assert.equal(resolveTrainConfig({ epochs: 3, metaStart: 9, method: "ce" }).metaStart, 9);
  for (const m of METHODS) {
    const changes = JSON.stringify(phaseOf(m, 0, 1)) !== JSON.stringify(phaseOf(m, 1, 1));
    assert.equal(hasStage2(m), changes, m);
  }
});

Deno.test("flags: bench flags take --runs 3 and --runs=3; unknown ones are a usage error", () => {
  assert.equal(parseBenchFlags(["--runs", "3"]).runs, 3);
  assert.equal(parseBenchFlags(["--runs=5"]).runs, 5);
  const f = parseBenchFlags(["--quick", "--depths", "8,20", "--out=x", "--no-steps"]);
  assert.deepEqual([f.quick, f.runs, f.depths, f.out, f.steps], [true, 2, [8, 20], "x", false]);
  for (
    const [args, re] of [
      [["--bogus"], /unknown flag --bogus; valid flags: .*--runs/],
      [["--runs"], /--runs needs a value/],
      [["--runs", "0"], /invalid --runs "0"/],
      [["--runs=2", "--runs", "3"], /--runs is given twice/],
      [["--depths", "9"], /ResNet depths 6n\+2/],
      [["--tfjs=1"], /--tfjs takes no value/],
      [["stray"], /unexpected argument "stray"/],
    ] as [string[], RegExp][]
  ) {
    assert.throws(() => parseBenchFlags(args), (e) => {
      assert.ok(e instanceof UserError && e.exitCode === 2, String(e));
      assert.match(e.message, re);
      return true;
    });
  }
});

// ---------------------------------------------------------------- a valid file refused

Deno.test("data: a multi-member gzip file (as gzip -dc reads it) is read correctly", async () => {
  await withTmp(async (dir) => {
    const d = syntheticSplit("test", 3, 5);
    const whole = idx(0x803, [d.count, SYN_SIZE, SYN_SIZE], d.images);
    const cut = 37;
    const a = gzipSync(whole.subarray(0, cut)), b = gzipSync(whole.subarray(cut));
    const multi = new Uint8Array(a.length + b.length);
    multi.set(a);
    multi.set(b, a.length);
    const p = join(dir, "t10k-images-idx3-ubyte.gz");
    await Deno.writeFile(p, multi);
    // gzip itself agrees, where it is installed
    try {
      const z = await new Deno.Command("gzip", { args: ["-dc", p], stdout: "piped" }).output();
      if (z.success) assert.deepEqual(new Uint8Array(z.stdout), whole);
    } catch { /* no gzip binary */ }
    const read = await readIdxFile(p);
    assert.deepEqual(read.dims, [d.count, SYN_SIZE, SYN_SIZE]);
    assert.deepEqual(read.data, d.images);
    // a damaged second member is still an error naming the file
    multi[multi.length - 6] ^= 0xff;
    await Deno.writeFile(p, multi);
    await assert.rejects(
      readIdxFile(p),
      (e) => e instanceof DataError && e.message.startsWith(`${p}: corrupt or truncated gzip`),
    );
  });
});

// ---------------------------------------------------------------- what to do, once

Deno.test("errors: each refused setting or file names it and says what to do on one to-fix line", async () => {
  await withTmp(async (root) => {
    await writeSyntheticIdx(root);
    const out = join(root, "out");
    const base = ["--data-dir", root, "--dataset", "mnist", "--no-download"];
    // a folder holding a run (any safetensors file named checkpoint.safetensors)
    const held = join(root, "held");
    await Deno.mkdir(held);
    await Deno.writeFile(join(held, "checkpoint.safetensors"), encodeSafetensors(new Map(), {}));
    const garbage = join(root, "garbage.safetensors");
    await Deno.writeTextFile(garbage, "not a checkpoint");
    const empty = join(root, "empty");
    await Deno.mkdir(empty);
    const cases: [string[], number, RegExp, RegExp][] = [
      [["--batch", "0"], 2, /invalid --batch 0: expected an integer >= 2/, /give --batch an/],
      [["--lr", "-1"], 2, /invalid --lr -1: expected a positive number/, /give --lr a positive/],
      [["--imbalance", "0.5"], 2, /invalid --imbalance 0\.5: expected a number >= 1/, /--imb/],
      [
        ["--lr-decay-epochs", "12,5"],
        2,
        /invalid --lr-decay-epochs "12,5": expected increasing epochs/,
        /give --lr-decay-epochs increasing epochs, e\.g\. 160,180, or leave it out/,
      ],
      [["--warmup-epochs", "99"], 2, /invalid --warmup-epochs 99/, /within the run/],
      [["--epochs", "two"], 2, /invalid --epochs "two": expected an integer/, /--help/],
      [
        ["--out", held],
        2,
        /--out .*held already holds a run \(checkpoint\.safetensors\)/,
        /pass --resume to continue it, or choose another --out/,
      ],
      [["--out", out, "--resume"], 2, /--resume: .*out holds no checkpoint/, /drop --resume/],
      [
        ["--out", out, "--init-from", garbage],
        2,
        /--init-from .*garbage\.safetensors: checkpoint .* is not a valid safetensors file/,
        /the file is damaged or is not a checkpoint; give the checkpoint\.safetensors of a/,
      ],
      [["--out", out, "--init-from", join(root, "nope")], 2, /no such file/, /give the/],
      [["--preset", "imagenet-lt"], 2, /--data-root: the dataset folder is required/, /DIR/],
      [
        ["--preset", "imagenet-lt", "--data-root", empty, "--depth", "33"],
        2,
        /--depth: expected one of 10, 18, 34, 50, 101, 152, got 33/,
        /pass one of those depths, or leave it out for imagenet-lt's 10/,
      ],
      [
        ["--preset", "imagenet-lt", "--data-root", empty, "--out", out],
        1,
        /list file .*empty\/ImageNet_LT_train\.txt does not exist/,
        /put the layout's files \(ImageNet_LT_train\.txt, .*\) in --data-root/,
      ],
    ];
    for (const [args, code, problem, fix] of cases) {
      const large = args[0] === "--preset";
      const all = large
        ? args
        : [...base, ...(args.includes("--out") ? [] : ["--out", out]), ...args];
      const stderr = await refuses(root, all, code, [problem, fix]);
      const fixes = stderr.match(/^ {2}to fix: .*$/gm) ?? [];
      assert.equal(fixes.length, 1, `one to-fix line: ${all.join(" ")}\n${stderr}`);
      assert.match(fixes[0], fix, stderr);
    }
  });
});

// ---------------------------------------------------------------- narrow permissions

Deno.test("permissions: the user-facing tasks name the variables and hosts they need", async () => {
  const tasks = JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json"))).tasks as Record<
    string,
    string
  >;
  const net = (t: string) => /--allow-net=(\S+)/.exec(t)?.[1];
  for (const name of ["train", "reproduce", "export-meta-step"]) {
    assert.match(tasks[name], /--allow-env=TAILGRAD_DATA,TAILGRAD_DEBUG /, name);
  }
  assert.equal(net(tasks.reproduce), net(tasks.train), "reproduce downloads what train does");
  for (const [name, task] of Object.entries(tasks)) {
    if (
      !["train", "reproduce", "export-meta-step"].includes(name) && !name.startsWith("example:")
    ) {
      continue;
    }
    assert.doesNotMatch(task, /--allow-(env|net|write|run|sys|ffi)( |$)|\s-A\s/, name);
    if (name.startsWith("example:")) {
      assert.match(task, /--allow-env=TAILGRAD_DATA,TAILGRAD_DEBUG examples\//, name);
      assert.doesNotMatch(task, /--allow-net/, `${name} downloads nothing`);
    }
  }
});

// ---------------------------------------------------------------- stack traces only when asked

Deno.test("errors: TAILGRAD_DEBUG=1 adds the stack trace to a user error", async () => {
  await withTmp(async (root) => {
    const args = ["--data-dir", join(root, "nope"), "--no-download", "--out", join(root, "o")];
    const plain = await train(args, root);
    assert.equal(plain.code, 1);
    assert.doesNotMatch(plain.stderr, NO_STACK);
    const debug = await train(args, root, { TAILGRAD_DEBUG: "1" });
    assert.equal(debug.code, 1);
    assert.match(debug.stderr, /^error: --data-dir/m);
    assert.match(debug.stderr, NO_STACK);
  });
});

// ---------------------------------------------------------------- no npm for train and tests

Deno.test("npm: train --help on an empty Deno cache downloads no npm package", async () => {
  const lock = JSON.parse(await Deno.readTextFile(join(ROOT, "bench", "bench.lock")));
  assert.ok(Object.keys(lock.npm).some((k) => k.startsWith("@tensorflow/tfjs-core@")));
  // deno task installs every npm package of the project's lockfile: there must be none
  const main = await Deno.readTextFile(join(ROOT, "deno.lock")).catch(() => "{}");
  assert.deepEqual(Object.keys(JSON.parse(main).npm ?? {}), []);
  // the only npm imports are the benchmarks' comparison peers (TF.js, jpeg-js)
  const importers: string[] = [];
  for (const dir of ["src", "scripts", "test", "bench"]) {
    for await (const f of walkTs(join(ROOT, dir))) {
      if (/from\s+"npm:|import\s+"npm:/.test(await Deno.readTextFile(f))) importers.push(f);
    }
  }
  assert.deepEqual(importers.map((f) => f.slice(ROOT.length)).sort(), [
    "bench/jpegjs.ts",
    "bench/tfjs.ts",
  ]);
  await withTmp(async (denoDir) => {
    const r = await new Deno.Command("deno", {
      args: ["task", "--quiet", "train", "--help"],
      cwd: ROOT,
      env: { DENO_DIR: denoDir, NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const err = new TextDecoder().decode(r.stderr);
    assert.equal(r.code, 0, err);
    assert.match(new TextDecoder().decode(r.stdout), /usage: deno task train/);
    assert.doesNotMatch(err, /Download|npm/);
    const npm: string[] = [];
    for await (const e of Deno.readDir(denoDir)) {
      if (e.name === "npm") {
        for await (const p of Deno.readDir(join(denoDir, "npm"))) npm.push(p.name);
      }
    }
    assert.deepEqual(npm, [], "npm packages were downloaded");
  });
});

async function* walkTs(dir: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    const p = join(dir, e.name);
    if (e.isDirectory && e.name !== "results") yield* walkTs(p);
    else if (e.isFile && p.endsWith(".ts")) yield p;
  }
}

// ---------------------------------------------------------------- README, --help, presets

Deno.test("docs: --help shows every default, $TAILGRAD_DATA and where --out may point", () => {
  const text = usage();
  const d = presetConfig("default"), m = presetConfig("medium"), p = presetConfig("paper-cifar");
  assert.match(
    text,
    new RegExp(
      `--epochs <value>\\n.*\\(default: ${d.epochs}; medium: ${m.epochs}; paper-cifar: ${p.epochs}\\)`,
    ),
  );
  assert.match(text, /--meta-start <value>\n.*\(default: 12; medium: 24; paper-cifar: 160\)/);
  assert.match(
    text,
    /--lr-decay-epochs <value>\n.*\(default: 12,14; medium: 24,27; paper-cifar: 160,180\)/,
  );
  assert.match(
    text,
    /--max-per-class <value>\n.*\(default: 200; medium: 1000; paper-cifar: none\)/,
  );
  assert.match(text, /--final-full-test\n.*\(default: off; medium: on\)/);
  assert.match(text, /--dev-loss <ce\|ce-raw\|train>\n.*\(default: ce\)/);
  assert.match(text, /--init-from <value>\n.*\(default: none\)/);
  assert.match(text, /--tau <value>\n.*\(default: 0\.01\)/);
  assert.match(
    text,
    /--out <value>\n.*under runs\/ and data\/.*\(default: runs\/default; medium: runs\/medium; paper-cifar: runs\/paper-cifar\)/,
  );
  assert.match(text, /TAILGRAD_DATA/);
  // every flag but --help names a default
  const lines = text.split("\n");
  const described = lines.filter((_l, i) => i > 0 && /^ {2}--/.test(lines[i - 1]));
  assert.equal(described.filter((l) => !l.includes("(default: ")).length, 1, "only --help");
  assert.deepEqual(parseTrainArgs(["--epochs", "3"]).options, { epochs: 3 });
});

Deno.test("docs: the README's description of the main job matches the default preset", async () => {
  const readme = await Deno.readTextFile(join(ROOT, "README.md"));
  const start = readme.indexOf("### The main job");
  const job = readme.slice(start, readme.indexOf("\n### ", start + 1));
  const d = presetConfig("default");
  const want = [
    `at most ${d.maxPerClass} training images in the head class`,
    `balanced dev set of ${d.devPerClass} per class`,
    `ResNet-${d.model.slice(6)}`,
    `batch ${d.batch}, ${d.epochs} epochs`,
    `SGD lr ${d.lr} with Nesterov ${d.momentum} and weight decay 5e-4`,
    `(x${d.lrDecayFactor}) at epoch ${d.metaStart}, the second at ${d.lrDecayEpochs[1]}`,
    `beta ${d.beta}, tau ${d.tau}`,
    `(${d.testPerClass} per class)`,
    `(IF ${d.imbalance})`,
  ];
  for (const w of want) assert.ok(job.includes(w), `README lacks "${w}"`);
  assert.equal(d.weightDecay, 5e-4);
  assert.equal(d.lrDecayEpochs[0], d.metaStart);
  // the same timing everywhere: README's measured run, --help and the preset's doc comment
  const minutes = /The whole command took (\d+) min (\d+) s/.exec(job);
  assert.ok(minutes, "README states the main job's time");
  const about = Math.round(Number(minutes[1]) + Number(minutes[2]) / 60);
  assert.match(usage(), new RegExp(`about ${about} min on a 2-core software adapter`));
  const config = await Deno.readTextFile(join(ROOT, "src", "train", "config.ts"));
  assert.match(config, new RegExp(`in about ${about} minutes on a 2-core software`));
});

/** The README section that starts with `heading`, up to the next heading of its level or above. */
function readmeSection(readme: string, heading: string): string {
  const start = readme.indexOf(heading);
  assert.ok(start >= 0, `README lacks "${heading}"`);
  const level = /^#+/.exec(heading)![0];
  const next = new RegExp(`\\n#{1,${level.length}} `, "g");
  next.lastIndex = start + heading.length;
  const m = next.exec(readme);
  return readme.slice(start, m ? m.index : undefined);
}

Deno.test("docs: the README's description of the medium preset matches it, and --help its time", async () => {
  const readme = await Deno.readTextFile(join(ROOT, "README.md"));
  const text = readmeSection(readme, "### The `medium` preset");
  const m = presetConfig("medium");
  const counts = longTailCounts(m.maxPerClass!, 10, m.imbalance);
  const want = [
    `At most ${m.maxPerClass} training images in the head class`,
    `split counts \`${counts.join(" ")}\``,
    `at IF ${m.imbalance}, ${counts.reduce((a, b) => a + b, 0).toLocaleString("en-US")} images`,
    `balanced dev set of ${m.devPerClass} per class`,
    `ResNet-${m.model.slice(6)}, batch ${m.batch}, ${m.epochs} epochs`,
    `(x${m.lrDecayFactor}) at epoch ${m.metaStart}, the second at ${m.lrDecayEpochs[1]}`,
    `test subset (${m.testPerClass} per class)`,
    "whole 10,000-image test set",
  ];
  for (const w of want) assert.ok(text.includes(w), `README lacks "${w}"`);
  assert.equal(m.lrDecayEpochs[0], m.metaStart);
  assert.ok(m.finalFullTest);
  const time = /took (\d+) min on the 2-core software adapter/.exec(text);
  assert.ok(time, "README states the medium ce run's time");
  assert.match(usage(), new RegExp(`whole test set: about ${time[1]} min for ce`));
});

Deno.test("docs: the README's medium and small tables are results/fashion-mnist-lt.md's", async () => {
  const readme = await Deno.readTextFile(join(ROOT, "README.md"));
  const md = await Deno.readTextFile(join(ROOT, "results", "fashion-mnist-lt.md"));
  // table rows as trimmed cells (the README is deno-fmt aligned, the results file is not)
  const rows = (text: string) =>
    text.split("\n").filter((l) => l.startsWith("|")).map((l) =>
      l.split("|").slice(1, -1).map((c) => c.trim())
    ).filter((cells) => !cells.every((c) => /^:?-+:?$/.test(c)));
  for (const scale of ["medium", "small"]) {
    const inReadme = rows(readmeSection(readme, `#### Scale \`${scale}\``));
    const inResults = rows(readmeSection(md, `## Scale \`${scale}\``));
    assert.ok(inResults.length > 10, `the results file has the ${scale} table`);
    assert.deepEqual(inReadme, inResults, scale);
  }
  const paper = rows(readmeSection(readme, "#### For context: the paper's own numbers"));
  assert.deepEqual(paper, rows(readmeSection(md, "## For context: the paper's own numbers")));
});
