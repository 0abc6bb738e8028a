/**
 * `deno task reproduce`: the paper's comparison on long-tailed Fashion-MNIST as a resumable grid
 * of (method x imbalance factor x seed), plus the tau sweep of the meta method, aggregated into
 * `results/fashion-mnist-lt.{json,md,html}`.
 *
 * Every cell is one `train()` run in its own directory. A finished cell (summary.json with status
 * "completed") is skipped; a killed one resumes from its last epoch checkpoint, so the table can be
 * built across several sittings. The seed also changes the data split.
 *
 *   deno task reproduce                      # the whole default grid at --scale small
 *   deno task reproduce --only meta,ce       # cells whose id contains "meta" or "ce"
 *   deno task reproduce --aggregate          # only rebuild the table from finished cells
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { Gpu } from "../src/gpu/runtime.ts";
import { train, type TrainOptions } from "../src/train/mod.ts";
import { presetConfig } from "../src/train/config.ts";
import { rejectRepeatedFlags, UsageError } from "../src/train/cli.ts";
import { reportError } from "../src/errors.ts";
import { barChart, esc, lineChart } from "../src/report/svg.ts";
import type { RunSummary } from "../src/train/mod.ts";

/** Run sizes. `small` is the trainer's default preset (1.5-5 minutes a cell on 2 cores). */
export const SCALES: Record<string, TrainOptions> = {
  /** For tests: seconds a cell. */
  tiny: {
    preset: "default",
    maxPerClass: 20,
    testPerClass: 10,
    devPerClass: 2,
    epochs: 2,
    metaStart: 1,
    lrDecayEpochs: [1],
    batch: 16,
  },
  /** ResNet-8, 200 head-class images, 15 epochs: the default preset. */
  small: { preset: "default" },
  /** The paper's recipe (ResNet-32, 200 epochs, meta from 160) on the full long-tailed set. */
  paper: {
    preset: "paper-cifar",
    dataset: "fashion-mnist",
    maxPerClass: null,
    testPerClass: null,
  },
};

/** Methods of the comparison, with the loss of the meta family where it matters. */
export const GRID_METHODS: { method: string; loss?: string }[] = [
  { method: "ce" },
  { method: "cb" },
  { method: "focal" },
  { method: "cb-focal" },
  { method: "ldam-drw" },
  { method: "cb-finetune" },
  { method: "l2rw" },
  { method: "mwn" },
  { method: "meta", loss: "ce" },
  { method: "meta", loss: "focal" },
  { method: "meta", loss: "ldam" },
  { method: "meta-eps0" },
];

/** tau values of the sweep (the reference code uses 0.01). */
export const TAUS = [0.01, 1, 100, 1e4];

/** One run of the grid. */
export interface Cell {
  id: string;
  group: "grid" | "tau";
  /** Row label: method (and loss). */
  label: string;
  imbalance: number;
  seed: number;
  tau?: number;
  /** Directory name of the run (a cell identical to another one shares its run). */
  dir: string;
  options: TrainOptions;
}

/** Every cell for the given factors and seeds. */
export function gridCells(imbalances: number[], seeds: number[], scale: TrainOptions): Cell[] {
  const cells: Cell[] = [];
  for (const imbalance of imbalances) {
    for (const { method, loss } of GRID_METHODS) {
      const label = loss && loss !== "ce" ? `${method}-${loss}` : method;
      for (const seed of seeds) {
        cells.push({
          id: `${label}-if${imbalance}-s${seed}`,
          group: "grid",
          label,
          imbalance,
          seed,
          dir: `${label}-if${imbalance}-s${seed}`,
          options: { ...scale, method, ...(loss ? { loss } : {}), imbalance, seed },
        } as Cell);
      }
    }
  }
  const presetTau = presetConfig(scale.preset ?? "default").tau;
  for (const tau of TAUS) {
    for (const seed of seeds) {
      cells.push({
        id: `tau${tau}-if100-s${seed}`,
        group: "tau",
        label: `meta tau=${tau}`,
        imbalance: 100,
        seed,
        tau,
        // The reference tau is the meta row's own setting: the same run, not a second copy.
        dir: tau === presetTau ? `meta-if100-s${seed}` : `tau${tau}-if100-s${seed}`,
        options: { ...scale, method: "meta", loss: "ce", imbalance: 100, seed, tau },
      } as Cell);
    }
  }
  return cells;
}

