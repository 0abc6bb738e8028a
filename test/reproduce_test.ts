/** The reproduce grid end to end at a tiny size: two cells, a SIGKILL, a resume, a skip. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { UsageError } from "../src/train/cli.ts";
import {
  groupAccuracy,
  meanStd,
  pairedComparisons,
  pairedDifferences,
  parseReproduceFlags,
  planCells,
  planSitting,
  type Row,
  SCALES,
  selectCells,
} from "../scripts/reproduce.ts";

Deno.test("grid flags: defaults, --no- switches, and bad flags as usage errors naming the flag", () => {
  assert.deepEqual(parseReproduceFlags([]), {
    scale: "small",
    imbalance: "100,10",
    seeds: "0,1,2",
    share: true,
    tau: true,
    resultsDir: "results",
    aggregate: false,
    help: false,
  });
  const f = parseReproduceFlags(["--scale", "tiny", "--no-share", "--no-tau", "--results-dir=r"]);
  assert.deepEqual([f.scale, f.share, f.tau, f.resultsDir, f.seeds], [
    "tiny",
    false,
    false,
    "r",
    "0,1,2",
  ]);
  for (
    const [args, re] of [
      [["--scale", "huge"], /^invalid --scale "huge": expected one of tiny, small, medium, paper/],
      [["--bogus"], /^unknown flag --bogus; valid flags: --scale, .*--results-dir/],
      [["--seeds"], /^--seeds needs a value/],
      [["--tau=1"], /^--tau takes no value \(use --tau or --no-tau\)/],
      [["--no-share", "--share"], /^--share is given more than once \(--no-share and --share\)/],
    ] as [string[], RegExp][]
  ) {
    assert.throws(() => parseReproduceFlags(args), (e) => {
      assert.ok(e instanceof UsageError && e.exitCode === 2, String(e));
      assert.match(e.message, re);
      return true;
    });
  }
});

Deno.test("grid selection: --seeds and --imbalance are checked, and a selection of no cell is refused", () => {
  const flags = (args: string[]) => parseReproduceFlags(args);
  const refused = (args: string[], flag: string, problem: RegExp, fix: RegExp) =>
    assert.throws(() => planSitting(flags(args)), (e) => {
      assert.ok(e instanceof UsageError && e.exitCode === 2, String(e));
      assert.equal(e.flag, flag);
      const [message, ...rest] = e.message.split("\n  to fix: ");
      assert.equal(rest.length, 1, `one to-fix line: ${e.message}`);
      assert.match(message, problem);
      assert.match(rest[0], fix);
      return true;
    });
  const grid = "first line IF 100, 10; second line IF 100, 10; tau sweep IF 100";
  refused(
    ["--imbalance", "50"],
    "--imbalance",
    new RegExp(`^--imbalance 50: scale small has no cell at IF 50 \\(its grid: ${grid}\\)$`),
    /^pass factors of the grid, e\.g\. --imbalance 100,10$/,
  );
  refused(
    ["--imbalance", "0.5"],
    "--imbalance",
    /^invalid --imbalance "0\.5": expected numbers >= 1, comma-separated, e\.g\. 100,10$/,
    /^pass e\.g\. --imbalance 100,10 \(its default\)$/,
  );
  for (const seeds of ["1.5", "a", "-1", "4294967296", "0,,1"]) {
    refused(
      ["--seeds", seeds],
      "--seeds",
      new RegExp(
        `^invalid --seeds "${seeds}": expected seeds \\(integers in \\[0, 4294967295\\]\\), ` +
          "comma-separated, e\\.g\\. 0,1,2$",
      ),
      /^pass e\.g\. --seeds 0,1,2 \(its default\)$/,
    );
  }
  refused(["--seeds", "2,0,2"], "--seeds", /^invalid --seeds "2,0,2": 2 is given twice$/, /0,1,2/);
  // medium's tau sweep and second line run at IF 100 only
  refused(
    ["--scale", "medium", "--imbalance", "10", "--only", "tau-sweep"],
    "--imbalance",
    /^--imbalance 10 --only tau-sweep selects no cell of scale medium \(its grid: first line IF 100, 10; second line IF 100; tau sweep IF 100\)$/,
    /^widen --imbalance or --only \(--help lists the parts\)$/,
  );
  refused(
    ["--only", "tau-sweep", "--no-tau"],
    "--imbalance",
    /^--imbalance 100,10 --only tau-sweep --no-tau selects no cell of scale small/,
    /^widen --imbalance or --only, or drop --no-tau/,
  );
  // --aggregate runs no cell: an empty selection is fine there
  assert.equal(
    planSitting(flags(["--only", "tau-sweep", "--no-tau", "--aggregate"])).cells.length,
    0,
  );
  const p = planSitting(flags(["--scale", "medium", "--imbalance", "10", "--seeds", "3,1"]));
  assert.deepEqual(p.seeds, [3, 1]);
  assert.deepEqual(p.cells.map((c) => c.id), [
    ...["ce", "cb", "meta-eps0", "meta", "ce-nowarmup"].map((m) => `${m}-if10-s3`),
    ...["ce", "cb", "meta-eps0", "meta", "ce-nowarmup"].map((m) => `${m}-if10-s1`),
  ]);
});

Deno.test("grid command line: refused before the GPU is taken or a file written", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tailgrad-grid-refused-" });
  try {
    const run = async (args: string[]) => {
      const r = await new Deno.Command(Deno.execPath(), {
        // like the task: write access under one folder only
        args: ["run", "--allow-read", `--allow-write=${dir}`, "--allow-env", script, ...args],
        env: { DENO_WEBGPU_BACKEND: "vulkan", NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const out = { code: r.code, stdout: new TextDecoder().decode(r.stdout) };
      return { ...out, stderr: new TextDecoder().decode(r.stderr) };
    };
    const outside = "/var/tmp/tailgrad-grid-not-allowed";
    for (
      const [args, problem] of [
        [
          ["--aggregate", "--results-dir", outside],
          /^error: --results-dir \/var\/tmp\/tailgrad-grid-not-allowed: this process may not write there$/m,
        ],
        [
          ["--scale", "tiny", "--results-dir", outside],
          /^error: --results-dir .*: this process may not write there$/m,
        ],
        [
          ["--scale", "tiny", "--imbalance", "50", "--results-dir", dir],
          /^error: --imbalance 50: scale tiny has no cell at IF 50/m,
        ],
        [
          ["--scale", "tiny", "--seeds", "1.5", "--results-dir", dir],
          /^error: invalid --seeds "1\.5": expected seeds/m,
        ],
      ] as [string[], RegExp][]
    ) {
      const r = await run(args);
      const what = `${args.join(" ")}\n${r.stdout}${r.stderr}`;
      assert.equal(r.code, 2, what);
      assert.match(r.stderr, problem, what);
      assert.equal(r.stderr.match(/^ {2}to fix: /gm)?.length, 1, what);
      assert.doesNotMatch(r.stderr, /^\s+at /m, `no stack trace: ${what}`);
      assert.equal(r.stdout, "", `no cell started, no table printed: ${what}`);
    }
    assert.match(
      (await run(["--aggregate", "--results-dir", outside])).stderr,
      /to fix: the reproduce task may write only under results\/ and data\/: choose a --results-dir there/,
    );
    assert.deepEqual(await Array.fromAsync(Deno.readDir(dir)), [], "nothing written");
    await assert.rejects(() => Deno.stat(outside), Deno.errors.NotFound);
    // a --data-dir that is a file: refused before the GPU is taken and the first cell starts
    const file = join(dir, "not-a-folder");
    await Deno.writeTextFile(file, "x");
    const results = join(dir, "results");
    const r = await run(["--scale", "tiny", "--data-dir", file, "--results-dir", results]);
    const what = `${r.stdout}${r.stderr}`;
    assert.equal(r.code, 1, what);
    assert.match(
      r.stderr,
      new RegExp(
        `^error: --data-dir ${file} is a file; expected a folder that holds ` +
          "Fashion-MNIST \\(or its parent\\)$\\n {2}to fix: point --data-dir at a folder$",
        "m",
      ),
    );
    assert.doesNotMatch(r.stderr, /^\s+at /m, what);
    assert.equal(r.stdout, "", `no cell started: ${what}`);
    await assert.rejects(() => Deno.stat(results), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const script = new URL("../scripts/reproduce.ts", import.meta.url).pathname;
const ARGS = ["--scale", "tiny", "--imbalance", "100", "--seeds", "0", "--no-tau"];

function command(resultsDir: string, cells: string, extra: string[] = []): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-write=/tmp",
      "--allow-env",
      script,
      ...ARGS,
      "--cells",
      cells,
      "--results-dir",
      resultsDir,
      ...extra,
    ],
    env: { DENO_WEBGPU_BACKEND: "vulkan" },
    stdout: "piped",
    stderr: "piped",
  });
}

/** Waits until a folder of `root` whose name starts with `prefix` holds `file`. */
async function waitFor(root: string, prefix: string, file: string, timeoutMs: number) {
  const t0 = Date.now();
  while (Date.now() - t0 < timeoutMs) {
    for (const e of await Array.fromAsync(Deno.readDir(root)).catch(() => [])) {
      if (!e.name.startsWith(prefix)) continue;
      if (await Deno.stat(join(root, e.name, file)).then(() => true, () => false)) return;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${root}/${prefix}*/${file}`);
}

Deno.test("grid helpers: cells, lines, stage-1 sharing, mean/std, groups, paired seeds", () => {
  const cells = planCells(SCALES.small, [100, 10], [0, 1, 2]);
  assert.equal(cells.filter((c) => c.group === "grid").length, 13 * 2 * 3);
  assert.equal(cells.filter((c) => c.group === "tau").length, 4 * 3);
  assert.equal(new Set(cells.map((c) => c.id)).size, cells.length, "ids are unique");
  // tau 0.01 is the preset's own tau: those cells are the meta runs, not copies of them
  const reference = cells.filter((c) => c.tau === 0.01).map((c) => c.dir);
  assert.deepEqual(reference, ["meta-if100-s0", "meta-if100-s1", "meta-if100-s2"]);
  assert.equal(cells.find((c) => c.id === "tau100-if100-s1")?.dir, "tau100-if100-s1");

  // medium: the issue's first line (both factors), then the second line and the tau sweep at 100
  const medium = planCells(SCALES.medium, [100, 10], [0, 1, 2]);
  const first = medium.filter((c) => c.line === "first-line");
  assert.equal(first.length, 5 * 2 * 3);
  assert.deepEqual(first.slice(0, 6).map((c) => c.id), [
    "ce-if100-s0",
    "cb-if100-s0",
    "meta-eps0-if100-s0",
    "meta-if100-s0",
    "ce-nowarmup-if100-s0",
    "ce-if100-s1",
  ]);
  assert.ok(medium.indexOf(first.at(-1)!) < medium.findIndex((c) => c.line === "second-line"));
  const second = medium.filter((c) => c.line === "second-line");
  assert.equal(second.length, 7 * 3);
  assert.ok(second.every((c) => c.imbalance === 100));
  assert.deepEqual(
    medium.filter((c) => c.line === "tau-sweep" && c.seed === 0).map((c) => c.dir),
    ["meta-if100-s0", "tau1-if100-s0", "tau100-if100-s0"],
  );
  assert.equal(medium[0].options.preset, "medium");

  // stage-1 sharing: the cells whose epochs before stage 2 are one plain run of their loss
  // with their own recipe settings; the directory names loss, IF, seed and the recipe's digest
  const stage1 = (id: string) => medium.find((c) => c.id === id)!.stage1?.dir ?? null;
  const metaS1 = stage1("meta-if100-s1")!;
  assert.match(metaS1, /^stage1-ce-if100-s1-[0-9a-f]{6}$/);
  for (const id of ["meta-eps0-if100-s1", "tau100-if100-s1", "ce-nowarmup-if100-s1"]) {
    assert.equal(stage1(id), metaS1, id);
  }
  const control = medium.find((c) => c.id === "ce-nowarmup-if10-s0")!.options;
  assert.equal(control.method, "ce");
  assert.equal(control.warmupEpochs, 0, "the control is ce without the warm-up");
  // ce warms up as Cui's code does and the meta family does not: not one stage 1
  assert.match(stage1("ce-if100-s1")!, /^stage1-ce-if100-s1-/);
  assert.notEqual(stage1("ce-if100-s1"), metaS1);
  assert.match(stage1("meta-focal-if100-s0")!, /^stage1-focal-if100-s0-/);
  assert.notEqual(stage1("focal-if100-s0"), stage1("meta-focal-if100-s0"));
  // ldam-drw takes LDAM's weighted mean, meta-ldam the plain mean
  assert.match(stage1("meta-ldam-if100-s2")!, /^stage1-ldam-if100-s2-/);
  assert.notEqual(stage1("ldam-drw-if100-s2"), stage1("meta-ldam-if100-s2"));
  for (const id of ["cb-if100-s0", "cb-focal-if100-s0", "l2rw-if100-s0", "mwn-if100-s0"]) {
    assert.equal(stage1(id), null, id);
  }
  const meta = medium.find((c) => c.id === "meta-if10-s2")!.stage1!;
  assert.equal(meta.options.method, "ce");
  assert.equal(meta.options.warmupEpochs, 0, "the stage-1 run carries the meta recipe");
  assert.equal(meta.untilEpoch, 24);
  const small = planCells(SCALES.small, [100], [0]);
  assert.equal(
    small.find((c) => c.id === "cb-finetune-if100-s0")?.stage1?.dir,
    small.find((c) => c.id === "meta-if100-s0")?.stage1?.dir,
  );

  // selections
  const sel = (o: { only?: string; cells?: string; noTau?: boolean }) =>
    selectCells(SCALES.medium, [100, 10], [0, 1, 2], o).map((c) => c.id);
  assert.deepEqual(sel({ only: "first-line" }), first.map((c) => c.id));
  assert.equal(sel({ only: "second-line,tau-sweep" }).length, 21 + 9);
  assert.deepEqual(sel({ cells: "meta-if10-s2,ce-if100-s0" }), ["ce-if100-s0", "meta-if10-s2"]);
  assert.equal(sel({ noTau: true }).length, 30 + 21);
  assert.throws(() => sel({ only: "first" }), UsageError);
  assert.throws(() => sel({ cells: "meta-if50-s0" }), /no cell meta-if50-s0/);

  const m = meanStd([1, 2, 3]);
  assert.equal(m.mean, 2);
  assert.equal(m.std, 1);
  const g = groupAccuracy([1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0, 0, 0]);
  assert.deepEqual(g, { head: 1, middle: 0.5, tail: 0 });
  // paired differences match seeds, not positions, and skip seeds one row lacks
  const row = (label: string, seeds: number[], errs: number[]) =>
    ({ label, group: "grid", imbalance: 100, seeds, top1BySeed: errs }) as unknown as Row;
  const pairs = pairedDifferences([
    row("meta", [0, 1, 2], [0.5, 0.4, 0.3]),
    row("ce", [2, 0], [0.25, 0.75]),
  ], pairedComparisons(0.01, [0.01, 1]));
  assert.equal(pairs.length, 1);
  assert.equal(pairs[0].a, "meta");
  assert.deepEqual(pairs[0].seeds, [0, 2]);
  assert.deepEqual(pairs[0].diffs, [0.5 - 0.75, 0.3 - 0.25]);
  const wanted = pairedComparisons(0.01, [0.01, 1, 100]).map(([a, b]) => `${a} - ${b}`);
  for (
    const p of [
      "meta - ce",
      "meta - cb",
      "meta - meta-eps0",
      "meta-eps0 - ce",
      "meta-eps0 - ce-nowarmup",
    ]
  ) {
    assert.ok(wanted.includes(p), p);
  }
  assert.ok(wanted.includes("meta tau=100 - meta") && !wanted.includes("meta tau=0.01 - meta"));
});

Deno.test({
  name:
    "a two-cell grid survives a kill, resumes, skips finished cells; forks equal runs from scratch",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "tailgrad-grid-" });
    // meta-eps0 and meta share one stage 1 (ce warms up as Cui's code does, so it forks its own)
    const cells = "meta-eps0-if100-s0,meta-if100-s0";
    const scaleDir = join(dir, "fashion-mnist-lt", "tiny");
    // 1. start, kill as soon as the shared stage 1 has checkpointed an epoch
    const child = command(dir, cells).spawn();
    await waitFor(scaleDir, "stage1-ce-if100-s0-", "checkpoint.safetensors", 120_000);
    child.kill("SIGKILL");
    const killed = await child.output();
    assert.notEqual(killed.code, 0, "the first sitting was killed");

    // 2. the second sitting finishes both cells, each forked from the shared stage 1
    const second = await command(dir, cells).output();
    const out2 = new TextDecoder().decode(second.stdout);
    assert.equal(second.code, 0, new TextDecoder().decode(second.stderr));
    assert.match(out2, /meta-eps0-if100-s0: (forking stage1-ce-if100-s0-|resuming|done, skipped)/);
    assert.match(out2, /meta-if100-s0: forking stage1-ce-if100-s0-/);
    assert.match(out2, /s as if alone \(\d+ s of it the shared stage 1\)/);
    const table = await Deno.readTextFile(join(dir, "fashion-mnist-lt.md"));
    assert.match(table, /## Scale `tiny`/);
    assert.match(table, /\| meta-eps0 \| 100 \| 1 \|/);
    assert.match(table, /\| meta \| 100 \| 1 \|/);
    assert.match(table, /\| 100 \| meta − meta-eps0 \| 1 \|/);
    assert.match(table, /1 shared stage-1 runs/);
    assert.match(
      table,
      /the paper's own numbers \(not ours\)[^]*\| Ours with cross-entropy loss \| 29.34 \| 23.59 \|/,
    );
    const json = JSON.parse(await Deno.readTextFile(join(dir, "fashion-mnist-lt.json")));
    const rows = json.scales.tiny.rows as Row[];
    assert.deepEqual(
      rows.filter((r) => r.group === "grid").map((r) => r.label),
      ["meta-eps0", "meta"],
    );
    // the tau sweep's reference tau is the meta run itself
    assert.deepEqual(rows.filter((r) => r.group === "tau").map((r) => r.label), ["meta tau=0.01"]);
    const page = await Deno.readTextFile(join(scaleDir, "report.html"));
    assert.match(page, /<svg/);
    assert.match(page, /head \/ middle \/ tail error, IF 100/);
    assert.match(page, /href="meta-eps0-if100-s0\/report.html"/);
    const index = await Deno.readTextFile(join(dir, "fashion-mnist-lt.html"));
    assert.match(index, /href="fashion-mnist-lt\/tiny\/report.html"/);

    // 3. a third sitting has nothing left to run
    const third = await command(dir, cells).output();
    const out3 = new TextDecoder().decode(third.stdout);
    assert.match(out3, /meta-eps0-if100-s0: done, skipped/);
    assert.match(out3, /meta-if100-s0: done, skipped/);

    // 4. the forked meta cell trained from scratch (--no-share) in a fresh directory: the same
    // numbers (the stage-1 run must carry the cell's recipe; this caught it once)
    const again = await Deno.makeTempDir({ prefix: "tailgrad-grid-again-" });
    const rerun = await command(again, "meta-if100-s0", ["--no-share"]).output();
    assert.equal(rerun.code, 0, new TextDecoder().decode(rerun.stderr));
    assert.doesNotMatch(new TextDecoder().decode(rerun.stdout), /forking/);
    for (const cell of ["meta-if100-s0"]) {
      const read = async (root: string) =>
        JSON.parse(
          await Deno.readTextFile(join(root, "fashion-mnist-lt", "tiny", cell, "summary.json")),
        );
      const forked = await read(dir), scratch = await read(again);
      assert.ok(forked.initFrom, `${cell} was forked`);
      assert.equal(scratch.initFrom, null);
      assert.deepEqual(scratch.last, forked.last, `${cell}: same last-epoch metrics, bit for bit`);
      assert.deepEqual(scratch.best, forked.best);
      assert.deepEqual(scratch.meta, forked.meta);
    }
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(again, { recursive: true });
  },
});
