/**
 * The committed medium grid is what this commit's code produces: the first meta epoch of
 * `meta-if100-s0`, forked again from its committed stage-1 checkpoint, gives the very numbers
 * recorded in the cell's metrics.jsonl (loss, every test metric, the meta step's eps statistics).
 * Any change to a kernel, the data order or the recipe that would change the published results
 * fails here, so the grid is regenerated with the change rather than left stale.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { train } from "../src/train/mod.ts";
import { planCells, SCALES } from "../scripts/reproduce.ts";

const ROOT = "results/fashion-mnist-lt/medium";

/** A metrics.jsonl line without its wall-clock timing, the one field a rerun may change. */
function withoutTiming(line: Record<string, unknown>): Record<string, unknown> {
  const { timing: _timing, ...rest } = line;
  return rest;
}

async function metricsLines(dir: string): Promise<Record<string, unknown>[]> {
  const text = await Deno.readTextFile(join(dir, "metrics.jsonl"));
  return text.trim().split("\n").map((l) => JSON.parse(l));
}

Deno.test({
  name: "results: the medium grid's meta-if100-s0 first meta epoch is reproduced bit for bit",
  sanitizeResources: false,
  fn: async () => {
    // the cell as `deno task reproduce --scale medium` runs it
    const cell = planCells(SCALES.medium, [100], [0]).find((c) => c.id === "meta-if100-s0")!;
    const stage1 = cell.stage1!;
    const metaStart = stage1.untilEpoch;
    const out = await Deno.makeTempDir({ prefix: "tg-results-" });
    try {
      await train({
        ...cell.options,
        initFrom: join(ROOT, stage1.dir, "checkpoint.safetensors"),
        download: false,
        out,
        maxEpochs: 1,
        progress: null,
      });
      const recorded = await metricsLines(join(ROOT, cell.dir));
      const rerun = await metricsLines(out);
      const first = (lines: Record<string, unknown>[]) => lines.find((l) => l.epoch === metaStart)!;
      assert.equal(rerun.length, metaStart + 1);
      assert.equal(first(recorded).phase, "meta");
      assert.deepEqual(withoutTiming(first(rerun)), withoutTiming(first(recorded)));
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
});
