/**
 * Checkpoints: the safetensors reader/writer (round trip of every dtype, the exact byte layout of
 * the format, rejection of corrupt files), PyTorch state_dict naming, and atomic replacement
 * (a leftover temporary file or a writer SIGKILLed mid-write never breaks loading).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  addModelState,
  addMomentum,
  decodeSafetensors,
  encodeSafetensors,
  isTempOf,
  MOMENTUM_PREFIX,
  readCheckpoint,
  removeStaleTemps,
  type SafeTensor,
  SafetensorsError,
  takeF32,
  writeCheckpoint,
  writeFileAtomic,
} from "../src/checkpoint/mod.ts";
import { resnetInit, resnetSpecs } from "../src/nn/resnet.ts";
import { openFork } from "../src/train/fork.ts";
import { CHECKPOINT_FORMAT, resolveConfig } from "../src/train/trainer.ts";

Deno.test("safetensors: round trip of every dtype, scalars and metadata", () => {
  const tensors = new Map<string, SafeTensor>([
    ["a.weight", {
      dtype: "F32",
      shape: [2, 3],
      data: Float32Array.from([1, -2, 3.5, 0, 1e-30, -0]),
    }],
    ["b", { dtype: "F64", shape: [3], data: Float64Array.from([Math.PI, -1e300, 5e-324]) }],
    ["c", { dtype: "I32", shape: [2], data: Int32Array.from([-7, 2147483647]) }],
    ["d", { dtype: "U32", shape: [1, 1], data: Uint32Array.from([4294967295]) }],
    ["e.num_batches_tracked", { dtype: "I64", shape: [], data: new BigInt64Array([123n]) }],
    ["f", { dtype: "U8", shape: [5], data: Uint8Array.from([1, 2, 3, 4, 5]) }],
    ["empty", { dtype: "F32", shape: [0, 4], data: new Float32Array(0) }],
  ]);
  const meta = { epoch: "3", config: JSON.stringify({ lr: 0.1, name: "ü ✓" }) };
  const bytes = encodeSafetensors(tensors, meta);
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.equal(n % 8, 0, "header padded to 8 bytes");
  const back = decodeSafetensors(bytes);
  assert.deepEqual(back.metadata, meta);
  assert.deepEqual([...back.tensors.keys()], [...tensors.keys()]);
  for (const [k, t] of tensors) {
    const b = back.tensors.get(k)!;
    assert.equal(b.dtype, t.dtype);
    assert.deepEqual(b.shape, t.shape);
    assert.deepEqual(b.data, t.data, k);
  }
  // -0 and denormals survive bit for bit
  assert.ok(Object.is((back.tensors.get("a.weight")!.data as Float32Array)[5], -0));
});

Deno.test("safetensors: byte layout matches the format (hand-built file decodes)", () => {
  // {"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}} + 1.0f, 2.0f little-endian
  const header = new TextEncoder().encode(
    '{"__metadata__":{"k":"v"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}',
  );
  const file = new Uint8Array(8 + header.length + 8);
  const v = new DataView(file.buffer);
  v.setBigUint64(0, BigInt(header.length), true);
  file.set(header, 8);
  v.setFloat32(8 + header.length, 1, true);
  v.setFloat32(12 + header.length, 2, true);
  const f = decodeSafetensors(file);
  assert.deepEqual(f.metadata, { k: "v" });
  assert.deepEqual(Array.from(f.tensors.get("w")!.data as Float32Array), [1, 2]);
  // and our encoder's header is exactly that JSON (plus space padding)
  const ours = encodeSafetensors(
    new Map([["w", { dtype: "F32", shape: [2], data: Float32Array.from([1, 2]) }]]),
    { k: "v" },
  );
  const len = Number(new DataView(ours.buffer).getBigUint64(0, true));
  const json = new TextDecoder().decode(ours.subarray(8, 8 + len));
  assert.deepEqual(JSON.parse(json), JSON.parse(new TextDecoder().decode(header)));
  assert.equal(json.trimEnd().length + (len - json.trimEnd().length), len);
  assert.deepEqual(ours.subarray(8 + len), file.subarray(8 + header.length));
});

Deno.test("safetensors: corrupt files are rejected with a message", () => {
  const good = encodeSafetensors(
    new Map([
      ["a", { dtype: "F32", shape: [4], data: new Float32Array(4) }],
      ["b", { dtype: "F32", shape: [2], data: new Float32Array(2) }],
    ]),
  );
  assert.throws(() => decodeSafetensors(good.subarray(0, 5)), SafetensorsError);
  assert.throws(() => decodeSafetensors(good.subarray(0, good.length - 4)), /data section|bounds/);
  const huge = good.slice();
  new DataView(huge.buffer).setBigUint64(0, 1n << 40n, true);
  assert.throws(() => decodeSafetensors(huge), /header length/);
  const mk = (h: string, dataBytes: number) => {
    const j = new TextEncoder().encode(h);
    const f = new Uint8Array(8 + j.length + dataBytes);
    new DataView(f.buffer).setBigUint64(0, BigInt(j.length), true);
    f.set(j, 8);
    return f;
  };
  assert.throws(
    () =>
      decodeSafetensors(mk(
        '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}',
        12,
      )),
    /contiguous/,
  );
  assert.throws(
    () => decodeSafetensors(mk('{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', 8)),
    /bytes for F32/,
  );
  assert.throws(
    () => decodeSafetensors(mk('{"a":{"dtype":"Q7","shape":[1],"data_offsets":[0,1]}}', 1)),
    /unsupported dtype/,
  );
  assert.throws(() => decodeSafetensors(mk("{not json", 0)), /bad JSON/);
  assert.throws(
    () =>
      encodeSafetensors(
        new Map([["x", { dtype: "F32", shape: [3], data: new Float32Array(2) }]]),
      ),
    /2 values for shape/,
  );
});

Deno.test("checkpoint: PyTorch state_dict names, num_batches_tracked, momentum", () => {
  const cfg = { depth: 8, inChannels: 3, numClasses: 10 };
  const specs = resnetSpecs(cfg);
  const init = resnetInit(cfg, 7);
  const m = new Map<string, SafeTensor>();
  addModelState(m, specs, init, init, 42);
  addMomentum(m, specs.params, init);
  assert.ok(m.has("conv1.weight"));
  assert.deepEqual(m.get("conv1.weight")!.shape, [16, 3, 3, 3]);
  assert.ok(m.has("layer3.0.bn2.running_var"));
  assert.deepEqual(m.get("linear.weight")!.shape, [10, 64]);
  const nbt = m.get("layer2.0.bn1.num_batches_tracked")!;
  assert.equal(nbt.dtype, "I64");
  assert.deepEqual(nbt.shape, []);
  assert.equal((nbt.data as BigInt64Array)[0], 42n);
  assert.ok(m.has(`${MOMENTUM_PREFIX}layer1.0.conv1.weight`));
  const f = decodeSafetensors(encodeSafetensors(m));
  const params = takeF32(f, specs.params);
  const mom = takeF32(f, specs.params, MOMENTUM_PREFIX);
  for (const s of specs.params) {
    assert.deepEqual(params.get(s.name), init.get(s.name));
    assert.deepEqual(mom.get(s.name), init.get(s.name));
  }
  assert.throws(() => takeF32(f, [{ name: "conv1.weight", shape: [16, 1, 3, 3] }]), /expected F32/);
});

Deno.test("atomic write: a leftover temp file never breaks loading the previous checkpoint", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tg-ckpt-" });
  try {
    const path = join(dir, "checkpoint.safetensors");
    const t = (v: number) =>
      new Map<string, SafeTensor>([["x", {
        dtype: "F32",
        shape: [3],
        data: Float32Array.from([v, v, v]),
      }]]);
    await writeCheckpoint(path, t(1), { epoch: "1" });
    // a writer killed mid-write leaves a partial temp file beside the checkpoint
    const partial = encodeSafetensors(t(2), { epoch: "2" }).subarray(0, 20);
    const stray = join(dir, `.checkpoint.safetensors.999.abc.tmp`);
    await Deno.writeFile(stray, partial);
    assert.ok(isTempOf(".checkpoint.safetensors.999.abc.tmp", "checkpoint.safetensors"));
    const loaded = await readCheckpoint(path);
    assert.equal(loaded!.metadata.epoch, "1");
    assert.deepEqual(Array.from(loaded!.tensors.get("x")!.data as Float32Array), [1, 1, 1]);
    assert.equal(await removeStaleTemps(path), 1);
    await writeCheckpoint(path, t(3), { epoch: "3" });
    assert.equal((await readCheckpoint(path))!.metadata.epoch, "3");
    const names = [...Deno.readDirSync(dir)].map((e) => e.name);
    assert.deepEqual(names, ["checkpoint.safetensors"]);
    assert.equal(await readCheckpoint(join(dir, "absent.safetensors")), null);
    // writeFileAtomic of text
    await writeFileAtomic(join(dir, "a.json"), '{"ok":true}');
    assert.equal(await Deno.readTextFile(join(dir, "a.json")), '{"ok":true}');
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("atomic write: a writer SIGKILLed mid-write leaves a loadable checkpoint", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tg-kill-" });
  try {
    const path = join(dir, "checkpoint.safetensors");
    const mod = new URL("../src/checkpoint/mod.ts", import.meta.url).href;
    // Rewrites an ~8 MB checkpoint in a loop, each with a distinct epoch and fill value.
    const script = join(dir, "writer.ts");
    await Deno.writeTextFile(
      script,
      `import { writeCheckpoint } from ${JSON.stringify(mod)};
const path = ${JSON.stringify(path)};
for (let i = 1; ; i++) {
  const data = new Float32Array(2_000_000).fill(i);
  await writeCheckpoint(path, new Map([["x", { dtype: "F32", shape: [data.length], data }]]), {
    epoch: String(i),
  });
  if (i === 1) console.log("first");
}`,
    );
    for (const delay of [150, 400, 900]) {
      const child = new Deno.Command("deno", {
        args: [
          "run",
          "--quiet",
          "--no-lock",
          `--allow-read=${dir}`,
          `--allow-write=${dir}`,
          script,
        ],
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
      const reader = child.stdout.getReader();
      await reader.read(); // "first": one complete checkpoint exists
      await new Promise((r) => setTimeout(r, delay));
      child.kill("SIGKILL");
      await child.status;
      reader.releaseLock();
      await child.stdout.cancel().catch(() => {});
      const f = await readCheckpoint(path);
      assert.ok(f, "checkpoint present");
      const epoch = Number(f.metadata.epoch);
      assert.ok(epoch >= 1);
      const x = f.tensors.get("x")!.data as Float32Array;
      assert.equal(x.length, 2_000_000);
      assert.ok(x.every((v) => v === epoch), "data consistent with its metadata");
      await removeStaleTemps(path);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("checkpoint: a folder given as a checkpoint is named as a folder, with the file inside", async () => {
  // before: "cannot be read (IsADirectory: Is a directory (os error 21) ...)"
  const dir = await Deno.makeTempDir({ prefix: "tg-ckpt-folder-" });
  try {
    const refusal = (path: string) =>
      readCheckpoint(path, { hint: "the caller's hint" }).then(() => assert.fail(path), (e) => e);
    let e = await refusal(dir);
    assert.ok(e instanceof SafetensorsError);
    assert.equal(
      e.message,
      `checkpoint ${dir} is a folder; expected a checkpoint file\n  to fix: the caller's hint`,
    );
    await writeCheckpoint(join(dir, "checkpoint.safetensors"), new Map(), { epoch: "1" });
    e = await refusal(`${dir}/`);
    assert.equal(
      e.message,
      `checkpoint ${dir}/ is a folder; expected a checkpoint file\n  to fix: give the checkpoint ` +
        `inside it, ${join(dir, "checkpoint.safetensors")}`,
    );
    // --init-from says the same (its own "damaged" hint before)
    const fork = await openFork(resolveConfig({ initFrom: dir }), CHECKPOINT_FORMAT)
      .then(() => assert.fail("accepted"), (e) => e);
    assert.equal(fork.flag, "--init-from");
    assert.match(
      fork.message,
      new RegExp(
        `is a folder; expected a checkpoint file\\n {2}to fix: give the checkpoint inside it, ` +
          `${join(dir, "checkpoint.safetensors")}$`,
      ),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
