/**
 * One long-tail run as a client of the fit loop: builds the model, optimizer, step engine, meta
 * re-weighting and data source of a configuration, runs each epoch's step kind (plain, meta or
 * Meta-Weight-Net), and turns epochs into metrics.jsonl lines, summaries and reports.
 */
import { join } from "node:path";
import type { Gpu } from "../gpu/runtime.ts";
import { Tensor } from "../tensor.ts";
import { Model } from "../nn/model.ts";
import { ResNet, type ResNetConfig } from "../nn/resnet.ts";
import { classificationLoss, type LossOptions, normalizedWeights } from "../ops/loss.ts";
import { Sgd } from "../optim/optimizer.ts";
import { GpuAugmenter } from "../data/augment.ts";
import { effectiveNumberWeights } from "../data/weights.ts";
import type { SafeTensor, SafetensorsFile } from "../checkpoint/safetensors.ts";
import { writeFileAtomic } from "../checkpoint/atomic.ts";
import { renderReport } from "../report/html.ts";
import type { CheckpointExtra, EpochEnd, FitHooks, StepKind } from "../engine/fit.ts";
import { MetaReweighter } from "../engine/meta.ts";
import { type EvalMetrics, metricsFromJson, withShots } from "../engine/metrics.ts";
import { leadingRows, type SeedRule, StepEngine } from "../engine/step.ts";
import { Rng } from "../random.ts";
import { priorBias, torchLinearBias, unitNormRows } from "../nn/init.ts";
import { ConfigError, type LossName, methodLoss, modelDepth, type TrainConfig } from "./config.ts";
import { lookaheadLr, optimizerLr } from "./recipe.ts";
import { balancedSubset, fineTuneSubset, type RunData } from "./data.ts";
import { devLossFn, devLossOptions, LDAM_SCALE } from "./devloss.ts";
import { evaluate } from "./eval.ts";
import {
  accumulateMetaStats,
  emptyMetaStats,
  gatherClassWeights,
  META_STATS_FIELDS,
} from "./kernels.ts";
import { type Phase, phaseOf } from "./methods.ts";
import { MetaWeightNet } from "./mwn.ts";
import { LongTailSource } from "./source.ts";
import { CLASS_WEIGHTS_KEY } from "./validate.ts";
import {
  addSums,
  emptySums,
  type EpochMetrics,
  type EpochRecord,
  type MetaSums,
  perClassMeta,
  type RunSummary,
  sumsFromJson,
  sumsFromStats,
  sumsToJson,
} from "./summary.ts";

/** File names inside `out`. */
export const OUTPUT_FILES = {
  checkpoint: "checkpoint.safetensors",
  metrics: "metrics.jsonl",
  summary: "summary.json",
  report: "report.html",
} as const;

/** LDAM margins C / n_y^(1/4), scaled so the largest is 0.5. */
export function ldamMargins(counts: number[]): number[] {
  const raw = counts.map((n) => (n > 0 ? 1 / Math.pow(n, 0.25) : 0));
  const max = Math.max(...raw);
  return raw.map((m) => (max > 0 ? (m * 0.5) / max : 0));
}

/** ", many/medium/few-shot accuracy a / b / c" of an evaluation, or "". */
export function shotText(s: EvalMetrics["shots"]): string {
  if (!s) return "";
  const pct = (v: number | null) => (v === null ? "–" : `${(100 * v).toFixed(2)}%`);
  return `, many/medium/few-shot accuracy ${pct(s.many)} / ${pct(s.medium)} / ${pct(s.few)}`;
}

/** The counts and final-weight sums of meta statistics (what Meta-Weight-Net steps record). */
function finalOnly(s: MetaSums): Pick<MetaSums, "count" | "sumFinal"> {
  return { count: s.count, sumFinal: s.sumFinal };
}

/** Where a forked run (`initFrom`) started: the checkpoint, its epoch and its wall time. */
export interface ForkOrigin {
  /** The checkpoint file, as given. */
  checkpoint: string;
  /** Epochs it had completed (this run's first epoch). */
  epoch: number;
  /** Its wall seconds, included in this run's `wallSeconds`. */
  wallSeconds: number;
}

