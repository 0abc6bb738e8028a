/**
 * `deno task export-meta-step --checkpoint FILE --out DIR`: runs ONE meta step of a run from any
 * of its checkpoints (any method, model and loss of the long-tail trainer; the run's config is
 * in the checkpoint) and writes everything needed to recompute it independently (e.g. in PyTorch
 * with a double backward) to `DIR/meta_step.safetensors`.
 *
 * The step is the one the run takes next: epoch `epoch` of the checkpoint (the last epoch for a
 * finished run), its first batch and dev batch from the run's data and generators, learning rate
 * and eta from the run's schedule, momentum and meta-learned class weights restored. An epoch
 * that is not a meta epoch (stage 1, or a method without meta steps) takes the paper's meta step
 * (w = class-balanced weights, final weights w + eps).
 *
 * - `before.<name>` / `after.<name>`: parameters and BN running statistics (PyTorch state_dict
 *   names); `before.optimizer.momentum.<name>` / `after.optimizer.momentum.<name>`;
 * - `batch.x` [B,C,H,W] (augmented, as the model sees it), `batch.labels` (I32) [B], `dev.x`,
 *   `dev.labels`;
 * - `eta`, `tau` (F32 scalars), `losses` [B] (the run's per-example loss at theta, BN in train
 *   mode), `class_weights` / `class_weights_after` [classes], `weights` [B] (w_i), `eps` [B],
 *   `final_weights` [B];
 * - metadata `config` (the run's full config), `model`, `loss` (name and options: focal gamma,
 *   LDAM margins and scale), `step` (epoch, rule, look-ahead, eta, tau, SGD settings),
 *   `source`, and `definition` (the math, in words).
 */
import { join } from "node:path";
import { Gpu } from "../src/gpu/runtime.ts";
import { Ctx } from "../src/autograd/tape.ts";
import type { Tensor } from "../src/tensor.ts";
import { TRAIN_NO_UPDATE } from "../src/nn/module.ts";
import { takeF32 } from "../src/checkpoint/checkpoint.ts";
import {
  encodeSafetensors,
  readCheckpoint,
  type SafeTensor,
  type SafetensorsFile,
  writeFileAtomic,
} from "../src/checkpoint/mod.ts";
import { lrAt, type TrainConfig } from "../src/train/config.ts";
import { prepareData } from "../src/train/data.ts";
import { phaseOf } from "../src/train/methods.ts";
import { LongTailRun } from "../src/train/run.ts";
import { CHECKPOINT_FORMAT } from "../src/train/trainer.ts";
import { checkResumeData, checkResumeMetadata } from "../src/train/validate.ts";
import { type FlagTable, parseFlags } from "../src/cli/flags.ts";
import { problemOf, reportError, UserError } from "../src/errors.ts";

const FLAGS: FlagTable<"checkpoint" | "out" | "dataDir" | "help"> = {
  "checkpoint": { key: "checkpoint", kind: "string", help: "a run's checkpoint.safetensors" },
  "out": { key: "out", kind: "string", help: "folder for meta_step.safetensors" },
  "data-dir": { key: "dataDir", kind: "string", help: "dataset folder (default: the run's)" },
  "help": { key: "help", kind: "bool", help: "show the usage" },
};
const USAGE = "usage: deno task export-meta-step --checkpoint FILE --out DIR [--data-dir DIR]";

function fail(msg: string): never {
  console.error(`error: ${msg}`);
  Deno.exit(2);
}

