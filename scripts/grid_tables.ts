/**
 * The aggregate of the reproduce grid: rows (a method at an imbalance factor over its finished
 * seeds) from the cells' summary.json and metrics.jsonl, paired per-seed differences, and the
 * Markdown tables of results/fashion-mnist-lt.md, with the paper's own CIFAR-10-LT numbers
 * for context.
 */
import { join } from "node:path";
import type { RunSummary } from "../src/train/mod.ts";

/** One run of the grid as the aggregate sees it. */
export interface GridCell {
  /** Unique id, e.g. "meta-if100-s0". */
  id: string;
  /** "grid" rows, or the "tau" sweep. */
  group: "grid" | "tau";
  /** Row label: method (and loss), or "meta tau=<tau>". */
  label: string;
  /** Imbalance factor. */
  imbalance: number;
  /** Seed (also draws the split). */
  seed: number;
  /** Directory name of the run (a cell identical to another one shares its run). */
  dir: string;
}

/** Mean, sample standard deviation and count. */
export interface MeanStd {
  /** Mean. */
  mean: number;
  /** Sample standard deviation (0 for one value). */
  std: number;
  /** Number of values. */
  n: number;
}

/** Mean and sample standard deviation. */
export function meanStd(xs: number[]): MeanStd {
  const n = xs.length;
  const mean = xs.reduce((a, b) => a + b, 0) / Math.max(n, 1);
  const v = n > 1 ? xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1) : 0;
  return { mean, std: Math.sqrt(v), n };
}

/** Classes 0-2 head, 3-6 middle, 7-9 tail (for 10 classes; thirds otherwise). */
export function groupAccuracy(perClass: number[]): { head: number; middle: number; tail: number } {
  const C = perClass.length;
  const a = Math.round(C * 0.3);
  const b = Math.round(C * 0.7);
  const avg = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / Math.max(xs.length, 1);
  return {
    head: avg(perClass.slice(0, a)),
    middle: avg(perClass.slice(a, b)),
    tail: avg(perClass.slice(b)),
  };
}

/** One row of the table: a method at an imbalance factor, over its finished seeds. */
export interface Row {
  /** Method (and loss), or "meta tau=<tau>". */
  label: string;
  /** "grid" or "tau". */
  group: "grid" | "tau";
  /** Imbalance factor. */
  imbalance: number;
  /** Seeds of the finished runs. */
  seeds: number[];
  /**
   * Headline top-1 error of each seed (order of `seeds`): the evaluation on the whole test set
   * after the last epoch where the run has one (summary `final`), else the last epoch's.
   */
  top1BySeed: number[];
  /** Mean ± std of `top1BySeed`. */
  top1: MeanStd;
  /** Images of the headline evaluation (per run; the largest when they differ). */
  testImages: number;
  /** Last-epoch top-1 error on the per-epoch (balanced subset) evaluation. */
  lastTop1: MeanStd;
  /** Best-epoch top-1 error on the per-epoch evaluation. */
  bestTop1: MeanStd;
  /** Images of the per-epoch evaluation. */
  epochTestImages: number;
  /** Mean accuracy of the head / middle / tail classes (headline evaluation, mean over seeds). */
  head: number;
  /** See `head`. */
  middle: number;
  /** See `head`. */
  tail: number;
  /** Mean over seeds of per-class accuracy (headline evaluation). */
  perClassAccuracy: number[];
  /** Per-class mean |eps| / w_y over the meta epochs (mean over seeds), where there is eps. */
  meanAbsEpsOverW: number[] | null;
  /** Smallest w + eps seen. */
  minWPlusEps: number | null;
  /** Per-class mean eps per meta epoch (first seed), for the Figure 3 plot. */
  epsCurve: number[][] | null;
  /** Mean over seeds of the per-epoch top-1 error (index = epoch; NaN where not evaluated). */
  curve: number[];
  /** Wall seconds summed over the row's runs, each as if trained from scratch. */
  wallSeconds: number;
  /** Wall seconds the row's runs spent themselves (without a shared stage 1 they forked). */
  ownSeconds: number;
  /** Run directories of the row. */
  dirs: string[];
  /** Shared stage-1 checkpoints the row's runs were forked from. */
  stage1: string[];
  /** Dev losses of the row's runs ("ce-raw" for runs from before the option existed). */
  devLosses: string[];
}