/** The GPU parts of a run, freed by {@linkcode LongTailRun.destroy}. */
interface RunParts {
  model: Model<ResNet>;
  optimizer: Sgd;
  engine: StepEngine;
  meta: MetaReweighter;
  augmenter: GpuAugmenter;
  margins: Tensor | null;
  stats: Tensor;
}

/** The state and hooks of one long-tail run. */
export class LongTailRun {
  readonly gpu: Gpu;
  readonly cfg: TrainConfig;
  readonly data: RunData;
  readonly modelConfig: ResNetConfig;
  readonly lossName: LossName;
  readonly phases: Phase[];
  readonly classWeights: number[];
  readonly margins: number[] | null;
  readonly parts: RunParts;
  readonly source: LongTailSource;
  readonly lossOptions: LossOptions;
  /** Options of the meta step's dev loss (`--dev-loss`). */
  readonly devLossOptions: LossOptions;
  readonly mwn: MetaWeightNet | null;
  readonly evalBatch: number;
  history: EpochRecord[] = [];
  last: EpochMetrics | null = null;
  best: EpochMetrics | null = null;
  /** The evaluation on the whole test set after the last epoch (`finalFullTest`). */
  final: EpochMetrics | null = null;
  /** The checkpoint this run was forked from (`initFrom`), its epoch and wall time. */
  forkedFrom: ForkOrigin | null = null;
  metaSums: MetaSums | null = null;
  epochsDone = 0;
  steps = 0;
  wallBefore = 0;
  readonly segmentStart = performance.now();

  /** Builds every part of the run (parameters initialised from the seed). */
  constructor(gpu: Gpu, cfg: TrainConfig, data: RunData) {
    this.gpu = gpu;
    this.cfg = cfg;
    this.data = data;
    const C = data.numClasses;
    const loss = methodLoss(cfg.method, cfg.loss);
    this.lossName = loss;
    this.modelConfig = {
      depth: modelDepth(cfg.model),
      inChannels: data.image[0],
      numClasses: C,
      cosine: loss === "ldam",
    };
    this.phases = Array.from(
      { length: cfg.epochs },
      (_, e) => phaseOf(cfg.method, e, cfg.metaStart),
    );
    this.classWeights = Array.from(effectiveNumberWeights(data.trainCounts, cfg.beta));
    this.margins = loss === "ldam" ? ldamMargins(data.trainCounts) : null;
    this.evalBatch = Math.max(1, Math.min(200, data.testIndices.length));
    this.parts = this.#build();
    this.mwn = this.phases.some((p) => p.kind === "mwn")
      ? new MetaWeightNet(this.parts.meta, cfg.seed, { recipe: cfg.mwnRecipe })
      : null;
    const margins = this.parts.margins;
    this.lossOptions = loss === "ce"
      ? {}
      : loss === "focal"
      ? { gamma: cfg.focalGamma, form: cfg.focalForm }
      : { scale: LDAM_SCALE, margins };
    this.devLossOptions = devLossOptions(cfg.devLoss, this.lossOptions, loss === "ldam");
    const { engine, meta, augmenter } = this.parts;
    const devPerClass = Math.max(1, Math.round(cfg.batch / C));
    this.source = new LongTailSource({
      gpu,
      data,
      seed: cfg.seed,
      batch: cfg.batch,
      lastBatch: cfg.lastBatch,
      devPerClass,
      phases: this.phases,
      classWeights: this.classWeights,
      subset: this.phases.some((p) => p.images === "balanced-subset")
        ? fineTuneSubset(data, cfg.seed)
        : null,
      augmenter,
      into: {
        x: engine.x,
        labels: engine.targets,
        weights: engine.weights,
        devX: meta.devX,
        devLabels: meta.devTargets,
      },
    });
    meta.classWeights.upload(gpu, Float32Array.from(this.classWeights));
  }

