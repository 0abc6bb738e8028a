/**
 * The large-scale long-tailed trainer: a torchvision ResNet (from scratch or a torchvision
 * checkpoint) trained on JPEG lists through the engine's fit loop: cross-entropy epochs, then the
 * meta stage (`w_y + eps`, eps by the full or the classifier-only meta step, the backbone trained
 * or frozen), evaluation with top-1/3/5 error and many/medium/few-shot accuracy, a checkpoint at
 * every epoch end with exact resume, and metrics.jsonl, summary.json and report.html, with the
 * per-class eps of the meta epochs (summed on the GPU over each epoch, read once at its end).
 *
 * Nothing is written and no GPU taken before the data (every list line or JSON entry, every
 * image present, a full batch per epoch), the `--pretrained` file, the output folder and the
 * checkpoint to resume (one there with --resume) have been checked.
 */
import { join } from "node:path";
import { Gpu } from "../gpu/runtime.ts";
import { Ctx } from "../autograd/tape.ts";
import { Tensor } from "../tensor.ts";
import { Model } from "../nn/model.ts";
import { EVAL } from "../nn/module.ts";
import { applyPretrained, TorchvisionResNet } from "../nn/torchvision.ts";
import { Sgd } from "../optim/optimizer.ts";
import { StepEngine } from "../engine/step.ts";
import { crossEntropy, MetaReweighter } from "../engine/meta.ts";
import {
  type EvalMetrics,
  MetricAccumulator,
  metricsFromJson,
  withShots,
} from "../engine/metrics.ts";
import { type EpochEnd, fit, type FitHooks, type StepKind, stopMessage } from "../engine/fit.ts";
import { Progress, type ProgressSink, stdoutSink } from "../engine/progress.ts";
import { DecodePool } from "../data/jpeg/pool.ts";
import { JpegLoader } from "../data/jpeg/loader.ts";
import { readCheckpoint, removeStaleTemps, type SafetensorsFile } from "../checkpoint/mod.ts";
import { writeFileAtomic } from "../checkpoint/atomic.ts";
import { renderReport } from "../report/html.ts";
import type { EpochRecord, PerClassMeta, RunRecord } from "../report/summary.ts";
import { ConfigError } from "../errors.ts";
import {
  checkOutDir,
  checkSavedMetrics,
  completedRunLine,
  completedSummary,
  requireCheckpoint,
} from "../train/validate.ts";
import { shotText } from "../train/run.ts";
import { accumulateMetaStats, emptyMetaStats, META_STATS_FIELDS } from "../train/kernels.ts";
import {
  addSums,
  emptySums,
  type MetaSums,
  perClassMeta,
  sumsFromJson,
  sumsFromStats,
  sumsToJson,
} from "../train/summary.ts";
import { type LargeConfig, largeLr, validateLargeConfig } from "./config.ts";
import { type LargeData, loadLargeData } from "./data.ts";
import { JpegSource } from "./source.ts";
import { readPretrained } from "./pretrained.ts";

/** The checkpoint format of large runs. */
export const LARGE_CHECKPOINT_FORMAT = "tailgrad-large-checkpoint/1";
const FILES = {
  checkpoint: "checkpoint.safetensors",
  metrics: "metrics.jsonl",
  summary: "summary.json",
  report: "report.html",
};

/**
 * summary.json of a large run: `meta` holds the per-class eps statistics over the whole meta
 * stage, `metaLastEpoch` those of the last meta epoch (null before the meta stage).
 */
export type LargeSummary = RunRecord<LargeConfig> & {
  /** Per-class meta statistics of the last meta epoch, with its epoch. */
  metaLastEpoch: (PerClassMeta & { epoch: number }) | null;
};

/** The GPU tensors of a meta step that a {@linkcode LargeStepInspector} may read. */
export interface MetaStepTensors {
  /** eps of every example of the batch, [B]. */
  eps: Tensor;
  /** The class weights w_y of the batch's examples, [B]. */
  weights: Tensor;
  /** The batch's labels (u32), [B]. */
  labels: Tensor;
}