/** The flags; a bad one is a UsageError (exit status 2, printed by the caller). */
function parse(args: string[]): { checkpoint: string; out: string; dataDir: string | null } {
  const { help, values } = parseFlags(args, FLAGS, { hint: "run with --help to see the usage" });
  const v = values as { checkpoint?: string; out?: string; dataDir?: string };
  if (help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  if (!v.checkpoint) {
    fail(`--checkpoint FILE is required (a run's checkpoint.safetensors)\n${USAGE}`);
  }
  if (!v.out) fail(`--out DIR is required\n${USAGE}`);
  return { checkpoint: v.checkpoint, out: v.out, dataDir: v.dataDir ?? null };
}

/** The run of a checkpoint, its data checked against the checkpoint's fingerprints. */
async function openRun(path: string, dataDir: string | null) {
  const hint = "pass the checkpoint.safetensors in a run's --out folder";
  const ckpt = await readCheckpoint(path, { hint });
  if (!ckpt) throw new UserError(`--checkpoint ${path}: no such file`, { file: path, hint });
  let saved: TrainConfig;
  try {
    saved = checkResumeMetadata(ckpt, path, CHECKPOINT_FORMAT).config;
  } catch (e) {
    // its hint is the trainer's (another --out); here the file is given by --checkpoint
    if (!(e instanceof UserError)) throw e;
    throw new UserError(problemOf(e), { file: path, hint, cause: e });
  }
  const cfg = { ...saved, dataDir: dataDir ?? saved.dataDir, download: false };
  const data = await prepareData(cfg);
  checkResumeData(ckpt, path, cfg, data);
  return { ckpt, cfg, data };
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

async function main() {
  const o = parse(Deno.args);
  const { ckpt, cfg, data } = await openRun(o.checkpoint, o.dataDir);
  const gpu = await Gpu.create();
  const run = new LongTailRun(gpu, cfg, data);
  try {
    restore(run, ckpt);
    const done = Number(ckpt.metadata.epoch);
    const epoch = Math.min(done, cfg.epochs - 1);
    const own = run.phases[epoch].kind === "meta";
    if (!own) run.phases[epoch] = phaseOf("meta", cfg.metaStart, cfg.metaStart);
    const { engine, meta, model } = run.parts;
    engine.stepIndex = Number(ckpt.metadata.steps);
    const rng = epoch === done ? JSON.parse(ckpt.metadata.rng ?? "null") ?? undefined : undefined;
    await run.source.epoch(epoch, rng).load(0);
    const ctx = new Ctx(gpu, null);
    const losses = await engine.loss(
      ctx,
      model.forward(ctx, engine.x, TRAIN_NO_UPDATE),
      engine.targets,
    )
      .read(gpu);
    ctx.release();
    const before = await snapshot(run);
    const lr = lrAt(cfg, epoch);
    await run.stepKind(epoch).run(lr, 0);
    const after = await snapshot(run);
    const tensors = await exportTensors(run, before, after, losses, lr);
    const phase = run.phases[epoch];
    const step = {
      epoch,
      phase: own ? "the run's meta epoch" : "not a meta epoch of the run: the paper's meta step",
      rule: phase.rule,
      classWeights: phase.weights,
      lookaheadWeights: phase.lookaheadWeights,
      lookahead: cfg.lookahead,
      eta: lr,
      tau: cfg.tau,
      sgd: { lr, ...run.parts.optimizer.config },
      batch: cfg.batch,
      devBatch: meta.devBatch,
    };
    const metadata = {
      config: JSON.stringify(cfg),
      model: JSON.stringify(run.modelConfig),
      loss: JSON.stringify({ name: run.lossName, ...run.lossOptions, dev: "ce" }),
      step: JSON.stringify(step),
      source: JSON.stringify({
        checkpoint: o.checkpoint,
        epochsDone: done,
        steps: Number(ckpt.metadata.steps),
      }),
      bn: JSON.stringify({ momentum: 0.1, eps: 1e-5, runningVar: "unbiased" }),
      adapter: gpu.adapter.description,
      definition: DEFINITION,
    };
    await Deno.mkdir(o.out, { recursive: true });
    const path = join(o.out, "meta_step.safetensors");
    await writeFileAtomic(path, encodeSafetensors(tensors, metadata));
    console.log(`wrote ${path} (${tensors.size} tensors; epoch ${epoch + 1}, rule ${phase.rule})`);
  } finally {
    run.destroy();
    gpu.dispose();
  }
}

const DEFINITION = "loss_i = the run's per-example loss (metadata loss: ce, focal with gamma, or " +
  "LDAM with margins and scale on the cosine classifier) of f(batch.x_i; theta), BN with batch " +
  "statistics; theta' = theta - eta * grad_theta sum_i a_i (w_i + eps_i) loss_i(theta) with " +
  "a_i = 1 (look-ahead sum) or 1/B (mean), w_i = weights (0 for look-ahead weights 'zero'), " +
  "plain SGD; L_dev = mean_j CE(f(dev.x_j; theta'), dev.labels_j) on the raw model outputs, BN " +
  "batch statistics; eps_i = -tau * dL_dev/deps_i at eps = 0; final weights by the rule " +
  "(meta: w_i + eps_i, final loss (1/B) sum_i final_i loss_i; l2rw: max(eps_i, 0) normalised to " +
  "sum 1, loss sum_i final_i loss_i; l2rw-wy-eps: max(w_i + eps_i, 0) normalised; " +
  "meta-update-wy: class_weights[y_i] += eps_i, final_i = class_weights_after[y_i], loss (1/B) " +
  "sum_i final_i loss_i); then one SGD step (PyTorch semantics: momentum, Nesterov, weight decay " +
  "of metadata step.sgd, lr = eta) from before.optimizer.momentum; only the pass at theta " +
  "updates BN running statistics (momentum 0.1, unbiased variance)";

async function exportTensors(
  run: LongTailRun,
  before: Awaited<ReturnType<typeof snapshot>>,
  after: Awaited<ReturnType<typeof snapshot>>,
  losses: Float32Array,
  lr: number,
): Promise<Map<string, SafeTensor>> {
  const { gpu } = run;
  const { engine, meta, model } = run.parts;
  const t = new Map<string, SafeTensor>();
  const put = (name: string, data: Float32Array, shape: readonly number[]) =>
    t.set(name, { dtype: "F32", shape: [...shape], data });
  const labels = async (u: Tensor) => Int32Array.from(await u.read(gpu));
  for (const [prefix, s] of [["before.", before], ["after.", after]] as const) {
    for (const p of model.specs.params) {
      put(prefix + p.name, s.params.get(p.name)!, p.shape);
      put(`${prefix}optimizer.momentum.${p.name}`, s.momentum.get(p.name)!, p.shape);
    }
    for (const b of model.specs.buffers) put(prefix + b.name, s.buffers.get(b.name)!, b.shape);
  }
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
  put("eta", Float32Array.of(lr), []);
  put("tau", Float32Array.of(run.cfg.tau), []);
  put("losses", losses, [engine.batch]);
  put("class_weights", before.classWeights, [before.classWeights.length]);
  put("class_weights_after", after.classWeights, [after.classWeights.length]);
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
      fail(`${e.message} (the export-meta-step task may write only under runs/ and /tmp)`);
    }
    Deno.exit(reportError(e));
  }
}
