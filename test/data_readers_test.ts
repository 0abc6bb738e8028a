import assert from "node:assert/strict";
import { join } from "node:path";
import {
  candidateDirs,
  DataError,
  ensureDataset,
  extractCifarArchive,
  findDataset,
  loadCifarDataset,
  loadDataset,
  loadIdxDataset,
  parseIdx,
  readCifarFile,
  readTar,
  writeTar,
} from "../src/data/mod.ts";

// ---------------------------------------------------------------- helpers

function idxBytes(magic: number, dims: number[], data: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + 4 * dims.length + data.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, magic);
  dims.forEach((d, i) => v.setUint32(4 + 4 * i, d));
  out.set(data, 4 + 4 * dims.length);
  return out;
}

async function gzip(bytes: Uint8Array): Promise<Uint8Array> {
  const s = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream()
    .pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(s).arrayBuffer());
}

function pattern(n: number, seed: number): Uint8Array {
  const a = new Uint8Array(n);
  for (let i = 0; i < n; i++) a[i] = (i * 31 + seed * 17 + (i >> 3)) & 0xff;
  return a;
}

/** The DataError `p` rejects with: its message holds `parts` and ends with one "to fix:" line. */
async function rejectsData(p: Promise<unknown>, ...parts: (string | RegExp)[]): Promise<DataError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof DataError, `expected DataError, got ${e}`);
    assertHint(e);
    for (const part of parts) {
      if (typeof part === "string") {
        assert.ok(e.message.includes(part), `message "${e.message}" lacks "${part}"`);
      } else assert.match(e.message, part);
    }
    return e;
  }
  assert.fail("expected a DataError");
}

/** A user's error says what to do: a hint, printed once as the message's last "to fix:" line. */
function assertHint(e: DataError): void {
  assert.ok(e.hint, `no hint: ${e.message}`);
  assert.ok(e.message.endsWith(`\n  to fix: ${e.hint}`), e.message);
  assert.equal(e.message.match(/to fix:/g)?.length, 1, e.message);
}

/** What to do about a damaged dataset file (src/data/errors.ts). */
const REPLACE =
  /to fix: delete the file and run again with --download .* or point --data-dir at a good copy/;

async function withTmp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "tailgrad_data_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

// ---------------------------------------------------------------- IDX

Deno.test("IDX: raw and gzip files read back exactly", async () => {
  await withTmp(async (dir) => {
    const n = 7, h = 5, w = 4;
    const pixels = pattern(n * h * w, 1);
    const labels = Uint8Array.from([0, 9, 3, 3, 1, 2, 8]);
    const img = idxBytes(0x803, [n, h, w], pixels);
    const lab = idxBytes(0x801, [n], labels);
    for (const gz of [false, true]) {
      const ip = join(dir, `img${gz ? ".gz" : ""}`), lp = join(dir, `lab${gz ? ".gz" : ""}`);
      await Deno.writeFile(ip, gz ? await gzip(img) : img);
      await Deno.writeFile(lp, gz ? await gzip(lab) : lab);
      const d = await loadIdxDataset(ip, lp, { name: "t", split: "train" });
      assert.equal(d.count, n);
      assert.equal(d.channels, 1);
      assert.equal(d.height, h);
      assert.equal(d.width, w);
      assert.deepEqual(d.images, pixels);
      assert.deepEqual(d.labels, labels);
    }
  });
});