/**
 * Observes the training steps of a large run (tests, diagnostics). Reading a tensor here waits
 * for the step: a run without an inspector reads nothing back per step.
 */
export interface LargeStepInspector {
  /** Before each training step, after its batch is loaded. */
  beforeStep?(epoch: number, step: number): void | Promise<void>;
  /** After each meta step is recorded (and its eps added to the epoch's per-class sums). */
  afterMetaStep?(epoch: number, step: number, t: MetaStepTensors): void | Promise<void>;
}

/** How to run {@linkcode trainLarge}. */
export interface LargeRunOptions {
  /**
   * Continue from the checkpoint in `cfg.out`: `true` requires one (an error naming --resume
   * when there is none); "if-any" continues it when there is one and starts the run otherwise.
   */
  resume?: boolean | "if-any";
  /** Train at most this many epochs in this call. */
  maxEpochs?: number;
  /** Progress output (default stdout; null: silent). */
  progress?: ProgressSink | null;
  /** A GPU to use (kept open). */
  gpu?: Gpu;
  /** Decode workers (overrides cfg.workers; 0 decodes on the calling thread). */
  workers?: number;
  /** Observes the steps (tests); none by default. */
  inspect?: LargeStepInspector;
}

/** The GPU parts of a run. */
interface Parts {
  model: Model<TorchvisionResNet>;
  optimizer: Sgd;
  engine: StepEngine;
  meta: MetaReweighter;
  /** Per-class sums of eps, eps / w_y, count, min(w + eps), w + eps over an epoch's meta steps. */
  stats: Tensor;
}

function build(gpu: Gpu, cfg: LargeConfig, data: LargeData): Parts {
  const C = data.numClasses;
  const root = new TorchvisionResNet({ depth: cfg.depth, numClasses: C, width: cfg.width });
  const model = new Model(gpu, root, cfg.seed);
  const optimizer = new Sgd(gpu, model.paramLayout, {
    momentum: cfg.momentum,
    weightDecay: cfg.weightDecay,
    nesterov: false,
  });
  const engine = new StepEngine(model, {
    loss: crossEntropy,
    optimizer,
    batch: cfg.batch,
    input: [3, cfg.size, cfg.size],
    seed: cfg.seed,
  });
  const meta = new MetaReweighter(engine, {
    devBatch: Math.min(cfg.batch, data.split.dev.length),
    numClasses: C,
    params: cfg.metaParams,
    freezeBackbone: cfg.freezeBackbone,
  });
  meta.classWeights.upload(gpu, Float32Array.from(data.classWeights));
  const stats = Tensor.empty(gpu, [C * META_STATS_FIELDS]);
  return { model, optimizer, engine, meta, stats };
}

/** Frees what {@linkcode build} made (after the work recorded on it is submitted). */
function destroyParts(gpu: Gpu, parts: Parts): void {
  parts.meta.destroy();
  parts.engine.destroy();
  parts.optimizer.destroy();
  parts.model.destroy();
  parts.stats.release(gpu);
}

/** The run's first progress line: what it trains, on what, for how long, on which adapter. */
function startLine(cfg: LargeConfig, data: LargeData, workers: number, adapter: string): string {
  const width = cfg.width !== 64 ? ` (width ${cfg.width})` : "";
  const frozen = cfg.freezeBackbone ? ", backbone frozen" : "";
  const imbalance = cfg.imbalance.toFixed(1);
  return `tailgrad large: ${cfg.preset}, ResNet-${cfg.depth}${width}, ` +
    `${data.numClasses} classes, train ${data.split.train.length} (IF ${imbalance}), ` +
    `dev ${data.split.dev.length}, eval ${data.eval.paths.length}; ${cfg.epochs} epochs, ` +
    `meta (${cfg.metaParams}${frozen}) from ${cfg.metaStart}; batch ${cfg.batch}; ` +
    `${workers} decode workers; ${adapter}`;
}

