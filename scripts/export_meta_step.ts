/**
 * `deno task export-meta-step --out DIR`: runs ONE meta step of the paper's method on a tiny
 * ResNet and a tiny random batch, and writes everything needed to check it independently (e.g.
 * in PyTorch with a double backward) to `DIR/meta_step.safetensors`:
 *
 * - `before.<name>` / `after.<name>`: parameters and BN running statistics (PyTorch state_dict
 *   names) before and after the step; `after.optimizer.momentum.<name>` (momentum starts at 0);
 * - `batch.x` [B,C,H,W], `batch.labels` (I32) [B], `dev.x`, `dev.labels`;
 * - `eta`, `tau` (F32 scalars), `losses` [B] (per-example losses at theta, BN in train mode),
 *   `class_weights` [classes], `weights` [B] (w_{y_i}), `eps` [B], `final_weights` [B];
 * - metadata `config` (JSON: model, shapes, rule, look-ahead, SGD settings) and `definition`.
 *
 * Flags: --out DIR (required), --seed N, --eta X, --tau X, --lookahead sum|mean,
 * --rule meta|l2rw|l2rw-wy-eps|meta-update-wy, --batch N.
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { Gpu } from "../src/gpu/runtime.ts";
import { Ctx } from "../src/autograd/tape.ts";
import { ResNet, resnetSpecs } from "../src/nn/resnet.ts";
import { Model } from "../src/nn/model.ts";
import { TRAIN_NO_UPDATE } from "../src/nn/module.ts";
import { Sgd } from "../src/optim/optimizer.ts";
import { StepEngine } from "../src/engine/step.ts";
import { crossEntropy, MetaReweighter, type MetaWeightRule } from "../src/engine/meta.ts";
import { classificationLoss } from "../src/ops/loss.ts";
import { Rng } from "../src/random.ts";
import { effectiveNumberWeights } from "../src/data/weights.ts";
import { encodeSafetensors, type SafeTensor, writeFileAtomic } from "../src/checkpoint/mod.ts";
import { rejectRepeatedFlags } from "../src/train/cli.ts";
import { reportError } from "../src/errors.ts";

const RULES = ["meta", "l2rw", "l2rw-wy-eps", "meta-update-wy"];
const FLAGS = ["out", "seed", "eta", "tau", "lookahead", "rule", "batch", "help"];

function fail(msg: string): never {
  console.error(`error: ${msg}`);
  Deno.exit(2);
}

function parse(args: string[]) {
  let v;
  try {
    const parsed = parseArgs({
      args,
      strict: true,
      options: {
        out: { type: "string" },
        seed: { type: "string", default: "0" },
        eta: { type: "string", default: "0.1" },
        tau: { type: "string", default: "1" },
        lookahead: { type: "string", default: "sum" },
        rule: { type: "string", default: "meta" },
        batch: { type: "string", default: "8" },
        help: { type: "boolean" },
      },
      tokens: true,
    });
    rejectRepeatedFlags(parsed.tokens);
    v = parsed.values;
  } catch (e) {
    fail(
      `${e instanceof Error ? e.message : e}; valid flags: ${
        FLAGS.map((f) => `--${f}`).join(", ")
      }`,
    );
  }
  if (v.help) {
    console.log(
      "usage: deno task export-meta-step --out DIR [--seed N] [--eta X] [--tau X] " +
        "[--lookahead sum|mean] [--rule meta|l2rw|l2rw-wy-eps|meta-update-wy] [--batch N]",
    );
    Deno.exit(0);
  }
  if (!v.out) fail("--out DIR is required");
  const num = (name: string, s: string, ok: (x: number) => boolean, what: string) => {
    const x = Number(s);
    if (s.trim() === "" || !Number.isFinite(x) || !ok(x)) {
      fail(`invalid --${name} ${s}: expected ${what}`);
    }
    return x;
  };
  if (!["sum", "mean"].includes(v.lookahead!)) {
    fail(`invalid --lookahead ${v.lookahead}: expected sum or mean`);
  }
  if (!RULES.includes(v.rule!)) {
    fail(`invalid --rule ${v.rule}: expected one of ${RULES.join(", ")}`);
  }
  return {
    out: v.out,
    seed: num("seed", v.seed!, (x) => Number.isInteger(x) && x >= 0, "an integer >= 0"),
    eta: num("eta", v.eta!, (x) => x > 0, "a positive number"),
    tau: num("tau", v.tau!, (x) => x >= 0, "a number >= 0"),
    batch: num("batch", v.batch!, (x) => Number.isInteger(x) && x >= 2, "an integer >= 2"),
    lookahead: v.lookahead as "sum" | "mean",
    rule: v.rule as MetaWeightRule,
  };
}

async function main() {
  const o = parse(Deno.args);
  const C = 4, S = 8, B = o.batch, D = B;
  const modelCfg = { depth: 8, inChannels: 1, numClasses: C };
  const gpu = await Gpu.create();
  const model = new Model(gpu, new ResNet(modelCfg), o.seed);
  const optimizer = new Sgd(gpu, model.paramLayout, {
    momentum: 0.9,
    weightDecay: 5e-4,
    nesterov: true,
  });
  const engine = new StepEngine(model, {
    loss: crossEntropy,
    optimizer,
    batch: B,
    input: [1, S, S],
  });
  const meta = new MetaReweighter(engine, { devBatch: D, numClasses: C });
  const rng = Rng.derive(o.seed, "export-meta-step");
  const x = Float32Array.from({ length: B * S * S }, () => rng.normal());
  const devX = Float32Array.from({ length: D * S * S }, () => rng.normal());
  // long-tailed batch labels (class 0 most frequent), balanced dev labels
  const labels = Int32Array.from(
    { length: B },
    (_, i) => Math.min(C - 1, Math.floor(Math.log2(1 + i))),
  );
  const devLabels = Int32Array.from({ length: D }, (_, i) => i % C);
  const counts = Array.from({ length: C }, (_, c) => labels.filter((y) => y === c).length);
  const classW = Float32Array.from(effectiveNumberWeights(counts, 0.9));
  const w = Float32Array.from(labels, (y) => classW[y]);
  engine.x.upload(gpu, x);
  engine.targets.upload(gpu, labels);
  engine.weights.upload(gpu, w);
  meta.devX.upload(gpu, devX);
  meta.devTargets.upload(gpu, devLabels);
  meta.classWeights.upload(gpu, classW);

  // per-example losses at theta (BN train mode on the batch, running stats untouched)
  const ctx = new Ctx(gpu, null);
  const logits = model.forward(ctx, engine.x, TRAIN_NO_UPDATE);
  const losses = await classificationLoss(ctx, logits, engine.targets, {}).read(gpu);
  ctx.release();
  const [pBefore, bBefore] = [await model.params.download(), await model.buffers.download()];

  meta.step(o.eta, {
    eta: o.eta,
    tau: o.tau,
    lookahead: o.lookahead,
    rule: o.rule,
    lookaheadWeights: "w",
  });
  const eps = await meta.eps.read(gpu);
  const fin = await meta.finalWeights.read(gpu);
  const [pAfter, bAfter, mAfter] = [
    await model.params.download(),
    await model.buffers.download(),
    await optimizer.momentum.download(),
  ];
  const classWAfter = await meta.classWeights.read(gpu);

  const specs = resnetSpecs(modelCfg);
  const t = new Map<string, SafeTensor>();
  const put = (name: string, data: Float32Array, shape: number[]) =>
    t.set(name, { dtype: "F32", shape, data });
  for (
    const [prefix, p, b] of [["before.", pBefore, bBefore], ["after.", pAfter, bAfter]] as const
  ) {
    for (const s of specs.params) put(prefix + s.name, p.get(s.name)!, s.shape);
    for (const s of specs.buffers) put(prefix + s.name, b.get(s.name)!, s.shape);
  }
  for (const s of specs.params) {
    put(`after.optimizer.momentum.${s.name}`, mAfter.get(s.name)!, s.shape);
  }
  put("batch.x", x, [B, 1, S, S]);
  t.set("batch.labels", { dtype: "I32", shape: [B], data: labels });
  put("dev.x", devX, [D, 1, S, S]);
  t.set("dev.labels", { dtype: "I32", shape: [D], data: devLabels });
  put("eta", Float32Array.of(o.eta), []);
  put("tau", Float32Array.of(o.tau), []);
  put("losses", losses, [B]);
  put("class_weights", classW, [C]);
  put("class_weights_after", classWAfter, [C]);
  put("weights", w, [B]);
  put("eps", eps, [B]);
  put("final_weights", fin, [B]);
  const config = {
    model: { ...modelCfg, name: "resnet8", cosine: false },
    image: [1, S, S],
    batch: B,
    devBatch: D,
    rule: o.rule,
    lookahead: o.lookahead,
    seed: o.seed,
    sgd: { lr: o.eta, ...optimizer.config },
    bn: { momentum: 0.1, eps: 1e-5, runningVar: "unbiased" },
    adapter: gpu.adapter.description,
  };
  const definition = "theta' = theta - eta * grad_theta sum_i w_i loss_i(theta) (times 1/B for a " +
    "mean look-ahead; plain SGD, BN batch statistics); L_dev = mean_j CE(f(dev.x_j; theta'), " +
    "dev.labels_j) with BN batch statistics; eps_i = -tau * dL_dev/deps_i at eps = 0; final " +
    "loss (1/B) sum_i (w_i + eps_i) loss_i(theta) for rule meta; one SGD step (momentum 0.9, " +
    "Nesterov, weight decay 5e-4, lr = eta) from zero momentum; only this pass updates BN " +
    "running statistics";
  await Deno.mkdir(o.out, { recursive: true });
  const path = join(o.out, "meta_step.safetensors");
  await writeFileAtomic(path, encodeSafetensors(t, { config: JSON.stringify(config), definition }));
  meta.destroy();
  engine.destroy();
  optimizer.destroy();
  model.destroy();
  gpu.dispose();
  console.log(`wrote ${path} (${t.size} tensors)`);
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
