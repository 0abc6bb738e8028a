/**
 * report.html (issue 11): the dataset's class names, the commit, date and command line, one
 * number format per kind of value, and series colours readable on the white page; runs of many
 * classes plot per-class values by training-count rank instead of listing them.
 */
import assert from "node:assert/strict";
import {
  classNamesOf,
  LISTED_CLASSES,
  num,
  pct,
  rankByCount,
  renderReport,
  windowMean,
} from "../src/report/html.ts";
import type { EpochRecord, PerClassMeta, RunRecord } from "../src/report/summary.ts";
import { colour, PALETTE } from "../src/report/svg.ts";
import { currentProvenance, gitCommit } from "../src/report/provenance.ts";
import { DATASET_SOURCES } from "../src/data/sources.ts";
import {
  type Confusion,
  denseConfusion,
  recordedConfusion,
  sparseConfusion,
} from "../src/engine/confusion.ts";

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

/** A run of C classes with a CE epoch and a meta epoch; every 7th class has no eps (null). */
function fakeRun(C: number): { summary: RunRecord; history: EpochRecord[] } {
  // counts c + 2, all different: rank r is class C - 1 - r
  const trainCounts = Array.from({ length: C }, (_, c) => c + 2);
  const perClass = <T>(f: (c: number) => T) => Array.from({ length: C }, (_, c) => f(c));
  const meta: PerClassMeta = {
    meanEps: perClass((c) => (c % 7 === 0 ? null : 0.01 * (c % 5))),
    meanEpsOverW: perClass((c) => (c % 7 === 0 ? null : 0.02 * (c % 5))),
    minWPlusEps: perClass((c) => (c % 7 === 0 ? null : 0.5)),
    meanFinalWeight: perClass(() => 1),
    count: perClass((c) => (c % 7 === 0 ? 0 : 3)),
  };
  const metrics = {
    top1Error: 0.5,
    top3Error: 0.3,
    top5Error: 0.2,
    loss: 2,
    perClassAccuracy: perClass((c) => (c % 3) / 2),
    // each class's two test images: right for (c % 3) / 2 of them, else taken for class 0
    confusion: recordedConfusion(
      C,
      perClass((c): [number, number, number][] =>
        c % 3 === 0 ? [[c, 0, 2]] : c % 3 === 1 ? [[c, 0, 1], [c, c, 1]] : [[c, c, 2]]
      ).flat().sort((a, b) => a[0] - b[0] || a[1] - b[1]),
    ),
    count: 2 * C,
    epoch: 1,
  };
  const record = (epoch: number, m: PerClassMeta | null): EpochRecord => ({
    epoch,
    phase: m ? "meta" : "plain",
    lr: 0.1,
    trainLoss: 1,
    steps: 10,
    images: 640,
    test: null,
    meta: m,
    timing: { seconds: 1, imagesPerSecond: 640 },
  });
  const summary: RunRecord = {
    status: "completed",
    config: { dataset: "inat2018", imbalance: 500, method: "meta", epochs: 2 },
    adapter: { description: "test", isFallbackAdapter: true },
    data: {
      source: "test",
      numClasses: C,
      image: [3, 32, 32],
      nMax: Math.max(...trainCounts),
      trainCounts,
      devCounts: new Array(C).fill(1),
      testCounts: new Array(C).fill(2),
      trainTotal: trainCounts.reduce((a, b) => a + b, 0),
      testTotal: 2 * C,
    },
    classWeights: new Array(C).fill(1),
    margins: null,
    finalClassWeights: null,
    epochsDone: 2,
    steps: 20,
    last: metrics,
    best: metrics,
    meta,
    nonFinite: null,
    wallSeconds: 1,
  };
  return { summary, history: [record(0, null), record(1, meta)] };
}

/** The [x, y] points of the path titled `name` in an SVG page. */
function pathPoints(html: string, name: string): number[][] {
  const m = new RegExp(`<path d="([^"]*)"[^>]*><title>${name}</title>`).exec(html);
  assert.ok(m, `no series ${name}`);
  return m[1].split(/[ML]/).filter(Boolean).map((p) => p.split(",").map(Number));
}

Deno.test("report: ranks by training images and window means of per-class values", () => {
  assert.deepEqual(rankByCount([5, 9, 5, 1]), [1, 0, 2, 3]);
  assert.deepEqual(windowMean([1, NaN, 3, 5, 7], 1), [1, 2, 4, 5, 6]);
  assert.deepEqual(windowMean([NaN, NaN, 4], 0), [NaN, NaN, 4]);
});

