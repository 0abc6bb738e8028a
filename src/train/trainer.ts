/**
 * The training loop: every method of {@linkcode phaseOf} over one loop of plain, meta and
 * Meta-Weight-Net steps, with evaluation, checkpoints at every epoch end, resume, metrics,
 * summary and report.
 *
 * Reproducibility: all randomness of an epoch comes from generators derived from
 * (seed, epoch) ({@linkcode EpochRandom}), GPU kernels are deterministic, and a checkpoint holds
 * the complete state at an epoch end (parameters, BN buffers, momentum, meta-learned class
 * weights, the Meta-Weight-Net and its Adam state, history and statistics), so a run killed at
 * any point and resumed ends bit-for-bit where an uninterrupted run ends.
 */
import { join } from "node:path";
import { Gpu } from "../gpu/runtime.ts";
import { ResNet, resnetInit, resnetSpecs } from "../nn/resnet.ts";
import { Tensor } from "../tensor.ts";
import type { RngState } from "../random.ts";
import type { LossOptions } from "../ops/loss.ts";
import type { SgdOptions } from "../optim/sgd.ts";
import { Batcher } from "../data/batcher.ts";
import { GpuAugmenter } from "../data/augment.ts";
import { effectiveNumberWeights } from "../data/weights.ts";
import {
  addModelState,
  addMomentum,
  MOMENTUM_PREFIX,
  readCheckpoint,
  removeStaleTemps,
  type SafeTensor,
  type SafetensorsFile,
  takeF32,
  writeCheckpoint,
  writeFileAtomic,
} from "../checkpoint/mod.ts";
import { renderReport } from "../report/html.ts";
import {
  ConfigError,
  lrAt,
  methodLoss,
  modelDepth,
  presetConfig,
  type PresetName,
  resolveTrainConfig,
  type TrainConfig,
  validateConfig,
} from "./config.ts";
import { type Phase, phaseOf } from "./methods.ts";
import {
  batchIndices,
  EpochRandom,
  fineTuneSubset,
  prepareData,
  type RunData,
  type SuppliedData,
} from "./data.ts";
import { evaluate } from "./eval.ts";
import {
  accumulateMetaStats,
  emptyMetaStats,
  gatherClassWeights,
  META_STATS_FIELDS,
  MetaStat,
  monitorStep,
} from "./kernels.ts";
import { MetaWeightNet } from "./mwn.ts";
import { Progress, type ProgressSink, stdoutSink } from "./progress.ts";
import { TrainState } from "./step.ts";
import { checkOutDir, checkResumeData, checkResumeMetadata } from "./validate.ts";
import type { EpochMetrics, EpochRecord, PerClassMeta, RunSummary } from "./summary.ts";

/** Options of {@linkcode train}: any settings (over a preset), plus how to run. */
export interface TrainOptions extends Partial<TrainConfig> {
  /** Base settings; default "default". */
  preset?: PresetName;
  /** Continue from the checkpoint in `out` (start fresh when there is none). */
  resume?: boolean;
  /** Train/test data in memory instead of loading `dataset`. */
  data?: SuppliedData;
  /** Progress output; default stdout (a bar on a terminal); null for silence. */
  progress?: ProgressSink | null;
  /** Seconds between plain progress lines when stdout is not a terminal; default 20. */
  progressInterval?: number;
  /** A GPU to use (kept open); default: acquire one and dispose it at the end. */
  gpu?: Gpu;
  /**
   * Train at most this many epochs in this call, then return (status "running"); a later call
   * with `resume` continues. For time-boxed jobs.
   */
  maxEpochs?: number;
}

/** File names inside `out`. */
export const OUTPUT_FILES = {
  checkpoint: "checkpoint.safetensors",
  metrics: "metrics.jsonl",
  summary: "summary.json",
  report: "report.html",
} as const;

const CHECKPOINT_FORMAT = "tailgrad-train-checkpoint/1";
/** Settings that may differ between a run and its resumption. */
const RESUME_FREE: (keyof TrainConfig)[] = ["dataDir", "download", "out"];
const CONFIG_KEYS = Object.keys(presetConfig("default")) as (keyof TrainConfig)[];

