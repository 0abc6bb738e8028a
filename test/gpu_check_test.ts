/**
 * The one-shot GPU check (scripts/gpu_check.ts) end to end in its CI-sized form: every phase
 * runs, the JSON result holds what each measured, and the figures are sane.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { Gpu } from "../src/gpu/runtime.ts";
import { adapterSlug } from "../bench/lib.ts";

const SCRIPT = new URL("../scripts/gpu_check.ts", import.meta.url).pathname;

/**
 * Runs gpu_check.ts with the task's permissions (writes under /tmp only here), from `cwd`
 * (default: the repository root, as the task does).
 */
async function gpuCheck(args: string[], cwd?: string) {
  const r = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-write=/tmp",
      "--allow-env=DENO_WEBGPU_BACKEND,TAILGRAD_DATA,TAILGRAD_DEBUG",
      "--allow-run",
      "--allow-sys=loadavg",
      SCRIPT,
      ...args,
    ],
    cwd,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, stdout: dec.decode(r.stdout), stderr: dec.decode(r.stderr) };
}

Deno.test("gpu-check flags: --help, both flag forms, and bad flags or --out refused before the GPU", async () => {
  const help = await gpuCheck(["--help"]);
  assert.equal(help.code, 0, help.stderr);
  assert.match(help.stdout, /^usage: deno task gpu-check \[--quick\] \[--out FILE\]/);
  assert.match(help.stdout, /--budget-s <value>\n {6}seconds for the whole run \(default: 480\)/);
  assert.match(
    help.stdout,
    /--quick\n {6}CI-sized: a few tests, small kernels, ResNet-8 at batch 2/,
  );
  // the space form parses as everywhere else (--help then stops before any work)
  const spaced = await gpuCheck(["--budget-s", "60", "--out", "/tmp/x.json", "--help"]);
  assert.equal(spaced.code, 0, spaced.stderr);
  const dir = await Deno.makeTempDir({ prefix: "tailgrad-gpu-check-refused-" });
  try {
    const outside = "/var/tmp/tailgrad-gpu-check-not-allowed.json";
    const theirs = `${dir}/notes.json`;
    await Deno.writeTextFile(theirs, '{"the user\'s": true}');
    const cases: [string[], RegExp, RegExp][] = [
      [
        ["--out", theirs],
        /^error: --out .*\/notes\.json exists and is not a gpu-check result; it is left alone$/m,
        /^ {2}to fix: move the file away, or choose another --out$/m,
      ],
      [
        [`--out=${outside}`],
        /^error: --out \/var\/tmp\/tailgrad-gpu-check-not-allowed\.json: this process may not write there$/m,
        /^ {2}to fix: the gpu-check task may write only under bench\/results\/ and \/tmp: choose --out there/m,
      ],
      [
        ["--out", `${dir}/missing/r.json`],
        /^error: --out .*\/missing\/r\.json: the folder .*\/missing does not exist$/m,
        /^ {2}to fix: create the folder first, or choose another --out$/m,
      ],
      [
        ["--out", dir],
        /^error: --out .* is a folder; expected the JSON file to write$/m,
        /^ {2}to fix: name a file/m,
      ],
      [
        ["--budget-s", "0"],
        /^error: invalid --budget-s 0: expected seconds > 0$/m,
        /^ {2}to fix: pass --budget-s N > 0, or leave it out for 480$/m,
      ],
      [
        ["--budget-s", "soon"],
        /^error: invalid --budget-s "soon": expected a number$/m,
        /to fix: run with --help/,
      ],
      [
        ["--bogus"],
        /^error: unknown flag --bogus; valid flags: --quick, --out, --budget-s, --tests, --help$/m,
        /to fix: run with --help/,
      ],
    ];
    for (const [args, problem, fix] of cases) {
      const r = await gpuCheck(args);
      const what = `${args.join(" ")}\n${r.stdout}${r.stderr}`;
      assert.equal(r.code, 2, what);
      assert.match(r.stderr, problem, what);
      assert.match(r.stderr, fix, what);
      assert.equal(r.stderr.match(/to fix: /g)?.length, 1, what);
      assert.doesNotMatch(r.stderr, /^\s+at /m, `no stack trace: ${what}`);
      assert.equal(r.stdout, "", `no phase started (the GPU is not taken): ${what}`);
    }
    const left = (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name);
    assert.deepEqual(left, ["notes.json"], "nothing written");
    assert.equal(await Deno.readTextFile(theirs), '{"the user\'s": true}', "the user's file kept");
    await assert.rejects(() => Deno.stat(outside), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "gpu-check without --out: the default file is replaced only when it is a gpu-check result",
  sanitizeResources: false,
  fn: async () => {
    const gpu = await Gpu.create();
    const slug = adapterSlug(gpu);
    gpu.dispose();
    // run from a folder of its own: the default path is bench/results/ under the working folder
    const root = await Deno.makeTempDir({ prefix: "tailgrad-gpu-check-default-" });
    try {
      await Deno.mkdir(join(root, "bench", "results"), { recursive: true });
      const path = `bench/results/gpu-check-${slug}-quick.json`;
      const file = join(root, path);
      // a budget spent before the first phase: every phase is skipped, the result still written
      const args = ["--quick", "--no-tests", "--budget-s", "0.001"];
      const refused = async (problem: RegExp, fix: RegExp) => {
        const r = await gpuCheck(args, root);
        const what = `${r.stdout}${r.stderr}`;
        assert.equal(r.code, 2, what);
        assert.match(r.stderr, problem, what);
        assert.match(r.stderr, fix, what);
        assert.equal(r.stderr.match(/to fix: /g)?.length, 1, what);
        assert.doesNotMatch(r.stderr, /^\s+at /m, `no stack trace: ${what}`);
        assert.doesNotMatch(r.stdout, /==|wrote/, `no phase started: ${what}`);
      };
      const escaped = path.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
      await Deno.writeTextFile(file, '{"the user\'s": true}');
      await refused(
        new RegExp(
          `^error: ${escaped} exists and is not a gpu-check result; it is left alone$`,
          "m",
        ),
        /^ {2}to fix: move the file away, or name another file with --out FILE$/m,
      );
      assert.equal(await Deno.readTextFile(file), '{"the user\'s": true}', "the user's file kept");
      await Deno.remove(file);
      await Deno.mkdir(file);
      await refused(
        new RegExp(`^error: ${escaped} is a folder; expected the JSON file to write$`, "m"),
        /^ {2}to fix: move the folder away, or name a file with --out FILE$/m,
      );
      await Deno.remove(file);
      // an earlier result of this command is replaced
      await Deno.writeTextFile(file, JSON.stringify({ tool: "tailgrad-gpu-check", date: "then" }));
      const ok = await gpuCheck(args, root);
      assert.equal(ok.code, 0, `${ok.stdout}${ok.stderr}`);
      const r = JSON.parse(await Deno.readTextFile(file));
      assert.equal(r.tool, "tailgrad-gpu-check");
      assert.notEqual(r.date, "then");
      assert.equal(r.phases.adapter.status, "skipped");
      assert.match(ok.stdout, new RegExp(`wrote ${escaped}$`, "m"));
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});

Deno.test({
  name: "gpu-check --quick runs every phase end to end and writes its JSON",
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "tailgrad-gpu-check-" });
    const out = `${dir}/result.json`;
    try {
      const run = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--allow-read",
          "--allow-write=/tmp",
          "--allow-env=DENO_WEBGPU_BACKEND,TAILGRAD_DATA,TAILGRAD_DEBUG",
          "--allow-run",
          "--allow-sys=loadavg",
          "scripts/gpu_check.ts",
          "--quick",
          `--out=${out}`,
        ],
        env: { NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const log = new TextDecoder().decode(run.stdout) + new TextDecoder().decode(run.stderr);
      const r = JSON.parse(await Deno.readTextFile(out));
      assert.equal(run.code, 0, `gpu-check failed:\n${log.slice(-2000)}`);
      assert.equal(r.ok, true);
      assert.equal(r.kind, "quick");
      assert.equal(r.tool, "tailgrad-gpu-check");
      for (const name of ["adapter", "tests", "kernels", "families", "steps"]) {
        assert.equal(
          r.phases[name]?.status,
          "ok",
          `phase ${name}: ${JSON.stringify(r.phases[name])}`,
        );
      }
      assert.ok(r.adapter.description.length > 0);
      assert.ok(r.adapter.engineLimits.maxStorageBufferBindingSize.device >= 128 * 2 ** 20);
      assert.ok(r.tests.passed >= 10, `${r.tests.passed} tests passed`);
      assert.equal(r.tests.failed, 0);
      assert.equal(r.kernels.cases.length, 4);
      for (const c of r.kernels.cases) assert.ok(c.gflops > 0 && Number.isFinite(c.gflops), c.name);
      assert.equal(r.families.register.length, 1);
      assert.equal(r.families.workgroup.length, 1);
      const [s] = r.steps;
      assert.equal(s.model, "ResNet-8");
      assert.ok(s.plain.ms > 0 && s.meta.ms > 0);
      assert.ok(s.metaOverPlain > 1, `meta / plain ${s.metaOverPlain}`);
      assert.equal(s.warmStepsGpuObjectsCreated, 0, "warm steps created GPU objects");
      // the bound counts only what any implementation must hold: the engine holds at least it
      for (const kind of ["plain", "meta"]) {
        const m = s[`${kind}Memory`];
        assert.ok(m.ratio >= 1 && m.ratio < 10, `${kind} memory ${m.ratio}x the lower bound`);
      }
      // a later run replaces its own result
      const again = await gpuCheck(["--quick", "--no-tests", `--out=${out}`]);
      assert.equal(again.code, 0, again.stderr);
      const r2 = JSON.parse(await Deno.readTextFile(out));
      assert.equal(r2.phases.tests.status, "skipped");
      assert.notEqual(r2.date, r.date);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
