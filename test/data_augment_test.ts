import assert from "node:assert/strict";
import { Gpu } from "../src/gpu/runtime.ts";
import {
  augmentCpu,
  augmentParamsFor,
  Batcher,
  GpuAugmenter,
  type ImageDataset,
  normalisationTable,
  packAugmentParam,
  Rng,
  unpackAugmentParam,
} from "../src/data/mod.ts";
import { augmentKernel } from "../shaders/augment.ts";

function randomPixels(n: number, seed: number): Uint8Array {
  const rng = new Rng(seed);
  return Uint8Array.from({ length: n }, () => rng.nextU32() & 0xff);
}

Deno.test("CPU reference: reflect pad like ReflectionPad2d, crop, flip, normalise", () => {
  // 1x3x4 image with values 0..11 (row-major), identity normalisation scaled by 255.
  const img = Uint8Array.from({ length: 12 }, (_, i) => i);
  const cfg = { channels: 1, height: 3, width: 4, mean: [0], std: [1 / 255], pad: 2 };
  const run = (dx: number, dy: number, flip: boolean) =>
    Array.from(augmentCpu(img, Uint32Array.of(packAugmentParam(dx, dy, flip)), 1, cfg));
  // Centre crop is the identity.
  assert.deepEqual(run(2, 2, false), [...img]);
  // dx = dy = 0: top-left of the padded image. Padded row -2 is source row 2, -1 is row 1;
  // padded column -2 is column 2, -1 is column 1 (no edge repeat).
  // Row order: rows 2, 1, 0; columns 2, 1, 0, 1.
  assert.deepEqual(run(0, 0, false), [10, 9, 8, 9, 6, 5, 4, 5, 2, 1, 0, 1]);
  // dx = dy = 4: bottom-right. Padded column 4 is column 2, 5 is column 1; row 3 is row 1.
  // Rows 2, 1, 0 (= 2+2-2 .. reflected); columns 2, 3, 2, 1.
  assert.deepEqual(run(4, 4, false), [10, 11, 10, 9, 6, 7, 6, 5, 2, 3, 2, 1]);
  // Flip after crop: a centre crop flipped mirrors each row.
  assert.deepEqual(run(2, 2, true), [3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8]);
  // Flip of the dx = 0 crop is that crop mirrored.
  assert.deepEqual(run(0, 2, true), [1, 0, 1, 2, 5, 4, 5, 6, 9, 8, 9, 10]);
  // Eval: normalise only; table is (v/255 - mean)/std rounded once to f32.
  const t = normalisationTable([0.5], [0.25]);
  assert.equal(t[255], Math.fround((1 - 0.5) / 0.25));
  assert.equal(t[51], Math.fround((0.2 - 0.5) / 0.25));
  const ev = augmentCpu(Uint8Array.of(0, 255, 51), null, 1, {
    channels: 1,
    height: 1,
    width: 3,
    mean: [0.5],
    std: [0.25],
    pad: 0,
  });
  assert.deepEqual([...ev], [t[0], t[255], t[51]]);
  assert.deepEqual(unpackAugmentParam(packAugmentParam(7, 3, true)), { dx: 7, dy: 3, flip: true });
  assert.match(augmentKernel.program.code, /@compute @workgroup_size\(256\)/);
});

Deno.test("GPU augmentation equals the CPU reference (1x28x28 and 3x32x32)", async () => {
  const gpu = await Gpu.create();
  try {
    const shapes = [
      { channels: 1, height: 28, width: 28, mean: [0.2860], std: [0.3530], count: 37 },
      {
        channels: 3,
        height: 32,
        width: 32,
        mean: [0.4914, 0.4822, 0.4465],
        std: [0.2470, 0.2435, 0.2616],
        count: 83,
      },
      // Odd image size: bytes not a multiple of 4 (tail word), pad 2.
      { channels: 1, height: 5, width: 5, mean: [0.1], std: [0.3], count: 3, pad: 2 },
    ];
    for (const s of shapes) {
      const pad = s.pad ?? 4;
      const cfg = { ...s, pad };
      const aug = new GpuAugmenter(gpu, { ...cfg, maxBatch: 128 });
      const pixels = randomPixels(s.count * aug.imageBytes, s.channels);
      // Every crop offset with both flips, cycling.
      const span = 2 * pad + 1;
      const params = Uint32Array.from(
        { length: s.count },
        (_, i) => packAugmentParam(i % span, Math.floor(i / span) % span, (i * 7) % 3 === 0),
      );
      const out = gpu.alloc(aug.outputBytes(s.count));
      const view = { buffer: out, offset: 0, size: aug.outputBytes(s.count) };
      for (const mode of ["train", "eval"] as const) {
        const p = mode === "train" ? params : null;
        aug.run(pixels, p, s.count, view);
        const got = new Float32Array(await gpu.read(view));
        const want = augmentCpu(pixels, p, s.count, cfg);
        assert.equal(got.length, want.length);
        let bad = 0, first = -1;
        for (let i = 0; i < want.length; i++) {
          if (got[i] !== want[i]) {
            bad++;
            if (first < 0) first = i;
          }
        }
        assert.equal(
          bad,
          0,
          `${s.channels}x${s.height}x${s.width} ${mode}: ${bad} mismatches, first at ${first}`,
        );
      }
      aug.dispose();
      gpu.release(out);
    }
  } finally {
    gpu.dispose();
  }
});