Deno.test("report: more classes than are listed are plotted by training-count rank", () => {
  const C = 1000;
  assert.ok(C > LISTED_CLASSES);
  const { summary, history } = fakeRun(C);
  const html = renderReport(summary, history);
  // no per-class tables or C x C matrices: a page of bounded size
  assert.ok(!html.includes('<table class="grid">') && !html.includes("Confusion matrix"));
  assert.ok(html.length < 1_000_000, `${html.length} characters`);
  assert.match(html, /1000 classes: too many to list.*the mean of the 21 classes around a rank/s);
  assert.match(html, /train counts<\/th><td>2 to 1001 per class \(1000 classes\)/);
  for (
    const title of ["Per-class mean eps", "Per-class mean eps \/ w_y", "Per-class test accuracy"]
  ) {
    assert.match(html, new RegExp(`aria-label="${title}"`));
  }
  // the per-class eps by rank: a point per class with eps, none (a gap, not 0) for the others;
  // rank r is class C - 1 - r, so the points' heights follow the classes reversed
  const points = pathPoints(html, "meta stage, per class");
  const withEps = summary.meta!.meanEps.filter((e) => e !== null).length;
  assert.equal(points.length, withEps);
  const ys = points.map((p) => p[1]);
  const ranked = summary.meta!.meanEps.slice().reverse().filter((e) => e !== null) as number[];
  for (let i = 1; i < ys.length; i++) {
    // higher eps is drawn higher (smaller y)
    assert.equal(Math.sign(ys[i - 1] - ys[i]), Math.sign(ranked[i] - ranked[i - 1]), `point ${i}`);
  }
  // the shot groups' mean eps over the epochs: one point (the meta epoch) per group
  for (const g of ["many-shot \\(&#62; 100\\)", "medium-shot", "few-shot \\(&#60; 20\\)"]) {
    assert.equal(pathPoints(html, g).length, 1, g);
  }
});

Deno.test("report: a few classes are listed, with their eps and confusion matrix", () => {
  const { summary, history } = fakeRun(3);
  const html = renderReport(summary, history);
  assert.match(html, /<th>mean eps \/ w_y<\/th>/);
  assert.match(html, /Confusion matrix/);
  assert.ok(!html.includes("too many to list"));
  assert.match(html, /train counts<\/th><td>2, 3, 4 \(9\)/);
});

Deno.test("report: the confusion heatmaps read an old dense summary and the sparse form alike", async () => {
  const provenance = { commit: null, date: "2026-01-01T00:00:00Z", command: "test" };
  const cell = new URL(
    "../results/fashion-mnist-lt/small/ce-if10-s2/summary.json",
    import.meta.url,
  );
  const old = JSON.parse(await Deno.readTextFile(cell)) as RunRecord;
  const dense = old.last!.confusion;
  assert.ok(Array.isArray(dense) && dense.length === 10, "a committed summary holds dense rows");
  const sparse = {
    ...old,
    last: { ...old.last!, confusion: sparseConfusion(dense) },
    best: { ...old.best!, confusion: sparseConfusion(old.best!.confusion) },
  };
  const html = renderReport(old, [], provenance);
  assert.equal(renderReport(sparse, [], provenance), html);
  // the counts of the committed matrix are the heatmap's cells, zeros included
  for (const [t, p] of [[0, 0], [0, 1], [1, 2], [9, 9]]) {
    const f = `${(100 * dense[t][p] / dense[t].reduce((a, b) => a + b, 0)).toFixed(1)}%`;
    assert.ok(html.includes(`true ${t}, predicted ${p}: ${dense[t][p]} (${f})`), `cell ${t}, ${p}`);
  }
  // and the per-class accuracy it records is the diagonal over the row, as computed now
  const acc = dense.map((row, c) => row[c] / row.reduce((a, b) => a + b, 0));
  assert.deepEqual(old.last!.perClassAccuracy, acc);
  // the fixture's matrices of 7 classes (recorded dense) and their sparse form: the same page
  const { summary, history } = fakeRun(7);
  assert.ok(Array.isArray(summary.last!.confusion));
  assert.match(renderReport(summary, history, provenance), /true 1, predicted 0: 1 \(50\.0%\)/);
  const both = (f: (c: Confusion) => Confusion) => ({
    ...summary,
    last: { ...summary.last!, confusion: f(summary.last!.confusion) },
    best: { ...summary.best!, epoch: 0, confusion: f(summary.best!.confusion) },
  });
  assert.equal(
    renderReport(both(sparseConfusion), history, provenance),
    renderReport(both(denseConfusion), history, provenance),
  );
});