  #build(): RunParts {
    const { gpu, cfg, data } = this;
    const C = data.numClasses;
    const [ch, H, W] = data.image;
    const model = new Model(gpu, new ResNet(this.modelConfig), cfg.seed);
    for (const [name, values] of classifierInit(cfg, this.modelConfig)) {
      model.params.get(name).upload(gpu, values);
    }
    const optimizer = new Sgd(gpu, model.paramLayout, {
      momentum: cfg.momentum,
      weightDecay: cfg.weightDecay,
      nesterov: cfg.nesterov,
      decayExempt: sigmoidBias(cfg, this.modelConfig) ? ["linear.bias"] : [],
    });
    const margins = this.margins ? Tensor.from(gpu, this.margins, [C]) : null;
    const engine = new StepEngine(model, {
      loss: (ctx, logits, labels) => classificationLoss(ctx, logits, labels, this.lossOptions),
      optimizer,
      batch: cfg.batch,
      input: data.image,
    });
    const devBatch = Math.max(1, Math.round(cfg.batch / C)) * C;
    const devLoss = devLossFn(() => this.devLossOptions);
    const meta = new MetaReweighter(engine, { devBatch, devLoss, numClasses: C });
    const augmenter = new GpuAugmenter(gpu, {
      channels: ch,
      height: H,
      width: W,
      mean: data.mean,
      std: data.std,
      pad: data.pad,
      maxBatch: Math.max(cfg.batch, devBatch, this.evalBatch),
    });
    const stats = Tensor.empty(gpu, [C * META_STATS_FIELDS]);
    return { model, optimizer, engine, meta, augmenter, margins, stats };
  }

  /** Frees every GPU part. */
  destroy(): void {
    const p = this.parts;
    this.mwn?.destroy();
    p.meta.destroy();
    p.engine.destroy();
    p.optimizer.destroy();
    p.model.destroy();
    p.augmenter.dispose();
    p.margins?.release(this.gpu);
    p.stats.release(this.gpu);
  }

  /** Steps of `epoch` (by its phase's images and `lastBatch`). */
  stepsOf(epoch: number): number {
    return this.source.steps(this.source.imagesOf(epoch));
  }

  /** The optimiser's learning rate at step `step` of `epoch` (decays and warm-up). */
  lr(epoch: number, step: number): number {
    return optimizerLr(this.cfg, epoch, step, this.stepsOf(epoch));
  }

  /** The look-ahead's learning rate eta at step `step` of `epoch`. */
  eta(epoch: number, step: number): number {
    return lookaheadLr(this.cfg, epoch, step, this.stepsOf(epoch));
  }

  /** The seed of a plain step: undefined for w / n (mean), w / sum w for a weighted mean. */
  plainSeed(): SeedRule | undefined {
    if (this.cfg.reduction === "mean") return undefined;
    const { gpu, parts: { engine } } = this;
    return (ctx, _tape, l) =>
      normalizedWeights(gpu, leadingRows(engine.weights, l.size), ctx.empty([l.size]));
  }

  /** The step of `epoch`'s phase (over the examples the source loaded: a partial batch too). */
  stepKind(epoch: number): StepKind {
    const phase = this.phases[epoch];
    const { engine, meta, stats } = this.parts;
    const gpu = this.gpu;
    const seed = this.plainSeed();
    if (phase.kind === "plain") {
      return { name: "plain", run: (lr) => engine.step(lr, seed, this.source.count) };
    }
    if (phase.kind === "mwn") {
      const mwn = this.mwn!;
      return {
        name: "mwn",
        run: (lr, step) => {
          const n = this.source.count;
          const rows = (t: Tensor) => leadingRows(t, n);
          mwn.step(lr, this.eta(epoch, step), n);
          // eps is zero for MWN: only the counts and the (unnormalised) final weights are used
          accumulateMetaStats(
            gpu,
            rows(engine.weights),
            rows(meta.eps),
            rows(mwn.lastWeights),
            rows(engine.targets),
            stats,
          );
        },
      };
    }
    return {
      name: "meta",
      run: (lr, step) => {
        const n = this.source.count;
        const rows = (t: Tensor) => leadingRows(t, n);
        if (phase.rule === "meta-update-wy") {
          gatherClassWeights(gpu, meta.classWeights, rows(engine.targets), rows(engine.weights));
        }
        meta.step(lr, {
          eta: this.eta(epoch, step),
          tau: this.cfg.tau,
          lookahead: this.cfg.lookahead,
          rule: phase.rule!,
          lookaheadWeights: phase.lookaheadWeights!,
        }, n);
        accumulateMetaStats(
          gpu,
          rows(engine.weights),
          rows(meta.eps),
          rows(meta.finalWeights),
          rows(engine.targets),
          stats,
        );
      },
    };
  }

  /** The hooks of the fit loop. */
  hooks(): FitHooks<EpochRecord, EvalMetrics> {
    return {
      stepKind: (e) => this.stepKind(e),
      epochStart: (e) => this.#epochStart(e),
      epochEnd: (end) => this.#epochEnd(end),
      checkpointState: () => this.#checkpointState(),
      restore: async (file) => {
        this.restore(file);
        // a resumed run rewrites the outputs from the checkpoint (drops lines of a lost epoch);
        // a fork writes its first outputs with its first checkpoint, so that a fork killed
        // before it leaves no outputs without a checkpoint in its folder
        if (!this.forking) await this.writeOutputs("running");
      },
      saved: (record, done) => this.#saved(record, done),
    };
  }

  /**
   * Evaluation on the balanced test subset; after the last epoch with `finalFullTest`, also on
   * the whole test set (kept as {@linkcode final}, saved in the checkpoint).
   */
  async evaluate(epoch: number): Promise<EvalMetrics> {
    const p = this.parts;
    const scale = this.modelConfig.cosine ? LDAM_SCALE : 1;
    const shots = (m: EvalMetrics) => withShots(m, this.data.trainCounts);
    const metrics = shots(
      await evaluate(this.gpu, p.model, p.augmenter, this.data, this.evalBatch, scale),
    );
    if (epoch === this.cfg.epochs - 1 && this.cfg.finalFullTest) {
      const all = balancedSubset(this.data.test.labels, this.data.numClasses, null);
      const full = all.length === this.data.testIndices.length ? metrics : shots(
        await evaluate(
          this.gpu,
          p.model,
          p.augmenter,
          { ...this.data, testIndices: all },
          this.evalBatch,
          scale,
        ),
      );
      this.final = { ...full, epoch };
    }
    return metrics;
  }

  #epochStart(epoch: number): void {
    const kind = this.phases[epoch].kind;
    const C = this.data.numClasses;
    if (kind !== "plain") this.parts.stats.upload(this.gpu, emptyMetaStats(C));
    if (kind === "mwn") this.parts.meta.eps.upload(this.gpu, new Float32Array(this.cfg.batch));
  }

  async #epochEnd(end: EpochEnd<EvalMetrics>): Promise<EpochRecord> {
    const phase = this.phases[end.epoch];
    let epochMeta = null;
    if (phase.kind !== "plain") {
      const C = this.data.numClasses;
      const stats = sumsFromStats(
        await this.parts.stats.read(this.gpu),
        C,
        phase.weights === "zero",
      );
      const sums = phase.kind === "meta" ? stats : { ...emptySums(C, false), ...finalOnly(stats) };
      epochMeta = perClassMeta(sums);
      this.metaSums ??= emptySums(this.data.numClasses, sums.hasEps);
      addSums(this.metaSums, sums);
    }
    const test = end.metrics;
    if (test) {
      this.last = { ...test, epoch: end.epoch };
      if (!this.best || test.top1Error < this.best.top1Error) {
        this.best = { ...test, epoch: end.epoch };
      }
    }
    const { confusion: _, ...epochTest } = test ?? { confusion: null };
    const images = this.source.rows(this.source.imagesOf(end.epoch));
    const record: EpochRecord = {
      epoch: end.epoch,
      phase: phase.kind,
      lr: end.lr,
      trainLoss: end.trainLoss,
      steps: end.steps,
      images,
      test: test ? epochTest as EpochRecord["test"] : null,
      meta: epochMeta,
      timing: { seconds: end.seconds, imagesPerSecond: images / end.seconds },
    };
    this.history.push(record);
    this.epochsDone = end.epoch + 1;
    this.steps += end.steps;
    return record;
  }

  async #checkpointState(): Promise<CheckpointExtra> {
    const tensors = new Map<string, SafeTensor>(
      (await this.parts.meta.checkpointState(CLASS_WEIGHTS_KEY)).tensors,
    );
    if (this.mwn) { for (const [k, v] of await this.mwn.state()) tensors.set(k, v); }
    return {
      tensors,
      metadata: {
        config: JSON.stringify(this.cfg),
        rng_derivation:
          "per epoch e: Rng.derive(seed, 'shuffle'|'augment'|'dev', e) (src/random.ts)",
        last: JSON.stringify(this.last),
        best: JSON.stringify(this.best),
        final: JSON.stringify(this.final),
        init_from: JSON.stringify(this.forkedFrom),
        meta_sums: JSON.stringify(sumsToJson(this.metaSums)),
        wall_seconds: String(this.wallSeconds()),
        model: JSON.stringify(this.modelConfig),
        data_fingerprint: JSON.stringify(this.data.fingerprints),
      },
    };
  }

  /** Restores the run's own state from a checkpoint (the fit loop restores the rest). */
  restore(file: SafetensorsFile): void {
    const m = file.metadata;
    const json = (k: string) => JSON.parse(m[k] ?? "null");
    this.parts.meta.restore(file, CLASS_WEIGHTS_KEY);
    this.mwn?.load(file.tensors);
    this.epochsDone = Number(m.epoch);
    this.steps = Number(m.steps);
    this.history = json("history") ?? [];
    // metrics of a checkpoint from before the sparse confusion form, in today's form
    this.last = metricsFromJson(json("last"));
    this.best = metricsFromJson(json("best"));
    this.final = metricsFromJson(json("final"));
    this.forkedFrom = json("init_from");
    this.metaSums = sumsFromJson(json("meta_sums"));
    this.wallBefore = Number(m.wall_seconds ?? 0);
    if (this.forking) this.#startFork(this.forking);
  }

  /**
   * Set before the fit loop when the checkpoint being restored is another run's (`initFrom`):
   * the run continues from it as its own past (see {@linkcode restore}).
   */
  forking: string | null = null;

  /**
   * A fork keeps the parent's history, metrics and wall time as its own past (what a run
   * from scratch would have at that epoch), records where it came from, and takes its class
   * weights from its own settings when no epoch before the fork could have changed them.
   */
  #startFork(checkpoint: string): void {
    this.final = null;
    this.forkedFrom = { checkpoint, epoch: this.epochsDone, wallSeconds: this.wallBefore };
    const before = this.phases.slice(0, this.epochsDone);
    if (before.every((ph) => ph.kind === "plain")) {
      this.parts.meta.classWeights.upload(this.gpu, Float32Array.from(this.classWeights));
    }
  }

  async #saved(record: EpochRecord, done: boolean): Promise<void> {
    this.completed = await this.writeOutputs(done ? "completed" : "running");
    const t = record.test;
    const pct = (v: number) => `${(100 * v).toFixed(2)}%`;
    this.log(
      `epoch ${record.epoch + 1}/${this.cfg.epochs} ${record.phase} lr ${
        record.lr.toPrecision(3)
      }: ` +
        `train loss ${record.trainLoss.toFixed(4)}` +
        (t
          ? `, test top-1 error ${pct(t.top1Error)} (top-3 ${pct(t.top3Error)}, top-5 ${
            pct(t.top5Error)
          })` + shotText(t.shots)
          : "") +
        `, ${record.timing.seconds.toFixed(1)} s, ${
          record.timing.imagesPerSecond.toFixed(1)
        } img/s`,
    );
  }

  /** The summary written at the last epoch's checkpoint (returned as it is). */
  completed: RunSummary | null = null;
  /** Where lines go. */
  log: (msg: string) => void = () => {};

  /** Wall seconds over all segments so far. */
  wallSeconds(): number {
    return this.wallBefore + (performance.now() - this.segmentStart) / 1000;
  }

  /** The run's summary now. */
  async summary(
    status: RunSummary["status"],
    extra: Partial<RunSummary> = {},
  ): Promise<RunSummary> {
    const d = this.data;
    const metaW = this.phases.some((ph) => ph.rule === "meta-update-wy");
    return {
      status,
      config: this.cfg,
      adapter: {
        description: this.gpu.adapter.description,
        isFallbackAdapter: this.gpu.adapter.isFallbackAdapter,
      },
      data: {
        source: d.source,
        numClasses: d.numClasses,
        image: [...d.image],
        nMax: d.nMax,
        trainCounts: d.trainCounts,
        devCounts: d.devCounts,
        testCounts: d.testCounts,
        trainTotal: d.trainIndices.length,
        testTotal: d.testIndices.length,
      },
      classWeights: this.classWeights,
      margins: this.margins,
      finalClassWeights: metaW
        ? Array.from(await this.parts.meta.classWeights.read(this.gpu))
        : null,
      epochsDone: this.epochsDone,
      steps: this.steps,
      last: this.last,
      best: this.best,
      final: this.final,
      initFrom: this.forkedFrom,
      meta: this.metaSums ? perClassMeta(this.metaSums) : null,
      nonFinite: null,
      wallSeconds: this.wallSeconds(),
      ...extra,
    };
  }

  /** Writes metrics.jsonl, summary.json and report.html for `status`; returns the summary. */
  async writeOutputs(
    status: RunSummary["status"],
    extra: Partial<RunSummary> = {},
  ): Promise<RunSummary> {
    const summary = await this.summary(status, extra);
    const out = this.cfg.out;
    const lines = this.history.map((h) => JSON.stringify(h) + "\n").join("");
    await writeFileAtomic(join(out, OUTPUT_FILES.metrics), lines);
    await writeFileAtomic(join(out, OUTPUT_FILES.summary), JSON.stringify(summary, null, 2) + "\n");
    await writeFileAtomic(join(out, OUTPUT_FILES.report), renderReport(summary, this.history));
    return summary;
  }
}

