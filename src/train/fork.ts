/**
 * `--init-from`: a run that starts from another run's checkpoint at its epoch, as if it had
 * trained those epochs itself. It is exact (bit for bit the run from scratch) when everything
 * that shaped those epochs is the same: the data and seed, the model and loss, the phase of
 * every epoch before the fork (src/train/methods.ts), the learning rate of each, and the
 * settings those phases read. {@linkcode checkFork} refuses anything else, naming the setting.
 *
 * The use it was built for is stage-1 sharing: ce, meta, meta-eps0, cb-finetune and the tau
 * sweep all pre-train with plain cross-entropy and weights 1 until `metaStart`, so one stage-1
 * run serves them all (likewise focal and meta with focal, ldam-drw and meta with LDAM).
 */
import { problemOf, UserError } from "../errors.ts";
import { readCheckpoint, type SafetensorsFile } from "../checkpoint/mod.ts";
import { lrAt, methodLoss, type TrainConfig } from "./config.ts";
import { phaseOf } from "./methods.ts";
import { checkResumeMetadata } from "./validate.ts";

/** Settings every fork must share with the checkpoint's run. */
const SAME: (keyof TrainConfig)[] = [
  "dataset",
  "imbalance",
  "maxPerClass",
  "devPerClass",
  "testPerClass",
  "model",
  "batch",
  "momentum",
  "nesterov",
  "weightDecay",
  "seed",
  "evalEvery",
];

/**
 * Recipe settings that shape every epoch (src/train/recipe.ts): their method-dependent defaults
 * differ between methods whose phases agree (ce warms up as Cui's code, meta does not), so the
 * phases alone do not make two runs' stage 1 the same.
 */
export const STAGE1_RECIPE: (keyof TrainConfig)[] = [
  "reduction",
  "biasInit",
  "classifierInit",
  "warmupEpochs",
  "lastBatch",
  "lrSchedule",
];

function forkError(path: string, what: string, hint: string): UserError {
  return new UserError(`--init-from ${path}: ${what}`, {
    file: path,
    flag: "--init-from",
    exitCode: 2,
    hint,
  });
}

/**
 * Reads and checks the checkpoint of `cfg.initFrom` (only reads it): a tailgrad training
 * checkpoint whose run matches `cfg` up to its epoch ({@linkcode checkFork}). The data and the
 * tensors are checked later, against the data this run loads (checkResumeData).
 */
export async function openFork(cfg: TrainConfig, format: string): Promise<SafetensorsFile> {
  const path = cfg.initFrom!;
  const give = "give the checkpoint.safetensors of a tailgrad training run";
  let ckpt: SafetensorsFile | null;
  try {
    ckpt = await readCheckpoint(path, { hint: give });
  } catch (e) {
    if (!(e instanceof UserError)) throw e;
    // a run's folder: readCheckpoint's hint names the checkpoint inside it
    const folder = e.cause instanceof Deno.errors.IsADirectory && e.hint;
    throw forkError(
      path,
      problemOf(e),
      folder || `the file is damaged or is not a checkpoint; ${give}`,
    );
  }
  if (!ckpt) {
    throw forkError(
      path,
      "no such file",
      `${give} (e.g. ` +
        "runs/<run>/checkpoint.safetensors)",
    );
  }
  let parent: TrainConfig, epoch: number;
  try {
    ({ config: parent, epoch } = checkResumeMetadata(ckpt, path, format));
  } catch (e) {
    if (!(e instanceof UserError)) throw e;
    throw forkError(path, problemOf(e), give);
  }
  checkFork(parent, epoch, cfg, path);
  return ckpt;
}

/**
 * Throws a {@linkcode UserError} unless a run of `cfg` started from a checkpoint of `parent`
 * at `epoch` equals the run of `cfg` from scratch: epoch <= cfg.metaStart and below
 * cfg.epochs, and the same data, model, loss, phases, learning rates and phase settings for
 * every epoch before `epoch`.
 */
