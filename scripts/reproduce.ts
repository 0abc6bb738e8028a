/**
 * `deno task reproduce`: the paper's comparison on long-tailed Fashion-MNIST as a resumable grid
 * of (method x imbalance factor x seed) plus the tau sweep of the meta method, at a scale
 * (`small` = the default preset, `medium`), aggregated into results/fashion-mnist-lt.{md,json},
 * results/fashion-mnist-lt.html and one report.html per scale.
 *
 * Every cell is one `train()` run in results/fashion-mnist-lt/<scale>/<cell>/. A finished cell
 * (summary.json with status "completed") is skipped; a killed one resumes from its last epoch
 * checkpoint, so the grid survives a kill at any moment and can be built over several sittings.
 * Cells whose epochs before stage 2 are the same run (ce, meta, meta-eps0, the tau sweep and
 * cb-finetune with cross-entropy; focal and meta-focal; ldam-drw and meta-ldam) fork one shared
 * stage-1 run per (loss, IF, seed), stage1-<loss>-if<IF>-s<seed>/, trained up to `metaStart`
 * (`--init-from`, bit for bit the run from scratch: test/train_fork_test.ts).
 */
import { dirname, join } from "node:path";
import { Gpu } from "../src/gpu/runtime.ts";
import { findDataset } from "../src/data/load.ts";
import { train, type TrainOptions } from "../src/train/mod.ts";
import {
  type Method,
  methodLoss,
  resolveTrainConfig,
  type TrainConfig,
} from "../src/train/config.ts";
import { checkFork, STAGE1_RECIPE } from "../src/train/fork.ts";
import type { RunSummary } from "../src/train/mod.ts";
import {
  checkOutFolder,
  type FlagTable,
  parseFlags,
  shownValue,
  UsageError,
  usageLines,
} from "../src/cli/flags.ts";
import { reportError, UserError } from "../src/errors.ts";
import { renderGridPage } from "../src/report/grid.ts";
import { esc } from "../src/report/svg.ts";
import {
  aggregate,
  type GridCell,
  markdown,
  pairedComparisons,
  paperSection,
  type Row,
  type StageOneTime,
  testSetWords,
} from "./grid_tables.ts";

export {
  groupAccuracy,
  meanStd,
  pairedComparisons,
  pairedDifferences,
  type Row,
} from "./grid_tables.ts";

/** The parts of a grid, run in this order: `--only` picks some of them. */
export const LINES = ["first-line", "second-line", "tau-sweep"] as const;
/** A part of the grid. */
export type Line = typeof LINES[number];

/** What a scale runs: its settings, the methods of each line and their imbalance factors. */
export interface ScalePlan {
  /** Settings of every cell (over the preset they name). */
  options: TrainOptions;
  /** First line: the paper's question (does meta beat CE and CB; does eps matter). */
  first: string[];
  /** Imbalance factors of the first line. */
  firstFactors: number[];
  /** Second line: the other baselines and meta with other losses. */
  second: string[];
  /** Imbalance factors of the second line. */
  secondFactors: number[];
  /** tau values of the sweep (meta, IF 100); the preset's own tau is the meta cell itself. */
  taus: number[];
}

/**
 * `ce-nowarmup` is the control that makes `meta-eps0 - ce` readable: `ce` warms up as Cui's code
 * does and the meta family does not, so `ce-nowarmup` (CE without the warm-up: the meta family's
 * stage 1 carried to the end) isolates the deferred `w_y` from the warm-up. It forks the meta
 * family's stage 1 and costs its stage-2 epochs only.
 */
const FIRST = ["ce", "cb", "meta-eps0", "meta", "ce-nowarmup"];
const SMALL_SECOND = [
  "focal",
  "cb-focal",
  "ldam-drw",
  "cb-finetune",
  "l2rw",
  "mwn",
  "meta-focal",
  "meta-ldam",
];
const SMALL_PLAN = {
  first: FIRST,
  firstFactors: [100, 10],
  second: SMALL_SECOND,
  secondFactors: [100, 10],
  taus: [0.01, 1, 100, 1e4],
};