Deno.test("IDX: corrupt inputs give DataErrors naming the file and the fault", async () => {
  await withTmp(async (dir) => {
    const n = 4;
    const pixels = pattern(n * 9, 2);
    const good = {
      img: idxBytes(0x803, [n, 3, 3], pixels),
      lab: idxBytes(0x801, [n], new Uint8Array([1, 2, 3, 4])),
    };
    const write = async (name: string, bytes: Uint8Array) => {
      const p = join(dir, name);
      await Deno.writeFile(p, bytes);
      return p;
    };
    const img = await write("img", good.img);
    const lab = await write("lab", good.lab);
    const opts = { name: "t", split: "train" as const };

    // Wrong magic: a labels file where images are expected, and garbage magic bytes.
    await rejectsData(
      loadIdxDataset(lab, lab, opts),
      lab,
      "wrong magic number 0x00000801 (a labels file's) for an images file (expected 0x00000803)",
      /to fix: the file is misnamed or damaged: give each file its dataset's name/,
    );
    const garbage = await write("garbage", Uint8Array.from([0x12, 0x34, 0x56, 0x78, 0, 0, 0, 0]));
    await rejectsData(
      loadIdxDataset(garbage, lab, opts),
      garbage,
      "bad magic number 0x12345678",
      REPLACE,
    );
    // Truncated (raw and gzip).
    const trunc = await write("trunc", good.img.subarray(0, good.img.length - 5));
    await rejectsData(
      loadIdxDataset(trunc, lab, opts),
      `${trunc}: truncated`,
      "36 bytes",
      "has 31",
      REPLACE,
    );
    const truncHeader = await write("trunch", good.img.subarray(0, 10));
    await rejectsData(loadIdxDataset(truncHeader, lab, opts), truncHeader, "truncated IDX header");
    const gz = await gzip(good.img);
    const truncGz = await write("trunc.gz", gz.subarray(0, gz.length - 9));
    await rejectsData(loadIdxDataset(truncGz, lab, opts), truncGz, "gzip", REPLACE, /gzip -t/);
    // Counts that disagree.
    const lab3 = await write("lab3", idxBytes(0x801, [3], new Uint8Array([1, 2, 3])));
    await rejectsData(
      loadIdxDataset(img, lab3, opts),
      img,
      lab3,
      "4 images",
      "3 labels",
      /to fix: the two files belong to different splits or datasets: replace them with the matching pair/,
      /: delete both files and run again with --download .* verified copies in their place, or point --data-dir at a good copy/,
    );
    // Label out of range.
    const bad = await write("labbad", idxBytes(0x801, [n], new Uint8Array([1, 2, 10, 4])));
    await rejectsData(
      loadIdxDataset(img, bad, opts),
      `${bad}: label 10 at index 2 is out of range [0, 10)`,
      REPLACE,
    );
    // gzip garbage (magic right, stream wrong).
    const junk = await write(
      "junk.gz",
      Uint8Array.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6]),
    );
    await rejectsData(loadIdxDataset(junk, lab, opts), junk, "corrupt or truncated gzip");
    // Trailing bytes and missing files.
    const trailing = await write("trail", Uint8Array.from([...good.img, 0, 0]));
    await rejectsData(loadIdxDataset(trailing, lab, opts), trailing, "trailing bytes", REPLACE);
    await rejectsData(
      loadIdxDataset(join(dir, "nope"), lab, opts),
      `file ${join(dir, "nope")} does not exist`,
      /to fix: check the path, and that --data-dir \(or \$TAILGRAD_DATA\) names/,
    );
    for (const bytes of [[0, 0, 8], [0, 0, 0x0d, 1, 0, 0, 0, 0]]) {
      assert.throws(
        () => parseIdx(Uint8Array.from(bytes), "f.idx"),
        (e) => {
          assert.ok(e instanceof DataError);
          assertHint(e);
          assert.match(e.message, /^f\.idx: (truncated IDX file|unsupported IDX data type 0xd)/);
          assert.match(e.message, REPLACE);
          return true;
        },
      );
    }
  });
});

// ---------------------------------------------------------------- CIFAR

function cifar10Records(labels: number[], seed: number): { bytes: Uint8Array; px: Uint8Array } {
  const px = pattern(labels.length * 3072, seed);
  const bytes = new Uint8Array(labels.length * 3073);
  labels.forEach((y, i) => {
    bytes[i * 3073] = y;
    bytes.set(px.subarray(i * 3072, (i + 1) * 3072), i * 3073 + 1);
  });
  return { bytes, px };
}

