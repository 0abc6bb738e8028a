import assert from "node:assert/strict";
import { join } from "node:path";
import {
  DataError,
  DATASET_SOURCES,
  downloadVerified,
  ensureDataset,
  loadDataset,
  sha256Hex,
  writeTar,
} from "../src/data/mod.ts";

async function gzip(bytes: Uint8Array): Promise<Uint8Array> {
  const s = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream()
    .pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(s).arrayBuffer());
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
  const a = new Uint8Array(n);
  for (let i = 0; i < n; i++) a[i] = (i * 13 + seed * 7 + (i >> 5)) & 0xff;
  return a;
}

/** A local HTTP server: `/<file>` serves files; `/trunc/<file>` drops the connection midway. */
function serve(files: Map<string, Uint8Array>) {
  const server = Deno.serve(
    {
      hostname: "127.0.0.1",
      port: 0,
      onListen() {},
      onError: () => new Response(null, { status: 500 }),
    },
    (req) => {
      const path = new URL(req.url).pathname;
      const trunc = path.startsWith("/trunc/");
      const body = files.get(path.replace(/^\/(trunc\/)?/, ""));
      if (!body) return new Response("not found", { status: 404 });
      if (!trunc) return new Response(body as Uint8Array<ArrayBuffer>);
      let sent = false;
      const stream = new ReadableStream<Uint8Array>({
        pull(c) {
          if (!sent) {
            sent = true;
            c.enqueue(body.slice(0, body.length >> 1));
          } else c.error(new Error("simulated connection drop"));
        },
      });
      return new Response(stream, { headers: { "content-length": String(body.length) } });
    },
  );
  return { server, base: `http://127.0.0.1:${server.addr.port}/` };
}

async function listDir(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}

/**
 * The DataError `p` rejects with: its message holds `parts` (strings, or patterns) and ends
 * with its hint on one "to fix:" line.
 */
async function rejectsData(
  p: Promise<unknown>,
  ...parts: (string | RegExp)[]
): Promise<DataError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof DataError, `expected DataError, got ${e}`);
    assert.ok(e.hint, `no hint: ${e.message}`);
    assert.ok(e.message.endsWith(`\n  to fix: ${e.hint}`), e.message);
    assert.equal(e.message.match(/to fix:/g)?.length, 1, e.message);
    for (const part of parts) {
      if (typeof part === "string") {
        assert.ok(e.message.includes(part), `"${e.message}" lacks "${part}"`);
      } else assert.match(e.message, part);
    }
    return e;
  }
  assert.fail("expected a DataError");
}

