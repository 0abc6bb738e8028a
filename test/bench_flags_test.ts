/**
 * The benchmark command lines without running a benchmark: `deno task bench:deno` loads only
 * the files that declare `Deno.bench` cases (a plain script under bench/ would run at load time),
 * and `deno task bench` refuses bad flags and an unwritable --out before any GPU work; `--large`
 * cleans up its temp folder.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { BENCH_USAGE, checkBenchOut, parseBenchFlags } from "../bench/flags.ts";
import { freshTempDir, LARGE_BENCH_MARK } from "../bench/large_bench.ts";
import { UsageError } from "../src/cli/flags.ts";
import { UserError } from "../src/errors.ts";

const ROOT = new URL("..", import.meta.url).pathname;

/**
 * The environment the bench task may read: the backend named in its results, the ResNet-50
 * batch of --large, and the debug switch of its error lines. TF.js reads none (a permission
 * audit of its import, init, kernels and a training step found no read).
 */
const BENCH_ENV = "--allow-env=DENO_WEBGPU_BACKEND,TAILGRAD_BENCH_R50_BATCH,TAILGRAD_DEBUG";

Deno.test("bench tasks: the variables they read are named; the decode benchmark reads none", async () => {
  const tasks = JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json"))).tasks;
  const env = (task: string) => task.split(/\s+/).filter((w) => w.startsWith("--allow-env"));
  assert.deepEqual(env(tasks.bench), [BENCH_ENV]);
  assert.deepEqual(env(tasks["bench:decode"]), []);
  for (const [name, task] of [["bench", tasks.bench], ["bench:decode", tasks["bench:decode"]]]) {
    assert.doesNotMatch(task, /--allow-(env|net|write|run|ffi)( |$)|\s-A\s/, name);
  }
  // each variable named is one the benchmark's code reads
  const sources = ["scripts/bench.ts", "bench/lib.ts", "bench/large_bench.ts", "src/errors.ts"];
  const read = new Set<string>();
  for (const file of sources) {
    const text = await Deno.readTextFile(join(ROOT, file));
    for (const m of text.matchAll(/Deno\.env\.get\("(\w+)"\)/g)) read.add(m[1]);
  }
  assert.deepEqual([...read].sort(), BENCH_ENV.split("=")[1].split(","));
});

/**
 * The environment `deno task bench:deno` may read: loadDataset's TAILGRAD_DATA (input_bench's
 * Fashion-MNIST). The other readers its files import (adapterSlug in bench/lib.ts, reportError's
 * TAILGRAD_DEBUG) run only when called, which the test below checks they are not.
 */
const DENO_BENCH_ENV = "--allow-env=TAILGRAD_DATA";