function cifar100Records(coarse: number[], fine: number[], seed: number) {
  const px = pattern(fine.length * 3072, seed);
  const bytes = new Uint8Array(fine.length * 3074);
  fine.forEach((y, i) => {
    bytes[i * 3074] = coarse[i];
    bytes[i * 3074 + 1] = y;
    bytes.set(px.subarray(i * 3072, (i + 1) * 3072), i * 3074 + 2);
  });
  return { bytes, px };
}

Deno.test("CIFAR-10 and CIFAR-100 binary files read back exactly", async () => {
  await withTmp(async (dir) => {
    const allPx: Uint8Array[] = [];
    const allLabels: number[] = [];
    for (let b = 1; b <= 5; b++) {
      const labels = [b % 10, (b * 3) % 10, 9];
      const { bytes, px } = cifar10Records(labels, b);
      await Deno.writeFile(join(dir, `data_batch_${b}.bin`), bytes);
      allPx.push(px);
      allLabels.push(...labels);
    }
    const t = cifar10Records([4, 0], 9);
    await Deno.writeFile(join(dir, "test_batch.bin"), t.bytes);
    const train = await loadCifarDataset(dir, "cifar10", "train");
    assert.equal(train.count, 15);
    assert.equal(train.channels, 3);
    assert.equal(train.numClasses, 10);
    const expected = new Uint8Array(15 * 3072);
    allPx.forEach((p, i) => expected.set(p, i * 3 * 3072));
    assert.deepEqual(train.images, expected);
    assert.deepEqual([...train.labels], allLabels);
    const test = await loadCifarDataset(dir, "cifar10", "test");
    assert.deepEqual(test.images, t.px);
    assert.deepEqual([...test.labels], [4, 0]);

    const tr = cifar100Records([19, 0, 7], [99, 0, 42], 3);
    const te = cifar100Records([1], [55], 4);
    await Deno.writeFile(join(dir, "train.bin"), tr.bytes);
    await Deno.writeFile(join(dir, "test.bin"), te.bytes);
    const c100 = await loadCifarDataset(dir, "cifar100", "train");
    assert.equal(c100.numClasses, 100);
    assert.deepEqual([...c100.labels], [99, 0, 42]);
    assert.deepEqual(c100.images, tr.px);
    const recs = await readCifarFile(join(dir, "train.bin"), "cifar100");
    assert.deepEqual([...recs.coarseLabels!], [19, 0, 7]);
    assert.deepEqual([...(await loadCifarDataset(dir, "cifar100", "test")).labels], [55]);
  });
});

Deno.test("CIFAR: corrupt inputs give DataErrors naming the file and the fault", async () => {
  await withTmp(async (dir) => {
    const write = async (name: string, bytes: Uint8Array) => {
      const p = join(dir, name);
      await Deno.writeFile(p, bytes);
      return p;
    };
    const good = cifar10Records([1, 2], 1).bytes;
    const trunc = await write("trunc.bin", good.subarray(0, good.length - 100));
    await rejectsData(
      readCifarFile(trunc, "cifar10"),
      `${trunc}: truncated`,
      "3073-byte record",
      REPLACE,
    );
    const badLabel = good.slice();
    badLabel[3073] = 10;
    const bl = await write("badlabel.bin", badLabel);
    await rejectsData(
      readCifarFile(bl, "cifar10"),
      bl,
      "record 1",
      "label 10 is out of range [0, 10)",
      REPLACE,
    );
    const fine = cifar100Records([1, 2], [3, 100], 2).bytes;
    const bf = await write("badfine.bin", fine);
    await rejectsData(readCifarFile(bf, "cifar100"), bf, "fine label 100");
    const coarse = cifar100Records([20], [3], 2).bytes;
    const bc = await write("badcoarse.bin", coarse);
    await rejectsData(readCifarFile(bc, "cifar100"), bc, "coarse label 20");
    const empty = await write("empty.bin", new Uint8Array(0));
    await rejectsData(readCifarFile(empty, "cifar10"), `${empty}: empty file`, REPLACE);
    // A CIFAR-10 file read as CIFAR-100 is the wrong length.
    const c10 = await write("c10.bin", good);
    await rejectsData(readCifarFile(c10, "cifar100"), c10, "3074-byte record");
    const gzjunk = await write("junk.bin", Uint8Array.from([0x1f, 0x8b, 0, 1, 2, 3]));
    await rejectsData(readCifarFile(gzjunk, "cifar10"), gzjunk, "gzip");
  });
});

