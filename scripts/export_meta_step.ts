/**
 * `deno task export-meta-step --checkpoint FILE --out DIR`: runs ONE meta step of a long-tail
 * run from any of its checkpoints (format `tailgrad-train-checkpoint/1`: any method, model, loss
 * and dev loss of the long-tail trainer; the run's config is in the checkpoint) and writes
 * everything needed to recompute it independently (e.g. in PyTorch with a double backward) to
 * `DIR/meta_step.safetensors`. Large-run checkpoints (`tailgrad-large-checkpoint/1`) are refused.
 *
 * The step is the one the run takes next: epoch `epoch` of the checkpoint (the last epoch for a
 * finished run), its first batch and dev batch from the run's data and generators, the
 * optimiser's lr and the look-ahead's eta of that step from the run's own schedule (decays,
 * warm-up, `--lr-schedule`), momentum and meta-learned class weights restored. An epoch that is
 * not a meta epoch (stage 1, or a method without meta steps) takes the paper's meta step
 * (w = class-balanced weights, final weights w + eps).
 *
 * - `before.<name>` / `after.<name>`: parameters and BN running statistics (PyTorch state_dict
 *   names); `before.optimizer.momentum.<name>` / `after.optimizer.momentum.<name>`;
 *   `lookahead.<name>`: the look-ahead parameters theta';
 * - `batch.x` [B,C,H,W] (augmented, as the model sees it), `batch.labels` (I32) [B], `dev.x`,
 *   `dev.labels`;
 * - `eta`, `lr`, `tau` (F32 scalars), `losses` [B] (the run's per-example loss at theta, BN in
 *   train mode), `dev_losses` [devBatch] (the run's per-example dev loss at theta'),
 *   `class_weights` / `class_weights_after` [classes], `weights` [B] (w_i), `eps` [B],
 *   `final_weights` [B];
 * - metadata `config` (the run's full config), `model`, `loss` and `dev_loss` (each loss's closed
 *   form: softmax or sigmoid, focal gamma, scale s, LDAM margins), `step` (epoch, rule,
 *   look-ahead, eta, lr, tau, SGD settings), `source`, and `definition` (the math, in words, with
 *   this run's losses written out).
 */
import { join } from "node:path";
import { Gpu } from "../src/gpu/runtime.ts";
import { Ctx } from "../src/autograd/tape.ts";
import type { Tensor } from "../src/tensor.ts";
import { TRAIN_NO_UPDATE } from "../src/nn/module.ts";
import type { FlatTensors } from "../src/nn/params.ts";
import type { LossFn } from "../src/engine/step.ts";
import type { LossOptions } from "../src/ops/loss.ts";
import { takeF32 } from "../src/checkpoint/checkpoint.ts";
import {
  encodeSafetensors,
  readCheckpoint,
  type SafeTensor,
  type SafetensorsFile,
  writeFileAtomic,
} from "../src/checkpoint/mod.ts";
import type { TrainConfig } from "../src/train/config.ts";
import { prepareData } from "../src/train/data.ts";
import { phaseOf } from "../src/train/methods.ts";
import { LongTailRun } from "../src/train/run.ts";
import { CHECKPOINT_FORMAT } from "../src/train/trainer.ts";
import { LARGE_PRESETS } from "../src/large/config.ts";
import { LARGE_CHECKPOINT_FORMAT } from "../src/large/trainer.ts";
import { checkResumeData, checkResumeMetadata } from "../src/train/validate.ts";
import {
  checkOutFolder,
  type FlagTable,
  parseFlags,
  UsageError,
  usageLines,
} from "../src/cli/flags.ts";
import { problemOf, reportError, UserError } from "../src/errors.ts";

const FLAGS: FlagTable<"checkpoint" | "out" | "dataDir" | "help"> = {
  "checkpoint": {
    key: "checkpoint",
    kind: "string",
    help: `a long-tail run's checkpoint.safetensors (format ${CHECKPOINT_FORMAT}); required`,
  },
  "out": {
    key: "out",
    kind: "string",
    help: "folder for meta_step.safetensors, under runs/ or /tmp (created if absent); required",
  },
  "data-dir": {
    key: "dataDir",
    kind: "string",
    help: "the dataset folder, if the run's data moved; nothing is downloaded",
    defaultText: "where the run read it",
  },
  "help": { key: "help", kind: "bool", help: "show this help" },
};

