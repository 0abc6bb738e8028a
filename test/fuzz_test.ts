/**
 * Fuzzing the readers of untrusted files (issue 11): IDX (raw and gzip), CIFAR-10/100 records,
 * the CIFAR archive path (gzip + tar) and safetensors checkpoints, each fed seeded random
 * truncations and byte flips of a valid file. Every input must end in a correct read (the
 * result is self-consistent) or the reader's named error (DataError / SafetensorsError, naming
 * the file) - never another exception, a crash or a hang. Seeded, so a failure reproduces;
 * bounded in iterations and time.
 */
import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";
import {
  CIFAR_IMAGE_BYTES,
  DataError,
  gunzip,
  parseCifar,
  parseIdx,
  readTar,
  writeTar,
} from "../src/data/mod.ts";
import { decodeSafetensors, encodeSafetensors, SafetensorsError } from "../src/checkpoint/mod.ts";
import { Rng } from "../src/random.ts";

const FILE = "/fuzz/input";
const ITERATIONS = 5000;
/** Wall-clock budget of each target; at least MIN_ITERATIONS must run within it. */
const BUDGET_MS = 8_000;
const MIN_ITERATIONS = 200;
/** One call longer than this counts as a hang. */
const HANG_MS = 2_000;

interface Target {
  name: string;
  valid: Uint8Array;
  /** Reads the bytes and throws if the result is not self-consistent. */
  read(bytes: Uint8Array): Promise<void> | void;
  /** The named error the reader may throw. */
  named: (e: unknown) => boolean;
}

function mutate(rng: Rng, valid: Uint8Array): Uint8Array {
  const kind = rng.nextInt(3);
  let out = valid.slice();
  if (kind !== 1) out = out.slice(0, rng.nextInt(valid.length));
  if (kind !== 0 && out.length > 0) {
    const flips = 1 + rng.nextInt(4);
    for (let k = 0; k < flips; k++) {
      // half the flips hit the first 64 bytes, where the headers are
      const at = rng.nextInt(2) === 0
        ? rng.nextInt(Math.min(64, out.length))
        : rng.nextInt(out.length);
      out[at] ^= 1 + rng.nextInt(255);
    }
  }
  return out;
}

function idxBytes(magic: number, dims: number[], data: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + 4 * dims.length + data.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, magic);
  dims.forEach((d, i) => v.setUint32(4 + 4 * i, d));
  out.set(data, 4 + 4 * dims.length);
  return out;
}

function pattern(n: number, seed: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed * 17 + (i >> 3)) & 0xff);
}

function checkIdx(bytes: Uint8Array): void {
  const a = parseIdx(bytes, FILE);
  assert.equal(a.data.length, a.dims.reduce((x, y) => x * y, 1));
}

function cifarRecords(labelBytes: number, count: number): Uint8Array {
  const rec = labelBytes + CIFAR_IMAGE_BYTES;
  const out = pattern(count * rec, labelBytes);
  for (let i = 0; i < count; i++) {
    out[i * rec] = i % (labelBytes === 1 ? 10 : 20);
    if (labelBytes === 2) out[i * rec + 1] = (i * 7) % 100;
  }
  return out;
}

function checkCifar(bytes: Uint8Array, variant: "cifar10" | "cifar100"): void {
  const r = parseCifar(bytes, FILE, variant);
  assert.equal(r.images.length, r.count * CIFAR_IMAGE_BYTES);
  assert.ok(r.labels.every((y) => y < (variant === "cifar10" ? 10 : 100)));
}

const images = idxBytes(0x803, [5, 7, 6], pattern(5 * 7 * 6, 1));
const safetensors = encodeSafetensors(
  new Map(
    [
      ["conv1.weight", {
        dtype: "F32",
        shape: [4, 1, 3, 3],
        data: Float32Array.from(pattern(36, 2)),
      }],
      ["bn1.num_batches_tracked", { dtype: "I64", shape: [], data: new BigInt64Array([7n]) }],
      ["mwn.fc1.weight", { dtype: "F64", shape: [3, 1], data: new Float64Array([1, 2, 3]) }],
    ] as const,
  ),
  { format: "tailgrad-train-checkpoint/1", epoch: "3", config: '{"epochs":5}' },
);
const archive = new Uint8Array(gzipSync(writeTar([
  { name: "cifar-10-batches-bin/data_batch_1.bin", data: cifarRecords(1, 2) },
  { name: "cifar-10-batches-bin/test_batch.bin", data: cifarRecords(1, 1) },
])));

const isData = (e: unknown) => e instanceof DataError && e.message.startsWith(FILE);
const TARGETS: Target[] = [
  { name: "IDX raw", valid: images, read: checkIdx, named: isData },
  {
    name: "IDX gzip",
    valid: new Uint8Array(gzipSync(images)),
    read: async (b) => checkIdx(await gunzip(b, FILE)),
    named: isData,
  },
  {
    name: "CIFAR-10",
    valid: cifarRecords(1, 3),
    read: (b) => checkCifar(b, "cifar10"),
    named: isData,
  },
  {
    name: "CIFAR-100",
    valid: cifarRecords(2, 3),
    read: (b) => checkCifar(b, "cifar100"),
    named: isData,
  },
  {
    name: "CIFAR archive (gzip + tar)",
    valid: archive,
    read: async (b) => {
      for (const e of readTar(await gunzip(b, FILE), FILE)) assert.equal(e.data.length, e.size);
    },
    named: isData,
  },
  {
    name: "tar",
    valid: writeTar([
      { name: "cifar-10-batches-bin/data_batch_1.bin", data: cifarRecords(1, 1) },
      { name: "cifar-10-batches-bin/readme.html", data: pattern(700, 3) },
    ]),
    read: (b) => {
      for (const e of readTar(b, FILE)) assert.equal(e.data.length, e.size);
    },
    named: isData,
  },
  {
    name: "safetensors",
    valid: safetensors,
    read: (b) => {
      const f = decodeSafetensors(b);
      for (const t of f.tensors.values()) {
        assert.equal(t.data.length, t.shape.reduce((x, y) => x * y, 1));
      }
      for (const v of Object.values(f.metadata)) assert.equal(typeof v, "string");
    },
    named: (e) => e instanceof SafetensorsError,
  },
];

for (const target of TARGETS) {
  Deno.test(`fuzz: ${target.name}: truncations and byte flips give a read or a named error`, async () => {
    await target.read(target.valid); // the unmutated file reads
    const rng = new Rng(11, "fuzz", target.name);
    const start = performance.now();
    let done = 0, reads = 0, errors = 0;
    for (; done < ITERATIONS && performance.now() - start < BUDGET_MS; done++) {
      const input = mutate(rng, target.valid);
      const t0 = performance.now();
      try {
        await target.read(input);
        reads++;
      } catch (e) {
        if (!target.named(e)) {
          throw new Error(
            `${target.name}, iteration ${done} (seed 11): ${input.length} bytes gave an unnamed ` +
              `${e instanceof Error ? e.stack : e}`,
          );
        }
        errors++;
      }
      const ms = performance.now() - t0;
      assert.ok(ms < HANG_MS, `${target.name}, iteration ${done}: ${ms.toFixed(0)} ms`);
    }
    assert.ok(done >= MIN_ITERATIONS, `only ${done} iterations in ${BUDGET_MS} ms`);
    assert.ok(errors > 0, "some mutations must be detected");
    assert.equal(reads + errors, done);
  });
}