async function readSummary(dir: string): Promise<RunSummary | null> {
  try {
    return JSON.parse(await Deno.readTextFile(join(dir, "summary.json"))) as RunSummary;
  } catch {
    return null;
  }
}

/** Per-epoch records of a run (empty when absent). */
async function readMetrics(dir: string): Promise<Record<string, unknown>[]> {
  try {
    const text = await Deno.readTextFile(join(dir, "metrics.jsonl"));
    return text.split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
  } catch {
    return [];
  }
}

interface Finished {
  cell: GridCell;
  summary: RunSummary;
  history: Record<string, unknown>[];
}

/** Aggregates the finished cells (status "completed") into rows, in the order of `cells`. */
export async function aggregate(cells: GridCell[], dirOf: (c: GridCell) => string): Promise<Row[]> {
  const byRow = new Map<string, Finished[]>();
  for (const cell of cells) {
    const summary = await readSummary(dirOf(cell));
    if (!summary || summary.status !== "completed" || !summary.last || !summary.best) continue;
    const key = `${cell.group}|${cell.label}|${cell.imbalance}`;
    if (!byRow.has(key)) byRow.set(key, []);
    byRow.get(key)!.push({ cell, summary, history: await readMetrics(dirOf(cell)) });
  }
  return [...byRow.values()].map((runs) => rowOf(runs, dirOf));
}

function rowOf(runs: Finished[], dirOf: (c: GridCell) => string): Row {
  const { cell } = runs[0];
  const headline = runs.map((r) => r.summary.final ?? r.summary.last!);
  const C = headline[0].perClassAccuracy.length;
  const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(xs.length, 1);
  const groups = headline.map((h) => groupAccuracy(h.perClassAccuracy));
  const metas = runs.map((r) => r.summary.meta).filter((m) => m !== null && m !== undefined);
  const epochs = Math.max(...runs.map((r) => r.history.length));
  const curve = Array.from({ length: epochs }, (_, e) => {
    const xs = runs.map((r) => (r.history[e]?.test as { top1Error?: number } | null)?.top1Error)
      .filter((v): v is number => typeof v === "number");
    return xs.length === runs.length ? avg(xs) : NaN;
  });
  const forked = runs.map((r) => r.summary.initFrom).filter((f) => f);
  return {
    label: cell.label,
    group: cell.group,
    imbalance: cell.imbalance,
    seeds: runs.map((r) => r.cell.seed),
    top1BySeed: headline.map((h) => h.top1Error),
    top1: meanStd(headline.map((h) => h.top1Error)),
    testImages: Math.max(...headline.map((h) => h.count ?? 0)),
    lastTop1: meanStd(runs.map((r) => r.summary.last!.top1Error)),
    bestTop1: meanStd(runs.map((r) => r.summary.best!.top1Error)),
    epochTestImages: Math.max(...runs.map((r) => r.summary.last!.count ?? 0)),
    head: avg(groups.map((g) => g.head)),
    middle: avg(groups.map((g) => g.middle)),
    tail: avg(groups.map((g) => g.tail)),
    perClassAccuracy: Array.from(
      { length: C },
      (_, c) => avg(headline.map((h) => h.perClassAccuracy[c])),
    ),
    meanAbsEpsOverW: metas.length
      ? Array.from(
        { length: C },
        (_, c) => avg(metas.map((m) => Math.abs(m!.meanEpsOverW[c] ?? 0))),
      )
      : null,
    minWPlusEps: minOf(metas.flatMap((m) => m!.minWPlusEps)),
    epsCurve: epsCurve(runs[0].history),
    curve,
    wallSeconds: runs.reduce((s, r) => s + r.summary.wallSeconds, 0),
    ownSeconds: runs.reduce(
      (s, r) => s + r.summary.wallSeconds - (r.summary.initFrom?.wallSeconds ?? 0),
      0,
    ),
    dirs: runs.map((r) => dirOf(r.cell)),
    stage1: [...new Set(forked.map((f) => f!.checkpoint))],
    devLosses: [...new Set(runs.map((r) => r.summary.config.devLoss ?? "ce-raw"))],
  };
}

