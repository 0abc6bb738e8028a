/**
 * report.html: a single self-contained page (inline CSS and SVG, no scripts, no external
 * resources) summarising a run: headline errors, error and loss curves, per-class accuracy,
 * the confusion matrix, per-class meta weights over the epochs, and the configuration. Runs of
 * more than {@linkcode LISTED_CLASSES} classes (ImageNet-LT, iNaturalist) get per-class values
 * plotted against the classes ranked by training images instead of tables and matrices, which
 * would run to millions of cells; their values are in summary.json and metrics.jsonl.
 */
import type { EpochRecord, PerClassMeta, RunRecord } from "./summary.ts";
import { DATASET_SOURCES } from "../data/sources.ts";
import type { DatasetName } from "../data/dataset.ts";
import {
  barChart,
  type ChartOptions,
  colour,
  esc,
  heatmap,
  lineChart,
  type Series,
} from "./svg.ts";
import { SHOT_THRESHOLDS } from "../engine/metrics.ts";
import { denseConfusion } from "../engine/confusion.ts";
import { currentProvenance, type Provenance } from "./provenance.ts";

/** Rates (errors, accuracies) everywhere: a percentage with two decimals. */
export const pct = (v: number | null | undefined): string =>
  v === null || v === undefined || !Number.isFinite(v) ? "–" : `${(100 * v).toFixed(2)}%`;

/**
 * Every other number (losses, weights, eps): four significant digits, in plain notation from
 * 0.001 to 10000 and in exponent notation outside it, so a column reads one way.
 */
export const num = (v: number | null | undefined): string => {
  if (v === null || v === undefined || !Number.isFinite(v)) return "–";
  if (v === 0) return "0";
  const a = Math.abs(v);
  return a >= 1e-3 && a < 1e4 ? v.toPrecision(4) : v.toExponential(3);
};

/** The dataset's class names when they fit the run's classes, else the class numbers. */
export function classNamesOf(dataset: string, numClasses: number): string[] {
  const names = DATASET_SOURCES[dataset as DatasetName]?.classNames;
  return names && names.length === numClasses
    ? [...names]
    : Array.from({ length: numClasses }, (_, c) => String(c));
}

function metaSeries(
  history: EpochRecord[],
  pick: (m: PerClassMeta) => (number | null)[],
  names: string[],
): Series[] {
  const metaEpochs = history.filter((h) => h.meta);
  const out: Series[] = [];
  for (let c = 0; c < names.length; c++) {
    out.push({
      name: `${c} ${names[c]}`,
      points: metaEpochs.map((h) => [h.epoch + 1, pick(h.meta!)[c] ?? NaN] as [number, number]),
    });
  }
  return out;
}

/** The most classes a report lists (tables, confusion matrices); above it, ranked plots. */
export const LISTED_CLASSES = 100;