async function readSummary(dir: string): Promise<RunSummary | null> {
  try {
    return JSON.parse(await Deno.readTextFile(join(dir, "summary.json"))) as RunSummary;
  } catch {
    return null;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Mean and sample standard deviation. */
export function meanStd(xs: number[]): { mean: number; std: number; n: number } {
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
  label: string;
  group: "grid" | "tau";
  imbalance: number;
  seeds: number[];
  lastTop1: { mean: number; std: number; n: number };
  /** Last-epoch top-1 error of each seed, in the order of `seeds`. */
  lastTop1BySeed: number[];
  bestTop1: { mean: number; std: number; n: number };
  head: number;
  middle: number;
  tail: number;
  /** Mean over seeds of per-class accuracy (last epoch). */
  perClassAccuracy: number[];
  /** Meta statistics (mean over seeds) where the method has them. */
  meanAbsEpsOverW: number[] | null;
  minWPlusEps: number | null;
  /** Per-class mean eps per meta epoch (first seed), for the Figure 3 plot. */
  epsCurve: number[][] | null;
  /** Wall time summed over the row's runs, and the run directories it came from. */
  wallSeconds: number;
  dirs: string[];
}

/** Aggregates the finished cells into rows. */
export async function aggregate(cells: Cell[], dirOf: (c: Cell) => string): Promise<Row[]> {
  const byRow = new Map<string, { cell: Cell; summary: RunSummary; dir: string }[]>();
  for (const cell of cells) {
    const s = await readSummary(dirOf(cell));
    if (!s || s.status !== "completed" || !s.last || !s.best) continue;
    const key = `${cell.group}|${cell.label}|${cell.imbalance}`;
    if (!byRow.has(key)) byRow.set(key, []);
    byRow.get(key)!.push({ cell, summary: s, dir: dirOf(cell) });
  }
  const rows: Row[] = [];
  for (const runs of byRow.values()) {
    const { cell } = runs[0];
    const C = runs[0].summary.last!.perClassAccuracy.length;
    const perClass = Array.from(
      { length: C },
      (_, c) => runs.reduce((s, r) => s + r.summary.last!.perClassAccuracy[c], 0) / runs.length,
    );
    const groups = runs.map((r) => groupAccuracy(r.summary.last!.perClassAccuracy));
    const metas = runs.map((r) => r.summary.meta).filter((m) => m !== null);
    let meanAbsEpsOverW: number[] | null = null;
    let minWPlusEps: number | null = null;
    if (metas.length > 0) {
      meanAbsEpsOverW = Array.from({ length: C }, (_, c) => {
        const xs = metas.map((m) => Math.abs(m!.meanEpsOverW[c] ?? 0));
        return xs.reduce((a, b) => a + b, 0) / xs.length;
      });
      minWPlusEps = Math.min(
        ...metas.flatMap((m) => m!.minWPlusEps.filter((v): v is number => v !== null)),
      );
    }
    rows.push({
      label: cell.label,
      group: cell.group,
      imbalance: cell.imbalance,
      seeds: runs.map((r) => r.cell.seed),
      lastTop1: meanStd(runs.map((r) => r.summary.last!.top1Error)),
      lastTop1BySeed: runs.map((r) => r.summary.last!.top1Error),
      bestTop1: meanStd(runs.map((r) => r.summary.best!.top1Error)),
      head: groups.reduce((s, g) => s + g.head, 0) / groups.length,
      middle: groups.reduce((s, g) => s + g.middle, 0) / groups.length,
      tail: groups.reduce((s, g) => s + g.tail, 0) / groups.length,
      perClassAccuracy: perClass,
      meanAbsEpsOverW,
      minWPlusEps: Number.isFinite(minWPlusEps) ? minWPlusEps : null,
      epsCurve: await epsCurve(runs[0].dir),
      wallSeconds: runs.reduce((s, r) => s + r.summary.wallSeconds, 0),
      dirs: runs.map((r) => r.dir),
    });
  }
  return rows;
}

async function epsCurve(dir: string): Promise<number[][] | null> {
  let text: string;
  try {
    text = await Deno.readTextFile(join(dir, "metrics.jsonl"));
  } catch {
    return null;
  }
  const curve: number[][] = [];
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    const rec = JSON.parse(line);
    if (rec.meta?.meanEps) curve.push(rec.meta.meanEps.map((v: number | null) => v ?? 0));
  }
  return curve.length ? curve : null;
}

const pct = (x: number) => (100 * x).toFixed(2);

/** The comparisons that answer the paper's questions: does meta beat CE and CB, does eps matter. */
export const PAIRED: [string, string][] = [
  ["meta", "ce"],
  ["meta", "cb"],
  ["meta", "meta-eps0"],
  ["meta-eps0", "ce"],
  ["mwn", "ce"],
  ["meta-focal", "focal"],
  ["meta-ldam", "ldam-drw"],
  ...TAUS.filter((tau) => tau !== presetConfig("default").tau).map((
    tau,
  ): [string, string] => [`meta tau=${tau}`, "meta"]),
];

/** Per-seed differences a - b of last-epoch top-1 error for the {@linkcode PAIRED} rows. */
export function pairedDifferences(
  rows: Row[],
): { imbalance: number; a: string; b: string; diffs: number[] }[] {
  const out: { imbalance: number; a: string; b: string; diffs: number[] }[] = [];
  const grid = rows.filter((r) => r.group === "grid");
  for (const imbalance of [...new Set(grid.map((r) => r.imbalance))].sort((x, y) => y - x)) {
    for (const [a, b] of PAIRED) {
      const ra = rows.find((r) => r.label === a && r.imbalance === imbalance);
      const rb = rows.find((r) => r.label === b && r.imbalance === imbalance);
      if (!ra || !rb) continue;
      const diffs = ra.seeds.flatMap((seed, i) => {
        const j = rb.seeds.indexOf(seed);
        return j < 0 ? [] : [ra.lastTop1BySeed[i] - rb.lastTop1BySeed[j]];
      });
      if (diffs.length) out.push({ imbalance, a, b, diffs });
    }
  }
  return out;
}

/** The Markdown table of the rows. */
export function markdown(rows: Row[], scaleName: string): string {
  const out: string[] = [];
  out.push(
    `Scale \`${scaleName}\`. Top-1 error (%) on the balanced test set, mean ± std over seeds;`,
  );
  out.push("head / middle / tail: mean last-epoch accuracy (%) of classes 0-2 / 3-6 / 7-9.\n");
  out.push("| method | IF | seeds | top-1 last | top-1 best | head | middle | tail | wall (min) |");
  out.push("|---|--:|--:|--:|--:|--:|--:|--:|--:|");
  const sorted = [...rows].filter((r) => r.group === "grid").sort((a, b) =>
    b.imbalance - a.imbalance || a.label.localeCompare(b.label)
  );
  for (const r of sorted) {
    out.push(
      `| ${r.label} | ${r.imbalance} | ${r.seeds.length} | ${pct(r.lastTop1.mean)} ± ${
        pct(r.lastTop1.std)
      } | ${pct(r.bestTop1.mean)} ± ${pct(r.bestTop1.std)} | ${pct(r.head)} | ${pct(r.middle)} | ${
        pct(r.tail)
      } | ${(r.wallSeconds / 60).toFixed(1)} |`,
    );
  }
  const pairs = pairedDifferences(rows);
  if (pairs.length) {
    out.push(
      "\nPaired differences of top-1 error (last epoch, percentage points; same seed, same split):",
    );
    out.push("mean ± std over the seeds both rows have; negative means the first is better.\n");
    out.push("| IF | comparison | seeds | difference | per seed |");
    out.push("|--:|---|--:|--:|---|");
    for (const d of pairs) {
      out.push(
        `| ${d.imbalance} | ${d.a} − ${d.b} | ${d.diffs.length} | ${pct(meanStd(d.diffs).mean)} ± ${
          pct(meanStd(d.diffs).std)
        } | ${d.diffs.map((x) => pct(x)).join(", ")} |`,
      );
    }
  }
  // Runs shared by two rows (the reference tau is the meta row) count once.
  const seen = new Set<string>();
  const total = rows.reduce((t, r) => {
    const fresh = r.dirs.filter((d) => !seen.has(d));
    fresh.forEach((d) => seen.add(d));
    return t + r.wallSeconds * fresh.length / Math.max(r.dirs.length, 1);
  }, 0);
  out.push(
    `\nWall time of the runs in this table: ${(total / 3600).toFixed(2)} h (sum over runs).`,
  );
  const taus = rows.filter((r) => r.group === "tau");
  if (taus.length) {
    out.push("\nTau sweep (meta, IF 100): mean |eps| / w_y per class over the meta epochs.\n");
    out.push("| tau | seeds | top-1 last | min w+eps | mean abs(eps)/w_y, classes 0..C-1 |");
    out.push("|--:|--:|--:|--:|---|");
    for (const r of taus.sort((a, b) => a.label.localeCompare(b.label, "en", { numeric: true }))) {
      out.push(
        `| ${r.label.replace("meta tau=", "")} | ${r.seeds.length} | ${pct(r.lastTop1.mean)} ± ${
          pct(r.lastTop1.std)
        } | ${r.minWPlusEps?.toExponential(3) ?? "-"} | ${
          (r.meanAbsEpsOverW ?? []).map((v) => v.toExponential(1)).join(" ")
        } |`,
      );
    }
  }
  return out.join("\n") + "\n";
}

export function htmlReport(rows: Row[], md: string): string {
  const at100 = (label: string) =>
    rows.find((r) => r.group === "grid" && r.label === label && r.imbalance === 100);
  const fig2 = ["ce", "cb", "meta"].map((l) => ({ name: l, row: at100(l) })).filter((s) => s.row);
  const meta = at100("meta");
  return `<!doctype html><html><head><meta charset="utf-8"><title>tailgrad: long-tailed Fashion-MNIST</title>
<style>body{font-family:sans-serif;max-width:900px;margin:2em auto}pre{background:#f6f6f6;padding:1em;overflow:auto}</style>
</head><body><h1>Long-tailed Fashion-MNIST: the paper's comparison</h1>
<pre>${esc(md)}</pre>
<h2>Per-class accuracy at IF 100 (Figure 2)</h2>
${
    fig2.length
      ? barChart(
        fig2[0].row!.perClassAccuracy.map((_, c) => `${c}`),
        fig2.map((s) => ({ name: s.name, values: s.row!.perClassAccuracy })),
        { title: "last-epoch accuracy per class", xLabel: "class", max: 1 },
      )
      : "<p>no finished CE / CB / meta runs at IF 100 yet</p>"
  }
<h2>Per-class mean eps over the meta epochs (Figure 3)</h2>
${
    meta?.epsCurve
      ? lineChart(
        meta.epsCurve[0].map((_, c) => ({
          name: `class ${c}`,
          points: meta.epsCurve!.map((row, e): [number, number] => [e + 1, row[c]]),
        })),
        {
          title: "mean eps per class, meta (CE), IF 100",
          xLabel: "meta epoch",
          yLabel: "mean eps",
        },
      )
      : "<p>no finished meta run at IF 100 yet</p>"
  }
</body></html>
`;
}

function parseFlags(args: string[]) {
  try {
    const parsed = parseArgs({
      args,
      options: {
        scale: { type: "string", default: "small" },
        imbalance: { type: "string", default: "100,10" },
        seeds: { type: "string", default: "0,1,2" },
        only: { type: "string" },
        "results-dir": { type: "string", default: "results" },
        "data-dir": { type: "string" },
        aggregate: { type: "boolean", default: false },
        "no-tau": { type: "boolean", default: false },
        help: { type: "boolean", default: false },
      },
      strict: true,
      tokens: true,
    });
    rejectRepeatedFlags(parsed.tokens);
    return parsed.values;
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`${e instanceof Error ? e.message : e}`);
  }
}