/** Trains a large run (see the module doc) and returns its summary. */
export async function trainLarge(
  cfg: LargeConfig,
  o: LargeRunOptions = {},
): Promise<LargeSummary> {
  validateLargeConfig(cfg);
  if (o.resume === true) await requireCheckpoint(cfg.out, FILES.checkpoint);
  const sink = o.progress === undefined ? stdoutSink() : o.progress;
  const progress = new Progress(sink ?? { line() {} }, 20);
  const log = (m: string) => progress.line(m);
  const data = await loadLargeData(cfg);
  checkBatch(cfg, data);
  const counts = data.split.counts;
  cfg = { ...cfg, imbalance: Math.max(...counts) / Math.min(...counts) };
  const ckptPath = join(cfg.out, FILES.checkpoint);
  // read only by a new run (a resumed one continues its checkpoint); checked before any write
  const pretrained = cfg.pretrained && !(await pathExists(ckptPath))
    ? await readPretrained(cfg.pretrained, { ...cfg, numClasses: data.numClasses })
    : null;
  await checkOutDir(cfg.out, FILES.checkpoint);
  const ckpt = await readCheckpoint(ckptPath, {
    hint: "move the file away, or choose another --out to start a new run",
  });
  if (ckpt) checkLargeResume(ckpt, ckptPath, cfg, (o.resume ?? false) !== false);
  const done = ckpt &&
    await completedSummary<LargeSummary>(join(cfg.out, FILES.summary), cfg.epochs, ckpt);
  if (done) {
    log(completedRunLine(cfg.out, done.epochsDone));
    return done;
  }
  await Deno.mkdir(cfg.out, { recursive: true });
  await removeStaleTemps(ckptPath);
  const gpu = o.gpu ?? await Gpu.create();
  const pool = new DecodePool({ workers: o.workers ?? cfg.workers ?? undefined });
  let parts: Parts | null = null, source: JpegSource | null = null, run: LargeRun | null = null;
  try {
    parts = build(gpu, cfg, data);
    if (pretrained && !ckpt) {
      const r = await applyPretrained(parts.model, pretrained, cfg.pretrained!);
      log(
        `pretrained: ${r.loaded} tensors from ${cfg.pretrained}` +
          (r.classifierReset
            ? `; fc re-initialised (${r.fileClasses} classes in the file, ${data.numClasses} here)`
            : ""),
      );
    }
    const p = parts;
    source = new JpegSource({
      gpu,
      pool,
      data,
      engine: p.engine,
      meta: p.meta,
      seed: cfg.seed,
      size: cfg.size,
      isMeta: (e) => e >= cfg.metaStart,
    });
    const r = run = new LargeRun(gpu, cfg, data, p, pool, log, o.inspect);
    log(startLine(cfg, data, pool.workers, gpu.adapter.description));
    const result = await fit({
      engine: p.engine,
      data: source,
      epochs: cfg.epochs,
      lr: (epoch) => largeLr(cfg, epoch),
      evaluate: () => r.evaluate(),
      evalEvery: cfg.evalEvery,
      checkpoint: { path: ckptPath, format: LARGE_CHECKPOINT_FORMAT },
      resume: ckpt,
      maxEpochs: o.maxEpochs,
      progress,
      hooks: r.hooks(),
    });
    if (result.status === "stopped") {
      const message = stopMessage(result);
      log(`stopped: ${message}`);
      return await r.write("stopped", message);
    }
    return await r.write(result.status === "completed" ? "completed" : "running");
  } finally {
    source?.dispose();
    run?.dispose();
    pool.close();
    if (parts) destroyParts(gpu, parts);
    if (!o.gpu) gpu.dispose();
  }
}

