/**
 * The report page of a reproduce grid at one scale: a self-contained HTML page (inline CSS and
 * SVG, no scripts) comparing the methods per imbalance factor: the table, per-class accuracy,
 * head / middle / tail error, the mean test-error curves, and eps per class for the meta method
 * (the paper's Figure 3), with links to every run's own report.
 */
import { barChart, esc, lineChart } from "./svg.ts";
import { classNamesOf, pct } from "./html.ts";

/** What the page reads of an aggregated row (scripts/grid_tables.ts `Row`). */
export interface GridPageRow {
  /** Method (and loss), or "meta tau=<tau>". */
  label: string;
  /** "grid" rows are compared; "tau" rows are the sweep. */
  group: "grid" | "tau";
  /** Imbalance factor. */
  imbalance: number;
  /** Seeds of the finished runs. */
  seeds: number[];
  /** Headline top-1 error, mean and std over seeds. */
  top1: { mean: number; std: number };
  /** Mean accuracy of classes 0-2 / 3-6 / 7-9. */
  head: number;
  /** See `head`. */
  middle: number;
  /** See `head`. */
  tail: number;
  /** Mean per-class accuracy. */
  perClassAccuracy: number[];
  /** Mean per-epoch top-1 error (NaN where not evaluated). */
  curve: number[];
  /** Per-class mean eps per meta epoch, where the method has eps. */
  epsCurve: number[][] | null;
  /** Run directories, relative to the page. */
  dirs: string[];
}

/** What the page says about where its numbers come from. */
export interface GridPageInfo {
  /** Scale name. */
  scale: string;
  /** Dataset name (class names). */
  dataset: string;
  /** The headline test set, in words. */
  headline: string;
  /** The per-epoch test set, in words. */
  epoch: string;
}

const STYLE = "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}" +
  "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}" +
  "td:first-child,th:first-child{text-align:left}svg{display:block;margin:1em 0}";

/** The grid page of one scale. */
export function renderGridPage(rows: GridPageRow[], info: GridPageInfo): string {
  const grid = rows.filter((r) => r.group === "grid");
  const factors = [...new Set(grid.map((r) => r.imbalance))].sort((a, b) => b - a);
  const parts = [
    `<!doctype html><html><head><meta charset="utf-8"><title>tailgrad grid: ${
      esc(info.dataset)
    }, scale ${esc(info.scale)}</title><style>${STYLE}</style></head><body>`,
    `<h1>Long-tailed ${esc(info.dataset)}: the methods compared at scale <code>${
      esc(info.scale)
    }</code></h1>`,
    `<p>Top-1 error and class accuracies on ${esc(info.headline)}; curves on ${
      esc(info.epoch)
    }. Means over seeds; head / middle / tail = classes 0-2 / 3-6 / 7-9 (the tail has the ` +
    `fewest training images).</p>`,
  ];
  if (!grid.length) parts.push("<p>No finished runs yet.</p>");
  for (const f of factors) parts.push(factorSection(grid.filter((r) => r.imbalance === f), info));
  parts.push(epsSection(rows), runLinks(rows), "</body></html>\n");
  return parts.join("\n");
}

function factorSection(rows: GridPageRow[], info: GridPageInfo): string {
  const sorted = [...rows].sort((a, b) => a.top1.mean - b.top1.mean);
  const C = sorted[0].perClassAccuracy.length;
  const names = classNamesOf(info.dataset, C);
  const f = sorted[0].imbalance;
  const table = [
    "<table><tr><th>method</th><th>seeds</th><th>top-1 error</th><th>head error</th>" +
    "<th>middle error</th><th>tail error</th></tr>",
    ...sorted.map((r) =>
      `<tr><td>${esc(r.label)}</td><td>${r.seeds.length}</td><td>${pct(r.top1.mean)} ± ${
        pct(r.top1.std)
      }</td><td>${pct(1 - r.head)}</td><td>${pct(1 - r.middle)}</td><td>${
        pct(1 - r.tail)
      }</td></tr>`
    ),
    "</table>",
  ].join("");
  // one line per method over the classes (head to tail): readable with a dozen methods
  const perClass = lineChart(
    sorted.map((r) => ({
      name: r.label,
      points: r.perClassAccuracy.map((v, c): [number, number] => [c, v]),
    })),
    {
      title: `accuracy per class, IF ${f}`,
      xLabel: "class",
      yLabel: "accuracy",
      width: 900,
    },
  );
  const groups = barChart(
    ["head (0-2)", "middle (3-6)", "tail (7-9)"],
    sorted.map((r) => ({ name: r.label, values: [1 - r.head, 1 - r.middle, 1 - r.tail] })),
    { title: `head / middle / tail error, IF ${f}`, xLabel: "classes", max: 1 },
  );
  const curves = lineChart(
    sorted.map((r) => ({
      name: r.label,
      points: r.curve.map((v, e): [number, number] => [e + 1, v]),
    })),
    { title: `test top-1 error per epoch, IF ${f}`, xLabel: "epoch", yLabel: "top-1 error" },
  );
  const legend = `<p>Classes, head to tail: ${
    esc(names.map((n, c) => `${c} ${n}`).join(", "))
  }.</p>`;
  return `<h2>IF ${f}</h2>${table}${legend}${perClass}${groups}${curves}`;
}

function epsSection(rows: GridPageRow[]): string {
  const meta = rows.find((r) => r.group === "grid" && r.label === "meta" && r.epsCurve);
  if (!meta?.epsCurve) return "";
  const curve = meta.epsCurve;
  return `<h2>eps per class, meta at IF ${meta.imbalance} (first seed; the paper's Figure 3)</h2>` +
    lineChart(
      curve[0].map((_, c) => ({
        name: `class ${c}`,
        points: curve.map((row, e): [number, number] => [e + 1, row[c]]),
      })),
      { title: "mean eps per class", xLabel: "meta epoch", yLabel: "mean eps" },
    );
}

function runLinks(rows: GridPageRow[]): string {
  const links = rows.flatMap((r) => r.dirs).filter((d, i, all) => all.indexOf(d) === i)
    .map((d) => `<a href="${esc(d)}/report.html">${esc(d)}</a>`);
  return links.length ? `<h2>Runs</h2><p>${links.join(" · ")}</p>` : "";
}
