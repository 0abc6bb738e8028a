/**
 * The benchmark command lines without running a benchmark: `deno task bench:deno` loads only
 * the files that declare `Deno.bench` cases (a plain script under bench/ would run at load time),
 * and `deno task bench` refuses bad flags and an unwritable --out before any GPU work.
 */
import assert from "node:assert/strict";
import { join } from "node:path";

const ROOT = new URL("..", import.meta.url).pathname;

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
