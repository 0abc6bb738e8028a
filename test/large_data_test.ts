/**
 * The large-dataset data path: list files (ImageNet-LT / Places-LT layout) and iNaturalist
 * JSON, checked with named errors; sampling boxes of the ImageNet transforms; the GPU
 * crop-resize-normalise kernel against a float64 reference; and miniature datasets of JPEGs
 * (written by the test's encoder) streamed end to end through the worker pool into GPU batches
 * whose values are checked against the CPU reference.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { DataError } from "../src/data/errors.ts";
import { effectiveNumberWeights } from "../src/data/weights.ts";
import {
  checkImages,
  devSplit,
  imagePath,
  listCounts,
  parseList,
  readList,
} from "../src/data/lists.ts";
import { parseInat, readInat } from "../src/data/inat.ts";
import { decodeJpeg } from "../src/data/jpeg/decode.ts";
import { DecodePool } from "../src/data/jpeg/pool.ts";
import { JpegLoader } from "../src/data/jpeg/loader.ts";
import {
  cropBox,
  evalBox,
  IMAGENET_MEAN,
  IMAGENET_STD,
  packBox,
  randomResizedCrop,
  roundHalfEven,
  type SampleBox,
  trainBox,
} from "../src/data/jpeg/transforms.ts";
import { CROP_RECORD_WORDS, cropResizeKernel } from "../shaders/resize.ts";
import { Rng } from "../src/random.ts";
import { grid1d } from "../src/gpu/runtime.ts";
import type { Gpu } from "../src/gpu/runtime.ts";
import { gpuTest, maxAbsErr } from "./gpu_harness.ts";
import { encodeJpeg } from "./support/jpeg_encoder.ts";
import { testImage } from "./support/images.ts";
import { cropResizeReference } from "./reference/resize.ts";

// ---------------------------------------------------------------- helpers

function rejectsData(p: Promise<unknown>, ...parts: (string | RegExp)[]): Promise<void> {
  return p.then(
    () => assert.fail(`expected a DataError matching ${parts.join(", ")}`),
    (e) => checkData(e, parts),
  );
}

function throwsData(fn: () => unknown, ...parts: (string | RegExp)[]): void {
  try {
    fn();
  } catch (e) {
    checkData(e, parts);
    return;
  }
  assert.fail(`expected a DataError matching ${parts.join(", ")}`);
}

/** A DataError holding `parts`, whose message ends with its hint on one "to fix:" line. */
function checkData(e: unknown, parts: (string | RegExp)[]): void {
  assert.ok(e instanceof DataError, `expected DataError, got ${e}`);
  assert.ok(e.hint, `no hint: ${e.message}`);
  assert.ok(e.message.endsWith(`\n  to fix: ${e.hint}`), e.message);
  assert.equal(e.message.match(/to fix:/g)?.length, 1, e.message);
  for (const part of parts) {
    if (typeof part === "string") {
      assert.ok(e.message.includes(part), `message "${e.message}" lacks "${part}"`);
    } else assert.match(e.message, part);
  }
}

/** Runs the kernel on a batch of RGB images with the given boxes; returns the output. */
async function runKernel(
  gpu: Gpu,
  images: { rgb: Uint8Array; width: number }[],
  boxes: SampleBox[],
  outW: number,
  outH: number,
): Promise<Float32Array> {
  let bytes = 0;
  const offsets = images.map((im) => {
    const at = bytes;
    bytes += Math.ceil(im.rgb.length / 4) * 4;
    return at;
  });
  const packed = new Uint8Array(bytes);
  const records = new Uint32Array(images.length * CROP_RECORD_WORDS);
  images.forEach((im, n) => {
    packed.set(im.rgb, offsets[n]);
    packBox(records, n, offsets[n], im.width, boxes[n]);
  });
  const total = images.length * outW * outH;
  const views = [bytes, records.byteLength, total * 3 * 4].map((size) => ({
    buffer: gpu.alloc(size),
    offset: 0,
    size,
  }));
  gpu.write(views[0], packed);
  gpu.write(views[1], records);
  const [m, s] = [IMAGENET_MEAN, IMAGENET_STD];
  cropResizeKernel.dispatch(gpu, views, {
    total,
    outW,
    outH,
    mul0: 1 / (255 * s[0]),
    mul1: 1 / (255 * s[1]),
    mul2: 1 / (255 * s[2]),
    add0: -m[0] / s[0],
    add1: -m[1] / s[1],
    add2: -m[2] / s[2],
  }, grid1d(Math.ceil(total / 64)));
  const out = new Float32Array(await gpu.read(views[2]));
  for (const v of views) gpu.release(v.buffer);
  return out;
}