const USAGE = [
  "usage: deno task export-meta-step --checkpoint FILE --out DIR [--data-dir DIR]",
  "",
  "Runs the next meta step of a long-tail run from its checkpoint and writes",
  "DIR/meta_step.safetensors: the step's inputs, the state before and after, eps, the final",
  "weights and the math, for recomputing the step elsewhere (e.g. PyTorch). Checkpoints of the",
  `large presets (${LARGE_CHECKPOINT_FORMAT}) are not supported. The task may write only under`,
  "runs/ and /tmp, and reads the run's data without downloading it.",
  "",
  "flags:",
  ...usageLines(FLAGS),
].join("\n");

/** What `deno task export-meta-step` may write (its --allow-write), for errors. */
const WRITE_SCOPE = "the export-meta-step task may write only under runs/ and /tmp";

/** The flags; a bad one is a UsageError (exit status 2, printed by the caller). */
function parse(args: string[]): { checkpoint: string; out: string; dataDir: string | null } {
  const { help, values } = parseFlags(args, FLAGS);
  const v = values as { checkpoint?: string; out?: string; dataDir?: string };
  if (help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  if (!v.checkpoint) {
    throw new UsageError("--checkpoint FILE is required (a run's checkpoint.safetensors)", {
      flag: "--checkpoint",
    });
  }
  if (!v.out) throw new UsageError("--out DIR is required", { flag: "--out" });
  return { checkpoint: v.checkpoint, out: v.out, dataDir: v.dataDir ?? null };
}

/** The file an export writes in --out, and the format tag that marks it as ours. */
const OUT_FILE = "meta_step.safetensors";
const META_STEP_FORMAT = "tailgrad-meta-step/1";

/** Refuses an --out this process may not write, before any work. */
async function checkOut(out: string): Promise<void> {
  const w = await Deno.permissions.query({ name: "write", path: out });
  if (w.state !== "granted") {
    throw new UsageError(`--out ${out}: no permission to write there (${WRITE_SCOPE})`, {
      flag: "--out",
      hint: "choose an --out folder under runs/ or /tmp",
    });
  }
  // a file, or a path through one: named as such, not as a foreign meta_step.safetensors
  await checkOutFolder(out, {
    flag: "--out",
    purpose: `for ${OUT_FILE}`,
    scopeHint: "choose an --out folder under runs/ or /tmp",
    error: UsageError,
  });
  // an earlier export is replaced; any other file of that name is the user's and is kept
  const path = join(out, OUT_FILE);
  const hint = "move the file away, or choose another --out folder";
  let earlier;
  try {
    earlier = await readCheckpoint(path, { hint });
  } catch (e) {
    if (!(e instanceof UserError)) throw e;
    earlier = undefined;
  }
  if (earlier === null) return;
  if (earlier?.metadata.format !== META_STEP_FORMAT) {
    throw new UsageError(
      `--out ${out}: ${path} exists and is not an export of this command (format ` +
        `${META_STEP_FORMAT}); it is left alone`,
      { flag: "--out", file: path, hint },
    );
  }
}

/** The run of a checkpoint, its data checked against the checkpoint's fingerprints. */
async function openRun(path: string, dataDir: string | null) {
  const hint = "pass the checkpoint.safetensors in a long-tail run's --out folder";
  const ckpt = await readCheckpoint(path, { hint });
  if (!ckpt) throw new UserError(`--checkpoint ${path}: no such file`, { file: path, hint });
  if (ckpt.metadata.format === LARGE_CHECKPOINT_FORMAT) {
    throw new UserError(
      `--checkpoint ${path}: a large-run checkpoint (format ${LARGE_CHECKPOINT_FORMAT}, from ` +
        `--preset ${LARGE_PRESETS.join("|")}); export-meta-step supports only the long-tail ` +
        `trainer's checkpoints (format ${CHECKPOINT_FORMAT}: deno task train without a large ` +
        "preset, and deno task reproduce)",
      { file: path, flag: "--checkpoint", hint },
    );
  }
  let saved: TrainConfig;
  try {
    saved = checkResumeMetadata(ckpt, path, CHECKPOINT_FORMAT).config;
  } catch (e) {
    // its hint is the trainer's (another --out); here the file is given by --checkpoint
    if (!(e instanceof UserError)) throw e;
    throw new UserError(problemOf(e), { file: path, hint, cause: e });
  }
  const cfg = { ...saved, dataDir: dataDir ?? saved.dataDir, download: false };
  const data = await readData(cfg);
  try {
    checkResumeData(ckpt, path, cfg, data, "--checkpoint");
  } catch (e) {
    // other data is named by --checkpoint already; the rest carry the trainer's hint (--out)
    if (!(e instanceof UserError) || e.flag === "--checkpoint") throw e;
    throw new UserError(problemOf(e), { file: path, flag: "--checkpoint", cause: e, hint });
  }
  return { ckpt, cfg, data };
}

/** The run's data; an error's hint says what to do without downloads (this task has none). */
async function readData(cfg: TrainConfig) {
  try {
    return await prepareData(cfg);
  } catch (e) {
    if (!(e instanceof UserError)) throw e;
    throw new UserError(problemOf(e), {
      file: e.file,
      flag: e.flag,
      exitCode: e.exitCode,
      cause: e,
      hint: `export-meta-step reads the run's ${cfg.dataset} data and never downloads it: ` +
        "point --data-dir (or $TAILGRAD_DATA) at a complete, undamaged copy of the data the " +
        "run was trained on (`deno task train` fetches and verifies an absent dataset)",
    });
  }
}

/** Restores the whole training state of `run` from its checkpoint (as a resume does). */
function restore(run: LongTailRun, ckpt: SafetensorsFile): void {
  const { model, optimizer } = run.parts;
  model.loadFile(ckpt);
  optimizer.momentum.upload(takeF32(ckpt, model.specs.params, "optimizer.momentum."));
  run.restore(ckpt);
}

/** Host copies of the state a step changes. */
async function snapshot(run: LongTailRun) {
  const { model, optimizer, meta } = run.parts;
  return {
    params: await model.params.download(),
    buffers: await model.buffers.download(),
    momentum: await optimizer.momentum.download(),
    classWeights: await meta.classWeights.read(run.gpu),
  };
}

/** Per-example `loss` of the model at `params` on `x` (BN batch statistics, no update). */
async function lossesAt(
  run: LongTailRun,
  loss: LossFn,
  x: Tensor,
  targets: Tensor,
  params: FlatTensors,
): Promise<Float32Array> {
  const ctx = new Ctx(run.gpu, null);
  try {
    const out = run.parts.model.forward(ctx, x, TRAIN_NO_UPDATE, params);
    return await loss(ctx, out, targets).read(run.gpu);
  } finally {
    ctx.release();
  }
}

/** The run's next step (a meta step; see the module doc), with what it read and left. */
async function takeStep(run: LongTailRun, ckpt: SafetensorsFile) {
  const { cfg } = run;
  const { engine, meta, model } = run.parts;
  const done = Number(ckpt.metadata.epoch);
  const epoch = Math.min(done, cfg.epochs - 1);
  const own = run.phases[epoch].kind === "meta";
  if (!own) run.phases[epoch] = phaseOf("meta", cfg.metaStart, cfg.metaStart);
  engine.stepIndex = Number(ckpt.metadata.steps);
  const rng = epoch === done ? JSON.parse(ckpt.metadata.rng ?? "null") ?? undefined : undefined;
  await run.source.epoch(epoch, rng).load(0);
  const losses = await lossesAt(run, engine.loss, engine.x, engine.targets, model.params);
  const before = await snapshot(run);
  // step 0 of the epoch, with the rates the run's fit loop and step use (warm-up included)
  const lr = run.lr(epoch, 0), eta = run.eta(epoch, 0);
  await run.stepKind(epoch).run(lr, 0);
  const after = await snapshot(run);
  // the step leaves theta' in meta.lookahead: the dev loss the meta-gradient descended
  const devLosses = await lossesAt(run, meta.devLoss, meta.devX, meta.devTargets, meta.lookahead);
  const lookahead = await meta.lookahead.download();
  return { epoch, done, own, lr, eta, losses, devLosses, lookahead, before, after };
}

type Step = Awaited<ReturnType<typeof takeStep>>;

async function main() {
  const o = parse(Deno.args);
  await checkOut(o.out);
  const { ckpt, cfg, data } = await openRun(o.checkpoint, o.dataDir);
  const gpu = await Gpu.create();
  const run = new LongTailRun(gpu, cfg, data);
  try {
    restore(run, ckpt);
    const step = await takeStep(run, ckpt);
    const tensors = await exportTensors(run, step);
    const metadata = {
      format: META_STEP_FORMAT,
      ...describeStep(run, step),
      source: JSON.stringify({
        checkpoint: o.checkpoint,
        epochsDone: step.done,
        steps: Number(ckpt.metadata.steps),
      }),
      adapter: gpu.adapter.description,
    };
    await Deno.mkdir(o.out, { recursive: true });
    const path = join(o.out, OUT_FILE);
    await writeFileAtomic(path, encodeSafetensors(tensors, metadata));
    const rule = run.phases[step.epoch].rule;
    console.log(`wrote ${path} (${tensors.size} tensors; epoch ${step.epoch + 1}, rule ${rule})`);
  } finally {
    run.destroy();
    gpu.dispose();
  }
}

/** A loss's closed form as the metadata records it (`margins`: the float32 values used). */
interface LossSpec {
  form: "softmax" | "sigmoid";
  gamma: number;
  scale: number;
  margins: number[] | null;
}

function lossSpec(run: LongTailRun, o: LossOptions): LossSpec {
  const margins = o.margins && run.margins ? Array.from(Float32Array.from(run.margins)) : null;
  return { form: o.form ?? "softmax", gamma: o.gamma ?? 0, scale: o.scale ?? 1, margins };
}

/** `spec` in words, of the model's raw output z and label y (`key`: its metadata entry). */
function lossText(spec: LossSpec, key: string): string {
  if (spec.form === "sigmoid") {
    return `sum_c -(1 - q_c)^${spec.gamma} log q_c with q_c = sigmoid(z_c) for c = y and ` +
      "1 - sigmoid(z_c) otherwise (per-class sigmoids)";
  }
  const s = spec.scale === 1 ? "" : `${spec.scale} * `;
  const u = spec.margins
    ? `${s}(z - m_y e_y) with m = metadata ${key}.margins`
    : spec.scale === 1
    ? "z (the raw model output)"
    : `${s}z`;
  return spec.gamma === 0
    ? `-log softmax(u)_y with u = ${u}`
    : `-(1 - p_y)^${spec.gamma} log p_y with p = softmax(u), u = ${u}`;
}

/** The metadata that says what the step computed (see the module doc). */
function describeStep(run: LongTailRun, s: Step): Record<string, string> {
  const { cfg } = run;
  const phase = run.phases[s.epoch];
  const train = lossSpec(run, run.lossOptions), dev = lossSpec(run, run.devLossOptions);
  const step = {
    epoch: s.epoch,
    phase: s.own ? "the run's meta epoch" : "not a meta epoch of the run: the paper's meta step",
    rule: phase.rule,
    classWeights: phase.weights,
    lookaheadWeights: phase.lookaheadWeights,
    lookahead: cfg.lookahead,
    eta: s.eta,
    lr: s.lr,
    tau: cfg.tau,
    sgd: { lr: s.lr, ...run.parts.optimizer.config },
    batch: cfg.batch,
    devBatch: run.parts.meta.devBatch,
  };
  return {
    config: JSON.stringify(cfg),
    model: JSON.stringify(run.modelConfig),
    loss: JSON.stringify({ name: run.lossName, ...train }),
    dev_loss: JSON.stringify({ option: cfg.devLoss, ...dev }),
    step: JSON.stringify(step),
    bn: JSON.stringify({ momentum: 0.1, eps: 1e-5, runningVar: "unbiased" }),
    definition: definition(train, dev),
  };
}

/** The math of the step, with this run's training and dev losses written out. */
function definition(train: LossSpec, dev: LossSpec): string {
  return `z = f(x; theta), the model's raw output (a cosine for LDAM's cosine head); loss_i = ` +
    `${lossText(train, "loss")}, of z = f(batch.x_i; theta), y = batch.labels_i, BN with batch ` +
    "statistics (tensor losses); theta' = theta - eta * grad_theta sum_i a_i (w_i + eps_i) " +
    "loss_i(theta) with a_i = 1 (look-ahead sum) or 1/B (mean), w_i = weights (0 for " +
    "look-ahead weights 'zero'), plain SGD, eta = step.eta (tensors eta, lookahead.*); L_dev = " +
    `mean_j of ${lossText(dev, "dev_loss")}, of z = f(dev.x_j; theta'), y = dev.labels_j, ` +
    "unweighted, BN with dev batch statistics (tensor dev_losses); eps_i = -tau * " +
    "dL_dev/deps_i at eps = 0; final weights by the rule (meta: w_i + eps_i, final loss (1/B) " +
    "sum_i final_i loss_i; l2rw: max(eps_i, 0) normalised to sum 1, loss sum_i final_i loss_i; " +
    "l2rw-wy-eps: max(w_i + eps_i, 0) normalised; meta-update-wy: class_weights[y_i] += eps_i, " +
    "final_i = class_weights_after[y_i], loss (1/B) sum_i final_i loss_i); then one SGD step " +
    "(PyTorch semantics: momentum, Nesterov, weight decay of step.sgd) with lr = step.sgd.lr " +
    "(tensor lr; it differs from eta when --lr-schedule reference decays the optimiser one epoch " +
    "early) from before.optimizer.momentum; only the pass at theta updates BN running " +
    "statistics (momentum 0.1, unbiased variance)";
}

/** The step's tensors (names of the module doc). */
async function exportTensors(run: LongTailRun, s: Step): Promise<Map<string, SafeTensor>> {
  const { gpu } = run;
  const { engine, meta, model } = run.parts;
  const t = new Map<string, SafeTensor>();
  const put = (name: string, data: Float32Array, shape: readonly number[]) =>
    t.set(name, { dtype: "F32", shape: [...shape], data });
  const labels = async (u: Tensor) => Int32Array.from(await u.read(gpu));
  for (const [prefix, state] of [["before.", s.before], ["after.", s.after]] as const) {
    for (const p of model.specs.params) {
      put(prefix + p.name, state.params.get(p.name)!, p.shape);
      put(`${prefix}optimizer.momentum.${p.name}`, state.momentum.get(p.name)!, p.shape);
    }
    for (const b of model.specs.buffers) put(prefix + b.name, state.buffers.get(b.name)!, b.shape);
  }
  for (const p of model.specs.params) put(`lookahead.${p.name}`, s.lookahead.get(p.name)!, p.shape);
  put("batch.x", await engine.x.read(gpu), engine.x.shape);
  t.set("batch.labels", {
    dtype: "I32",
    shape: [engine.batch],
    data: await labels(engine.targets),
  });
  put("dev.x", await meta.devX.read(gpu), meta.devX.shape);
  t.set("dev.labels", {
    dtype: "I32",
    shape: [meta.devBatch],
    data: await labels(meta.devTargets),
  });
  put("eta", Float32Array.of(s.eta), []);
  put("lr", Float32Array.of(s.lr), []);
  put("tau", Float32Array.of(run.cfg.tau), []);
  put("losses", s.losses, [engine.batch]);
  put("dev_losses", s.devLosses, [meta.devBatch]);
  put("class_weights", s.before.classWeights, [s.before.classWeights.length]);
  put("class_weights_after", s.after.classWeights, [s.after.classWeights.length]);
  put("weights", await engine.weights.read(gpu), [engine.batch]);
  put("eps", await meta.eps.read(gpu), [engine.batch]);
  put("final_weights", await meta.finalWeights.read(gpu), [engine.batch]);
  return t;
}

if (import.meta.main) {
  try {
    await main();
  } catch (e) {
    if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
      console.error(`error: ${e.message} (${WRITE_SCOPE})`);
      Deno.exit(2);
    }
    Deno.exit(reportError(e));
  }
}