/** The report page of a run; `provenance` defaults to this process's commit, time and command. */
export function renderReport(
  summary: RunRecord,
  history: EpochRecord[],
  provenance: Provenance = currentProvenance(),
): string {
  const names = classNamesOf(summary.config.dataset, summary.data.numClasses);
  const listed = summary.data.numClasses <= LISTED_CLASSES;
  const sections = [
    resultSection(summary, provenance),
    curvesSection(history),
    listed ? perClassSection(summary, names) : rankedPerClassSection(summary),
  ];
  if (history.some((h) => h.meta)) {
    sections.push(
      listed ? metaSection(summary, history, names) : rankedMetaSection(summary, history),
    );
  }
  sections.push(configSection(summary));
  const cfg = summary.config;
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>tailgrad run: ${esc(cfg.method)} on ${esc(cfg.dataset)}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
section { margin-bottom: 2em; }
svg { margin: 0.5em 1em 0.5em 0; vertical-align: top; font-family: system-ui, sans-serif; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 2px 8px; text-align: right; font-size: 13px; }
table.kv th, table.grid th { text-align: left; background: #f5f5f5; }
table.kv td { text-align: left; }
</style></head>
<body>
<h1>tailgrad: ${esc(cfg.method)} on long-tailed ${esc(cfg.dataset)} (IF ${esc(cfg.imbalance)})</h1>
${sections.join("\n")}
</body></html>
`;
}

/** Status, headline errors (final, last, best; shot groups when present) and provenance. */
function resultSection(summary: RunRecord, provenance: Provenance): string {
  const cfg = summary.config;
  const shots = summary.last?.shots;
  const shotHead = shots
    ? `<th>many-shot acc. (&gt; ${shots.thresholds.many}: ${shots.classes.many})</th>` +
      `<th>medium-shot acc. (${shots.classes.medium})</th>` +
      `<th>few-shot acc. (&lt; ${shots.thresholds.few}: ${shots.classes.few})</th>`
    : "";
  const shotCells = (m: RunRecord["last"] | undefined) =>
    shots
      ? `<td>${pct(m?.shots?.many)}</td><td>${pct(m?.shots?.medium)}</td><td>${
        pct(m?.shots?.few)
      }</td>`
      : "";
  const headline = `<table class="kv">
<tr><th></th><th>top-1 error</th><th>top-3 error</th><th>top-5 error</th><th>test loss</th><th>epoch</th>${shotHead}</tr>
${
    (["final", "last", "best"] as const).filter((k) => k !== "final" || summary.final).map((k) => {
      const m = summary[k];
      const name = k === "final" ? `final (whole test set, ${m?.count} images)` : k;
      return `<tr><th>${name}</th><td>${pct(m?.top1Error)}</td><td>${pct(m?.top3Error)}</td><td>${
        pct(m?.top5Error)
      }</td><td>${num(m?.loss)}</td><td>${m ? m.epoch + 1 : "–"}</td>${shotCells(m)}</tr>`;
    }).join("\n")
  }
</table>`;
  return `<section><h2>Result</h2>
<p>Status: <b>${esc(summary.status)}</b>${summary.message ? ` — ${esc(summary.message)}` : ""}.
${summary.epochsDone} of ${cfg.epochs} epochs, ${summary.steps} steps, ${
    (summary.wallSeconds / 60).toFixed(1)
  } min on ${esc(summary.adapter.description)}${
    summary.adapter.isFallbackAdapter ? " (software adapter)" : ""
  }.</p>${headline}
<table class="kv">
<tr><th>command</th><td><code>${esc(provenance.command)}</code></td></tr>
<tr><th>commit</th><td><code>${esc(provenance.commit ?? "unknown")}</code></td></tr>
<tr><th>written</th><td>${esc(provenance.date)}</td></tr>
</table></section>`;
}

/** Error and loss curves over the epochs. */
function curvesSection(history: EpochRecord[]): string {
  const tested = history.filter((h) => h.test);
  const errSeries: Series[] = (["top1Error", "top3Error", "top5Error"] as const).map((k) => ({
    name: k.replace("Error", " error"),
    points: tested.map((h) => [h.epoch + 1, h.test![k]] as [number, number]),
  }));
  const lossSeries: Series[] = [
    { name: "train loss", points: history.map((h) => [h.epoch + 1, h.trainLoss]) },
    {
      name: "test loss",
      points: tested.map((h) => [h.epoch + 1, h.test!.loss] as [number, number]),
      dashed: true,
    },
  ];
  return `<section><h2>Curves</h2>
${lineChart(errSeries, { title: "Test error", xLabel: "epoch", yLabel: "error" })}
${lineChart(lossSeries, { title: "Loss", xLabel: "epoch", yLabel: "loss" })}
</section>`;
}

/** Per-class table, accuracy and training-count charts, confusion matrices. */
function perClassSection(summary: RunRecord, names: string[]): string {
  const classLabels = names.map((_, c) => String(c));
  const accSeries = [] as { name: string; values: number[] }[];
  if (summary.last) accSeries.push({ name: "last epoch", values: summary.last.perClassAccuracy });
  if (summary.best) accSeries.push({ name: "best epoch", values: summary.best.perClassAccuracy });
  if (summary.final) {
    accSeries.push({ name: "final, whole test set", values: summary.final.perClassAccuracy });
  }
  const countsChart = barChart(
    classLabels,
    [{ name: "training images", values: summary.data.trainCounts, colour: "#777" }],
    { title: "Training images per class", xLabel: "class" },
  );
  const classRows = names.map((n, c) =>
    `<tr><td>${c}</td><th>${esc(n)}</th><td>${summary.data.trainCounts[c]}</td><td>${
      summary.data.testCounts[c]
    }</td><td>${pct(summary.last?.perClassAccuracy[c])}</td><td>${
      pct(summary.best?.perClassAccuracy[c])
    }</td></tr>`
  ).join("\n");
  return `<section><h2>Per class</h2>
<table class="grid"><tr><th>class</th><th>name</th><th>train images</th><th>test images</th><th>last accuracy</th><th>best accuracy</th></tr>
${classRows}</table>
${
    barChart(classLabels, accSeries, {
      title: "Per-class test accuracy",
      xLabel: "class",
      max: 1,
    })
  }
${countsChart}
${
    summary.last
      ? heatmap(denseConfusion(summary.last.confusion), classLabels, {
        title: `Confusion matrix (epoch ${summary.last.epoch + 1}, last)`,
      })
      : ""
  }
${
    summary.best && summary.best.epoch !== summary.last?.epoch
      ? heatmap(denseConfusion(summary.best.confusion), classLabels, {
        title: `Confusion matrix (epoch ${summary.best.epoch + 1}, best)`,
      })
      : ""
  }
</section>`;
}

/** Per-class eps and final weights over the meta epochs. */
function metaSection(summary: RunRecord, history: EpochRecord[], names: string[]): string {
  const C = names.length;
  const m = summary.meta;
  const rows = Array.from(
    { length: C },
    (_, c) =>
      `<tr><td>${c}</td><th>${esc(names[c])}</th><td>${summary.data.trainCounts[c]}</td><td>${
        num(summary.classWeights[c])
      }</td><td>${num(m?.meanEps[c])}</td><td>${num(m?.meanEpsOverW[c])}</td><td>${
        num(m?.minWPlusEps[c])
      }</td><td>${num(m?.meanFinalWeight[c])}</td><td>${
        pct(summary.last?.perClassAccuracy[c])
      }</td></tr>`,
  ).join("\n");
  return `<section><h2>Meta weights</h2>
${
    lineChart(metaSeries(history, (x) => x.meanEps, names), {
      title: "Per-class mean eps over the epochs",
      xLabel: "epoch",
      yLabel: "mean eps",
    })
  }
${
    lineChart(metaSeries(history, (x) => x.meanFinalWeight, names), {
      title: "Per-class mean final weight over the epochs",
      xLabel: "epoch",
      yLabel: "mean final weight",
    })
  }
<table class="grid"><tr><th>class</th><th>name</th><th>train images</th><th>w_y</th><th>mean eps</th><th>mean eps / w_y</th><th>min w + eps</th><th>mean final weight</th><th>last accuracy</th></tr>
${rows}</table>
</section>`;
}

/** Classes by training images, most first (ties by class index). */
export function rankByCount(counts: readonly number[]): number[] {
  return counts.map((_, c) => c).sort((a, b) => counts[b] - counts[a] || a - b);
}

/**
 * Mean of the finite values within `half` places either side of each place (NaN where there is
 * none): the trend of per-class values too noisy to read one by one.
 */
export function windowMean(values: readonly number[], half: number): number[] {
  const n = values.length, out = new Array<number>(n);
  let sum = 0, count = 0;
  const add = (i: number, sign: number) => {
    if (i >= 0 && i < n && Number.isFinite(values[i])) {
      sum += sign * values[i];
      count += sign;
    }
  };
  for (let i = 0; i < half; i++) add(i, 1);
  for (let i = 0; i < n; i++) {
    add(i + half, 1);
    add(i - half - 1, -1);
    out[i] = count > 0 ? sum / count : NaN;
  }
  return out;
}

/** One set of per-class values of a ranked chart; `perClass` also draws each class's value. */
interface RankedLine {
  name: string;
  values: readonly (number | null | undefined)[];
  perClass?: boolean;
}

/** Half the window of a ranked chart's means: the window is about 2% of the classes. */
function rankWindowHalf(numClasses: number): number {
  return Math.max(1, Math.round(numClasses / 100));
}

/**
 * Per-class values against the classes ranked by training images (1 = most): each line's mean
 * over a window of neighbouring ranks ({@linkcode rankWindowHalf}), and with `perClass` the
 * values themselves in grey.
 */
function rankedChart(counts: readonly number[], lines: RankedLine[], o: ChartOptions): string {
  const order = rankByCount(counts);
  const half = rankWindowHalf(counts.length);
  const points = (v: number[]) => v.map((y, r) => [r + 1, y] as [number, number]);
  const series: Series[] = [];
  lines.forEach((l, i) => {
    const byRank = order.map((c) => l.values[c] ?? NaN);
    if (l.perClass) {
      series.push({ name: `${l.name}, per class`, points: points(byRank), colour: "#777" });
    }
    series.push({
      name: l.name,
      points: points(windowMean(byRank, half)),
      colour: colour(i),
    });
  });
  return lineChart(series, { xLabel: "class rank by training images (1 = most)", ...o });
}

/** Where the per-class values of a run with many classes are. */
function unlistedNote(summary: RunRecord, what: string): string {
  const C = summary.data.numClasses;
  return `<p>${C} classes: too many to list; ${what} Classes are ranked by training images ` +
    `(most first; rank 1 has ${Math.max(...summary.data.trainCounts)}); each coloured line is ` +
    `the mean of the ${2 * rankWindowHalf(C) + 1} classes around a rank.</p>`;
}

/** Per-class accuracy and training images against the classes' rank (many classes). */
function rankedPerClassSection(summary: RunRecord): string {
  const counts = summary.data.trainCounts;
  const lines: RankedLine[] = [];
  if (summary.last) lines.push({ name: "last epoch", values: summary.last.perClassAccuracy });
  if (summary.best) lines.push({ name: "best epoch", values: summary.best.perClassAccuracy });
  if (summary.final) lines.push({ name: "final", values: summary.final.perClassAccuracy });
  const order = rankByCount(counts);
  const countSeries: Series[] = [{
    name: "training images",
    points: order.map((c, r) => [r + 1, counts[c]] as [number, number]),
    colour: "#777",
  }];
  return `<section><h2>Per class</h2>
${
    unlistedNote(
      summary,
      "the per-class accuracy and the confusion matrices (their nonzero cells, " +
        "<code>[true, predicted, count]</code>) are in summary.json (<code>last</code>, " +
        "<code>best</code>, <code>final</code>).",
    )
  }
${rankedChart(counts, lines, { title: "Per-class test accuracy", yLabel: "accuracy" })}
${
    lineChart(countSeries, {
      title: "Training images per class",
      xLabel: "class rank by training images (1 = most)",
      yLabel: "images",
      logY: true,
    })
  }
</section>`;
}

/**
 * Per-class eps and eps / w_y against the classes' rank, over the meta stage and in its last
 * epoch, and the mean eps of the many-, medium- and few-shot classes over the epochs (many
 * classes).
 */
function rankedMetaSection(summary: RunRecord, history: EpochRecord[]): string {
  const counts = summary.data.trainCounts;
  const metaEpochs = history.filter((h) => h.meta);
  const last = metaEpochs[metaEpochs.length - 1];
  const lines = (pick: (m: PerClassMeta) => (number | null)[]): RankedLine[] => [
    ...(summary.meta ? [{ name: "meta stage", values: pick(summary.meta), perClass: true }] : []),
    { name: `epoch ${last.epoch + 1}`, values: pick(last.meta!) },
  ];
  const { many, few } = SHOT_THRESHOLDS;
  const groups: [string, (n: number) => boolean][] = [
    [`many-shot (> ${many})`, (n) => n > many],
    [`medium-shot`, (n) => n >= few && n <= many],
    [`few-shot (< ${few})`, (n) => n < few],
  ];
  const groupSeries: Series[] = groups.map(([name, inGroup]) => ({
    name,
    points: metaEpochs.map((h) => {
      const v = h.meta!.meanEps.filter((e, c) => e !== null && inGroup(counts[c])) as number[];
      return [h.epoch + 1, v.length ? v.reduce((a, b) => a + b, 0) / v.length : NaN];
    }),
  }));
  return `<section><h2>Meta weights</h2>
${
    unlistedNote(
      summary,
      "the per-class mean eps, eps / w_y, minimum w + eps and final weight are in summary.json " +
        "(<code>meta</code>: the whole meta stage) and in each meta epoch's line of metrics.jsonl.",
    )
  }
${rankedChart(counts, lines((m) => m.meanEps), { title: "Per-class mean eps", yLabel: "mean eps" })}
${
    rankedChart(counts, lines((m) => m.meanEpsOverW), {
      title: "Per-class mean eps / w_y",
      yLabel: "mean eps / w_y",
    })
  }
${
    lineChart(groupSeries, {
      title: "Mean eps of the shot groups' classes over the epochs",
      xLabel: "epoch",
      yLabel: "mean eps",
    })
  }
</section>`;
}

/** The run's settings and data. */
function configSection(summary: RunRecord): string {
  const cfg = summary.config;
  const cfgRows = Object.entries(cfg).map(([k, v]) =>
    `<tr><th>${esc(k)}</th><td>${esc(Array.isArray(v) ? v.join(", ") : String(v))}</td></tr>`
  ).join("\n");
  // many classes: the range of the per-class counts (all of them are in summary.json)
  const counts = (v: number[]) =>
    v.length <= LISTED_CLASSES
      ? v.join(", ")
      : `${Math.min(...v)} to ${Math.max(...v)} per class (${v.length} classes)`;
  const d = summary.data;
  const dataRows = `<tr><th>source</th><td>${esc(d.source)}</td></tr>
<tr><th>image</th><td>${esc(d.image.join(" x "))}</td></tr>
<tr><th>train counts</th><td>${esc(counts(d.trainCounts))} (${d.trainTotal})</td></tr>
<tr><th>dev counts</th><td>${esc(counts(d.devCounts))}</td></tr>
<tr><th>test counts</th><td>${esc(counts(d.testCounts))} (${d.testTotal})</td></tr>`;
  return `<section><h2>Configuration</h2>
<table class="kv">${cfgRows}</table>
<h3>Data</h3><table class="kv">${dataRows}</table></section>`;
}