function reference(
  images: { rgb: Uint8Array; width: number }[],
  boxes: SampleBox[],
  outW: number,
  outH: number,
): Float64Array {
  const plane = 3 * outW * outH;
  const out = new Float64Array(images.length * plane);
  images.forEach((im, n) => {
    out.set(
      cropResizeReference(im.rgb, im.width, boxes[n], outW, outH, IMAGENET_MEAN, IMAGENET_STD),
      n * plane,
    );
  });
  return out;
}

// ---------------------------------------------------------------- GPU kernel

gpuTest("resize kernel: crops, flips and odd sizes match the float64 reference", async (gpu) => {
  const a = { rgb: testImage(37, 23, 1), width: 37 }, b = { rgb: testImage(19, 31, 2), width: 19 };
  const c = { rgb: testImage(5, 3, 3), width: 5 };
  const cases: [string, SampleBox[], number, number][] = [
    [
      "downscale crop 28x19 -> 11x13, flipped; eval box",
      [
        cropBox({ top: 2, left: 3, height: 19, width: 28 }, 11, 13, true),
        evalBox(19, 31, 13, 11),
        cropBox({ top: 0, left: 0, height: 3, width: 5 }, 11, 13),
      ],
      11,
      13,
    ],
    [
      "upscale crop 5x4 -> 11x13 at the far corner; identity",
      [
        cropBox({ top: 19, left: 32, height: 4, width: 5 }, 11, 13),
        cropBox({ top: 0, left: 0, height: 13, width: 11 }, 11, 13),
        cropBox({ top: 1, left: 2, height: 2, width: 3 }, 11, 13, true),
      ],
      11,
      13,
    ],
  ];
  for (const [name, boxes, w, h] of cases) {
    const got = await runKernel(gpu, [a, b, c], boxes, w, h);
    const want = reference([a, b, c], boxes, w, h);
    assert.ok(maxAbsErr(got, want, 1) < 2e-5, `${name}: error ${maxAbsErr(got, want, 1)}`);
  }
  // Identity sampling reproduces the normalised pixels exactly (up to float32).
  const id = await runKernel(
    gpu,
    [b],
    [cropBox({ top: 0, left: 0, height: 31, width: 19 }, 19, 31)],
    19,
    31,
  );
  for (const [k, c] of [[0, 0], [5 * 19 + 7, 1], [30 * 19 + 18, 2]]) {
    const v = b.rgb[k * 3 + c];
    const want = (v / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
    assert.ok(Math.abs(id[c * 19 * 31 + k] - want) < 1e-5);
  }
});

// ---------------------------------------------------------------- transforms

Deno.test("transforms: random resized crop follows torchvision's rule", () => {
  for (let i = 0; i < 200; i++) {
    const rng = new Rng(3, i);
    const c = randomResizedCrop(500, 375, rng);
    assert.ok(c.left >= 0 && c.top >= 0 && c.left + c.width <= 500 && c.top + c.height <= 375);
    const area = (c.width * c.height) / (500 * 375), ratio = c.width / c.height;
    assert.ok(area > 0.07 && area <= 1.01, `area ${area}`);
    assert.ok(ratio > 0.7 && ratio < 1.4, `ratio ${ratio}`);
  }
  // A 1000x10 image defeats all ten attempts: centre crop at the largest allowed ratio.
  assert.deepEqual(randomResizedCrop(1000, 10, new Rng(1)), {
    top: 0,
    left: 493,
    height: 10,
    width: 13,
  });
  assert.deepEqual(randomResizedCrop(10, 1000, new Rng(1)), {
    top: 493,
    left: 0,
    height: 13,
    width: 10,
  });
  assert.equal(roundHalfEven(58.5), 58);
  assert.equal(roundHalfEven(59.5), 60);
  // Same (seed, epoch, index) gives the same box; another epoch another.
  assert.deepEqual(trainBox(500, 375, 7, 0, 42), trainBox(500, 375, 7, 0, 42));
  assert.notDeepEqual(trainBox(500, 375, 7, 0, 42), trainBox(500, 375, 7, 1, 42));
});

Deno.test("transforms: evaluation resize 256 + centre crop 224 as one sampling box", () => {
  const b = evalBox(500, 375);
  // Resized to 341x256 (torchvision truncates the long side); crop at left 58 (round half
  // even of 58.5), top 16.
  assert.ok(Math.abs(b.scaleX - 500 / 341) < 1e-12 && Math.abs(b.scaleY - 375 / 256) < 1e-12);
  assert.ok(Math.abs(b.shiftX - 58 * (500 / 341)) < 1e-9);
  assert.ok(Math.abs(b.shiftY - 16 * (375 / 256)) < 1e-9);
  assert.deepEqual([b.loX, b.loY, b.hiX, b.hiY, b.flip], [0, 0, 499, 374, false]);
  const same = evalBox(256, 300);
  assert.deepEqual([same.scaleX, same.scaleY, same.shiftX], [1, 1, 16]);
});

// ---------------------------------------------------------------- miniature datasets

/** Writes a JPEG of a synthetic image of random size; returns nothing (the loader re-reads). */
async function writeJpeg(path: string, seed: number): Promise<void> {
  const rng = new Rng(seed, "size");
  const w = 33 + rng.nextInt(28), h = 33 + rng.nextInt(28);
  const sampling: [number, number] = seed % 3 === 0 ? [1, 1] : [2, 2];
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  await Deno.writeFile(
    path,
    encodeJpeg(testImage(w, h, seed), w, h, { quality: 85, sampling }).bytes,
  );
}

/** The expected batch: each image decoded on the CPU and sampled by the float64 reference. */
async function expectedBatch(
  loader: JpegLoader,
  epoch: number,
  indices: Int32Array,
): Promise<Float64Array> {
  const S = loader.size, plane = 3 * S * S;
  const out = new Float64Array(indices.length * plane);
  for (let n = 0; n < indices.length; n++) {
    const img = decodeJpeg(await Deno.readFile(imagePath(loader.list, indices[n])));
    const box = loader.box(epoch, indices[n], img.width, img.height);
    out.set(
      cropResizeReference(img.data, img.width, box, S, S, IMAGENET_MEAN, IMAGENET_STD),
      n * plane,
    );
  }
  return out;
}

/** Streams one epoch, checking every batch's values, labels and order; returns the order. */
async function checkEpoch(gpu: Gpu, loader: JpegLoader, epoch: number): Promise<number[]> {
  const seen: number[] = [];
  const order = loader.order(epoch);
  for await (const batch of loader.epoch(epoch)) {
    assert.deepEqual(batch.indices, order.slice(seen.length, seen.length + batch.count));
    assert.deepEqual(batch.labels, Int32Array.from(batch.indices, (i) => loader.list.labels[i]));
    const got = new Float32Array(await gpu.read(batch.images));
    const want = await expectedBatch(loader, epoch, batch.indices);
    assert.ok(maxAbsErr(got, want, 1) < 3e-5, `batch values off by ${maxAbsErr(got, want, 1)}`);
    seen.push(...batch.indices);
  }
  assert.equal(seen.length, Math.min(order.length, loader.batchesPerEpoch * loader.batchSize));
  return seen;
}

gpuTest("ImageNet-LT layout: lists, checks, dev split, streamed batches", async (gpu) => {
  const root = await Deno.makeTempDir({ prefix: "tailgrad-lt-" });
  const pool = new DecodePool({ workers: 2 });
  try {
    const counts = [7, 4, 3];
    const train: string[] = [], val: string[] = [];
    let seed = 1;
    for (let c = 0; c < counts.length; c++) {
      for (let k = 0; k < counts[c] + 2; k++) {
        const rel = `${k < counts[c] ? "train" : "val"}/n0${c}/n0${c}_${k}.JPEG`;
        await writeJpeg(join(root, rel), seed++);
        (k < counts[c] ? train : val).push(`${rel} ${c}`);
      }
    }
    // Windows line ends and blank lines are tolerated.
    await Deno.writeTextFile(join(root, "LT_train.txt"), train.join("\r\n") + "\r\n\r\n");
    await Deno.writeTextFile(join(root, "LT_val.txt"), val.join("\n") + "\n");
    const trainList = await readList(join(root, "LT_train.txt"), root);
    const valList = await readList(join(root, "LT_val.txt"), root, {
      numClasses: trainList.numClasses,
    });
    assert.equal(trainList.numClasses, 3);
    assert.deepEqual(listCounts(trainList), counts);
    assert.deepEqual(listCounts(valList), [2, 2, 2]);
    assert.equal(trainList.where(2), `${join(root, "LT_train.txt")}:3`);
    await checkImages(trainList, { headers: true });
    await checkImages(valList);

    const split = devSplit(trainList, 11, 2);
    assert.deepEqual(split.counts, [5, 2, 1]);
    assert.deepEqual(
      listCounts({ ...trainList, labels: split.dev.map((i) => trainList.labels[i]) }),
      [2, 2, 2],
    );
    assert.equal(new Set([...split.train, ...split.dev]).size, 14);
    const w = effectiveNumberWeights(split.counts, 0.9);
    assert.ok(Math.abs(w[0] + w[1] + w[2] - 3) < 1e-12 && w[0] < w[1] && w[1] < w[2]);

    const opts = { size: 32, resize: 36 };
    const evalLoader = new JpegLoader(gpu, pool, valList, { ...opts, batchSize: 4, mode: "eval" });
    assert.equal(evalLoader.batchesPerEpoch, 2);
    assert.deepEqual(await checkEpoch(gpu, evalLoader, 0), [0, 1, 2, 3, 4, 5]);
    evalLoader.dispose();

    const trainLoader = new JpegLoader(gpu, pool, trainList, {
      ...opts,
      batchSize: 3,
      mode: "train",
      seed: 5,
      indices: split.train,
      prefetch: 1,
    });
    assert.equal(trainLoader.batchesPerEpoch, 2); // 8 images, last partial batch dropped
    const e0 = await checkEpoch(gpu, trainLoader, 0);
    const e1 = await checkEpoch(gpu, trainLoader, 1);
    assert.notDeepEqual(e0, e1);
    assert.ok(e0.every((i) => split.train.includes(i)));
    // The same epoch again gives the same bits.
    const first = async () => {
      for await (const b of trainLoader.epoch(0)) return new Float32Array(await gpu.read(b.images));
      throw new Error("no batch");
    };
    assert.deepEqual(await first(), await first());
    trainLoader.dispose();
  } finally {
    pool.close();
    await Deno.remove(root, { recursive: true });
  }
});

gpuTest("iNaturalist layout: JSON annotations to dense labels, streamed batches", async (gpu) => {
  const root = await Deno.makeTempDir({ prefix: "tailgrad-inat-" });
  const pool = new DecodePool({ workers: 1 });
  try {
    const catIds = [7, 3, 11]; // dense labels follow ascending ids: 3 -> 0, 7 -> 1, 11 -> 2
    const make = async (split: string, perCat: number[], firstId: number) => {
      const images = [], annotations = [];
      let id = firstId;
      for (let c = 0; c < catIds.length; c++) {
        for (let k = 0; k < perCat[c]; k++, id++) {
          const file = `${split}/Plantae/${catIds[c]}/${id}.jpg`;
          await writeJpeg(join(root, file), id);
          images.push({ id, file_name: file, width: 0, height: 0 });
          annotations.push({ id: 1000 + id, image_id: id, category_id: catIds[c] });
        }
      }
      const categories = catIds.map((i) => ({ id: i, name: `species ${i}`, kingdom: "Plantae" }));
      const path = join(root, `${split}.json`);
      await Deno.writeTextFile(path, JSON.stringify({ images, annotations, categories }));
      return path;
    };
    const trainFile = await make("train", [4, 2, 1], 100);
    const valFile = await make("val", [1, 1, 1], 200);
    const train = await readInat(trainFile, root);
    assert.deepEqual(train.categories.ids, [3, 7, 11]);
    assert.deepEqual(train.categories.names, ["species 3", "species 7", "species 11"]);
    assert.deepEqual(listCounts(train), [2, 4, 1]);
    assert.deepEqual(Array.from(train.labels.slice(0, 5)), [1, 1, 1, 1, 0]);
    const val = await readInat(valFile, root, { categories: train.categories });
    assert.deepEqual(Array.from(val.labels), [1, 0, 2]);
    assert.equal(val.where(1), `${valFile}: images[1]`);
    await checkImages(val, { headers: true });
    const loader = new JpegLoader(gpu, pool, val, {
      batchSize: 2,
      mode: "eval",
      size: 32,
      resize: 40,
    });
    assert.deepEqual(await checkEpoch(gpu, loader, 0), [0, 1, 2]);
    loader.dispose();
  } finally {
    pool.close();
    await Deno.remove(root, { recursive: true });
  }
});

// ---------------------------------------------------------------- malformed input

Deno.test("list files: every malformed line is a named error", async () => {
  const f = "LT_val.txt";
  const convert = /to fix: convert the list to one "relative\/path\.jpg label" per line/;
  throwsData(() => parseList("a.jpg 0\nb.jpg\n", f, "/r"), `${f}:2`, "expected", convert);
  throwsData(() => parseList("a.jpg 0\nb.jpg 1 2\n", f, "/r"), `${f}:2`, "expected");
  throwsData(
    () => parseList("\n\na.jpg cat\n", f, "/r"),
    `${f}:3: label "cat" is not a non-negative integer`,
    convert,
  );
  throwsData(() => parseList("a.jpg -1\n", f, "/r"), `${f}:1`, "not a non-negative integer");
  throwsData(() => parseList("a.jpg 2.5\n", f, "/r"), `${f}:1`, "not a non-negative integer");
  throwsData(
    () => parseList("a.jpg 0\nb.jpg 3\n", f, "/r", { numClasses: 3 }),
    `${f}:2`,
    "label 3 is out of range [0, 3)",
    /to fix: use the val\/test list of the same dataset as the training list: .* \(0 to 2\)$/,
  );
  throwsData(
    () => parseList("\n \n", f, "/r"),
    "has no entries",
    /to fix: check that it is the right/,
  );
  await rejectsData(
    readList("/nonexistent/LT_train.txt", "/r"),
    "list file /nonexistent/LT_train.txt does not exist",
    /to fix: check the path of the list file$/,
  );
  const list = parseList("a.jpg 0\nb.jpg 1\nc.jpg 1\n", f, "/r");
  throwsData(
    () => devSplit(list, 0, 1),
    f,
    "class 0 has 1 images",
    "--dev-per-class",
    /to fix: class 0 has 1 image: add images of it to the training list$/,
  );
  const three = parseList("a.jpg 0\nb.jpg 0\nc.jpg 0\nd.jpg 1\ne.jpg 1\nf.jpg 1\n", f, "/r");
  throwsData(
    () => devSplit(three, 0, 3),
    "class 0 has 3 images, not more than --dev-per-class 3",
    /to fix: lower --dev-per-class to 2 or less \(the smallest class has 3\)$/,
  );
});

Deno.test("images: missing and unreadable files are named with their list line", async () => {
  const root = await Deno.makeTempDir({ prefix: "tailgrad-bad-" });
  const pool = new DecodePool({ workers: 1 });
  try {
    await writeJpeg(join(root, "ok.jpg"), 1);
    const good = await Deno.readFile(join(root, "ok.jpg"));
    await Deno.writeFile(join(root, "png.jpg"), Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 13, 10]));
    await Deno.writeFile(join(root, "cut.jpg"), good.slice(0, good.length - 60));
    const file = join(root, "list.txt");
    const list = (body: string) => parseList(body, file, root);
    const fixPath = /to fix: check --data-root \(the list's paths are relative to it\)/;
    const reencode =
      /to fix: re-encode the image as an 8-bit baseline or progressive JPEG, or remove/;
    await rejectsData(
      checkImages(list("ok.jpg 0\nmissing.jpg 1\n")),
      `${file}:2: image ${join(root, "missing.jpg")} does not exist`,
      fixPath,
    );
    await Deno.mkdir(join(root, "dir.jpg"));
    await rejectsData(
      checkImages(list("dir.jpg 0\n")),
      `${file}:1: ${join(root, "dir.jpg")} is not a file`,
      /to fix: correct the entry's path/,
    );
    await checkImages(list("ok.jpg 0\npng.jpg 1\n")); // exists: enough without headers
    await rejectsData(
      checkImages(list("ok.jpg 0\npng.jpg 1\n"), { headers: true }),
      `${file}:2`,
      "png.jpg",
      "not a readable JPEG",
      reencode,
    );
    // Decoding catches what a header check cannot: a truncated file, in the loader's batch.
    const gpu = await (await import("./gpu_harness.ts")).getGpu();
    for (
      const [body, parts] of [
        ["ok.jpg 0\n\ncut.jpg 1\n", [`${file}:3`, "cut.jpg", "truncated", reencode]],
        ["ok.jpg 0\ngone.jpg 1\n", [`${file}:2`, "gone.jpg", "does not exist", fixPath]],
        ["png.jpg 0\nok.jpg 1\n", [`${file}:1`, "png.jpg", "not a readable JPEG", reencode]],
      ] as [string, (string | RegExp)[]][]
    ) {
      const loader = new JpegLoader(gpu, pool, list(body), {
        batchSize: 2,
        mode: "eval",
        size: 32,
        resize: 36,
      });
      await rejectsData(
        (async () => {
          for await (const _ of loader.epoch(0)) { /* consume */ }
        })(),
        ...parts,
      );
      loader.dispose();
    }
    // In-thread decoding reports the same way.
    const inline = new DecodePool({ workers: 0 });
    await rejectsData(
      inline.decode(join(root, "cut.jpg"), "x.txt:9"),
      "x.txt:9",
      "truncated",
      reencode,
    );
    await rejectsData(
      inline.decode(join(root, "gone.jpg"), "x.txt:8"),
      `x.txt:8: image ${join(root, "gone.jpg")} does not exist`,
      fixPath,
    );
    inline.close();
  } finally {
    pool.close();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("iNaturalist JSON: every malformed entry is a named error", async () => {
  const f = "train2018.json";
  const cats = [{ id: 0, name: "a" }, { id: 1, name: "b" }];
  const imgs = [{ id: 10, file_name: "x/10.jpg" }, { id: 11, file_name: "x/11.jpg" }];
  const anns = [{ image_id: 10, category_id: 0 }, { image_id: 11, category_id: 1 }];
  const parse = (o: unknown) => parseInat(o, f, "/r");
  assert.deepEqual(
    Array.from(parse({ images: imgs, annotations: anns, categories: cats }).labels),
    [0, 1],
  );
  const official = /to fix: use the official iNaturalist 2017\/2018 annotation JSON/;
  throwsData(() => parse([1, 2]), f, "expected a JSON object", official);
  throwsData(() => parse({ annotations: anns, categories: cats }), f, `"images"`);
  throwsData(() => parse({ images: imgs, categories: cats }), f, `"annotations"`);
  throwsData(() => parse({ images: imgs, annotations: anns }), f, `"categories"`);
  throwsData(
    () => parse({ images: [imgs[0], { id: 11 }], annotations: anns, categories: cats }),
    `${f}: images[1]`,
    `"file_name"`,
    "missing",
  );
  throwsData(
    () =>
      parse({
        images: [imgs[0], { id: "11", file_name: "y" }],
        annotations: anns,
        categories: cats,
      }),
    "images[1]",
    `"id"`,
  );
  throwsData(
    () => parse({ images: imgs, annotations: [anns[0], { image_id: 11 }], categories: cats }),
    "annotations[1]",
    `"category_id"`,
  );
  throwsData(
    () =>
      parse({
        images: imgs,
        annotations: [anns[0], { image_id: 12, category_id: 1 }],
        categories: cats,
      }),
    "annotations[1]",
    "image id 12",
  );
  throwsData(
    () =>
      parse({
        images: imgs,
        annotations: [anns[0], { image_id: 11, category_id: 5 }],
        categories: cats,
      }),
    "annotations[1]",
    "category id 5",
    official,
  );
  throwsData(
    () =>
      parseInat(
        { images: imgs, annotations: [anns[0], { image_id: 11, category_id: 5 }] },
        "val2018.json",
        "/r",
        { categories: { ids: [0, 1], names: ["a", "b"] } },
      ),
    "val2018.json: annotations[1] has category id 5, not among the 2 categories of the training",
    /to fix: use the validation file of the same iNaturalist year as the training file$/,
  );
  throwsData(
    () => parse({ images: imgs, annotations: [anns[0]], categories: cats }),
    "images[1]",
    "id 11",
    "no annotation",
    /to fix: use the challenge's train or val file/,
  );
  throwsData(
    () => parse({ images: imgs, annotations: [...anns, anns[1]], categories: cats }),
    "image id 11",
    "more than one annotation",
  );
  throwsData(
    () => parse({ images: [imgs[0], { ...imgs[1], id: 10 }], annotations: anns, categories: cats }),
    "images[1]",
    "repeats image id 10",
  );
  throwsData(
    () => parse({ images: imgs, annotations: anns, categories: [...cats, { id: 1 }] }),
    "category id 1 appears twice",
  );
  const dir = await Deno.makeTempDir({ prefix: "tailgrad-inat-bad-" });
  try {
    await Deno.writeTextFile(join(dir, "bad.json"), "{ images: ");
    await rejectsData(
      readInat(join(dir, "bad.json"), dir),
      "bad.json is not valid JSON",
      /to fix: the file is damaged or truncated: download the iNaturalist annotation file again/,
    );
    await rejectsData(
      readInat(join(dir, "none.json"), dir),
      `annotation file ${join(dir, "none.json")} does not exist`,
      /to fix: check the path of the annotation file$/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