async function main(): Promise<void> {
  const values = parseFlags(Deno.args);
  if (values.help) {
    console.log(
      "deno task reproduce [--scale tiny|small|paper] [--imbalance 100,10] [--seeds 0,1,2]\n" +
        "  [--only substr,substr] [--results-dir results] [--data-dir DIR] [--aggregate] [--no-tau]",
    );
    return;
  }
  const scale = SCALES[values.scale!];
  if (!scale) {
    throw new UsageError(
      `invalid --scale ${values.scale}: expected one of ${Object.keys(SCALES).join(", ")}`,
    );
  }
  const nums = (flag: string, s: string) =>
    s.split(",").map((x) => {
      const v = Number(x);
      if (!Number.isFinite(v) || x.trim() === "") {
        throw new UsageError(`invalid --${flag} ${s}: expected numbers, e.g. 100,10`);
      }
      return v;
    });
  let cells = gridCells(nums("imbalance", values.imbalance!), nums("seeds", values.seeds!), scale);
  if (values["no-tau"]) cells = cells.filter((c) => c.group !== "tau");
  const only = values.only?.split(",").filter(Boolean);
  const selected = only ? cells.filter((c) => only.some((o) => c.id.includes(o))) : cells;
  const root = join(values["results-dir"]!, "fashion-mnist-lt", values.scale!);
  const dirOf = (c: Cell) => join(root, c.dir);
  if (!values.aggregate) {
    const gpu = await Gpu.create();
    try {
      for (const [i, cell] of selected.entries()) {
        const dir = dirOf(cell);
        const done = await readSummary(dir);
        if (done?.status === "completed") {
          console.log(`[${i + 1}/${selected.length}] ${cell.id}: done, skipped`);
          continue;
        }
        const resume = await exists(join(dir, "checkpoint.safetensors"));
        console.log(
          `[${i + 1}/${selected.length}] ${cell.id}: ${resume ? "resuming" : "starting"}`,
        );
        const t0 = performance.now();
        const s = await train({
          ...cell.options,
          ...(values["data-dir"] ? { dataDir: values["data-dir"] } : {}),
          out: dir,
          resume,
          gpu,
          progress: null,
        });
        console.log(
          `  ${s.status}: top-1 error ${s.last ? pct(s.last.top1Error) : "-"}% in ${
            ((performance.now() - t0) / 1000).toFixed(0)
          } s`,
        );
      }
    } finally {
      gpu.dispose();
    }
  }
  const rows = await aggregate(cells, dirOf);
  const md = markdown(rows, values.scale!);
  const base = join(values["results-dir"]!, "fashion-mnist-lt");
  await Deno.mkdir(values["results-dir"]!, { recursive: true });
  await Deno.writeTextFile(`${base}.json`, JSON.stringify({ scale: values.scale, rows }, null, 1));
  await Deno.writeTextFile(`${base}.md`, md);
  await Deno.writeTextFile(`${base}.html`, htmlReport(rows, md));
  console.log(md);
}

if (import.meta.main) {
  try {
    await main();
  } catch (e) {
    Deno.exit(reportError(e));
  }
}
