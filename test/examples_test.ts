/**
 * The examples run as a user runs them (`deno run` with their tasks' narrow permissions, as
 * subprocesses) at `--size small`, and their results are checked: the MLP, the CNN and the
 * meta-reweighted model reach a test accuracy measured at that size (minus a margin), the checkpoint example
 * resumes, saves and loads a model that predicts bit-identically.
 */
import assert from "node:assert/strict";

const READ = ".,/usr/share/datasets";
/** The environment the example tasks of deno.json may read. */
const ENV = "--allow-env=TAILGRAD_DATA,TAILGRAD_DEBUG";

/**
 * Runs an example as its task does (narrow permissions); `args` replace `--size small`, `env`
 * adds to the environment.
 */
async function exec(
  file: string,
  permissions: string[] = [`--allow-read=${READ}`],
  args: string[] = ["--size", "small"],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const cmd = new Deno.Command(Deno.execPath(), {
    args: ["run", ENV, ...permissions, `examples/${file}`, ...args],
    env: { DENO_WEBGPU_BACKEND: "vulkan", NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  });
  const { code, stdout, stderr } = await cmd.output();
  const dec = new TextDecoder();
  return { code, stdout: dec.decode(stdout), stderr: dec.decode(stderr) };
}

async function runExample(
  file: string,
  permissions: string[] = [`--allow-read=${READ}`],
  args: string[] = [],
): Promise<Record<string, unknown>> {
  const { code, stdout, stderr } = await exec(file, permissions, ["--size", "small", ...args]);
  assert.equal(code, 0, `${file} failed:\n${stdout}\n${stderr}`);
  const lines = stdout.trim().split("\n");
  return JSON.parse(lines[lines.length - 1]);
}

const EXAMPLES = [
  "mlp_fashion_mnist.ts",
  "cnn_fashion_mnist.ts",
  "meta_reweight.ts",
  "checkpoint.ts",
];

Deno.test("examples: a mistyped flag or size is one error line and exit 2, never a full run", async () => {
  const cases: [string[], RegExp][] = [
    [["--size=smal"], /^error: invalid --size "smal": expected one of full, small$/m],
    [["--siz", "small"], /^error: unknown flag --siz; valid flags: --size, /m],
    [["small"], /^error: unexpected argument "small": every setting is a flag/m],
    [["--size", "small", "--size", "full"], /^error: --size is given twice/m],
  ];
  for (const file of EXAMPLES) {
    for (const [args, re] of cases) {
      const r = await exec(file, [`--allow-read=${READ}`], args);
      const what = `${file} ${args.join(" ")}: ${r.stderr}`;
      assert.equal(r.code, 2, what);
      assert.match(r.stderr, re, what);
      assert.match(r.stderr, /^ {2}to fix: run with --help/m, what);
      assert.doesNotMatch(r.stderr, /^\s+at /m, what);
      assert.equal(r.stdout, "", `it ran: ${what}`);
    }
    const help = await exec(file, [`--allow-read=${READ}`], ["--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--size <full\|small>\n.*\(default: full\)/);
  }
});

Deno.test("examples: a data mistake is one error line naming the folder, never a stack", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const missing = `${dir}/missing`;
    for (const file of EXAMPLES) {
      // the checkpoint example writes only into a folder of its own
      const out = file === "checkpoint.ts" ? ["--out", `${dir}/out-${file}`] : [];
      const write = file === "checkpoint.ts" ? [`--allow-write=${dir}`] : [];
      const cases: [string[], string[], Record<string, string>, RegExp[]][] = [
        // $TAILGRAD_DATA outside what the task may read
        [[`--allow-read=${READ}`], [], { TAILGRAD_DATA: missing }, [
          new RegExp(`^error: ${missing}: cannot be read \\(NotCapable`, "m"),
          /^ {2}to fix: let this process read the folder .*or point --data-dir at another copy$/m,
        ]],
        // a --data-dir that does not exist
        [[`--allow-read=${READ},${dir}`], ["--data-dir", missing], {}, [
          new RegExp(
            `^error: --data-dir ${missing} does not exist, so Fashion-MNIST was not found`,
          ),
          /^ {2}to fix: check the path; /m,
        ]],
      ];
      for (const [permissions, args, env, want] of cases) {
        const r = await exec(file, [...permissions, ...write], [...args, ...out], env);
        const what = `${file} ${args.join(" ")} ${JSON.stringify(env)}: ${r.stderr}`;
        assert.equal(r.code, 1, what);
        for (const re of want) assert.match(r.stderr, re, what);
        assert.doesNotMatch(r.stderr, /^\s+at /m, what);
        assert.doesNotMatch(r.stderr, /Uncaught/, what);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("example checkpoint.ts: an --out the process may not write is refused before any work", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const out = `${dir}/out`;
    // as the task runs it: only runs/example-checkpoint is writable
    const task = [`--allow-read=${READ}`, "--allow-write=runs/example-checkpoint"];
    const r = await exec("checkpoint.ts", task, ["--size", "small", "--out", out]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^error: --out .*\/out may not be written by this process$/m);
    assert.match(r.stderr, /^ {2}to fix: the example:checkpoint task may write only /m);
    assert.deepEqual(await Array.fromAsync(Deno.readDir(dir)), [], "nothing created");
    // a file where the folder should be
    const file = `${dir}/file`;
    await Deno.writeTextFile(file, "mine");
    const f = await exec("checkpoint.ts", [`--allow-read=${READ},${dir}`, `--allow-write=${dir}`], [
      "--out",
      file,
    ]);
    assert.equal(f.code, 2, f.stderr);
    assert.match(f.stderr, /--out .*\/file is a file; expected a folder/);
    assert.equal(await Deno.readTextFile(file), "mine");
    // a folder holding a file the example would write (an earlier run's, or a user's)
    const held = `${dir}/held`;
    await Deno.mkdir(held);
    await Deno.writeTextFile(`${held}/train.safetensors`, "mine");
    const h = await exec("checkpoint.ts", [`--allow-read=${READ},${dir}`, `--allow-write=${dir}`], [
      "--out",
      held,
    ]);
    assert.equal(h.code, 2, h.stderr);
    assert.match(
      h.stderr,
      /^error: --out .*\/held already holds .*\/held\/train\.safetensors; this example writes new files only$/m,
    );
    assert.equal(await Deno.readTextFile(`${held}/train.safetensors`), "mine");
    assert.deepEqual([...Deno.readDirSync(held)].map((e) => e.name), ["train.safetensors"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("example mlp_fashion_mnist.ts --size small trains an MLP", async () => {
  const r = await runExample("mlp_fashion_mnist.ts");
  console.log(r);
  assert.equal(r.epochs, 4);
  assert.ok((r.testAccuracy as number) > 0.75, `test accuracy ${r.testAccuracy}`);
});

Deno.test("example cnn_fashion_mnist.ts --size small trains a CNN with AdamW", async () => {
  const r = await runExample("cnn_fashion_mnist.ts");
  console.log(r);
  assert.equal(r.epochs, 3);
  // measured 0.798 at this size (seed 0); a CNN that does not learn stays near 0.1
  assert.ok((r.testAccuracy as number) > 0.75, `test accuracy ${r.testAccuracy}`);
});

Deno.test("example meta_reweight.ts --size small trains a custom module with meta eps", async () => {
  const r = await runExample("meta_reweight.ts");
  console.log(r);
  assert.ok((r.testAccuracy as number) > 0.55, `test accuracy ${r.testAccuracy}`);
  const eps = r.meanEps as number[];
  assert.equal(eps.length, 10);
  assert.ok(eps.some((e) => e !== 0) && eps.every(Number.isFinite), `mean eps ${eps}`);
});

Deno.test("example checkpoint.ts --size small resumes, saves and loads", async () => {
  const out = await Deno.makeTempDir();
  try {
    const r = await runExample("checkpoint.ts", [
      `--allow-read=${READ},${out}`,
      `--allow-write=${out}`,
    ], ["--out", out]);
    console.log(r);
    assert.equal(r.identical, true);
    assert.deepEqual(r.saved, ["0.weight", "0.bias", "2.weight", "2.bias"]);
    assert.ok((r.testAccuracy as number) > 0.7, `test accuracy ${r.testAccuracy}`);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});
