/**
 * The benchmark's report from its JSON alone (bench/report.ts), no GPU: the committed result of
 * the last run renders to the committed page byte for byte, and its targets come out the same.
 * That page was written by scripts/bench.ts's own Markdown code, so this holds the rendering to
 * what the suite has always written.
 */
import assert from "node:assert/strict";
import { type BenchResult, benchTargets, renderMarkdown } from "../bench/report.ts";

const RESULT = "bench/results/vulkan-llvmpipe-llvm-15-0-6-256-bits";

async function committed(): Promise<{ result: BenchResult; markdown: string }> {
  const result = JSON.parse(await Deno.readTextFile(`${RESULT}.json`)) as BenchResult;
  return { result, markdown: await Deno.readTextFile(`${RESULT}.md`) };
}

Deno.test("bench report: the committed JSON renders to the committed Markdown", async () => {
  const { result, markdown } = await committed();
  // the run had every section: a renderer that dropped one could not pass
  assert.ok(result.kernels.length && result.steps.length && result.profile && result.tfjs);
  assert.equal(renderMarkdown(result), markdown);
});

Deno.test("bench report: the committed JSON's targets are recomputed from its figures", async () => {
  const { result } = await committed();
  assert.equal(result.targets.length, 10);
  assert.deepEqual(benchTargets(result), result.targets);
});

Deno.test("bench report: a recorded timestamp-query flag wins over the adapter's features", async () => {
  const { result, markdown } = await committed();
  assert.ok(markdown.includes(", timestamp-query true. "));
  const page = renderMarkdown({ ...result, timestampQuery: false });
  assert.ok(page.includes(", timestamp-query false. "));
  assert.equal(page.replace("timestamp-query false", "timestamp-query true"), markdown);
});

Deno.test("bench report: sections the run skipped are left out, NaN figures read n/a", async () => {
  const { result } = await committed();
  const page = renderMarkdown({
    ...result,
    machine: { ...result.machine, kernelsCpuOverWall: NaN },
    kernels: [],
    matmulCheck: null,
    profile: null,
    tfjs: null,
    targets: [],
  });
  assert.ok(page.includes("(kernels n/a)"));
  for (const gone of ["## Kernels", "Check: matmul", "## Profile", "## TensorFlow.js", "TF.js"]) {
    assert.ok(!page.includes(gone), gone);
  }
  assert.ok(page.includes("## Training steps") && page.includes("## GPU memory"));
  assert.ok(page.endsWith("|\n"));
});