/** The scales. `small` is the trainer's default preset, `medium` its medium preset. */
export const SCALES: Record<string, ScalePlan> = {
  /** For tests: seconds a cell. */
  tiny: {
    ...SMALL_PLAN,
    options: {
      preset: "default",
      maxPerClass: 20,
      testPerClass: 10,
      devPerClass: 2,
      epochs: 2,
      metaStart: 1,
      lrDecayEpochs: [1],
      batch: 16,
    },
  },
  /** ResNet-8, 200 head-class images, 15 epochs: the default preset (1.5-5 min a cell). */
  small: { ...SMALL_PLAN, options: { preset: "default" } },
  /** ResNet-8, 1000 head-class images, 30 epochs, final figures on the whole test set. */
  medium: {
    options: { preset: "medium" },
    first: FIRST,
    firstFactors: [100, 10],
    second: ["focal", "meta-focal", "cb-focal", "ldam-drw", "meta-ldam", "mwn", "l2rw"],
    secondFactors: [100],
    taus: [0.01, 1, 100],
  },
  /** The paper's recipe (ResNet-32, 200 epochs, meta from 160) on the full long-tailed set. */
  paper: {
    ...SMALL_PLAN,
    options: { preset: "paper-cifar", dataset: "fashion-mnist", maxPerClass: null },
  },
};

/** Scales in the order of the aggregate (the largest measured first). */
const SCALE_ORDER = ["medium", "small", "paper", "tiny"];

/** A shared stage-1 run: trained up to `untilEpoch`, then forked by the cells of its recipe. */
export interface StageOne {
  /** Directory name, stage1-<loss>-if<IF>-s<seed>. */
  dir: string;
  /** Its settings: the plain method of the loss, with the cells' scale, IF and seed. */
  options: TrainOptions;
  /** The cells' stage-2 start. */
  untilEpoch: number;
}

/** One run of the grid. */
export interface Cell extends GridCell {
  /** The part of the grid it belongs to. */
  line: Line;
  /** Its settings. */
  options: TrainOptions;
  /** The stage-1 run it forks, or null when its stage 1 is its own. */
  stage1: StageOne | null;
  /** tau of a tau-sweep cell. */
  tau?: number;
}

/** method, loss and recipe of a row label ("meta-focal" = meta with the focal loss). */
function methodOf(label: string): TrainOptions {
  const m = /^meta-(focal|ldam)$/.exec(label);
  if (m) return { method: "meta", loss: m[1] as TrainOptions["loss"] };
  if (label === "ce-nowarmup") return { method: "ce", warmupEpochs: 0 };
  return label === "meta" ? { method: "meta", loss: "ce" } : { method: label as Method };
}

/**
 * The shared stage-1 run a cell forks: the plain run of its loss (ce, focal or ldam, weights
 * 1) with the cell's own recipe settings, when forking it equals the cell from scratch
 * ({@linkcode checkFork} decides); else null. Its directory names the loss, IF, seed and a
 * digest of the recipe, so cells whose recipes differ (ce warms up, meta does not) never share.
 */