// ---------------------------------------------------------------- tar

Deno.test("tar: ustar members read back; corrupt headers rejected", () => {
  const a = pattern(1000, 5), b = pattern(512, 6);
  const tar = writeTar([{ name: "dir/a.bin", data: a }, { name: "dir/b.bin", data: b }]);
  const entries = [...readTar(tar, "t.tar")];
  assert.deepEqual(entries.map((e) => e.name), ["dir/a.bin", "dir/b.bin"]);
  assert.deepEqual(entries[0].data, a);
  assert.deepEqual(entries[1].data, b);
  const bad = tar.slice();
  bad[10] ^= 1;
  const notOctal = tar.slice();
  notOctal.set(new TextEncoder().encode("9x\0"), 148);
  for (
    const [bytes, problem] of [
      [bad, /^t\.tar: corrupt tar header at offset 0: stored checksum \d+, computed \d+/],
      [notOctal, /^t\.tar: corrupt tar header: checksum field "9x" is not an octal number/],
      [tar.subarray(0, 900), /^t\.tar: truncated tar archive: member "dir\/a\.bin" needs 1000/],
    ] as const
  ) {
    assert.throws(() => [...readTar(bytes, "t.tar")], (e) => {
      assert.ok(e instanceof DataError, String(e));
      assertHint(e);
      assert.match(e.message, problem);
      assert.match(e.message, REPLACE);
      return true;
    });
  }
});

Deno.test("CIFAR archive: one lacking a batch file is named, with what to do", async () => {
  await withTmp(async (dir) => {
    const rec = cifar10Records([1], 1).bytes;
    const members = ["data_batch_1.bin", "data_batch_2.bin", "test_batch.bin"]
      .map((name) => ({ name: `cifar-10-batches-bin/${name}`, data: rec }));
    const archive = join(dir, "cifar-10-binary.tar.gz");
    await Deno.writeFile(archive, await gzip(writeTar(members)));
    await rejectsData(
      extractCifarArchive(archive, dir, "cifar10"),
      `${archive}: archive lacks data_batch_3.bin, data_batch_4.bin, data_batch_5.bin`,
      REPLACE,
    );
  });
});

// ---------------------------------------------------------------- locating

Deno.test("locating: without permission to read $TAILGRAD_DATA the search is an error, not ./data or the system copy", async () => {
  await withTmp(async (dir) => {
    // a program that may read files (the system copy too) but not the environment
    const script = join(dir, "find.ts");
    const load = new URL("../src/data/load.ts", import.meta.url).href;
    await Deno.writeTextFile(
      script,
      `import { findDataset } from "${load}";\n` +
        `const options = JSON.parse(Deno.args[0] ?? "{}");\n` +
        `try { console.log("found", await findDataset("fashion-mnist", options)); }\n` +
        `catch (e) { console.log(e.name + ": " + e.message); }\n`,
    );
    const run = async (options: object) => {
      const cmd = new Deno.Command(Deno.execPath(), {
        args: ["run", "--no-prompt", "--allow-read", script, JSON.stringify(options)],
        env: { TAILGRAD_DATA: join(dir, "missing"), NO_COLOR: "1" },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      });
      const { code, stdout, stderr } = await cmd.output();
      assert.equal(code, 0, new TextDecoder().decode(stderr));
      return new TextDecoder().decode(stdout).trim();
    };
    const out = await run({ cwd: dir });
    assert.match(
      out,
      /^DataError: \$TAILGRAD_DATA cannot be read \(this process has no permission to read the environment variable TAILGRAD_DATA\)/,
    );
    assert.match(
      out,
      /to fix: grant it \(deno run --allow-env=TAILGRAD_DATA\), or name the folder \(--data-dir; the option dataDir\), or ignore the environment \(the option env: \{\}\)$/,
    );
    // a named folder, or an environment passed in, needs no permission
    assert.equal(await run({ cwd: dir, dataDir: join(dir, "d") }), "found null");
    assert.equal(await run({ cwd: dir, env: {}, systemDirs: false }), "found null");
  });
});