/** The settings of a run from a preset and overrides (validated; see resolveTrainConfig). */
export function resolveConfig(options: TrainOptions = {}): TrainConfig {
  return resolveTrainConfig(options);
}

/** Cumulative per-class sums of meta statistics (float64). */
interface MetaSums {
  sumEps: number[];
  sumEpsOverW: number[];
  count: number[];
  min: number[];
  sumFinal: number[];
  /** Classes seen with w = 0 (eps / w undefined). */
  zeroW: boolean[];
  /** Whether eps exists (false for MWN). */
  hasEps: boolean;
}

function emptySums(C: number, hasEps: boolean): MetaSums {
  return {
    sumEps: new Array(C).fill(0),
    sumEpsOverW: new Array(C).fill(0),
    count: new Array(C).fill(0),
    min: new Array(C).fill(Infinity),
    sumFinal: new Array(C).fill(0),
    zeroW: new Array(C).fill(false),
    hasEps,
  };
}

function addSums(into: MetaSums, s: MetaSums): void {
  for (let c = 0; c < into.count.length; c++) {
    into.sumEps[c] += s.sumEps[c];
    into.sumEpsOverW[c] += s.sumEpsOverW[c];
    into.count[c] += s.count[c];
    into.min[c] = Math.min(into.min[c], s.min[c]);
    into.sumFinal[c] += s.sumFinal[c];
    into.zeroW[c] ||= s.zeroW[c];
  }
  into.hasEps &&= s.hasEps;
}

function perClassMeta(s: MetaSums): PerClassMeta {
  const C = s.count.length;
  const mean = (sum: number[], ok: (c: number) => boolean) =>
    Array.from({ length: C }, (_, c) => (s.count[c] > 0 && ok(c) ? sum[c] / s.count[c] : null));
  return {
    meanEps: mean(s.sumEps, () => s.hasEps),
    meanEpsOverW: mean(s.sumEpsOverW, (c) => s.hasEps && !s.zeroW[c]),
    minWPlusEps: Array.from(
      { length: C },
      (_, c) => (s.hasEps && s.count[c] > 0 && Number.isFinite(s.min[c]) ? s.min[c] : null),
    ),
    meanFinalWeight: mean(s.sumFinal, () => true),
    count: [...s.count],
  };
}

function sumsToJson(s: MetaSums | null): unknown {
  if (!s) return null;
  return { ...s, min: s.min.map((v) => (Number.isFinite(v) ? v : null)) };
}

function sumsFromJson(j: unknown): MetaSums | null {
  if (!j) return null;
  const s = j as MetaSums & { min: (number | null)[] };
  return { ...s, min: s.min.map((v) => (v === null ? Infinity : v)) };
}

/** LDAM margins C / n_y^(1/4), scaled so the largest is 0.5. */
export function ldamMargins(counts: number[]): number[] {
  const raw = counts.map((n) => (n > 0 ? 1 / Math.pow(n, 0.25) : 0));
  const max = Math.max(...raw);
  return raw.map((m) => (max > 0 ? (m * 0.5) / max : 0));
}

function allFinite(maps: Map<string, Float32Array>[]): boolean {
  for (const m of maps) {
    for (const v of m.values()) {
      for (let i = 0; i < v.length; i++) if (!Number.isFinite(v[i])) return false;
    }
  }
  return true;
}

/**
 * Trains a model and returns the run's summary (also written to `out/summary.json`). A
 * non-finite loss stops the run: the summary then has status "stopped" and `nonFinite` set, and
 * the checkpoint of the last good epoch is kept.
 */