export function stageOneOf(options: TrainOptions): StageOne | null {
  const cfg = resolveTrainConfig(options);
  const loss = methodLoss(cfg.method, cfg.loss);
  if (cfg.metaStart <= 0 || cfg.metaStart >= cfg.epochs) return null;
  const { tau: _t, loss: _l, ...rest } = options;
  const recipe: Partial<TrainConfig> = {
    reduction: cfg.reduction,
    warmupEpochs: cfg.warmupEpochs,
    lastBatch: cfg.lastBatch,
    lrSchedule: cfg.lrSchedule,
    ...(cfg.warmupEpochs > 0 ? { warmup: cfg.warmup } : {}),
    ...(loss === "ldam" ? { classifierInit: cfg.classifierInit } : { biasInit: cfg.biasInit }),
    ...(loss === "focal" ? { focalForm: cfg.focalForm } : {}),
  };
  const stageOptions: TrainOptions = { ...rest, ...recipe, method: loss as Method };
  try {
    checkFork(resolveTrainConfig(stageOptions), cfg.metaStart, cfg, "stage 1");
  } catch (e) {
    if (e instanceof UserError) return null;
    throw e;
  }
  const keys = STAGE1_RECIPE.map((k) => cfg[k]).concat(cfg.warmup, cfg.focalForm);
  return {
    dir: `stage1-${loss}-if${cfg.imbalance}-s${cfg.seed}-${digest(JSON.stringify(keys))}`,
    options: stageOptions,
    untilEpoch: cfg.metaStart,
  };
}

/** A short, stable digest of a string (FNV-1a, 32 bits, hex). */
function digest(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return (h >>> 0).toString(16).padStart(8, "0").slice(0, 6);
}

