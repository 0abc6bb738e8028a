/**
 * report.html (issue 11): the dataset's class names, the commit, date and command line, one
 * number format per kind of value, and series colours readable on the white page.
 */
import assert from "node:assert/strict";
import { classNamesOf, num, pct } from "../src/report/html.ts";
import { colour, PALETTE } from "../src/report/svg.ts";
import { currentProvenance, gitCommit } from "../src/report/provenance.ts";
import { DATASET_SOURCES } from "../src/data/sources.ts";

/** WCAG contrast ratio of a colour against white. */
function contrastOnWhite(css: string): number {
  let rgb: number[];
  const hsl = /^hsl\(([\d.]+), (\d+)%, (\d+)%\)$/.exec(css);
  if (hsl) {
    const [h, s, l] = [Number(hsl[1]), Number(hsl[2]) / 100, Number(hsl[3]) / 100];
    const k = (n: number) => (n + h / 30) % 12;
    const a = s * Math.min(l, 1 - l);
    rgb = [0, 8, 4].map((n) => l - a * Math.max(-1, Math.min(k(n) - 3, 9 - k(n), 1)));
  } else {
    rgb = [1, 3, 5].map((i) => parseInt(css.slice(i, i + 2), 16) / 255);
  }
  const lin = rgb.map((c) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4));
  const L = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2];
  return 1.05 / (L + 0.05);
}

Deno.test("report: every class colour is readable on white, the first ten distinct", () => {
  for (let i = 0; i < 120; i++) {
    const c = colour(i);
    assert.ok(contrastOnWhite(c) >= 3, `colour ${i} ${c}: contrast ${contrastOnWhite(c)}`);
  }
  assert.equal(new Set(PALETTE).size, 10);
  assert.ok(contrastOnWhite("#f0e442") < 3, "the check can fail (the old yellow)");
});

Deno.test("report: class names are the dataset's", () => {
  assert.deepEqual(classNamesOf("fashion-mnist", 10).slice(0, 2), ["T-shirt/top", "Trouser"]);
  assert.equal(classNamesOf("fashion-mnist", 10)[9], "Ankle boot");
  assert.equal(classNamesOf("cifar10", 10)[0], "airplane");
  const c100 = classNamesOf("cifar100", 100);
  assert.deepEqual([c100[0], c100[99], new Set(c100).size], ["apple", "worm", 100]);
  assert.deepEqual([...c100].sort(), c100, "CIFAR-100's fine labels are in alphabetical order");
  // data that does not fit the names: class numbers
  assert.deepEqual(classNamesOf("fashion-mnist", 3), ["0", "1", "2"]);
  for (const s of Object.values(DATASET_SOURCES)) assert.equal(s.classNames.length, s.numClasses);
});

Deno.test("report: one number format per kind of value", () => {
  assert.deepEqual([pct(0.5), pct(0.12345), pct(null)], ["50.00%", "12.35%", "–"]);
  assert.deepEqual(
    [num(0.1), num(2.30258), num(0.0001234), num(12345), num(0), num(NaN)],
    ["0.1000", "2.303", "1.234e-4", "1.235e+4", "0", "–"],
  );
});

Deno.test("report: provenance names the commit, the time and the command", async () => {
  const root = new URL("..", import.meta.url).pathname;
  const p = currentProvenance();
  assert.match(p.date, /^\d{4}-\d\d-\d\dT/);
  assert.match(p.command, /^deno run /);
  let expected: string | null = null;
  try {
    const r = await new Deno.Command("git", { args: ["rev-parse", "HEAD"], cwd: root }).output();
    if (r.success) expected = new TextDecoder().decode(r.stdout).trim();
  } catch { /* no git binary: compare with the format only */ }
  const commit = gitCommit(root);
  if (expected) assert.equal(commit, expected);
  else assert.ok(commit === null || /^[0-9a-f]{40}$/.test(commit));
  assert.equal(p.commit, commit);
});