export async function train(options: TrainOptions = {}): Promise<RunSummary> {
  let cfg = resolveConfig(options);
  const sink = options.progress === undefined ? stdoutSink() : options.progress;
  const progress = new Progress(sink ?? { line() {} }, options.progressInterval ?? 20);
  const log = (msg: string) => progress.line(msg);

  // ---- resume or fresh start; every check before the GPU is acquired or a file written
  const ckptPath = join(cfg.out, OUTPUT_FILES.checkpoint);
  await checkOutDir(cfg.out, OUTPUT_FILES.checkpoint);
  const ckpt = await readCheckpoint(ckptPath);
  if (ckpt && !options.resume) {
    throw new ConfigError(
      `${cfg.out} already holds a run (${OUTPUT_FILES.checkpoint}); pass --resume to continue ` +
        `it, or choose another --out`,
    );
  }
  let resumed: ResumeState | null = null;
  if (ckpt && options.resume) {
    const saved = checkResumeMetadata(ckpt, ckptPath, CHECKPOINT_FORMAT).config;
    const conflicts = CONFIG_KEYS.filter((k) =>
      !RESUME_FREE.includes(k) && options[k] !== undefined &&
      JSON.stringify(options[k]) !== JSON.stringify(saved[k])
    );
    if (options.preset !== undefined && options.preset !== saved.preset) conflicts.push("preset");
    if (conflicts.length) {
      throw new ConfigError(
        `--resume: ${
          conflicts.map((k) => `--${kebab(k)}`).join(", ")
        } differ from the checkpoint's settings (${
          conflicts.map((k) => `${kebab(k)}=${JSON.stringify(saved[k])}`).join(", ")
        }); drop them to continue the run`,
      );
    }
    cfg = { ...saved, dataDir: options.dataDir ?? saved.dataDir, out: cfg.out };
    if (options.download !== undefined) cfg.download = options.download;
    validateConfig(cfg);
    resumed = readResumeState(ckpt);
    log(`resuming ${cfg.out} after epoch ${resumed.epochsDone} (${resumed.steps} steps)`);
  } else if (options.resume) {
    log(`no checkpoint in ${cfg.out}: starting from scratch`);
  }

  const data = await prepareData(cfg, options.data, log);
  if (ckpt && resumed) checkResumeData(ckpt, ckptPath, cfg, data);
  await Deno.mkdir(cfg.out, { recursive: true });
  await removeStaleTemps(ckptPath);
  const gpu = options.gpu ?? await Gpu.create();
  const ownsGpu = !options.gpu;
  const cleanup: (() => void)[] = [];
  try {
    return await runTraining(gpu, cfg, data, ckpt && resumed ? { ckpt, state: resumed } : null, {
      progress,
      log,
      cleanup,
      maxEpochs: options.maxEpochs ?? Infinity,
    });
  } finally {
    for (const f of cleanup.reverse()) f();
    if (ownsGpu) gpu.dispose();
  }
}