Deno.test("GPU augmentation: double buffering, steady state creates nothing", async () => {
  const gpu = await Gpu.create();
  try {
    const cfg = {
      channels: 3,
      height: 32,
      width: 32,
      mean: [0.5, 0.4, 0.3],
      std: [0.2, 0.3, 0.25],
    };
    const batch = 20;
    const aug = new GpuAugmenter(gpu, { ...cfg, maxBatch: batch });
    const bytes = aug.outputBytes(batch);
    const outs = [0, 1, 2].map(() => ({ buffer: gpu.alloc(bytes), offset: 0, size: bytes }));
    // Three batches recorded back to back before any read: slot 0 is rewritten by the third
    // while the first is still only recorded.
    const inputs = [0, 1, 2].map((k) => randomPixels(batch * aug.imageBytes, 10 + k));
    const params = [0, 1, 2].map((k) => augmentParamsFor(3, 0, k, batch));
    const warm = async () => {
      for (let k = 0; k < 3; k++) aug.run(inputs[k], params[k], batch, outs[k]);
      const got = [];
      for (let k = 0; k < 3; k++) got.push(new Float32Array(await gpu.read(outs[k])));
      return got;
    };
    const first = await warm();
    for (let k = 0; k < 3; k++) {
      assert.deepEqual(
        first[k],
        augmentCpu(inputs[k], params[k], batch, { ...cfg, pad: 4 }),
        `batch ${k}`,
      );
    }
    // Slots alternate, so (slot, output) pairs repeat every second round: warm one more.
    await warm();
    const before = { ...gpu.stats };
    await warm();
    await warm();
    assert.equal(gpu.stats.buffersCreated, before.buffersCreated);
    assert.equal(gpu.stats.bindGroupsCreated, before.bindGroupsCreated);
    assert.equal(gpu.stats.uniformsCreated, before.uniformsCreated);
    assert.equal(gpu.stats.pipelinesCreated, before.pipelinesCreated);
    // Same (seed, epoch, step) draws the same parameters.
    assert.deepEqual(augmentParamsFor(3, 0, 1, batch), params[1]);
    assert.notDeepEqual(augmentParamsFor(3, 1, 1, batch), params[1]);
    for (const p of params) {
      for (const v of p) {
        const { dx, dy } = unpackAugmentParam(v);
        assert.ok(dx <= 8 && dy <= 8);
      }
    }
    aug.dispose();
  } finally {
    gpu.dispose();
  }
});

Deno.test("Batcher gathers pixels and labels by index into rotating buffers", () => {
  const ds: ImageDataset = {
    name: "t",
    split: "train",
    count: 6,
    channels: 1,
    height: 1,
    width: 3,
    numClasses: 10,
    images: Uint8Array.from({ length: 18 }, (_, i) => i),
    labels: Uint8Array.of(5, 4, 3, 2, 1, 0),
  };
  const b = new Batcher(ds, 4);
  const x = b.gather([5, 0, 2]);
  assert.equal(x.count, 3);
  assert.deepEqual([...x.pixels], [15, 16, 17, 0, 1, 2, 6, 7, 8]);
  assert.deepEqual([...x.labels], [0, 5, 3]);
  assert.deepEqual([...x.labelsU32], [0, 5, 3]);
  assert.deepEqual([...x.indices], [5, 0, 2]);
  const y = b.gather([1]);
  assert.deepEqual([...x.labels], [0, 5, 3], "previous batch intact (other slot)");
  assert.deepEqual([...y.pixels], [3, 4, 5]);
  assert.throws(() => b.gather([0, 1, 2, 3, 4]), RangeError);
  assert.throws(() => b.gather([6]), RangeError);
});