function minOf(xs: (number | null)[]): number | null {
  const v = xs.filter((x): x is number => x !== null && Number.isFinite(x));
  return v.length ? Math.min(...v) : null;
}

function epsCurve(history: Record<string, unknown>[]): number[][] | null {
  const curve = history
    .map((r) => (r.meta as { meanEps?: (number | null)[] } | null)?.meanEps)
    .filter((m): m is (number | null)[] => Array.isArray(m))
    .map((m) => m.map((v) => v ?? 0));
  return curve.length && curve.some((row) => row.some((v) => v !== 0)) ? curve : null;
}

/**
 * The comparisons that answer the paper's questions: does meta beat CE and CB, does eps matter
 * (meta - meta-eps0), does the deferred w_y (meta-eps0 - ce, and without ce's warm-up
 * meta-eps0 - ce-nowarmup, whose difference is w_y alone); and the other meta-learned
 * weightings against their base losses; tau values against the reference tau.
 */
export function pairedComparisons(referenceTau: number, taus: number[]): [string, string][] {
  return [
    ["meta", "ce"],
    ["meta", "cb"],
    ["meta", "meta-eps0"],
    ["meta-eps0", "ce"],
    ["meta-eps0", "ce-nowarmup"],
    ["ce", "ce-nowarmup"],
    ["cb", "ce"],
    ["mwn", "ce"],
    ["l2rw", "ce"],
    ["meta-focal", "focal"],
    ["meta-focal", "cb-focal"],
    ["meta-ldam", "ldam-drw"],
    ...taus.filter((t) => t !== referenceTau).map((t): [string, string] => [
      `meta tau=${t}`,
      "meta",
    ]),
  ];
}

/** Per-seed differences a - b of a paired comparison at one imbalance factor. */
export interface Paired {
  /** Imbalance factor. */
  imbalance: number;
  /** First row's label. */
  a: string;
  /** Second row's label. */
  b: string;
  /** Seeds both rows have. */
  seeds: number[];
  /** Headline top-1 error of a minus b, per seed. */
  diffs: number[];
}

/** Per-seed differences a - b of headline top-1 error for `pairs`, matched by seed. */
export function pairedDifferences(rows: Row[], pairs: [string, string][]): Paired[] {
  const out: Paired[] = [];
  const grid = rows.filter((r) => r.group === "grid");
  for (const imbalance of [...new Set(grid.map((r) => r.imbalance))].sort((x, y) => y - x)) {
    for (const [a, b] of pairs) {
      const ra = rows.find((r) => r.label === a && r.imbalance === imbalance);
      const rb = rows.find((r) => r.label === b && r.imbalance === imbalance);
      if (!ra || !rb) continue;
      const seeds: number[] = [], diffs: number[] = [];
      ra.seeds.forEach((seed, i) => {
        const j = rb.seeds.indexOf(seed);
        if (j < 0) return;
        seeds.push(seed);
        diffs.push(ra.top1BySeed[i] - rb.top1BySeed[j]);
      });
      if (diffs.length) out.push({ imbalance, a, b, seeds, diffs });
    }
  }
  return out;
}

const pct = (x: number) => (100 * x).toFixed(2);
const minutes = (s: number) => (s / 60).toFixed(1);

/** Where the headline figures of `rows` come from, in words. */
export function testSetWords(rows: Row[]): { headline: string; epoch: string } {
  const full = Math.max(0, ...rows.map((r) => r.testImages));
  const sub = Math.max(0, ...rows.map((r) => r.epochTestImages));
  const n = (x: number) => x.toLocaleString("en-US");
  return full > sub
    ? {
      headline: `the whole test set (${n(full)} images) after the last epoch`,
      epoch: `the balanced ${n(sub)}-image subset evaluated every epoch`,
    }
    : { headline: `the ${n(sub)}-image test set of the last epoch`, epoch: `the same set` };
}

/** The shared stage-1 runs of a table: how many, and their wall seconds in all. */
export interface StageOneTime {
  /** Number of stage-1 runs the table's runs forked. */
  runs: number;
  /** Their wall seconds, summed. */
  seconds: number;
}

