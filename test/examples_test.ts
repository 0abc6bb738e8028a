/**
 * The examples run as a user runs them (`deno run` with their narrow permissions, as
 * subprocesses) at `--size small`, and their results are checked: the MLP, the CNN and the
 * meta-reweighted model reach a test accuracy measured at that size (minus a margin), the checkpoint example
 * resumes, saves and loads a model that predicts bit-identically.
 */
import assert from "node:assert/strict";

const READ = ".,/usr/share/datasets";

async function runExample(
  file: string,
  permissions: string[] = [`--allow-read=${READ}`],
  args: string[] = [],
): Promise<Record<string, unknown>> {
  const cmd = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-env",
      ...permissions,
      `examples/${file}`,
      "--size",
      "small",
      ...args,
    ],
    env: { DENO_WEBGPU_BACKEND: "vulkan", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  });
  const { code, stdout, stderr } = await cmd.output();
  const text = new TextDecoder().decode(stdout);
  assert.equal(code, 0, `${file} failed:\n${text}\n${new TextDecoder().decode(stderr)}`);
  const lines = text.trim().split("\n");
  return JSON.parse(lines[lines.length - 1]);
}

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