export function checkFork(
  parent: TrainConfig,
  epoch: number,
  cfg: TrainConfig,
  path: string,
): void {
  const keep = "start from scratch (leave out --init-from), or fork a run of the same recipe";
  if (epoch > cfg.metaStart) {
    throw forkError(
      path,
      `the checkpoint is at epoch ${epoch}, after this run's stage 2 starts (--meta-start ` +
        `${cfg.metaStart}); a fork may start at or before stage 2`,
      `fork a checkpoint of at most epoch ${cfg.metaStart}, or ${keep}`,
    );
  }
  if (epoch >= cfg.epochs) {
    throw forkError(
      path,
      `the checkpoint is at epoch ${epoch}: this run of --epochs ${cfg.epochs} would have ` +
        `nothing left to train`,
      `give more --epochs, or ${keep}`,
    );
  }
  const differ = (keys: (keyof TrainConfig)[]) =>
    keys.filter((k) => JSON.stringify(parent[k]) !== JSON.stringify(cfg[k]));
  const show = (keys: (keyof TrainConfig)[]) =>
    keys.map((k) =>
      `${kebab(k)} ${JSON.stringify(cfg[k])} (checkpoint: ${JSON.stringify(parent[k])})`
    )
      .join(", ");
  const loss = methodLoss(cfg.method, cfg.loss),
    parentLoss = methodLoss(parent.method, parent.loss);
  if (loss !== parentLoss) {
    throw forkError(
      path,
      `its run trained with the ${parentLoss} loss (--method ${parent.method}), this one with ` +
        `${loss} (--method ${cfg.method}${cfg.method === "meta" ? ` --loss ${cfg.loss}` : ""})`,
      `fork a run of the same loss, or ${keep}`,
    );
  }
  const before = Array.from({ length: epoch }, (_, e) => e);
  const phase = (c: TrainConfig, e: number) => phaseOf(c.method, e, c.metaStart);
  const changed = before.find((e) =>
    JSON.stringify(phase(parent, e)) !== JSON.stringify(phase(cfg, e))
  );
  if (changed !== undefined) {
    throw forkError(
      path,
      `epoch ${changed} of its run (--method ${parent.method}, --meta-start ` +
        `${parent.metaStart}) trained otherwise than this run's (--method ${cfg.method}, ` +
        `--meta-start ${cfg.metaStart}): ${JSON.stringify(phase(parent, changed))} vs ` +
        JSON.stringify(phase(cfg, changed)),
      `fork a run whose epochs before ${epoch} are this run's, or ${keep}`,
    );
  }
  const lrEpoch = before.find((e) => lrAt(parent, e) !== lrAt(cfg, e));
  if (lrEpoch !== undefined) {
    throw forkError(
      path,
      `the learning rate of epoch ${lrEpoch} differs: ${lrAt(cfg, lrEpoch)} here, ` +
        `${lrAt(parent, lrEpoch)} in its run`,
      `use its --lr, --lr-decay-epochs and --lr-decay-factor up to epoch ${epoch}, or ${keep}`,
    );
  }
  const keys = [...SAME, ...STAGE1_RECIPE];
  const phases = before.map((e) => phase(cfg, e));
  if (parent.warmupEpochs > 0 || cfg.warmupEpochs > 0) keys.push("warmup");
  if (loss === "focal") keys.push("focalGamma", "focalForm");
  if (phases.some((p) => p.weights === "cb" || p.kind !== "plain")) keys.push("beta");
  if (phases.some((p) => p.kind !== "plain")) keys.push("tau", "lookahead", "devLoss");
  if (phases.some((p) => p.kind === "mwn")) keys.push("mwnRecipe");
  const bad = differ(keys);
  if (bad.length) {
    throw forkError(
      path,
      `settings that shaped the epochs before ${epoch} differ: ${show(bad)}`,
      `use the checkpoint's values for those flags, or ${keep}`,
    );
  }
}

function kebab(k: string): string {
  return "--" + k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}