// ---- the baselines' recipes (src/train/recipe.ts): classifier init and steps per epoch

/** Whether the run trains the sigmoid focal loss on a linear classifier (Cui et al.). */
function sigmoidBias(cfg: TrainConfig, model: ResNetConfig): boolean {
  return methodLoss(cfg.method, cfg.loss) === "focal" && cfg.focalForm === "sigmoid" &&
    !model.cosine;
}

/**
 * The classifier's initial values where the recipe departs from the ResNet's own init (Kaiming
 * weight, zero bias), drawn from a stream of their own, `(seed, "init-classifier")`, so the
 * ResNet's draws stay as they are: the cosine classifier's rows at unit norm (LDAM's), the
 * linear classifier's bias from PyTorch's default or Cui's prior.
 */
export function classifierInit(
  cfg: TrainConfig,
  model: ResNetConfig,
): Map<string, Float32Array> {
  const rng = Rng.derive(cfg.seed, "init-classifier");
  const C = model.numClasses, features = 64;
  const out = new Map<string, Float32Array>();
  if (model.cosine) {
    if (cfg.classifierInit === "unit-norm") {
      out.set("linear.weight", unitNormRows(rng, C, features));
    }
  } else if (cfg.biasInit === "torch") {
    out.set("linear.bias", torchLinearBias(rng, features, C));
  } else if (cfg.biasInit === "prior") {
    out.set("linear.bias", priorBias(C));
  }
  return out;
}

