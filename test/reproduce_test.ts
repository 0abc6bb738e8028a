/** The reproduce grid end to end at a tiny size: two cells, a SIGKILL, a resume, a skip. */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  gridCells,
  groupAccuracy,
  meanStd,
  pairedDifferences,
  type Row,
  SCALES,
} from "../scripts/reproduce.ts";

const script = new URL("../scripts/reproduce.ts", import.meta.url).pathname;
const ARGS = ["--scale", "tiny", "--imbalance", "100", "--seeds", "0", "--no-tau"];

function command(resultsDir: string, only: string): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-write=/tmp",
      "--allow-env",
      script,
      ...ARGS,
      "--only",
      only,
      "--results-dir",
      resultsDir,
    ],
    env: { DENO_WEBGPU_BACKEND: "vulkan" },
    stdout: "piped",
    stderr: "piped",
  });
}

async function waitFor(path: string, timeoutMs: number): Promise<void> {
  const t0 = Date.now();
  while (Date.now() - t0 < timeoutMs) {
    try {
      await Deno.stat(path);
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`timed out waiting for ${path}`);
}

Deno.test("grid helpers: cells, mean/std, head-middle-tail groups", () => {
  const cells = gridCells([100, 10], [0, 1, 2], SCALES.tiny);
  assert.equal(cells.filter((c) => c.group === "grid").length, 12 * 2 * 3);
  assert.equal(cells.filter((c) => c.group === "tau").length, 4 * 3);
  assert.equal(new Set(cells.map((c) => c.id)).size, cells.length, "ids are unique");
  // tau 0.01 is the preset's own tau: those cells are the meta runs, not copies of them
  const reference = cells.filter((c) => c.tau === 0.01).map((c) => c.dir);
  assert.deepEqual(reference, ["meta-if100-s0", "meta-if100-s1", "meta-if100-s2"]);
  assert.equal(cells.find((c) => c.id === "tau100-if100-s1")?.dir, "tau100-if100-s1");
  const m = meanStd([1, 2, 3]);
  assert.equal(m.mean, 2);
  assert.equal(m.std, 1);
  const g = groupAccuracy([1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0, 0, 0]);
  assert.deepEqual(g, { head: 1, middle: 0.5, tail: 0 });
  // paired differences match seeds, not positions, and skip seeds one row lacks
  const row = (label: string, seeds: number[], errs: number[]) =>
    ({ label, group: "grid", imbalance: 100, seeds, lastTop1BySeed: errs }) as unknown as Row;
  const pairs = pairedDifferences([
    row("meta", [0, 1, 2], [0.5, 0.4, 0.3]),
    row("ce", [2, 0], [0.25, 0.75]),
  ]);
  assert.equal(pairs.length, 1);
  assert.equal(pairs[0].a, "meta");
  assert.deepEqual(pairs[0].diffs, [0.5 - 0.75, 0.3 - 0.25]);
});

Deno.test({
  name: "a two-cell grid survives a kill, resumes, skips finished cells and reproduces a cell",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "tailgrad-grid-" });
    const only = "ce-if100-s0,meta-if100-s0";
    // 1. start, kill as soon as the first cell has checkpointed an epoch
    const child = command(dir, only).spawn();
    const ceDir = join(dir, "fashion-mnist-lt", "tiny", "ce-if100-s0");
    await waitFor(join(ceDir, "checkpoint.safetensors"), 120_000);
    child.kill("SIGKILL");
    const killed = await child.output();
    assert.notEqual(killed.code, 0, "the first sitting was killed");

    // 2. the second sitting resumes the killed cell and runs the other
    const second = await command(dir, only).output();
    const out2 = new TextDecoder().decode(second.stdout);
    assert.equal(second.code, 0, new TextDecoder().decode(second.stderr));
    assert.match(out2, /ce-if100-s0: (resuming|done, skipped)/);
    assert.match(out2, /meta-if100-s0: starting/);
    const table = await Deno.readTextFile(join(dir, "fashion-mnist-lt.md"));
    assert.match(table, /\| ce \| 100 \| 1 \|/);
    assert.match(table, /\| meta \| 100 \| 1 \|/);
    const json = JSON.parse(await Deno.readTextFile(join(dir, "fashion-mnist-lt.json")));
    assert.equal(json.rows.length, 2);
    const html = await Deno.readTextFile(join(dir, "fashion-mnist-lt.html"));
    assert.match(html, /<svg/);

    // 3. a third sitting has nothing left to run
    const third = await command(dir, only).output();
    const out3 = new TextDecoder().decode(third.stdout);
    assert.match(out3, /ce-if100-s0: done, skipped/);
    assert.match(out3, /meta-if100-s0: done, skipped/);

    // 4. rerunning a cell with its seed in a fresh directory gives the same numbers
    const again = await Deno.makeTempDir({ prefix: "tailgrad-grid-again-" });
    const rerun = await command(again, "ce-if100-s0").output();
    assert.equal(rerun.code, 0, new TextDecoder().decode(rerun.stderr));
    const a = JSON.parse(await Deno.readTextFile(join(ceDir, "summary.json")));
    const b = JSON.parse(
      await Deno.readTextFile(
        join(again, "fashion-mnist-lt", "tiny", "ce-if100-s0", "summary.json"),
      ),
    );
    assert.deepEqual(b.last, a.last, "same last-epoch metrics, bit for bit");
    assert.deepEqual(b.best, a.best);
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(again, { recursive: true });
  },
});