/**
 * An epoch takes full batches only (the loader drops the rest): a training set smaller than
 * --batch would give epochs of no step, which the fit loop reports as a non-finite loss.
 */
function checkBatch(cfg: LargeConfig, data: LargeData): void {
  const n = data.split.train.length;
  if (n >= cfg.batch) return;
  throw new ConfigError(
    `--batch ${cfg.batch} is larger than the training set: ${n} images of ` +
      `${data.train.source} (after the ${data.split.dev.length} dev images are taken out), so ` +
      "an epoch would have no full batch",
    { flag: "--batch", hint: `pass a --batch of at most ${n}` },
  );
}

async function pathExists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** Settings that may change on resume. */
const RESUME_FREE: (keyof LargeConfig)[] = ["dataRoot", "out", "workers", "trainList", "evalList"];

function checkLargeResume(
  ckpt: SafetensorsFile,
  path: string,
  cfg: LargeConfig,
  resume: boolean,
): void {
  if (!resume) {
    throw new ConfigError(`--out ${cfg.out} already holds a run (${FILES.checkpoint})`, {
      flag: "--out",
      file: path,
      hint: "pass --resume to continue it, or choose another --out",
    });
  }
  const m = ckpt.metadata;
  if (m.format !== LARGE_CHECKPOINT_FORMAT) {
    throw new ConfigError(
      `checkpoint ${path}: not a large-run checkpoint (format ` +
        `${JSON.stringify(m.format ?? null)}, expected "${LARGE_CHECKPOINT_FORMAT}")`,
      {
        file: path,
        hint: "the file was not written by a large run (--preset imagenet-lt, places-lt, " +
          "inat2017, inat2018); move it away, or choose another --out to start a new run",
      },
    );
  }
  const saved = JSON.parse(m.config ?? "{}") as LargeConfig;
  const differ = (Object.keys(cfg) as (keyof LargeConfig)[]).filter((k) =>
    !RESUME_FREE.includes(k) && JSON.stringify(saved[k]) !== JSON.stringify(cfg[k])
  );
  if (differ.length) {
    const flag = (k: string) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
    const was = differ.map((k) => `${flag(k)} ${JSON.stringify(saved[k])}`).join(", ");
    throw new ConfigError(
      `--resume: ${differ.map(flag).join(", ")} differ from the checkpoint's settings in ${path}`,
      {
        file: path,
        flag: "--resume",
        hint: `resume with the run's settings (${was}), or choose another --out for a new run`,
      },
    );
  }
  checkSavedMetrics(m, path, ["last", "best"].filter((k) => m[k] !== undefined));
}

/** The records, evaluation and outputs of one large run. */
class LargeRun {
  history: EpochRecord[] = [];
  last: (EvalMetrics & { epoch: number }) | null = null;
  best: (EvalMetrics & { epoch: number }) | null = null;
  /** Per-class sums over every meta epoch so far (float64 on the host). */
  metaSums: MetaSums | null = null;
  /** Per-class statistics of the last meta epoch. */
  metaLast: LargeSummary["metaLastEpoch"] = null;
  steps = 0;
  epochsDone = 0;
  wallBefore = 0;
  readonly start = performance.now();
  readonly #eval: JpegLoader;