/** Every cell of a scale for the given factors and seeds, in the order they run. */
export function planCells(plan: ScalePlan, imbalances: number[], seeds: number[]): Cell[] {
  const cells: Cell[] = [];
  const presetTau = resolveTrainConfig(plan.options).tau;
  const add = (line: Line, label: string, imbalance: number, seed: number, tau?: number) => {
    const id = tau === undefined ? `${label}-if${imbalance}-s${seed}` : `tau${tau}-if100-s${seed}`;
    const options: TrainOptions = {
      ...plan.options,
      ...methodOf(label),
      imbalance,
      seed,
      ...(tau === undefined ? {} : { tau }),
    };
    cells.push({
      id,
      line,
      group: tau === undefined ? "grid" : "tau",
      label: tau === undefined ? label : `meta tau=${tau}`,
      imbalance,
      seed,
      // the reference tau is the meta row's own setting: the same run, not a second copy
      dir: tau === presetTau ? `meta-if100-s${seed}` : id,
      options,
      stage1: stageOneOf(options),
      ...(tau === undefined ? {} : { tau }),
    });
  };
  const line = (name: Line, methods: string[], factors: number[]) => {
    for (const f of factors.filter((x) => imbalances.includes(x))) {
      for (const seed of seeds) for (const m of methods) add(name, m, f, seed);
    }
  };
  line("first-line", plan.first, plan.firstFactors);
  line("second-line", plan.second, plan.secondFactors);
  if (imbalances.includes(100)) {
    for (const seed of seeds) for (const tau of plan.taus) add("tau-sweep", "meta", 100, seed, tau);
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

/** How a sitting runs its cells. */
interface Sitting {
  gpu: Gpu;
  root: string;
  dataDir?: string;
  share: boolean;
}

/** Trains a cell's shared stage-1 run up to stage 2 (resuming it); returns its checkpoint. */
async function ensureStageOne(s: Sitting, stage1: StageOne): Promise<string> {
  const dir = join(s.root, stage1.dir);
  const ckpt = join(dir, "checkpoint.safetensors");
  const done = await readSummary(dir);
  if (done && done.epochsDone >= stage1.untilEpoch && await exists(ckpt)) return ckpt;
  console.log(`  shared stage 1 ${stage1.dir}: training epochs 1-${stage1.untilEpoch}`);
  const t0 = performance.now();
  const r = await train({
    ...stage1.options,
    ...(s.dataDir ? { dataDir: s.dataDir } : {}),
    out: dir,
    resume: "if-any", // a stage 1 killed before its first checkpoint starts again
    untilEpoch: stage1.untilEpoch,
    gpu: s.gpu,
    progress: null,
  });
  console.log(
    `  shared stage 1 ${stage1.dir}: ${r.epochsDone} epochs, ${r.wallSeconds.toFixed(0)} s ` +
      `(${((performance.now() - t0) / 1000).toFixed(0)} s in this sitting)`,
  );
  return ckpt;
}

/** Runs (or resumes, or skips) one cell; prints its wall time. */
async function runCell(s: Sitting, cell: Cell, tag: string): Promise<void> {
  const dir = join(s.root, cell.dir);
  const done = await readSummary(dir);
  if (done?.status === "completed") {
    console.log(`${tag} ${cell.id}: done, skipped`);
    return;
  }
  const own = await exists(join(dir, "checkpoint.safetensors"));
  // a cell with a checkpoint of its own continues it, however it began
  const fork = !own && s.share && cell.stage1 ? await ensureStageOne(s, cell.stage1) : null;
  console.log(
    `${tag} ${cell.id}: ${own ? "resuming" : fork ? `forking ${cell.stage1!.dir}` : "starting"}`,
  );
  const t0 = performance.now();
  const r = await train({
    ...cell.options,
    ...(s.dataDir ? { dataDir: s.dataDir } : {}),
    ...(fork ? { initFrom: fork } : {}),
    out: dir,
    resume: own,
    gpu: s.gpu,
    progress: null,
  });
  const head = r.final ?? r.last;
  const inherited = r.initFrom?.wallSeconds ?? 0;
  console.log(
    `  ${r.status}: top-1 error ${head ? (100 * head.top1Error).toFixed(2) : "-"}% ` +
      `(${r.final ? "whole test set" : "last epoch"}); ${
        ((performance.now() - t0) / 1000).toFixed(0)
      } s in this sitting, ${r.wallSeconds.toFixed(0)} s as if alone` +
      (inherited ? ` (${inherited.toFixed(0)} s of it the shared stage 1)` : ""),
  );
}

/** Wall time of the shared stage-1 runs the rows forked. */
async function stageOneTime(rows: Row[]): Promise<StageOneTime> {
  const dirs = [...new Set(rows.flatMap((r) => r.stage1).map((c) => dirname(c)))];
  let seconds = 0;
  for (const d of dirs) seconds += (await readSummary(d))?.wallSeconds ?? 0;
  return { runs: dirs.length, seconds };
}

/** The aggregate of one scale: rows, the Markdown section, and its report page. */
async function aggregateScale(
  resultsDir: string,
  scale: string,
  seeds: number[],
): Promise<{ rows: Row[]; md: string } | null> {
  const root = join(resultsDir, "fashion-mnist-lt", scale);
  if (!(await exists(root))) return null;
  const plan = SCALES[scale];
  const cells = planCells(plan, [...new Set([...plan.firstFactors, ...plan.secondFactors])], seeds);
  const rows = await aggregate(cells, (c) => join(root, c.dir));
  const referenceTau = resolveTrainConfig(plan.options).tau;
  const md = markdown(
    rows,
    scale,
    pairedComparisons(referenceTau, plan.taus),
    await stageOneTime(rows),
  );
  const words = testSetWords(rows);
  const page = renderGridPage(
    rows.map((r) => ({ ...r, dirs: r.dirs.map((d) => d.slice(root.length + 1)) })),
    { scale, dataset: "fashion-mnist", headline: words.headline, epoch: words.epoch },
  );
  await Deno.writeTextFile(join(root, "report.html"), page);
  return { rows, md };
}

/** Rebuilds results/fashion-mnist-lt.{md,json,html} from every scale's finished cells. */
export async function writeAggregate(resultsDir: string, seeds: number[]): Promise<string> {
  const sections: string[] = [
    "# Long-tailed Fashion-MNIST: the paper's comparison\n",
    "Written by `deno task reproduce --aggregate` from the finished runs under " +
    "`fashion-mnist-lt/<scale>/`; each scale's report page is `fashion-mnist-lt/<scale>/report.html`.\n",
  ];
  const json: Record<string, { rows: Row[] }> = {};
  const links: string[] = [];
  for (const scale of SCALE_ORDER) {
    const agg = await aggregateScale(resultsDir, scale, seeds);
    if (!agg) continue;
    sections.push(`## Scale \`${scale}\`\n`, agg.md);
    json[scale] = { rows: agg.rows };
    links.push(`<li><a href="fashion-mnist-lt/${scale}/report.html">scale ${scale}</a></li>`);
  }
  sections.push(paperSection());
  const md = sections.join("\n");
  const base = join(resultsDir, "fashion-mnist-lt");
  await Deno.mkdir(resultsDir, { recursive: true });
  await Deno.writeTextFile(`${base}.json`, JSON.stringify({ scales: json }, null, 1) + "\n");
  await Deno.writeTextFile(`${base}.md`, md);
  await Deno.writeTextFile(
    `${base}.html`,
    `<!doctype html><html><head><meta charset="utf-8"><title>tailgrad: long-tailed ` +
      `Fashion-MNIST</title><style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}` +
      `pre{background:#f6f6f6;padding:1em;overflow:auto}</style></head><body>` +
      `<h1>Long-tailed Fashion-MNIST: the paper's comparison</h1><ul>${links.join("")}</ul>` +
      `<pre>${esc(md)}</pre></body></html>\n`,
  );
  return md;
}

/** Every flag of `deno task reproduce`; the defaults are {@linkcode REPRODUCE_DEFAULTS}. */
const REPRODUCE_FLAGS: FlagTable<keyof ReproduceFlags> = {
  "scale": { key: "scale", kind: "enum", values: Object.keys(SCALES), help: "the cells' settings" },
  "imbalance": {
    key: "imbalance",
    kind: "string",
    help: "imbalance factors to run, e.g. 100,10 (medium's second line and the tau sweep are " +
      "IF 100 only)",
  },
  "seeds": { key: "seeds", kind: "string", help: "seeds to run, e.g. 0,1,2" },
  "only": {
    key: "only",
    kind: "string",
    help: "parts of the grid to run, comma-separated: first-line (ce, cb, meta-eps0, meta, " +
      "ce-nowarmup), second-line (the other methods), tau-sweep",
    defaultText: "all three",
  },
  "cells": {
    key: "cells",
    kind: "string",
    help: "only these cells, e.g. meta-if100-s0,ce-if10-s2",
    defaultText: "all",
  },
  "share": {
    key: "share",
    kind: "bool",
    help: "fork a shared stage 1 (bit for bit the runs from scratch); --no-share: train every " +
      "cell from scratch",
  },
  "tau": { key: "tau", kind: "bool", help: "run the tau sweep (--no-tau: leave it out)" },
  "results-dir": { key: "resultsDir", kind: "string", help: "where results go" },
  "data-dir": {
    key: "dataDir",
    kind: "string",
    help: "dataset folder, as for deno task train",
    defaultText: "its search order",
  },
  "aggregate": {
    key: "aggregate",
    kind: "bool",
    help: "run nothing, only rebuild the tables and pages",
  },
  "help": { key: "help", kind: "bool", help: "show this help" },
};

/** The settings of a sitting, as the flags give them. */
export interface ReproduceFlags {
  /** Scale of the cells (a key of {@linkcode SCALES}). */
  scale: string;
  /** Imbalance factors, comma-separated. */
  imbalance: string;
  /** Seeds, comma-separated. */
  seeds: string;
  /** Parts of the grid (--only), or all. */
  only?: string;
  /** Cell ids (--cells), or all. */
  cells?: string;
  /** Fork a shared stage 1. */
  share: boolean;
  /** Run the tau sweep. */
  tau: boolean;
  /** Where results go. */
  resultsDir: string;
  /** Dataset folder, or the trainer's search order. */
  dataDir?: string;
  /** Run nothing, only aggregate. */
  aggregate: boolean;
  /** Show the usage. */
  help: boolean;
}

/** What a sitting does when a flag is not given. */
const REPRODUCE_DEFAULTS: ReproduceFlags = {
  scale: "small",
  imbalance: "100,10",
  seeds: "0,1,2",
  share: true,
  tau: true,
  resultsDir: "results",
  aggregate: false,
  help: false,
};

const USAGE = [
  "usage: deno task reproduce [flags]",
  "",
  "Runs the grid of a scale (resumable: finished cells are skipped, killed ones resume), then",
  "rebuilds results/fashion-mnist-lt.{md,json,html} and results/fashion-mnist-lt/<scale>/report.html.",
  "",
  "flags:",
  ...usageLines(REPRODUCE_FLAGS, (_, f) => {
    const d = REPRODUCE_DEFAULTS[f.key as keyof ReproduceFlags];
    return f.key === "help" || d === undefined ? undefined : shownValue(d);
  }),
].join("\n");

/** The flags of `args` over {@linkcode REPRODUCE_DEFAULTS}; a {@linkcode UsageError} if bad. */
export function parseReproduceFlags(args: string[]): ReproduceFlags {
  const { help, values } = parseFlags(args, REPRODUCE_FLAGS);
  return { ...REPRODUCE_DEFAULTS, ...values, help } as ReproduceFlags;
}

/** The cells a sitting runs: the scale's plan, narrowed by --only, --cells and --no-tau. */
export function selectCells(
  plan: ScalePlan,
  imbalances: number[],
  seeds: number[],
  o: { only?: string; cells?: string; noTau?: boolean },
): Cell[] {
  let cells = planCells(plan, imbalances, seeds);
  if (o.noTau) cells = cells.filter((c) => c.line !== "tau-sweep");
  if (o.only !== undefined) {
    const lines = o.only.split(",").map((x) => x.trim());
    const bad = lines.filter((l) => !(LINES as readonly string[]).includes(l));
    if (bad.length || !lines.length) {
      throw new UsageError(
        `invalid --only ${JSON.stringify(o.only)}: expected parts of the grid from ${
          LINES.join(", ")
        }`,
      );
    }
    cells = cells.filter((c) => lines.includes(c.line));
  }
  if (o.cells !== undefined) {
    const ids = o.cells.split(",").map((x) => x.trim());
    const unknown = ids.filter((id) => !cells.some((c) => c.id === id));
    if (unknown.length || !ids.length) {
      throw new UsageError(
        `--cells: no cell ${unknown.join(", ")} in this selection; cells are named like ` +
          `${cells.slice(0, 3).map((c) => c.id).join(", ")} (${cells.length} in all)`,
      );
    }
    cells = cells.filter((c) => ids.includes(c.id));
  }
  return cells;
}

/** What a sitting runs: its cells, and the seeds the aggregate reads. */
export interface SittingPlan {
  /** The cells to run, in order. */
  cells: Cell[];
  /** The seeds of --seeds. */
  seeds: number[];
}

/** The comma-separated numbers of a flag, each `ok`; a {@linkcode UsageError} naming it if not. */
function numberList(
  flag: "seeds" | "imbalance",
  text: string,
  ok: (x: number) => boolean,
  what: string,
): number[] {
  const example = REPRODUCE_DEFAULTS[flag];
  const parts = text.split(",").map((x) => x.trim());
  const values = parts.map(Number);
  const fail = (problem: string): never => {
    throw new UsageError(`invalid --${flag} ${JSON.stringify(text)}: ${problem}`, {
      flag: `--${flag}`,
      hint: `pass e.g. --${flag} ${example} (its default)`,
    });
  };
  if (
    parts.some((p, i) => !/^[0-9.eE+-]+$/.test(p) || !Number.isFinite(values[i]) || !ok(values[i]))
  ) {
    fail(`expected ${what}, comma-separated, e.g. ${example}`);
  }
  const twice = values.find((v, i) => values.indexOf(v) !== i);
  if (twice !== undefined) fail(`${twice} is given twice`);
  return values;
}

/** Where each part of a scale's grid runs: "first line IF 100, 10; ...". */
function gridFactors(plan: ScalePlan): string {
  return `first line IF ${plan.firstFactors.join(", ")}; second line IF ` +
    `${plan.secondFactors.join(", ")}; tau sweep IF 100`;
}

/**
 * The cells and seeds of a sitting from its flags: --seeds integers in [0, 2^32), --imbalance
 * factors of the scale's grid, and (unless --aggregate) a selection that holds at least one cell.
 * Throws a {@linkcode UsageError} naming the flag otherwise, before any work.
 */
export function planSitting(f: ReproduceFlags): SittingPlan {
  const plan = SCALES[f.scale];
  const seeds = numberList(
    "seeds",
    f.seeds,
    (x) => Number.isInteger(x) && x >= 0 && x <= 0xffffffff,
    "seeds (integers in [0, 4294967295])",
  );
  const imbalances = numberList("imbalance", f.imbalance, (x) => x >= 1, "numbers >= 1");
  const factors = [...new Set([...plan.firstFactors, ...plan.secondFactors])];
  const stray = imbalances.filter((x) => !factors.includes(x));
  if (stray.length) {
    throw new UsageError(
      `--imbalance ${f.imbalance}: scale ${f.scale} has no cell at IF ${stray.join(", ")} ` +
        `(its grid: ${gridFactors(plan)})`,
      { flag: "--imbalance", hint: `pass factors of the grid, e.g. --imbalance ${factors}` },
    );
  }
  const cells = selectCells(plan, imbalances, seeds, {
    only: f.only,
    cells: f.cells,
    noTau: !f.tau,
  });
  if (!cells.length && !f.aggregate) {
    const given = [
      `--imbalance ${f.imbalance}`,
      ...(f.only === undefined ? [] : [`--only ${f.only}`]),
      ...(f.tau ? [] : ["--no-tau"]),
    ];
    throw new UsageError(
      `${given.join(" ")} selects no cell of scale ${f.scale} (its grid: ${gridFactors(plan)})`,
      {
        flag: "--imbalance",
        hint: `widen --imbalance or --only${f.tau ? "" : ", or drop --no-tau"} (--help lists ` +
          "the parts)",
      },
    );
  }
  return { cells, seeds };
}

/**
 * Refuses a --results-dir this process may not write, or that is a file: before the GPU is
 * taken or a cell starts, not when the first file is written.
 */
export async function checkResultsDir(dir: string): Promise<void> {
  await checkOutFolder(dir, {
    flag: "--results-dir",
    scopeHint: "the reproduce task may write only under results/ and data/: choose a " +
      "--results-dir there (e.g. results/mine), or run scripts/reproduce.ts with a wider " +
      "--allow-write",
    error: UsageError,
  });
}

async function main(): Promise<void> {
  const values = parseReproduceFlags(Deno.args);
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const { cells, seeds } = planSitting(values);
  const resultsDir = values.resultsDir;
  await checkResultsDir(resultsDir);
  if (!values.aggregate) {
    // a --data-dir that is a file or holds a damaged copy is refused here, not by the first
    // cell after the GPU is taken (an absent copy is still downloaded by that cell)
    await findDataset("fashion-mnist", values.dataDir ? { dataDir: values.dataDir } : {});
    const gpu = await Gpu.create();
    const sitting: Sitting = {
      gpu,
      root: join(resultsDir, "fashion-mnist-lt", values.scale),
      dataDir: values.dataDir,
      share: values.share,
    };
    try {
      for (const [i, cell] of cells.entries()) {
        await runCell(sitting, cell, `[${i + 1}/${cells.length}]`);
      }
    } finally {
      gpu.dispose();
    }
  }
  const md = await writeAggregate(resultsDir, [...new Set([0, 1, 2, ...seeds])]);
  console.log(md);
}

if (import.meta.main) {
  try {
    await main();
  } catch (e) {
    Deno.exit(reportError(e));
  }
}