Deno.test("locating: search order and the message for an absent dataset", async () => {
  await withTmp(async (dir) => {
    const dirs = candidateDirs("fashion-mnist", {
      dataDir: join(dir, "flag"),
      env: { TAILGRAD_DATA: join(dir, "env") },
      cwd: dir,
    });
    // the first place the user names is the only one looked in
    assert.deepEqual(dirs, [join(dir, "flag", "fashion-mnist"), join(dir, "flag")]);
    assert.deepEqual(
      candidateDirs("fashion-mnist", { env: { TAILGRAD_DATA: join(dir, "env") }, cwd: dir }),
      [join(dir, "env", "fashion-mnist"), join(dir, "env")],
    );
    assert.deepEqual(candidateDirs("fashion-mnist", { env: {}, cwd: dir }), [
      join(dir, "data", "fashion-mnist"),
      "/usr/share/datasets/fashion-mnist",
    ]);
    const opts = { env: {}, cwd: dir, systemDirs: false };
    assert.equal(await findDataset("fashion-mnist", opts), null);
    const e = await rejectsData(
      ensureDataset("fashion-mnist", opts),
      "Fashion-MNIST was not found",
      join(dir, "data", "fashion-mnist"),
      "apt-get install dataset-fashion-mnist",
      "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/train-images-idx3-ubyte.gz",
      /downloading is not allowed\n {2}to fix: get it one of these ways:\n {2}- install /,
      /- or let tailgrad download and verify it: allow downloads \(--download/,
    );
    assert.ok(!e.message.includes("undefined"));
    await rejectsData(
      ensureDataset("cifar10", opts),
      "CIFAR-10 was not found",
      "cifar-10-binary.tar.gz",
      "tar xzf",
    );

    // ./data/<name> with raw (ungzipped) IDX files is found and loaded.
    const d = join(dir, "data", "mnist");
    await Deno.mkdir(d, { recursive: true });
    const px = pattern(2 * 4, 3);
    await Deno.writeFile(join(d, "train-images-idx3-ubyte"), idxBytes(0x803, [2, 2, 2], px));
    await Deno.writeFile(
      join(d, "train-labels-idx1-ubyte.gz"),
      await gzip(idxBytes(0x801, [2], Uint8Array.from([7, 1]))),
    );
    await Deno.writeFile(
      join(d, "t10k-images-idx3-ubyte"),
      idxBytes(0x803, [1, 2, 2], px.subarray(0, 4)),
    );
    await Deno.writeFile(
      join(d, "t10k-labels-idx1-ubyte"),
      idxBytes(0x801, [1], Uint8Array.from([5])),
    );
    assert.equal(await findDataset("mnist", opts), d);
    const loaded = await loadDataset("mnist", opts);
    assert.deepEqual(loaded.train.images, px);
    assert.deepEqual([...loaded.train.labels], [7, 1]);
    assert.deepEqual([...loaded.test.labels], [5]);
    // A CIFAR archive's folder layout is found too.
    const c = join(dir, "flag", "cifar10", "cifar-10-batches-bin");
    await Deno.mkdir(c, { recursive: true });
    for (const f of [1, 2, 3, 4, 5].map((i) => `data_batch_${i}.bin`).concat("test_batch.bin")) {
      await Deno.writeFile(join(c, f), cifar10Records([1], 1).bytes);
    }
    assert.equal(await findDataset("cifar10", { ...opts, dataDir: join(dir, "flag") }), c);
  });
});