  constructor(
    readonly gpu: Gpu,
    readonly cfg: LargeConfig,
    readonly data: LargeData,
    readonly parts: Parts,
    pool: DecodePool,
    readonly log: (m: string) => void,
    readonly inspect?: LargeStepInspector,
  ) {
    this.#eval = new JpegLoader(gpu, pool, data.eval, {
      batchSize: cfg.batch,
      mode: "eval",
      size: cfg.size,
      resize: cfg.resize,
    });
  }

  /** Top-1/3/5 error, loss, per-class accuracy and shot groups on the evaluation list. */
  async evaluate(): Promise<EvalMetrics> {
    const { gpu, cfg, parts } = this;
    const acc = new MetricAccumulator(this.data.numClasses);
    for await (const b of this.#eval.epoch(0)) {
      const x = new Tensor([b.count, 3, cfg.size, cfg.size], b.images, false);
      const ctx = new Ctx(gpu, null);
      const logits = await parts.model.forward(ctx, x, EVAL).read(gpu);
      ctx.release();
      acc.add(logits, b.labels, b.count);
    }
    return withShots(acc.result(), this.data.split.counts);
  }

  /** The hooks of the fit loop. */
  hooks(): FitHooks<EpochRecord, EvalMetrics> {
    return {
      stepKind: (epoch) => this.#stepKind(epoch),
      epochStart: (epoch) => this.#epochStart(epoch),
      beforeStep: this.inspect?.beforeStep?.bind(this.inspect),
      epochEnd: (end) => this.#epochEnd(end),
      checkpointState: () => ({ metadata: this.#checkpointMetadata() }),
      restore: (file) => this.#restore(file),
      saved: (record, done) => this.#saved(record, done),
    };
  }

  #stepKind(epoch: number): StepKind {
    if (epoch < this.cfg.metaStart) {
      return { name: "plain", run: (lr) => this.parts.engine.step(lr) };
    }
    return { name: "meta", run: (lr, step) => this.#metaStep(epoch, step, lr) };
  }

  /**
   * One meta step; its eps, eps / w_y and counts are added to the epoch's per-class sums on the
   * GPU (one invocation walking the batch in order: deterministic), read once at the epoch's end.
   */
  #metaStep(epoch: number, step: number, lr: number): void | Promise<void> {
    const { gpu, cfg } = this;
    const { engine, meta, stats } = this.parts;
    meta.step(lr, {
      eta: lr,
      tau: cfg.tau,
      lookahead: "mean",
      rule: "meta",
      lookaheadWeights: "w",
    });
    accumulateMetaStats(gpu, engine.weights, meta.eps, meta.finalWeights, engine.targets, stats);
    const t = { eps: meta.eps, weights: engine.weights, labels: engine.targets };
    return this.inspect?.afterMetaStep?.(epoch, step, t);
  }

  #epochStart(epoch: number): void {
    if (epoch < this.cfg.metaStart) return;
    this.parts.stats.upload(this.gpu, emptyMetaStats(this.data.numClasses));
  }

  /** The epoch's per-class meta statistics (one readback), added to the meta stage's sums. */
  async #epochMeta(epoch: number): Promise<PerClassMeta | null> {
    if (epoch < this.cfg.metaStart) return null;
    const C = this.data.numClasses;
    // effective-number weights are positive: eps / w_y is defined for every class
    const sums = sumsFromStats(await this.parts.stats.read(this.gpu), C, false);
    this.metaSums ??= emptySums(C, true);
    addSums(this.metaSums, sums);
    const meta = perClassMeta(sums);
    this.metaLast = { ...meta, epoch };
    return meta;
  }

  async #epochEnd(end: EpochEnd<EvalMetrics>): Promise<EpochRecord> {
    const t = end.metrics;
    if (t) {
      this.last = { ...t, epoch: end.epoch };
      if (!this.best || t.top1Error < this.best.top1Error) this.best = this.last;
    }
    const { confusion: _, ...test } = t ?? { confusion: null };
    const record: EpochRecord = {
      epoch: end.epoch,
      phase: end.kind === "meta" ? "meta" : "plain",
      lr: end.lr,
      trainLoss: end.trainLoss,
      steps: end.steps,
      images: end.examples,
      test: t ? test as EpochRecord["test"] : null,
      meta: await this.#epochMeta(end.epoch),
      timing: { seconds: end.seconds, imagesPerSecond: end.examples / end.seconds },
    };
    this.history.push(record);
    this.epochsDone = end.epoch + 1;
    this.steps += end.steps;
    return record;
  }

  #checkpointMetadata(): Record<string, string> {
    return {
      config: JSON.stringify(this.cfg),
      last: JSON.stringify(this.last),
      best: JSON.stringify(this.best),
      meta_sums: JSON.stringify(sumsToJson(this.metaSums)),
      meta_last: JSON.stringify(this.metaLast),
      wall_seconds: String(this.wallSeconds()),
    };
  }

  #restore(file: SafetensorsFile): void {
    const m = file.metadata;
    const json = (k: string) => JSON.parse(m[k] ?? "null");
    this.history = json("history") ?? [];
    // metrics of a checkpoint from before the sparse confusion form, in today's form
    this.last = metricsFromJson(json("last"));
    this.best = metricsFromJson(json("best"));
    this.metaSums = sumsFromJson(json("meta_sums"));
    this.metaLast = json("meta_last");
    this.epochsDone = Number(m.epoch);
    this.steps = Number(m.steps);
    this.wallBefore = Number(m.wall_seconds ?? 0);
    this.log(`resuming ${this.cfg.out} after epoch ${m.epoch}`);
    if (m.meta_sums === undefined && this.epochsDone > this.cfg.metaStart) {
      this.log(
        "the checkpoint predates per-class eps: summary.json's meta covers the epochs after it only",
      );
    }
  }

  async #saved(r: EpochRecord, done: boolean): Promise<void> {
    await this.write(done ? "completed" : "running");
    const t = r.test;
    const pct = (v: number) => `${(100 * v).toFixed(2)}%`;
    this.log(
      `epoch ${r.epoch + 1}/${this.cfg.epochs} ${r.phase} lr ${r.lr.toPrecision(3)}: train loss ` +
        `${r.trainLoss.toFixed(4)}` +
        (t
          ? `, top-1/3/5 error ${pct(t.top1Error)} / ${pct(t.top3Error)} / ${pct(t.top5Error)}` +
            shotText(t.shots)
          : "") +
        `, ${r.timing.imagesPerSecond.toFixed(1)} img/s`,
    );
  }

  /** Frees the evaluation loader's buffers. */
  dispose(): void {
    this.#eval.dispose();
  }

  wallSeconds(): number {
    return this.wallBefore + (performance.now() - this.start) / 1000;
  }

  /** Writes metrics.jsonl, summary.json and report.html; returns the summary. */
  async write(status: LargeSummary["status"], message?: string): Promise<LargeSummary> {
    const { cfg, data, gpu } = this;
    const counts = data.split.counts;
    const summary: LargeSummary = {
      status,
      ...(message ? { message } : {}),
      config: cfg,
      adapter: {
        description: gpu.adapter.description,
        isFallbackAdapter: gpu.adapter.isFallbackAdapter,
      },
      data: {
        source: `${data.train.source} / ${data.eval.source}`,
        numClasses: data.numClasses,
        image: [3, cfg.size, cfg.size],
        nMax: Math.max(...counts),
        trainCounts: counts,
        devCounts: new Array(data.numClasses).fill(cfg.devPerClass),
        testCounts: data.evalCounts,
        trainTotal: data.split.train.length,
        testTotal: data.eval.paths.length,
      },
      classWeights: data.classWeights,
      margins: null,
      finalClassWeights: null,
      epochsDone: this.epochsDone,
      steps: this.steps,
      last: this.last,
      best: this.best,
      meta: this.metaSums ? perClassMeta(this.metaSums) : null,
      metaLastEpoch: this.metaLast,
      nonFinite: null,
      wallSeconds: this.wallSeconds(),
    };
    const out = cfg.out;
    await writeFileAtomic(
      join(out, FILES.metrics),
      this.history.map((h) => JSON.stringify(h) + "\n").join(""),
    );
    await writeFileAtomic(join(out, FILES.summary), JSON.stringify(summary, null, 2) + "\n");
    await writeFileAtomic(join(out, FILES.report), renderReport(summary, this.history));
    return summary;
  }
}