Deno.test("bench:deno: the one variable its benchmarks read is named", async () => {
  const tasks = JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json"))).tasks;
  const task = tasks["bench:deno"] as string;
  assert.deepEqual(task.split(/\s+/).filter((w) => w.startsWith("--allow-env")), [DENO_BENCH_ENV]);
  assert.doesNotMatch(task, /--allow-(env|net|write|run|ffi)( |$)|\s-A\s/);
  const read = new Set<string>();
  const reads = (text: string) => {
    for (const m of text.matchAll(/(?:Deno\.env\.get|envValue)\((?:\w+, )?"(\w+)"\)/g)) {
      read.add(m[1]);
    }
  };
  for (const file of task.split(/\s+/).filter((w) => w.startsWith("bench/"))) {
    const text = await Deno.readTextFile(join(ROOT, file));
    assert.doesNotMatch(text, /\b(adapterSlug|reportError|debugEnabled)\(/, file);
    reads(text);
    if (/\bloadDataset\(/.test(text)) {
      reads(await Deno.readTextFile(join(ROOT, "src/data/load.ts")));
    }
  }
  assert.deepEqual([...read].sort(), DENO_BENCH_ENV.split("=")[1].split(","));
});

Deno.test("bench:deno names exactly the bench/ files that declare Deno.bench cases", async () => {
  const tasks = JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json"))).tasks;
  const task = tasks["bench:deno"] as string;
  const named = task.split(/\s+/).filter((w) => w.startsWith("bench/")).sort();
  const declaring: string[] = [];
  for await (const e of Deno.readDir(join(ROOT, "bench"))) {
    if (!e.isFile || !e.name.endsWith(".ts")) continue;
    const text = await Deno.readTextFile(join(ROOT, "bench", e.name));
    if (/^\s*Deno\.bench\(/m.test(text)) declaring.push(`bench/${e.name}`);
  }
  assert.ok(declaring.length >= 3, `found ${declaring.join(", ")}`);
  assert.deepEqual(named, declaring.sort(), `bench:deno runs: ${task}`);
  // the plain scripts are run with deno run, never loaded by deno bench
  for (const script of ["bench/decode_bench.ts", "bench/large_bench.ts"]) {
    assert.ok(!named.includes(script), script);
  }
});

Deno.test("bench flags: --large takes only --out; the flags it would ignore are refused by name", () => {
  const large = parseBenchFlags(["--large", "--out", "bench/results/mine"]);
  assert.deepEqual([large.large, large.out], [true, "bench/results/mine"]);
  assert.equal(parseBenchFlags([]).large, false);
  assert.match(BENCH_USAGE, /^ {7}deno task bench --large \[--out DIR\]/m);
  for (
    const [args, named] of [
      [["--large", "--quick"], "--quick"],
      [["--large", "--runs", "2", "--no-steps"], "--runs, --no-steps"],
      [["--tfjs", "--large"], "--tfjs"],
    ] as [string[], string][]
  ) {
    assert.throws(() => parseBenchFlags(args), (e) => {
      assert.ok(e instanceof UsageError && e.exitCode === 2, String(e));
      assert.ok(
        e.message.startsWith(
          `--large runs the large pipeline only, which takes no ${named} (only --out)\n`,
        ),
        e.message,
      );
      assert.match(e.message, /\n {2}to fix: run deno task bench --help$/);
      return true;
    });
  }
  assert.throws(() => parseBenchFlags(["--large=yes"]), /--large takes no value/);
});

Deno.test("bench --out: refused when the process may not write it, or a file is in the way", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tailgrad-bench-out-" });
  try {
    const refused = async (out: string, problem: RegExp, fix: RegExp) =>
      await assert.rejects(() => checkBenchOut(out), (e) => {
        assert.ok(e instanceof UsageError && e.exitCode === 2, String(e));
        assert.equal(e.flag, "--out");
        const [message, ...rest] = e.message.split("\n  to fix: ");
        assert.equal(rest.length, 1, e.message);
        assert.match(message, problem);
        assert.match(rest[0], fix);
        return true;
      });
    // this test process may write only under /tmp, as the bench task only under bench/results
    await refused(
      "/var/tmp/tailgrad-bench-not-allowed",
      /^--out \/var\/tmp\/tailgrad-bench-not-allowed: this process may not write there$/,
      /^the bench task may write only under bench\/results\/: choose --out there/,
    );
    const file = join(dir, "a-file");
    await Deno.writeTextFile(file, "mine");
    await refused(file, /^--out .*a-file is a file; expected a folder/, /^choose another --out$/);
    await refused(
      join(file, "sub", "deeper"),
      /^--out .*a-file\/sub\/deeper: .*a-file is a file, so the folder cannot be created$/,
      /^choose another --out$/,
    );
    // absent folders are created by the benchmark at its end; existing ones are fine
    await checkBenchOut(join(dir, "new", "folder"));
    await checkBenchOut(dir);
    assert.deepEqual((await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name), ["a-file"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** scripts/bench.ts with the bench task's permissions, writing only under `writeRoot`. */
async function bench(args: string[], writeRoot: string) {
  const r = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--lock=bench/bench.lock",
      "--frozen",
      "--allow-read",
      `--allow-write=${writeRoot}`,
      BENCH_ENV,
      "--allow-sys=loadavg",
      "scripts/bench.ts",
      ...args,
    ],
    cwd: ROOT,
    env: { NO_COLOR: "1", DENO_WEBGPU_BACKEND: "vulkan" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, stdout: dec.decode(r.stdout), stderr: dec.decode(r.stderr) };
}

Deno.test("bench command line: bad flags and an unwritable --out stop it before the GPU is taken", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tailgrad-bench-refused-" });
  try {
    const outside = "/var/tmp/tailgrad-bench-not-allowed";
    for (
      const [args, problem] of [
        [["--out", outside], /^error: --out \/var\/tmp\/tailgrad-bench-not-allowed: this process/],
        [["--large", "--out", outside], /^error: --out .*: this process may not write there$/m],
        [["--large", "--quick", "--out", dir], /^error: --large runs the large pipeline only/],
        [["--large", "--lrage"], /^error: unknown flag --lrage; valid flags: .*--large/],
      ] as [string[], RegExp][]
    ) {
      const r = await bench(args, dir);
      const what = `${args.join(" ")}\n${r.stdout}${r.stderr}`;
      assert.equal(r.code, 2, what);
      assert.match(r.stderr, problem, what);
      assert.equal(r.stderr.match(/^ {2}to fix: /gm)?.length, 1, what);
      assert.doesNotMatch(r.stderr, /^\s+at /m, `no stack trace: ${what}`);
      assert.equal(r.stdout, "", `no adapter taken, nothing measured: ${what}`);
    }
    const help = await bench(["--help"], dir);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /deno task bench --large \[--out DIR\]/);
    assert.deepEqual(await Array.fromAsync(Deno.readDir(dir)), [], "nothing written");
    await assert.rejects(() => Deno.stat(outside), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bench --large: its temp folder is removed on Ctrl-C and, left by a killed run, at the next start", async () => {
  const out = await Deno.makeTempDir({ prefix: "tailgrad-large-bench-" });
  try {
    const tmp = join(out, ".large-bench-tmp");
    // a killed run's folder holds the mark: the next start removes it and starts afresh
    await Deno.mkdir(tmp);
    await Deno.writeTextFile(join(tmp, LARGE_BENCH_MARK), "");
    await Deno.writeTextFile(join(tmp, "img0.jpg"), "left over");
    assert.equal(await freshTempDir(out), tmp);
    assert.deepEqual((await Array.fromAsync(Deno.readDir(tmp))).map((e) => e.name), [
      LARGE_BENCH_MARK,
    ]);
    // a folder of that name without the mark is not ours: refused, left as it is
    await Deno.remove(join(tmp, LARGE_BENCH_MARK));
    await Deno.writeTextFile(join(tmp, "notes.txt"), "someone's");
    await assert.rejects(() => freshTempDir(out), (e) => {
      assert.ok(e instanceof UserError, String(e));
      assert.match(e.message, /\.large-bench-tmp exists and was not made by bench --large\n/);
      assert.match(e.message, /to fix: move it away .*, or choose another --out$/);
      return true;
    });
    assert.equal(await Deno.readTextFile(join(tmp, "notes.txt")), "someone's");
    await Deno.remove(tmp, { recursive: true });
    // Ctrl-C while the benchmark runs: the folder goes, the exit status says interrupted
    const code = `import { freshTempDir, removeOnSignal } from "${
      new URL("../bench/large_bench.ts", import.meta.url).href
    }";
      removeOnSignal(await freshTempDir(${JSON.stringify(out)}));
      console.log("ready");
      setInterval(() => {}, 1000);`;
    const child = new Deno.Command(Deno.execPath(), {
      args: ["eval", "--quiet", "--no-lock", code],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const reader = child.stdout.getReader();
    const first = await reader.read();
    assert.match(new TextDecoder().decode(first.value), /ready/);
    assert.ok((await Deno.stat(join(tmp, LARGE_BENCH_MARK))).isFile);
    child.kill("SIGINT");
    reader.releaseLock();
    const r = await child.output();
    assert.equal(r.code, 130, new TextDecoder().decode(r.stderr));
    await assert.rejects(() => Deno.stat(tmp), Deno.errors.NotFound);
    assert.deepEqual(await Array.fromAsync(Deno.readDir(out)), [], "only the temp folder went");
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});