/** The Markdown section of one scale: the method table, paired differences, tau sweep, time. */
export function markdown(
  rows: Row[],
  scaleName: string,
  pairs: [string, string][],
  stage1: StageOneTime = { runs: 0, seconds: 0 },
  devLoss = "ce",
): string {
  const out: string[] = [];
  if (!rows.length) {
    return `No finished cells at scale \`${scaleName}\` yet: run ` +
      `\`deno task reproduce --scale ${scaleName}\`.\n`;
  }
  const words = testSetWords(rows);
  out.push(
    `Scale \`${scaleName}\`. Top-1 error (%) on ${words.headline}, mean ± std over seeds; ` +
      `last / best: top-1 error on ${words.epoch} at the last epoch and at the best epoch; ` +
      `head / middle / tail: mean accuracy (%) of classes 0-2 / 3-6 / 7-9 on ${words.headline}; ` +
      `wall: minutes per run as if trained from scratch (a forked run counts its shared stage 1).\n`,
  );
  out.push("| method | IF | seeds | top-1 | last | best | head | middle | tail | wall/run (min) |");
  out.push("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
  const grid = rows.filter((r) => r.group === "grid").sort((a, b) =>
    b.imbalance - a.imbalance || a.label.localeCompare(b.label)
  );
  const ms = (m: MeanStd) => `${pct(m.mean)} ± ${pct(m.std)}`;
  for (const r of grid) {
    out.push(
      `| ${r.label} | ${r.imbalance} | ${r.seeds.length} | ${ms(r.top1)} | ${ms(r.lastTop1)} | ${
        ms(r.bestTop1)
      } | ${pct(r.head)} | ${pct(r.middle)} | ${pct(r.tail)} | ${
        minutes(r.wallSeconds / r.seeds.length)
      } |`,
    );
  }
  const diffs = pairedDifferences(rows, pairs);
  if (diffs.length) {
    out.push(
      "\nPaired differences of top-1 error (the column above; percentage points; same seed, " +
        "same split): mean ± std over the seeds both rows have; negative means the first is better.\n",
    );
    out.push("| IF | comparison | seeds | difference | per seed |");
    out.push("|--:|---|--:|--:|---|");
    for (const d of diffs) {
      const m = meanStd(d.diffs);
      out.push(
        `| ${d.imbalance} | ${d.a} − ${d.b} | ${d.diffs.length} | ${pct(m.mean)} ± ${
          pct(m.std)
        } | ${d.diffs.map((x) => pct(x)).join(", ")} |`,
      );
    }
  }
  out.push(...tauSection(rows));
  out.push(...devLossNote(rows, devLoss));
  out.push("", timeLine(rows, stage1));
  return out.join("\n") + "\n";
}

/**
 * Rows of meta with LDAM whose runs used another dev loss than `devLoss` (the options differ
 * only on the cosine head): named, so a table never passes them off as the current default.
 */
function devLossNote(rows: Row[], devLoss: string): string[] {
  const stale = rows.filter((r) =>
    r.group === "grid" && r.label === "meta-ldam" && r.devLosses.some((d) => d !== devLoss)
  );
  if (!stale.length) return [];
  const used = [...new Set(stale.flatMap((r) => r.devLosses))].join(", ");
  return [
    `\nNote: the meta-ldam runs at IF ${stale.map((r) => r.imbalance).join(" and ")} used the ` +
    `dev loss ${used} (before \`--dev-loss\` existed: cross-entropy on unscaled cosines), not ` +
    `the default ${devLoss}; remove their folders and rerun them to update the rows.`,
  ];
}

function tauSection(rows: Row[]): string[] {
  const taus = rows.filter((r) => r.group === "tau");
  if (!taus.length) return [];
  const out = [
    "\nTau sweep (meta, IF 100): mean |eps| / w_y per class over the meta epochs.\n",
    "| tau | seeds | top-1 | min w+eps | mean abs(eps)/w_y, classes 0..C-1 |",
    "|--:|--:|--:|--:|---|",
  ];
  for (const r of taus.sort((a, b) => a.label.localeCompare(b.label, "en", { numeric: true }))) {
    out.push(
      `| ${r.label.replace("meta tau=", "")} | ${r.seeds.length} | ${pct(r.top1.mean)} ± ${
        pct(r.top1.std)
      } | ${r.minWPlusEps?.toExponential(3) ?? "-"} | ${
        (r.meanAbsEpsOverW ?? []).map((v) => v.toExponential(1)).join(" ")
      } |`,
    );
  }
  return out;
}

/** Wall time of the table's runs: as if each trained alone, and what was actually spent. */
function timeLine(rows: Row[], stage1: StageOneTime): string {
  // runs shared by two rows (the reference tau is the meta row) count once
  const seen = new Set<string>();
  let asIf = 0, own = 0;
  for (const r of rows) {
    const fresh = r.dirs.filter((d) => !seen.has(d));
    fresh.forEach((d) => seen.add(d));
    const share = fresh.length / Math.max(r.dirs.length, 1);
    asIf += r.wallSeconds * share;
    own += r.ownSeconds * share;
  }
  const h = (s: number) => (s / 3600).toFixed(2);
  const spent = stage1.runs
    ? `; spent: ${h(own + stage1.seconds)} h, ${h(own)} h in the runs themselves and ` +
      `${h(stage1.seconds)} h in ${stage1.runs} shared stage-1 runs they forked ` +
      `(\`stage1-*\` folders)`
    : "";
  return `Wall time: ${h(asIf)} h for the ${seen.size} runs as if each trained alone${spent}.`;
}

/**
 * The paper's own numbers for context: Table 2 of Jamal et al., "Rethinking Class-Balanced
 * Methods for Long-Tailed Visual Recognition from a Domain Adaptation Perspective" (CVPR 2020):
 * test top-1 error (%) of ResNet-32 on CIFAR-10-LT, 200 epochs; "*" marks numbers the paper
 * quotes from the Meta-Weight-Net paper. [row, IF 200, 100, 50, 20, 10, 1].
 */
export const PAPER_TABLE2: [string, ...string[]][] = [
  ["Cross-entropy training", "34.32", "29.64", "25.19", "17.77", "13.61", "7.53/7.11*"],
  ["Class-balanced cross-entropy loss", "31.11", "27.63", "21.95", "15.64", "13.23", "7.53/7.11*"],
  ["Class-balanced fine-tuning", "33.76", "28.66", "22.56", "16.78", "16.83", "7.08"],
  ["Class-balanced fine-tuning*", "33.92", "28.67", "22.58", "13.73", "13.58", "6.77"],
  ["L2RW", "33.75", "27.77", "23.55", "18.65", "17.88", "11.60"],
  ["L2RW*", "33.49", "25.84", "21.07", "16.90", "14.81", "10.75"],
  ["Meta-weight net", "32.8", "26.43", "20.9", "15.55", "12.45", "7.19"],
  ["Ours with cross-entropy loss", "29.34", "23.59", "19.49", "13.54", "11.15", "7.21"],
  ["Focal loss", "34.71", "29.62", "23.29", "17.24", "13.34", "6.97"],
  ["Class-balanced focal loss", "31.85", "25.43", "20.78", "16.22", "12.52", "6.97"],
  ["Ours with focal loss", "25.57", "21.1", "17.12", "13.9", "11.63", "7.19"],
  ["LDAM loss (as reported by its authors)", "-", "26.65", "-", "-", "13.04", "11.37"],
  ["LDAM-DRW (as reported by its authors)", "-", "22.97", "-", "-", "11.84", "-"],
  ["Ours with LDAM loss", "22.77", "20.0", "17.77", "15.63", "12.6", "10.29"],
];

/** The paper's Table 2 as a Markdown section, marked as the paper's. */
export function paperSection(): string {
  const out = [
    "## For context: the paper's own numbers (not ours)",
    "",
    "Table 2 of Jamal et al., _Rethinking Class-Balanced Methods for Long-Tailed Visual " +
    "Recognition from a Domain Adaptation Perspective_ (CVPR 2020): test top-1 error (%) of " +
    "ResNet-32 on CIFAR-10-LT (5,000 head-class images, 200 epochs, stage 2 from epoch 160), as " +
    "printed in the paper; * marks numbers it quotes from the Meta-Weight-Net paper. Another " +
    "dataset, model and scale than the tables above: context, not a comparison.",
    "",
    "| method (the paper's rows) | IF 200 | IF 100 | IF 50 | IF 20 | IF 10 | IF 1 |",
    "|---|--:|--:|--:|--:|--:|--:|",
    ...PAPER_TABLE2.map((r) => `| ${r.join(" | ")} |`),
  ];
  return out.join("\n") + "\n";
}