function kebab(k: string): string {
  return k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** The JSON part of a checkpoint. */
interface ResumeState {
  epochsDone: number;
  steps: number;
  history: EpochRecord[];
  last: EpochMetrics | null;
  best: EpochMetrics | null;
  metaSums: MetaSums | null;
  wallSeconds: number;
  rng: Record<string, RngState> | null;
}

function readResumeState(ckpt: SafetensorsFile): ResumeState {
  const m = ckpt.metadata;
  const j = (k: string) => JSON.parse(m[k] ?? "null");
  return {
    epochsDone: Number(m.epoch),
    steps: Number(m.steps),
    history: j("history") ?? [],
    last: j("last"),
    best: j("best"),
    metaSums: sumsFromJson(j("meta_sums")),
    wallSeconds: Number(m.wall_seconds ?? 0),
    rng: j("rng"),
  };
}

interface RunIo {
  progress: Progress;
  log: (msg: string) => void;
  cleanup: (() => void)[];
  maxEpochs: number;
}

async function runTraining(
  gpu: Gpu,
  cfg: TrainConfig,
  data: RunData,
  resume: { ckpt: SafetensorsFile; state: ResumeState } | null,
  io: RunIo,
): Promise<RunSummary> {
  const segmentStart = performance.now();
  const C = data.numClasses;
  const [ch, H, W] = data.image;
  const loss = methodLoss(cfg.method, cfg.loss);
  const modelCfg = {
    depth: modelDepth(cfg.model),
    inChannels: ch,
    numClasses: C,
    cosine: loss === "ldam",
  };
  const model = new ResNet(gpu, modelCfg);
  const devPerClassBatch = Math.max(1, Math.round(cfg.batch / C));
  const devBatch = devPerClassBatch * C;
  const state = new TrainState(gpu, model, {
    batch: cfg.batch,
    devBatch,
    image: data.image,
    numClasses: C,
  });
  io.cleanup.push(() => state.destroy());
  const evalBatch = Math.max(1, Math.min(200, data.testIndices.length));
  const augmenter = new GpuAugmenter(gpu, {
    channels: ch,
    height: H,
    width: W,
    mean: data.mean,
    std: data.std,
    pad: data.pad,
    maxBatch: Math.max(cfg.batch, devBatch, evalBatch),
  });
  io.cleanup.push(() => augmenter.dispose());

  const cb = Array.from(effectiveNumberWeights(data.trainCounts, cfg.beta));
  const margins = loss === "ldam" ? ldamMargins(data.trainCounts) : null;
  const marginTensor = margins ? Tensor.from(gpu, margins, [C]) : null;
  if (marginTensor) io.cleanup.push(() => marginTensor.release(gpu));
  const lossOpts: LossOptions = loss === "ce"
    ? {}
    : loss === "focal"
    ? { gamma: cfg.focalGamma }
    : { scale: 30, margins: marginTensor };
  const logitScale = loss === "ldam" ? 30 : 1;
  const phases = Array.from(
    { length: cfg.epochs },
    (_, e) => phaseOf(cfg.method, e, cfg.metaStart),
  );
  const mwn = phases.some((p) => p.kind === "mwn") ? new MetaWeightNet(cfg.seed) : null;
  const subset = phases.some((p) => p.images === "balanced-subset")
    ? fineTuneSubset(data, cfg.seed)
    : null;
  const stats = Tensor.empty(gpu, [C * META_STATS_FIELDS]);
  const monitor = Tensor.empty(gpu, [4]);
  io.cleanup.push(() => {
    stats.release(gpu);
    monitor.release(gpu);
  });
  const specs = resnetSpecs(modelCfg);

  // ---- initial state
  let epochsDone = 0, steps = 0, wallBefore = 0;
  let history: EpochRecord[] = [];
  let last: EpochMetrics | null = null, best: EpochMetrics | null = null;
  let metaSums: MetaSums | null = null;
  let rngState: Record<string, RngState> | null = null;
  if (resume) {
    const f = resume.ckpt;
    state.params.upload(takeF32(f, specs.params));
    state.buffers.upload(takeF32(f, specs.buffers));
    state.momentum.upload(takeF32(f, specs.params, MOMENTUM_PREFIX));
    const cw = f.tensors.get("train.class_weights");
    if (!cw || cw.data.length !== C) throw new Error("checkpoint lacks train.class_weights");
    state.classWeights.upload(gpu, cw.data as Float32Array);
    if (mwn) mwn.load(f.tensors);
    ({ epochsDone, steps, history, last, best, metaSums } = resume.state);
    wallBefore = resume.state.wallSeconds;
    rngState = resume.state.rng;
  } else {
    const init = resnetInit(modelCfg, cfg.seed);
    state.params.upload(init);
    state.buffers.upload(init);
    state.classWeights.upload(gpu, Float32Array.from(cb));
  }

  const totalImages = data.trainIndices.length;
  io.log(
    `tailgrad: ${cfg.method} (${loss}) on ${cfg.dataset} IF ${cfg.imbalance}, ${cfg.model}, ` +
      `${cfg.epochs} epochs (stage 2 from ${cfg.metaStart}), batch ${cfg.batch}`,
  );
  io.log(
    `  data: ${data.source}; train ${totalImages} [${
      data.trainCounts.join(", ")
    }], dev ${data.devIndices.length}, test ${data.testIndices.length}; adapter: ${gpu.adapter.description}`,
  );

  const adapter = {
    description: gpu.adapter.description,
    isFallbackAdapter: gpu.adapter.isFallbackAdapter,
  };
  const makeSummary = (
    status: RunSummary["status"],
    extra: Partial<RunSummary> = {},
    finalClassWeights: number[] | null = null,
  ): RunSummary => ({
    status,
    config: cfg,
    adapter,
    data: {
      source: data.source,
      numClasses: C,
      image: [...data.image],
      nMax: data.nMax,
      trainCounts: data.trainCounts,
      devCounts: data.devCounts,
      testCounts: data.testCounts,
      trainTotal: totalImages,
      testTotal: data.testIndices.length,
    },
    classWeights: cb,
    margins,
    finalClassWeights,
    epochsDone,
    steps,
    last,
    best,
    meta: metaSums ? perClassMeta(metaSums) : null,
    nonFinite: null,
    wallSeconds: wallBefore + (performance.now() - segmentStart) / 1000,
    ...extra,
  });
  const writeOutputs = async (summary: RunSummary) => {
    await writeFileAtomic(
      join(cfg.out, OUTPUT_FILES.metrics),
      history.map((h) => JSON.stringify(h) + "\n").join(""),
    );
    await writeFileAtomic(
      join(cfg.out, OUTPUT_FILES.summary),
      JSON.stringify(summary, null, 2) + "\n",
    );
    await writeFileAtomic(join(cfg.out, OUTPUT_FILES.report), renderReport(summary, history));
  };
  // a resumed run rewrites the outputs from the checkpoint (drops lines of a lost epoch)
  if (resume) await writeOutputs(makeSummary("running"));

  const sgdBase = { momentum: cfg.momentum, weightDecay: cfg.weightDecay, nesterov: cfg.nesterov };
  const trainBatcher = new Batcher(data.train, cfg.batch, 2);
  const devBatcher = new Batcher(data.train, devBatch, 2);
  const idx = new Int32Array(cfg.batch);
  const devIdx = new Int32Array(devBatch);
  const params = new Uint32Array(Math.max(cfg.batch, devBatch));
  const hostW = new Float32Array(cfg.batch);
  const epochSeconds = { plain: NaN, meta: NaN, mwn: NaN } as Record<Phase["kind"], number>;
  for (const h of history) {
    if (!Number.isFinite(epochSeconds[h.phase])) epochSeconds[h.phase] = h.timing.seconds;
  }

  const startEpoch = epochsDone;
  const endEpoch = Math.min(cfg.epochs, startEpoch + io.maxEpochs);
  const isMetaW = phases.some((ph) => ph.rule === "meta-update-wy");
  // The summary written at the last epoch's checkpoint, returned as it is.
  let completed: RunSummary | null = null;
  for (let epoch = startEpoch; epoch < endEpoch; epoch++) {
    const t0 = performance.now();
    const phase = phases[epoch];
    const lr = lrAt(cfg, epoch);
    const sgd: SgdOptions = { lr, ...sgdBase };
    const rnd = new EpochRandom(cfg.seed, epoch);
    if (rngState && epoch === startEpoch) rnd.setState(rngState);
    const order = rnd.order(phase.images === "all" ? data.trainIndices : subset!);
    const nSteps = Math.ceil(order.length / cfg.batch);
    const classW = phase.weights === "cb"
      ? cb
      : new Array(C).fill(phase.weights === "zero" ? 0 : 1);
    const mwnSums = phase.kind === "mwn" ? emptySums(C, false) : null;
    if (phase.kind === "meta") stats.upload(gpu, emptyMetaStats(C));
    monitor.upload(gpu, [steps, -1, 0, 0]);
    // ETA of the epochs after this one, from the last measured epoch of each kind
    let later = 0;
    for (let e = epoch + 1; e < cfg.epochs; e++) {
      const k = phases[e].kind;
      const est = epochSeconds[k];
      later += Number.isFinite(est) ? est : (epochSeconds.plain || 0) * (k === "plain" ? 1 : 4);
    }
    io.progress.epochStart(epoch, cfg.epochs, nSteps, phase.kind, later);

    let syncEvery = 1, sinceSync = 0, lastSync = performance.now();
    let stopped: RunSummary["nonFinite"] = null;
    for (let s = 0; s < nSteps; s++) {
      batchIndices(order, s, cfg.batch, idx);
      const tb = trainBatcher.gather(idx);
      augmenter.run(
        tb.pixels,
        rnd.augmentParams(cfg.batch, data.pad, data.flip, params),
        cfg.batch,
        state.x.view,
      );
      state.labels.upload(gpu, tb.labelsU32);
      const metaUpdatesW = phase.kind === "meta" && phase.rule === "meta-update-wy";
      if (!metaUpdatesW) {
        for (let k = 0; k < cfg.batch; k++) hostW[k] = classW[tb.labels[k]];
        state.weights.upload(gpu, hostW);
      }
      if (phase.kind !== "plain") {
        rnd.devBatch(data.devByClass, devPerClassBatch, devIdx);
        const db = devBatcher.gather(devIdx);
        augmenter.run(
          db.pixels,
          rnd.augmentParams(devBatch, data.pad, data.flip, params),
          devBatch,
          state.devX.view,
        );
        state.devLabels.upload(gpu, db.labelsU32);
      }
      if (phase.kind === "plain") {
        state.plainStep(lossOpts, sgd);
      } else if (phase.kind === "meta") {
        if (metaUpdatesW) gatherClassWeights(gpu, state.classWeights, state.labels, state.weights);
        state.metaStep(lossOpts, sgd, {
          eta: lr,
          tau: cfg.tau,
          lookahead: cfg.lookahead,
          rule: phase.rule!,
          lookaheadWeights: phase.lookaheadWeights!,
        });
        accumulateMetaStats(gpu, state.weights, state.eps, state.finalWeights, state.labels, stats);
      } else {
        await state.metaStepHost(lossOpts, sgd, { eta: lr, lookahead: "mean" }, mwn!);
        for (let k = 0; k < cfg.batch; k++) {
          const y = tb.labels[k];
          mwnSums!.count[y]++;
          mwnSums!.sumFinal[y] += mwn!.lastWeights[k];
        }
      }
      monitorStep(gpu, state.lossSum, monitor);
      sinceSync++;
      if (sinceSync >= syncEvery || s === nSteps - 1) {
        const mon = await monitor.read(gpu);
        const now = performance.now();
        const perStep = (now - lastSync) / 1000 / sinceSync;
        syncEvery = Math.max(1, Math.min(10, Math.round(0.5 / Math.max(perStep, 1e-6))));
        sinceSync = 0;
        lastSync = now;
        if (mon[1] >= 0) {
          const step = mon[1];
          stopped = { step, epoch, stepInEpoch: step - (mon[0] - (s + 1)) };
          break;
        }
        io.progress.update(s + 1, (s + 1) * cfg.batch, mon[2] / mon[3]);
      }
    }
    if (stopped) return await stop(stopped);

    const trainLoss = await state.takeMeanLoss();
    const evalDue = (epoch + 1) % cfg.evalEvery === 0 || epoch === cfg.epochs - 1;
    const test = evalDue
      ? await evaluate(
        gpu,
        model,
        state.params,
        state.buffers,
        augmenter,
        data,
        evalBatch,
        logitScale,
      )
      : null;
    let epochMeta: PerClassMeta | null = null;
    if (phase.kind !== "plain") {
      let sums: MetaSums;
      if (phase.kind === "meta") {
        const v = await stats.read(gpu);
        sums = emptySums(C, true);
        for (let c = 0; c < C; c++) {
          const b = c * META_STATS_FIELDS;
          sums.sumEps[c] = v[b + MetaStat.sumEps];
          sums.sumEpsOverW[c] = v[b + MetaStat.sumEpsOverW];
          sums.count[c] = v[b + MetaStat.count];
          sums.min[c] = v[b + MetaStat.count] > 0 ? v[b + MetaStat.minWPlusEps] : Infinity;
          sums.sumFinal[c] = v[b + MetaStat.sumFinal];
          sums.zeroW[c] = phase.weights === "zero";
        }
      } else {
        sums = mwnSums!;
      }
      epochMeta = perClassMeta(sums);
      if (!metaSums) metaSums = emptySums(C, sums.hasEps);
      addSums(metaSums, sums);
    }
    steps += nSteps;

    // ---- checkpoint (only a state whose every value is finite)
    const [p, b, mom] = await Promise.all([
      state.params.download(),
      state.buffers.download(),
      state.momentum.download(),
    ]);
    if (!Number.isFinite(trainLoss) || !allFinite([p, b, mom])) {
      return await stop({ step: steps, epoch, stepInEpoch: nSteps });
    }
    const seconds = (performance.now() - t0) / 1000;
    epochSeconds[phase.kind] = seconds;
    const record: EpochRecord = {
      epoch,
      phase: phase.kind,
      lr,
      trainLoss,
      steps: nSteps,
      images: nSteps * cfg.batch,
      test: test
        ? {
          top1Error: test.top1Error,
          top3Error: test.top3Error,
          top5Error: test.top5Error,
          loss: test.loss,
          perClassAccuracy: test.perClassAccuracy,
          count: test.count,
        }
        : null,
      meta: epochMeta,
      timing: { seconds, imagesPerSecond: (nSteps * cfg.batch) / seconds },
    };
    history.push(record);
    if (test) {
      last = { ...test, epoch };
      if (!best || test.top1Error < best.top1Error) best = { ...test, epoch };
    }
    epochsDone = epoch + 1;
    const classWeightsNow = await state.classWeights.read(gpu);
    const tensors = new Map<string, SafeTensor>();
    addModelState(tensors, specs, p, b, steps);
    addMomentum(tensors, specs.params, mom);
    tensors.set("train.class_weights", { dtype: "F32", shape: [C], data: classWeightsNow });
    if (mwn) { for (const [k, v] of mwn.state()) tensors.set(k, v); }
    const wall = wallBefore + (performance.now() - segmentStart) / 1000;
    await writeCheckpoint(ckptPath(cfg), tensors, {
      format: CHECKPOINT_FORMAT,
      epoch: String(epochsDone),
      steps: String(steps),
      config: JSON.stringify(cfg),
      rng: JSON.stringify(new EpochRandom(cfg.seed, epochsDone).getState()),
      rng_derivation: "per epoch e: Rng.derive(seed, 'shuffle'|'augment'|'dev', e) (src/random.ts)",
      history: JSON.stringify(history),
      last: JSON.stringify(last),
      best: JSON.stringify(best),
      meta_sums: JSON.stringify(sumsToJson(metaSums)),
      wall_seconds: String(wall),
      model: JSON.stringify(modelCfg),
      data_fingerprint: JSON.stringify(data.fingerprints),
    });
    const done = epochsDone === cfg.epochs;
    const summary = makeSummary(
      done ? "completed" : "running",
      {},
      isMetaW ? Array.from(classWeightsNow) : null,
    );
    await writeOutputs(summary);
    if (done) completed = summary;
    io.progress.line(
      `epoch ${epoch + 1}/${cfg.epochs} ${phase.kind} lr ${lr.toPrecision(3)}: train loss ${
        trainLoss.toFixed(4)
      }${
        test
          ? `, test top-1 error ${(100 * test.top1Error).toFixed(2)}% (top-3 ${
            (100 * test.top3Error).toFixed(2)
          }%, top-5 ${(100 * test.top5Error).toFixed(2)}%)`
          : ""
      }, ${seconds.toFixed(1)} s, ${record.timing.imagesPerSecond.toFixed(1)} img/s`,
    );
  }
  if (epochsDone < cfg.epochs) {
    return makeSummary(
      "running",
      {},
      isMetaW ? Array.from(await state.classWeights.read(gpu)) : null,
    );
  }
  // Written at the last checkpoint; only a resumed run with no epoch left writes it here.
  let final = completed;
  if (!final) {
    final = makeSummary(
      "completed",
      {},
      isMetaW ? Array.from(await state.classWeights.read(gpu)) : null,
    );
    await writeOutputs(final);
  }
  io.progress.line(
    `done: ${final.epochsDone} epochs in ${
      (final.wallSeconds / 60).toFixed(1)
    } min; last top-1 error ${(100 * (final.last?.top1Error ?? NaN)).toFixed(2)}%, best ${
      (100 * (final.best?.top1Error ?? NaN)).toFixed(2)
    }% (epoch ${(final.best?.epoch ?? -1) + 1}); outputs in ${cfg.out}`,
  );
  return final;

  async function stop(at: NonNullable<RunSummary["nonFinite"]>): Promise<RunSummary> {
    const kept = epochsDone > 0
      ? `kept the checkpoint of epoch ${epochsDone}`
      : "no checkpoint was written";
    const message = `non-finite loss at step ${at.step} (epoch ${
      at.epoch + 1
    }, step ${at.stepInEpoch} of the epoch); stopped, ${kept}`;
    const summary = makeSummary("stopped", { message, nonFinite: at });
    await writeOutputs(summary);
    io.progress.line(`stopped: ${message}`);
    return summary;
  }
}

function ckptPath(cfg: TrainConfig): string {
  return join(cfg.out, OUTPUT_FILES.checkpoint);
}