/**
 * Refuses a --batch larger than the long-tailed training set, before the GPU is taken: the
 * engine's buffers are sized for a whole batch (--batch 100000 on 492 images allocated for
 * 100000 and stalled), while every step could hold at most `count` images.
 */
export function checkBatchFits(cfg: TrainConfig, count: number): void {
  if (cfg.batch <= count) return;
  throw new ConfigError(
    `--batch ${cfg.batch} is larger than the long-tailed training set (${count} ` +
      `image${count === 1 ? "" : "s"}): ` +
      "no step could fill a batch",
    {
      flag: "--batch",
      hint: `give --batch at most ${count}, or more training images (--imbalance, ` +
        "--max-per-class)",
    },
  );
}

/**
 * Refuses settings that leave an epoch without a step (`--last-batch drop` with fewer images
 * than a batch), before any work starts.
 */
export function checkEpochSteps(cfg: TrainConfig, images: { label: string; count: number }[]) {
  if (cfg.lastBatch !== "drop") return;
  for (const { label, count } of images) {
    if (count < cfg.batch) {
      throw new ConfigError(
        `--last-batch drop with --batch ${cfg.batch}: ${label} has ${count} images, so its ` +
          `epochs would have no step`,
        { flag: "--last-batch", hint: "use --last-batch partial or wrap, or a smaller --batch" },
      );
    }
  }
}
