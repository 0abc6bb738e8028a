/**
 * The code a reader copies type-checks against the code: every TypeScript snippet of the README
 * and the examples in the module docs of mod.ts and longtail.ts (`deno check --doc-only`). A
 * renamed option or a changed signature fails here, not in a reader's first program. Type checks
 * only: nothing runs, no GPU.
 */
import assert from "node:assert/strict";

const ROOT = new URL("..", import.meta.url).pathname;

/**
 * `deno check --doc-only files`: its exit status and the code blocks it checked (listed only
 * when checked anew, so the check runs with an empty cache of its own).
 */
async function checkDocs(
  files: string[],
): Promise<{ code: number; checked: string[]; log: string }> {
  const cache = await Deno.makeTempDir({ prefix: "tg-docs-" });
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["check", "--doc-only", ...files],
    cwd: ROOT,
    env: { NO_COLOR: "1", DENO_DIR: cache },
    stdout: "piped",
    stderr: "piped",
  }).output().finally(() => Deno.remove(cache, { recursive: true }));
  const log = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
  const checked = [...log.matchAll(/^Check (\S+#\d+-\d+\.ts)$/gm)].map((m) => m[1]);
  return { code, checked, log };
}

Deno.test("docs: every ts snippet of the README type-checks", async () => {
  const readme = await Deno.readTextFile(`${ROOT}README.md`);
  const blocks = readme.match(/^```ts$/gm)?.length ?? 0;
  assert.ok(blocks >= 3, `the README has ${blocks} ts snippets`);
  const r = await checkDocs(["README.md"]);
  assert.equal(r.code, 0, r.log);
  assert.equal(r.checked.length, blocks, `checked ${r.checked.join(", ")} of ${blocks}:\n${r.log}`);
});

Deno.test("docs: the examples in the module docs of mod.ts and longtail.ts type-check", async () => {
  const r = await checkDocs(["mod.ts", "longtail.ts"]);
  assert.equal(r.code, 0, r.log);
  assert.ok(r.checked.some((c) => c.startsWith("mod.ts#")), r.log);
  assert.ok(r.checked.some((c) => c.startsWith("longtail.ts#")), r.log);
});