Deno.test("download: good file lands; truncated and wrong-digest leave nothing", async () => {
  const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "tailgrad_dl_" });
  const payload = pattern(200_000, 1);
  const { server, base } = serve(new Map([["f.bin", payload]]));
  try {
    const digest = await sha256Hex(payload);
    // Good.
    await downloadVerified(base + "f.bin", join(dir, "f.bin"), digest);
    assert.deepEqual(await listDir(dir), ["f.bin"]);
    assert.deepEqual(await Deno.readFile(join(dir, "f.bin")), payload);
    await Deno.remove(join(dir, "f.bin"));
    // Truncated transfer.
    await rejectsData(
      downloadVerified(base + "trunc/f.bin", join(dir, "f.bin"), digest),
      base + "trunc/f.bin",
      "transfer interrupted",
      "of 200000 bytes",
      "discarded",
      /to fix: run again to retry the download .* or download .*trunc\/f\.bin yourself and place it at .*f\.bin$/,
    );
    assert.deepEqual(await listDir(dir), []);
    // Wrong digest.
    const wrong = "0".repeat(64);
    await rejectsData(
      downloadVerified(base + "f.bin", join(dir, "f.bin"), wrong),
      base + "f.bin",
      "SHA-256 mismatch",
      `expected ${wrong}`,
      `got ${digest}`,
      /to fix: run again to retry; if it fails again the server's file is not the one pinned/,
    );
    assert.deepEqual(await listDir(dir), []);
    // No digest pinned: refuse without fetching.
    await rejectsData(
      downloadVerified(base + "f.bin", join(dir, "f.bin"), null),
      "no verified SHA-256 digest is pinned",
      /to fix: download it yourself and place it at .*f\.bin$/,
    );
    // A destination folder that cannot be made (a file stands in its way).
    await Deno.writeFile(join(dir, "plain"), new Uint8Array(1));
    await rejectsData(
      downloadVerified(base + "f.bin", join(dir, "plain", "sub", "f.bin"), digest),
      `${join(dir, "plain", "sub")}: cannot create the data directory`,
      /to fix: point --data-dir \(or \$TAILGRAD_DATA\) at a folder this process may write$/,
    );
    await Deno.remove(join(dir, "plain"));
    // HTTP error.
    await rejectsData(
      downloadVerified(base + "missing", join(dir, "m"), digest),
      "HTTP 404",
      /to fix: run again to retry the download/,
    );
    assert.deepEqual(await listDir(dir), []);
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("download: MNIST-style and CIFAR-10 datasets fetched, verified and loaded", async () => {
  const root = await Deno.makeTempDir({ dir: "/tmp", prefix: "tailgrad_dl_" });
  const files = new Map<string, Uint8Array>();
  const px = pattern(3 * 28 * 28, 2), tpx = pattern(28 * 28, 3);
  files.set("train-images-idx3-ubyte.gz", await gzip(idxBytes(0x803, [3, 28, 28], px)));
  files.set(
    "train-labels-idx1-ubyte.gz",
    await gzip(idxBytes(0x801, [3], Uint8Array.from([4, 0, 9]))),
  );
  files.set("t10k-images-idx3-ubyte.gz", await gzip(idxBytes(0x803, [1, 28, 28], tpx)));
  files.set("t10k-labels-idx1-ubyte.gz", await gzip(idxBytes(0x801, [1], Uint8Array.from([2]))));
  const record = (y: number, s: number) => Uint8Array.from([y, ...pattern(3072, s)]);
  const members = [1, 2, 3, 4, 5].map((i) => ({
    name: `cifar-10-batches-bin/data_batch_${i}.bin`,
    data: record(i, i),
  }));
  members.push({ name: "cifar-10-batches-bin/test_batch.bin", data: record(7, 9) });
  members.push({ name: "cifar-10-batches-bin/readme.html", data: new Uint8Array(3) });
  files.set("cifar-10-binary.tar.gz", await gzip(writeTar(members)));
  const digests: Record<string, string> = {};
  for (const [k, v] of files) digests[k] = await sha256Hex(v);
  const { server, base } = serve(files);
  const opts = { dataDir: root, env: {}, cwd: root, systemDirs: false, baseUrl: base, digests };
  try {
    // Not allowed: says how to get it.
    await rejectsData(ensureDataset("mnist", opts), "MNIST was not found", "allowDownload");
    const m = await loadDataset("mnist", { ...opts, allowDownload: true });
    assert.equal(m.dir, join(root, "mnist"));
    assert.deepEqual(m.train.images, px);
    assert.deepEqual([...m.train.labels], [4, 0, 9]);
    assert.deepEqual(m.test.images, tpx);
    assert.deepEqual(
      await listDir(m.dir),
      [...files.keys()].filter((f) => f.includes("ubyte")).sort(),
    );

    const c = await loadDataset("cifar10", { ...opts, allowDownload: true });
    assert.equal(c.dir, join(root, "cifar10"));
    assert.deepEqual([...c.train.labels], [1, 2, 3, 4, 5]);
    assert.deepEqual(c.train.images.subarray(3072, 6144), pattern(3072, 2));
    assert.deepEqual([...c.test.labels], [7]);
    // Only the .bin files remain: the archive was unpacked and removed.
    assert.deepEqual(await listDir(c.dir), [
      "data_batch_1.bin",
      "data_batch_2.bin",
      "data_batch_3.bin",
      "data_batch_4.bin",
      "data_batch_5.bin",
      "test_batch.bin",
    ]);

    // A bad digest for a dataset download: nothing left behind, message says why and how.
    const bad = { ...opts, dataDir: join(root, "other"), allowDownload: true };
    await Deno.mkdir(bad.dataDir); // a folder named that does not exist is refused (trust_test)
    await rejectsData(
      ensureDataset("fashion-mnist", {
        ...bad,
        digests: { ...digests, "t10k-images-idx3-ubyte.gz": "ab".repeat(32) },
      }),
      "Fashion-MNIST was not found",
      "SHA-256 mismatch",
      // the download's own hint first, then the other ways to get it, on one to-fix line
      /the download was discarded\n {2}to fix: run again to retry; .*; or get it another way:\n {2}- install the system package: apt-get install dataset-fashion-mnist/,
    );
    const left = await listDir(join(root, "other", "fashion-mnist"));
    assert.ok(left.every((f) => !f.startsWith(".") && !f.startsWith("t10k-images")), left.join());
    // Offline: a server that is gone.
    await server.shutdown();
    await rejectsData(
      ensureDataset("cifar100", {
        ...bad,
        digests: { "cifar-100-binary.tar.gz": "00".repeat(32) },
      }),
      "CIFAR-100 was not found",
      "download failed",
      "cifar-100-binary.tar.gz",
    );
  } finally {
    await server.shutdown().catch(() => {});
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("download: a folder this process may not write is refused before anything is fetched", async () => {
  // /var exists and lies outside the tests' --allow-write=/tmp; before, "downloading ..." was
  // logged and the error blamed a failed mkdir of the data directory
  const logged: string[] = [];
  const fetched: string[] = [];
  const err = await ensureDataset("fashion-mnist", {
    dataDir: "/var",
    env: {},
    allowDownload: true,
    log: (m) => logged.push(m),
    fetch: (url) => {
      fetched.push(String(url));
      return Promise.reject(new Error("no network in this test"));
    },
  }).then(() => assert.fail("accepted"), (e) => e);
  assert.ok(err instanceof DataError, String(err));
  assert.equal(
    err.message.split("\n")[0],
    "Fashion-MNIST was not found (looked in: /var/fashion-mnist, /var) and this process may " +
      "not write /var/fashion-mnist to download it there",
  );
  assert.match(
    err.message,
    /\n {2}to fix: point --data-dir \(or \$TAILGRAD_DATA\) at a folder this process may write; or get it another way:\n/,
  );
  assert.equal(err.exitCode, 1);
  assert.deepEqual([logged, fetched], [[], []]);
});

Deno.test("pinned Fashion-MNIST digests reproduce from Debian's files", {
  ignore: !(() => {
    try {
      return Deno.statSync("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz").isFile;
    } catch {
      return false;
    }
  })(),
}, async () => {
  // Debian's package re-wrote the gzip headers (no file name, new time stamp); the deflate
  // streams are the official ones. Restoring the original header gives the official files.
  const mtimes: Record<string, number> = {
    "train-images-idx3-ubyte.gz": 1504176606,
    "train-labels-idx1-ubyte.gz": 1504176606,
    "t10k-images-idx3-ubyte.gz": 1504176627,
    "t10k-labels-idx1-ubyte.gz": 1504176627,
  };
  for (const f of DATASET_SOURCES["fashion-mnist"].files) {
    const deb = await Deno.readFile(`/usr/share/datasets/fashion-mnist/${f.file}`);
    assert.equal(deb[3], 0, "Debian file has no FNAME field");
    const name = new TextEncoder().encode(f.file.replace(/\.gz$/, "") + "\0");
    const official = new Uint8Array(deb.length + name.length);
    official.set(deb.subarray(0, 10));
    official[3] = 0x08; // FNAME
    new DataView(official.buffer).setUint32(4, mtimes[f.file], true);
    official.set(name, 10);
    official.set(deb.subarray(10), 10 + name.length);
    assert.equal(official.length, f.size);
    assert.equal(await sha256Hex(official), f.sha256, f.file);
  }
});
