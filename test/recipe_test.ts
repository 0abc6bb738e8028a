/**
 * The baselines' recipes wired into the trainer (src/train/recipe.ts, README "Methods"):
 *
 * - settings: per-method defaults, explicit flags over them, the warm-up as a fraction of the
 *   run, `--recipe authors`, refusals of settings without effect, CLI parsing and --help;
 * - learning rates: LDAM's per-epoch staircase, Cui's per-step ramp from 0, the reference
 *   code's one-epoch decay offset;
 * - SGD with parameters exempt from weight decay against the float64 reference;
 * - a partial last batch: a step (plain and meta) over the first n examples of a batch-B engine
 *   is bit for bit the step of a batch-n engine, and a warm epoch with a partial batch creates no
 *   GPU objects;
 * - runs: the classifier inits, LDAM-DRW's weighted-mean seed (its first step against the
 *   mean's, rescaled), partial / wrap / drop epochs.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { readCheckpoint } from "../src/checkpoint/mod.ts";
import { classificationLoss, crossEntropy, Linear, ReLU, Sequential } from "../mod.ts";
import { fit } from "../src/engine/fit.ts";
import { MetaReweighter } from "../src/engine/meta.ts";
import { StepEngine } from "../src/engine/step.ts";
import { Model } from "../src/nn/model.ts";
import { FlatLayout, FlatTensors } from "../src/nn/params.ts";
import { resnetInit } from "../src/nn/resnet.ts";
import { Sgd } from "../src/optim/optimizer.ts";
import type { Gpu } from "../src/gpu/runtime.ts";
import { parseTrainArgs, resolveConfig, train } from "../src/train/mod.ts";
import { usage } from "../src/train/cli.ts";
import { lookaheadLr, optimizerLr, RECIPE_OPTIONS, warmupFactor } from "../src/train/recipe.ts";
import { classifierInit, LongTailRun } from "../src/train/run.ts";
import { MetaWeightNet } from "../src/train/mwn.ts";
import { prepareData } from "../src/train/data.ts";
import {
  ConfigError,
  type Method,
  METHODS,
  presetConfig,
  resolveTrainConfig,
  type TrainConfig,
} from "../src/train/config.ts";
import { planCells, SCALES } from "../scripts/reproduce.ts";
import { CHECKPOINT_FORMAT } from "../src/train/trainer.ts";
import { checkFork } from "../src/train/fork.ts";
import { checkResumeMetadata, expectedTensors } from "../src/train/validate.ts";
import * as ref from "./reference/mod.ts";
import { gpuTest } from "./gpu_harness.ts";
import { expectClose, randn } from "./op_check.ts";
import { syntheticData } from "./train_fixtures.ts";

// ------------------------------------------------------------------------------- settings

const recipeOf = (c: TrainConfig) =>
  Object.fromEntries(Object.keys(RECIPE_OPTIONS).map((k) => [k, c[k as keyof TrainConfig]]));

Deno.test("recipe: per-method defaults at paper-cifar", () => {
  const at = (method: TrainConfig["method"], extra = {}) =>
    recipeOf(resolveTrainConfig({ preset: "paper-cifar", method, ...extra }));
  const common = {
    classifierInit: "unit-norm",
    recipe: "shared",
    lastBatch: "partial",
    mwnRecipe: "class-imbalance",
  };
  assert.deepEqual(at("ldam-drw"), {
    ...common,
    reduction: "weighted-mean",
    focalForm: "sigmoid",
    biasInit: "torch",
    warmupEpochs: 5,
    warmup: "per-epoch",
    lrSchedule: "aligned",
  });
  assert.deepEqual(at("ldam").reduction, "weighted-mean");
  for (const m of ["ce", "cb"] as const) {
    const r = at(m);
    assert.deepEqual([r.reduction, r.warmupEpochs, r.warmup, r.biasInit], [
      "mean",
      5,
      "per-step",
      "torch",
    ]);
  }
  for (const m of ["focal", "cb-focal"] as const) {
    const r = at(m);
    assert.deepEqual([r.focalForm, r.biasInit, r.warmupEpochs], ["sigmoid", "prior", 5]);
  }
  assert.equal(at("focal", { focalForm: "softmax" }).biasInit, "torch");
  for (const m of ["meta", "l2rw", "mwn", "meta-eps0", "cb-finetune"] as const) {
    const r = at(m);
    assert.deepEqual([r.reduction, r.warmupEpochs], ["mean", 0], m);
  }
  // the meta family's --loss focal takes the focal rows' form, and its bias
  assert.deepEqual(
    [at("meta", { loss: "focal" }).focalForm, at("meta", { loss: "focal" }).biasInit],
    ["sigmoid", "prior"],
  );
  // the default preset is the method's too
  assert.equal(resolveTrainConfig({}).reduction, "mean");
  assert.equal(resolveTrainConfig({ method: "ldam-drw" }).reduction, "weighted-mean");
});

Deno.test("recipe: the warm-up keeps its fraction of the run; explicit values are kept", () => {
  const w = (o: Parameters<typeof resolveTrainConfig>[0]) => {
    const c = resolveTrainConfig(o);
    return [c.warmupEpochs, c.warmup];
  };
  assert.deepEqual(w({ preset: "paper-cifar", method: "ce", epochs: 100 }), [2.5, "per-step"]);
  assert.deepEqual(w({ preset: "paper-cifar", method: "ldam", epochs: 100 }), [2, "per-epoch"]);
  // the default preset (15 epochs): 0.375 epochs of ramp; no whole epoch of staircase
  assert.deepEqual(w({ method: "cb" }), [0.375, "per-step"]);
  assert.deepEqual(w({ method: "ldam-drw" }), [0, "per-epoch"]);
  assert.deepEqual(w({ method: "ldam-drw", epochs: 80 }), [2, "per-epoch"]);
  assert.deepEqual(w({ method: "ce", warmup: "per-epoch", epochs: 40 }), [1, "per-epoch"]);
  assert.deepEqual(w({ method: "meta", warmupEpochs: 2 }), [2, "per-step"]);
  assert.deepEqual(w({ method: "ldam", warmupEpochs: 3, epochs: 30 }), [3, "per-epoch"]);
  assert.throws(
    () => resolveTrainConfig({ method: "ldam", warmupEpochs: 1.5 }),
    /--warmup-epochs 1\.5 with --warmup per-epoch: the per-epoch staircase needs whole epochs/,
  );
  assert.throws(
    () => resolveTrainConfig({ warmupEpochs: 16 }),
    /invalid --warmup-epochs 16: expected a number in \[0, --epochs 15\]/,
  );
});

Deno.test("recipe: --recipe authors sets LDAM's and Cui's optimiser; flags override it", () => {
  const opt = (o: Parameters<typeof resolveTrainConfig>[0]) => {
    const c = resolveTrainConfig({ preset: "paper-cifar", ...o });
    return [c.batch, c.weightDecay, c.nesterov];
  };
  for (const method of ["ldam-drw", "ldam", "ce", "cb", "focal", "cb-focal"] as const) {
    assert.deepEqual(opt({ method, recipe: "authors" }), [128, 2e-4, false], method);
    assert.deepEqual(opt({ method }), [100, 5e-4, true], method);
  }
  assert.deepEqual(opt({ method: "ldam-drw", recipe: "authors", batch: 64 }), [64, 2e-4, false]);
  assert.deepEqual(opt({ method: "ce", recipe: "authors", nesterov: true }), [128, 2e-4, true]);
  // the meta family's authors' recipe is the shared one (the paper's own code)
  assert.deepEqual(opt({ method: "meta", recipe: "authors" }), [100, 5e-4, true]);
});

Deno.test("recipe: a setting without effect for the method is refused by name", () => {
  const cases: [Parameters<typeof resolveTrainConfig>[0], RegExp][] = [
    [{ method: "ce", focalForm: "softmax" }, /--focal-form softmax has no effect with --method ce/],
    [{ method: "ldam", biasInit: "zero" }, /--bias-init zero .*cosine classifier has no bias/],
    [{ method: "cb", classifierInit: "kaiming" }, /--classifier-init kaiming .*linear classifier/],
    [
      { method: "mwn", reduction: "weighted-mean" },
      /--reduction weighted-mean has no effect with --method mwn/,
    ],
    [{ method: "meta", warmup: "per-epoch" }, /--warmup per-epoch .*its warm-up is 0 epochs/],
    [
      { method: "l2rw", mwnRecipe: "noisy-label" },
      /--mwn-recipe noisy-label has no effect with --method l2rw: it runs no Meta-Weight-Net step/,
    ],
  ];
  for (const [o, re] of cases) assert.throws(() => resolveTrainConfig(o), re);
  // with an effect, the same settings are taken
  assert.equal(
    resolveTrainConfig({ method: "meta", loss: "focal", focalForm: "softmax" })
      .focalForm,
    "softmax",
  );
  assert.equal(
    resolveTrainConfig({ method: "ldam-drw", classifierInit: "kaiming" })
      .classifierInit,
    "kaiming",
  );
});

/** The settings whose use depends on the method, each at a value other than the preset's. */
const PROBES = {
  tau: 2,
  lookahead: "mean",
  devLoss: "train",
  focalGamma: 2,
  beta: 0.99,
  metaStart: 3,
} as const;

/**
 * Which of {@linkcode PROBES} (in order) each method reads, from its phases (src/train/methods.ts)
 * and loss: "T" taken, "x" refused. tau and --lookahead: a meta step (MWN sets its own
 * look-ahead); --dev-loss: a meta or MWN step; --focal-gamma: the focal loss; --beta:
 * class-balanced weights in some epoch; --meta-start: a stage 2, or a stage 1 that a two-stage
 * method shares (ce, focal, ldam: where the shared stage-1 run is forked).
 */
const READS: Record<Method, string> = {
  "ce": "xxxxxT",
  "cb": "xxxxTx",
  "focal": "xxxTxT",
  "cb-focal": "xxxTTx",
  "ldam": "xxxxxT",
  "ldam-drw": "xxxxTT",
  "cb-finetune": "xxxxxT",
  "l2rw": "TTTxxx",
  "mwn": "xxTxxx",
  "meta": "TTTxTT",
  "l2rw-pretrain": "TTTxxT",
  "l2rw-init-wy": "TTTxTT",
  "l2rw-wy-eps": "TTTxTT",
  "meta-update-wy": "TTTxTT",
  "meta-eps0": "xxxxTT",
};

const flagName = (k: string) => "--" + k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

Deno.test("recipe: a setting no stage of the method reads is refused with the flag, method and fix", () => {
  assert.deepEqual(Object.keys(READS).sort(), [...METHODS].sort());
  let refused = 0;
  for (const method of METHODS) {
    Object.entries(PROBES).forEach(([key, value], i) => {
      const o = { method, [key]: value };
      if (READS[method][i] === "T") {
        assert.equal(resolveTrainConfig(o)[key as keyof TrainConfig], value, `${method} ${key}`);
        return;
      }
      refused++;
      const flag = flagName(key);
      assert.throws(() => resolveTrainConfig(o), (e: unknown) => {
        assert.ok(e instanceof ConfigError, `${method} ${key}: ${e}`);
        assert.match(
          e.message,
          new RegExp(`^${flag} ${value} has no effect with --method ${method}: `),
        );
        assert.equal(e.flag, flag);
        assert.equal(e.hint, `drop ${flag}`);
        assert.match(e.message, new RegExp(`to fix: drop ${flag}$`));
        return true;
      }, `${method} ${key}`);
    });
  }
  assert.equal(refused, 50);
  // the reasons name what the method lacks
  const reason = (o: Parameters<typeof resolveTrainConfig>[0]) => {
    try {
      resolveTrainConfig(o);
    } catch (e) {
      return (e as Error).message;
    }
    return "taken";
  };
  assert.match(reason({ method: "ce", tau: 2 }), /--method ce: it runs no meta step/);
  assert.match(
    reason({ method: "mwn", lookahead: "mean" }),
    /its Meta-Weight-Net step sets the look-ahead itself/,
  );
  assert.match(
    reason({ method: "meta-eps0", devLoss: "train" }),
    /it runs no meta step, so it never takes a dev loss/,
  );
  assert.match(reason({ method: "ce", focalGamma: 2 }), /it trains with ce, not the focal loss/);
  assert.match(
    reason({ method: "meta", loss: "ldam", focalGamma: 2 }),
    /it trains with ldam, not the focal loss/,
  );
  assert.match(
    reason({ method: "cb-finetune", beta: 0.99 }),
    /it never uses the class-balanced weights/,
  );
  assert.match(
    reason({ method: "cb", metaStart: 3 }),
    /--meta-start 3 has no effect with --method cb: it has no stage 2/,
  );
  // the meta family's focal loss reads gamma
  assert.equal(resolveTrainConfig({ method: "meta", loss: "focal", focalGamma: 2 }).focalGamma, 2);
});

Deno.test("recipe: values the run takes anyway, and settings read indirectly, stay accepted", () => {
  // the preset's values ask for nothing the run drops: the run is the one without them
  const plain = resolveTrainConfig({ method: "ce" });
  const same = { tau: 0.01, lookahead: "sum", devLoss: "ce", focalGamma: 1, beta: 0.9999 } as const;
  assert.deepEqual(resolveTrainConfig({ method: "ce", ...same, metaStart: 12 }), plain);
  // --meta-start: the value scaled to the run, and the preset's own, are taken for cb
  assert.equal(resolveTrainConfig({ method: "cb", epochs: 10, metaStart: 8 }).metaStart, 8);
  assert.equal(resolveTrainConfig({ method: "cb", epochs: 10, metaStart: 12 }).metaStart, 12);
  assert.throws(
    () => resolveTrainConfig({ method: "cb", epochs: 10, metaStart: 7 }),
    /--meta-start 7/,
  );
  // ... and any value with --init-from, whose fork epoch it bounds (src/train/fork.ts)
  const fork = { method: "cb", metaStart: 3, initFrom: "runs/cb/checkpoint.safetensors" } as const;
  assert.equal(resolveTrainConfig(fork).metaStart, 3);
  // one-stage methods whose epochs are the shared stage 1 keep it (where they fork it)
  for (const method of ["ce", "focal", "ldam"] as const) {
    assert.equal(resolveTrainConfig({ method, metaStart: 3 }).metaStart, 3, method);
  }
  // a resolved config (a summary's) or a whole preset passed back resolves, for every method
  for (const preset of ["default", "medium", "paper-cifar"] as const) {
    for (const method of METHODS) {
      const cfg = resolveTrainConfig({ preset, method });
      assert.deepEqual(resolveTrainConfig(cfg), cfg, `${preset} ${method}`);
      assert.equal(resolveTrainConfig({ ...presetConfig(preset), method }).method, method);
    }
  }
});

Deno.test("recipe: the library refuses a setting without effect before any work, as the CLI does", async () => {
  const root = await Deno.makeTempDir({ prefix: "tg-noeffect-" });
  try {
    const out = join(root, "run");
    await assert.rejects(
      () => train({ data: syntheticData(), method: "ce", tau: 2, out, progress: null }),
      (e: unknown) =>
        e instanceof ConfigError && /--tau 2 has no effect with --method ce/.test(e.message),
    );
    await assert.rejects(() => Deno.stat(out), Deno.errors.NotFound, "nothing written");
    // a command line's options resolve the same way
    const cli = parseTrainArgs(["--method", "ce", "--beta", "0.99"]).options;
    assert.throws(() => resolveConfig(cli), /--beta 0.99 has no effect with --method ce/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("recipe: every planned cell of every scale resolves, with its stage 1 and its fork", () => {
  for (const [scale, plan] of Object.entries(SCALES)) {
    const factors = [...new Set([...plan.firstFactors, ...plan.secondFactors])];
    const cells = planCells(plan, factors, [0, 1, 2]);
    assert.ok(cells.length > 0, scale);
    for (const cell of cells) {
      const cfg = resolveConfig(cell.options);
      assert.equal(cfg.imbalance, cell.imbalance, `${scale} ${cell.id}`);
      if (!cell.stage1) continue;
      resolveConfig(cell.stage1.options);
      resolveConfig({ ...cell.options, initFrom: join(cell.stage1.dir, "checkpoint.safetensors") });
    }
    // the stage-1 sharing still holds: ce forks the shared run at stage 2 of the plan
    const ce = cells.find((c) => c.label === "ce")!;
    assert.ok(ce.stage1, `${scale}: ce forks a shared stage 1`);
    assert.equal(ce.stage1.untilEpoch, resolveConfig(ce.options).metaStart, scale);
    const cb = cells.find((c) => c.label === "cb")!;
    assert.equal(cb.stage1, null, `${scale}: cb's weights differ from epoch 0`);
  }
});

Deno.test("recipe: --mwn-recipe: the class-imbalance code's step by default; old runs keep theirs", () => {
  const mwn = (o = {}) => resolveTrainConfig({ method: "mwn", ...o }).mwnRecipe;
  assert.equal(mwn(), "class-imbalance");
  assert.equal(mwn({ preset: "paper-cifar" }), "class-imbalance");
  assert.equal(mwn({ mwnRecipe: "noisy-label" }), "noisy-label");
  // the schedule stays the preset's (the shared recipe), whatever the step
  const paper = resolveTrainConfig({ preset: "paper-cifar", method: "mwn" });
  assert.deepEqual([paper.epochs, paper.lrDecayEpochs, paper.lrDecayFactor], [
    200,
    [160, 180],
    0.01,
  ]);
  for (const method of ["ce", "meta", "l2rw", "ldam-drw"] as const) {
    assert.throws(
      () => resolveTrainConfig({ method, mwnRecipe: "noisy-label" }),
      new RegExp(`--mwn-recipe noisy-label has no effect with --method ${method}`),
    );
    // the value the run records anyway asks for nothing it drops
    assert.equal(
      resolveTrainConfig({ method, mwnRecipe: "class-imbalance" }).mwnRecipe,
      "class-imbalance",
    );
  }
  assert.throws(
    () => parseTrainArgs(["--mwn-recipe", "authors"]),
    /invalid --mwn-recipe "authors": expected one of noisy-label, class-imbalance/,
  );
  // a checkpoint from before the option resumes with the step it ran, and its Adam state
  const { mwnRecipe: _, ...old } = resolveTrainConfig({ method: "mwn" });
  const history = [{}];
  const metadata: Record<string, string> = {
    format: CHECKPOINT_FORMAT,
    config: JSON.stringify(old),
    epoch: "1",
    steps: "5",
    history: JSON.stringify(history),
    rng: JSON.stringify({ shuffle: [1], augment: [1], dev: [1] }),
    last: "null",
    best: "null",
    meta_sums: "null",
  };
  const resumed = checkResumeMetadata(
    { tensors: new Map(), metadata },
    "old.safetensors",
    CHECKPOINT_FORMAT,
  );
  assert.equal(resumed.config.mwnRecipe, "noisy-label");
  const data = {
    fingerprints: { train: "", test: "" },
    source: "",
    image: [1, 28, 28],
    numClasses: 10,
  };
  const tensors = (c: TrainConfig) =>
    [...expectedTensors(c, data).keys()].filter((k) => k.startsWith("mwn."));
  assert.ok(tensors(resumed.config).includes("mwn.adam.step"));
  assert.ok(
    tensors(resolveTrainConfig({ method: "mwn" })).includes("mwn.sgd.momentum_buffer.fc1.weight"),
  );
  assert.ok(!tensors(resolveTrainConfig({ method: "mwn" })).some((k) => k.startsWith("mwn.adam")));
  // a fork of an mwn run keeps its step
  const parent = resolveTrainConfig({ method: "mwn", mwnRecipe: "noisy-label" });
  assert.throws(
    () => checkFork(parent, 1, resolveTrainConfig({ method: "mwn" }), "p.safetensors"),
    /differ: --mwn-recipe "class-imbalance" \(checkpoint: "noisy-label"\)/,
  );
  checkFork(parent, 1, { ...parent }, "p.safetensors");
});

Deno.test("recipe: CLI flags parse, bad values list the valid ones, --help states defaults", () => {
  const args = [
    "--reduction",
    "weighted-mean",
    "--focal-form",
    "softmax",
    "--classifier-init",
    "kaiming",
    "--bias-init",
    "zero",
    "--warmup-epochs",
    "2.5",
    "--warmup",
    "per-step",
    "--recipe",
    "authors",
    "--last-batch",
    "drop",
    "--lr-schedule",
    "reference",
    "--mwn-recipe",
    "noisy-label",
  ];
  assert.deepEqual(parseTrainArgs(args).options, {
    reduction: "weighted-mean",
    focalForm: "softmax",
    classifierInit: "kaiming",
    biasInit: "zero",
    warmupEpochs: 2.5,
    warmup: "per-step",
    recipe: "authors",
    lastBatch: "drop",
    lrSchedule: "reference",
    mwnRecipe: "noisy-label",
  });
  assert.throws(
    () => parseTrainArgs(["--last-batch", "pad"]),
    /invalid --last-batch "pad": expected one of partial, wrap, drop/,
  );
  const text = usage();
  const want: [string, string][] = [
    ["reduction <mean|weighted-mean>", "weighted-mean for ldam, ldam-drw; mean otherwise"],
    ["focal-form <sigmoid|softmax>", "sigmoid"],
    ["classifier-init <unit-norm|kaiming>", "unit-norm"],
    ["bias-init <torch|zero|prior>", "prior with the sigmoid focal form; torch otherwise"],
    ["warmup <per-epoch|per-step>", "per-epoch for ldam, ldam-drw; per-step otherwise"],
    ["recipe <shared|authors>", "shared"],
    ["last-batch <partial|wrap|drop>", "partial"],
    ["lr-schedule <aligned|reference>", "aligned"],
    ["mwn-recipe <noisy-label|class-imbalance>", "class-imbalance"],
  ];
  for (const [flag, dflt] of want) {
    const line = text.split("\n").findIndex((l) => l === `  --${flag}`);
    assert.ok(line > 0, `--help lacks --${flag}`);
    assert.ok(text.split("\n")[line + 1].endsWith(`(default: ${dflt})`), `--${flag} default`);
  }
  // the warm-up default --help states is what the presets resolve to
  const paper = resolveConfig({ preset: "paper-cifar", method: "ce" }).warmupEpochs;
  const small = resolveConfig({ method: "ce" }).warmupEpochs;
  assert.match(text, new RegExp(`\\(${paper} at paper-cifar, ${small} at default;`));
});

Deno.test("docs: the README's methods table names every recipe flag and its default", async () => {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  const methods = readme.slice(readme.indexOf("### Methods"), readme.indexOf("### Outputs"));
  const flags = [
    "--reduction",
    "--focal-form",
    "--classifier-init",
    "--bias-init",
    "--warmup-epochs",
    "--warmup",
    "--recipe",
    "--last-batch",
    "--lr-schedule",
    "--mwn-recipe",
  ];
  for (const f of flags) {
    assert.ok(methods.includes(`\`${f} `), `README's methods section lacks ${f}`);
    assert.ok(usage().includes(`  ${f} <`), `--help lacks ${f}`);
  }
  const defaults = [
    "`weighted-mean` for `ldam`, `ldam-drw`",
    "`sigmoid`",
    "`unit-norm`",
    "`prior` with the sigmoid form",
    "`shared`",
    "`partial`",
    "`aligned`",
    "`class-imbalance`",
  ];
  for (const d of defaults) assert.ok(methods.includes(d), `README lacks the default ${d}`);
});

// ---------------------------------------------------------------------------------- rates

Deno.test("recipe: LDAM's staircase, Cui's ramp from 0, the reference decay offset", () => {
  const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-12, `${a} vs ${b}`);
  const ldam = resolveTrainConfig({ preset: "paper-cifar", method: "ldam-drw" });
  // cifar_train.py: lr * epoch / 5 for the 1-based epochs 1..5, then 0.1, 1e-3 from 160, 1e-5
  const stair = [0, 1, 2, 3, 4, 5, 159, 160, 179, 180].map((e) => optimizerLr(ldam, e, 7, 50));
  [0.02, 0.04, 0.06, 0.08, 0.1, 0.1, 0.1, 1e-3, 1e-3, 1e-5].forEach((v, i) => close(stair[i], v));
  // Cui's learning_rate_schedule: 0.1 * (global step / steps per epoch) / 5 until epoch 5
  const cui = resolveTrainConfig({ preset: "paper-cifar", method: "cb-focal" });
  const spe = 40;
  close(optimizerLr(cui, 0, 0, spe), 0);
  close(optimizerLr(cui, 0, 1, spe), 0.1 / 200);
  close(optimizerLr(cui, 2, 20, spe), 0.1 * 100 / 200);
  close(optimizerLr(cui, 4, 39, spe), 0.1 * 199 / 200);
  close(optimizerLr(cui, 5, 0, spe), 0.1);
  close(optimizerLr(cui, 160, 0, spe), 1e-3);
  close(warmupFactor(cui, 1, 10, spe), 50 / 200);
  // fractional warm-up at the small preset: 0.375 epochs of 5 steps = 1.875 steps
  const small = resolveTrainConfig({ method: "ce" });
  assert.deepEqual([0, 1, 2].map((s) => warmupFactor(small, 0, s, 5)), [0, 1 / 1.875, 1]);
  // the paper's code: the optimiser decays one epoch before the look-ahead
  const meta = resolveTrainConfig({ preset: "paper-cifar", lrSchedule: "reference" });
  const both = (c: TrainConfig, e: number) => [optimizerLr(c, e, 0, 1), lookaheadLr(c, e, 0, 1)];
  const approx = (got: number[], want: number[]) => got.forEach((g, i) => close(g, want[i]));
  approx(both(meta, 158), [0.1, 0.1]);
  approx(both(meta, 159), [1e-3, 0.1]);
  approx(both(meta, 160), [1e-3, 1e-3]);
  approx(both(meta, 179), [1e-5, 1e-3]);
  approx(both(meta, 180), [1e-5, 1e-5]);
  const aligned = resolveTrainConfig({ preset: "paper-cifar" });
  approx(both(aligned, 159), [0.1, 0.1]);
  approx(both(aligned, 179), [1e-3, 1e-3]);
});

// ------------------------------------------------------------------------ SGD decay mask

/** Four parameters with random values and SGD settings, two of them exempt from decay. */
function exemptCase(gpu: Gpu, seed: number) {
  const l = new FlatLayout([
    { name: "conv.weight", shape: [5, 7] },
    { name: "linear.weight", shape: [3, 17] },
    { name: "linear.bias", shape: [3] },
    { name: "bn.bias", shape: [11] },
  ], gpu.offsetAlignment);
  const rng = new ref.Rng(seed);
  const vals = () =>
    new Map(l.specs.map((s) => [s.name, Float32Array.from(randn(rng, ref.numel(s.shape)))]));
  const config = { momentum: 0.9, weightDecay: 0.05, nesterov: true };
  return { l, vals, config, exempt: ["linear.bias", "conv.weight"] };
}

/** `init` after SGD steps with `grads` at lr 0.1 * 0.8^t in float64, with decay `wd`. */
function sgdReference(
  init: Float32Array,
  grads: Float32Array[],
  config: { momentum: number; nesterov: boolean },
  wd: number,
): Float64Array {
  const want = Float64Array.from(init), buf = new Float64Array(want.length);
  grads.forEach((g, t) => {
    ref.sgdStep(want, Float64Array.from(g), buf, {
      ...config,
      weightDecay: wd,
      lr: 0.1 * 0.8 ** t,
    });
  });
  return want;
}

gpuTest("sgd: parameters exempt from weight decay follow the float64 reference", async (gpu) => {
  const { l, vals, config, exempt } = exemptCase(gpu, 21);
  const init = vals(), grads = [vals(), vals(), vals(), vals()];
  const run = async (decayExempt?: string[]) => {
    const p = new FlatTensors(gpu, l), g = new FlatTensors(gpu, l);
    p.upload(init);
    const opt = new Sgd(gpu, l, { ...config, decayExempt });
    grads.forEach((gv, t) => {
      g.upload(gv);
      opt.step(p, g, 0.1 * 0.8 ** t);
    });
    const out = await p.download();
    opt.destroy();
    p.destroy();
    g.destroy();
    return out;
  };
  const masked = await run(exempt), plain = await run();
  for (const s of l.specs) {
    const wd = exempt.includes(s.name) ? 0 : config.weightDecay;
    const want = sgdReference(init.get(s.name)!, grads.map((g) => g.get(s.name)!), config, wd);
    expectClose(`sgd exempt: ${s.name}`, Float64Array.from(masked.get(s.name)!), want, 1e-6);
    if (exempt.includes(s.name)) {
      // the decay the exemption removes is well above the tolerance
      assert.ok(ref.relError(Float64Array.from(plain.get(s.name)!), want) > 1e-3, s.name);
    } else {
      // every other parameter is bit for bit what the plain kernel computes
      assert.deepEqual(masked.get(s.name), plain.get(s.name), s.name);
    }
  }
  assert.throws(
    () => new Sgd(gpu, l, { ...config, decayExempt: ["fc.bias"] }),
    /decayExempt names "fc.bias", which is not a parameter; parameters: conv.weight/,
  );
});

gpuTest("sgd: a head-only update (a frozen backbone) keeps the exemptions", async (gpu) => {
  const { l, vals, config, exempt } = exemptCase(gpu, 22);
  const head = ["linear.weight", "linear.bias"];
  const init = vals(), grads = [vals(), vals(), vals()];
  const p = new FlatTensors(gpu, l), g = new FlatTensors(gpu, l);
  p.upload(init);
  const opt = new Sgd(gpu, l, { ...config, decayExempt: exempt });
  const offset = l.offsets[l.byName.get("linear.weight")!];
  const count = l.offsets[l.byName.get("linear.bias")!] + 3 - offset;
  grads.forEach((gv, t) => {
    g.upload(gv);
    opt.stepRange(p, g, offset, count, 0.1 * 0.8 ** t);
  });
  const out = await p.download();
  for (const s of l.specs) {
    if (!head.includes(s.name)) {
      assert.deepEqual(out.get(s.name), init.get(s.name), `${s.name} is outside the range`);
      continue;
    }
    const wd = exempt.includes(s.name) ? 0 : config.weightDecay;
    const want = sgdReference(init.get(s.name)!, grads.map((g) => g.get(s.name)!), config, wd);
    expectClose(`sgd range: ${s.name}`, Float64Array.from(out.get(s.name)!), want, 1e-6);
  }
  opt.destroy();
  p.destroy();
  g.destroy();
});

// ---------------------------------------------------------------------- partial batches

function mlpEngine(gpu: Gpu, batch: number) {
  const net = new Sequential(new Linear(6, 8), new ReLU(), new Linear(8, 4));
  const model = new Model(gpu, net, 5);
  const optimizer = new Sgd(gpu, model.paramLayout, {
    momentum: 0.9,
    weightDecay: 1e-3,
    nesterov: true,
  });
  const engine = new StepEngine(model, {
    loss: (ctx, y, t) => classificationLoss(ctx, y, t, {}),
    optimizer,
    batch,
    input: [6],
  });
  const meta = new MetaReweighter(engine, { devBatch: 6, devLoss: crossEntropy, numClasses: 4 });
  const rnd = (n: number, s: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * s));
  // the same first examples whatever the batch size
  const load = (n: number) => {
    engine.x.upload(gpu, rnd(n * 6, 1.3));
    engine.targets.upload(gpu, Array.from({ length: n }, (_, i) => i % 4));
    engine.weights.upload(gpu, Array.from({ length: n }, (_, i) => 0.5 + (i % 3) * 0.25));
  };
  meta.devX.upload(gpu, rnd(6 * 6, 0.7));
  meta.devTargets.upload(gpu, Array.from({ length: 6 }, (_, i) => (i + 1) % 4));
  const destroy = () => {
    meta.destroy();
    engine.destroy();
    optimizer.destroy();
    model.destroy();
  };
  return { model, optimizer, engine, meta, load, destroy };
}

const metaOpts = {
  eta: 0.1,
  tau: 1,
  lookahead: "mean" as const,
  rule: "meta" as const,
  lookaheadWeights: "w" as const,
};

gpuTest("partial batch: n examples of a batch-B engine step as a batch-n engine", async (gpu) => {
  const n = 5;
  const big = mlpEngine(gpu, 8), small = mlpEngine(gpu, n);
  big.load(8);
  small.load(n);
  // the big engine's examples beyond n are other data, which the partial step must not read
  const mwns = [big, small].map((e) => new MetaWeightNet(e.meta, 3));
  for (const e of [big, small]) {
    const part = e === big ? n : undefined;
    e.engine.step(0.1, undefined, part);
    e.meta.step(0.05, metaOpts, part);
    mwns[e === big ? 0 : 1].step(0.05, 0.04, part);
  }
  assert.deepEqual(await mwns[0].model.stateDict(), await mwns[1].model.stateDict());
  for (const m of mwns) m.destroy();
  assert.deepEqual(await big.model.stateDict(), await small.model.stateDict());
  assert.deepEqual(
    await big.optimizer.momentum.download(),
    await small.optimizer.momentum.download(),
  );
  const head = async (t: { read: (g: Gpu) => Promise<Float32Array> }) =>
    (await t.read(gpu)).slice(0, n);
  assert.deepEqual(await head(big.meta.eps), await head(small.meta.eps));
  assert.deepEqual(await big.engine.takeMeanLoss(), await small.engine.takeMeanLoss());
  // and it differs from a full step of the big engine
  const full = mlpEngine(gpu, 8);
  full.load(8);
  full.engine.step(0.1);
  assert.notDeepEqual(
    (await full.model.stateDict()).get("2.bias"),
    (await small.model.stateDict()).get("2.bias"),
  );
  assert.throws(() => small.engine.forwardLosses(null!, 6), /6 rows of a \[5,6\] tensor/);
  for (const e of [big, small, full]) e.destroy();
});

gpuTest(
  "partial batch: a warm epoch with a partial last batch creates no GPU objects",
  async (gpu) => {
    const { engine, meta, load, destroy } = mlpEngine(gpu, 8);
    load(8);
    const sizes = [8, 8, 3];
    const snap = () => ({
      liveBuffers: gpu.liveBuffers,
      buffersCreated: gpu.stats.buffersCreated,
      bindGroupsCreated: gpu.stats.bindGroupsCreated,
      pipelinesCreated: gpu.stats.pipelinesCreated,
      uniformsCreated: gpu.stats.uniformsCreated,
    });
    const seen: ReturnType<typeof snap>[] = [];
    await fit({
      engine,
      data: { epoch: () => ({ steps: sizes.length, load: () => {} }) },
      epochs: 4,
      lr: (epoch, step) => 0.1 / (1 + epoch + step),
      hooks: {
        stepKind: (epoch) => ({
          name: epoch % 2 ? "meta" : "plain",
          run: (lr, step) => {
            const n = sizes[step];
            // eta is a uniform of the meta step: constant here, as in the trainer's epochs
            if (epoch % 2) meta.step(lr, metaOpts, n);
            else engine.step(lr, undefined, n);
          },
        }),
        epochStart: async () => {
          await gpu.sync();
          seen.push(snap());
        },
        afterStep: async (_epoch, step) => {
          if (step !== sizes.length - 1) return;
          await gpu.sync();
          seen.push(snap());
        },
      },
    });
    // epochs 0 (plain) and 1 (meta) build the second batch size; epochs 2 and 3 create nothing
    assert.ok(seen[1].pipelinesCreated > seen[0].pipelinesCreated);
    assert.deepEqual(seen[5], seen[4], "a warm plain epoch created GPU objects");
    assert.deepEqual(seen[7], seen[6], "a warm meta epoch created GPU objects");
    destroy();
  },
);

// ------------------------------------------------------------------------------- runs

const tiny = {
  data: syntheticData(),
  dataset: "mnist" as const,
  imbalance: 10,
  maxPerClass: 30,
  testPerClass: 5,
  model: "resnet8" as const,
  progress: null,
};

gpuTest(
  "runs: the classifier inits on their own stream, the ResNet's draws unchanged",
  async (gpu) => {
    for (const method of ["ldam-drw", "cb-focal", "ce"] as const) {
      const cfg = resolveConfig({ ...tiny, method, seed: 3 });
      const data = await prepareData(cfg, tiny.data);
      const run = new LongTailRun(gpu, cfg, data);
      const got = await run.parts.model.stateDict();
      const own = resnetInit(run.modelConfig, cfg.seed);
      const override = classifierInit(cfg, run.modelConfig);
      for (const [name, v] of own) {
        assert.deepEqual(got.get(name), override.get(name) ?? v, name);
      }
      const C = 10;
      if (method === "ldam-drw") {
        const w = got.get("linear.weight")!;
        for (let c = 0; c < C; c++) {
          const norm = Math.hypot(...w.slice(c * 64, (c + 1) * 64));
          assert.ok(Math.abs(norm - 1) < 1e-6, `row ${c} norm ${norm}`);
        }
      } else if (method === "cb-focal") {
        assert.ok(got.get("linear.bias")!.every((b) => b === Math.fround(-Math.log(C - 1))));
        assert.deepEqual(run.parts.optimizer.config.decayExempt, ["linear.bias"]);
      } else {
        const b = got.get("linear.bias")!;
        assert.ok(b.every((x) => Math.abs(x) <= 0.125) && b.some((x) => Math.abs(x) > 0.03));
        assert.deepEqual(run.parts.optimizer.config.decayExempt, []);
      }
      run.destroy();
    }
  },
);

gpuTest(
  "runs: a warm epoch of the trainer with a partial last batch creates no GPU objects",
  async (gpu) => {
    const dir = await Deno.makeTempDir({ prefix: "tg-recipe-" });
    try {
      const cfg = resolveConfig({
        ...tiny,
        method: "meta",
        epochs: 4,
        metaStart: 2,
        // one lr per stage: the look-ahead lr eta is a uniform of the meta step
        lrDecayEpochs: [2],
        batch: 32,
        out: dir,
      });
      const data = await prepareData(cfg, tiny.data);
      assert.ok(data.trainIndices.length % 32 !== 0, "no partial batch");
      const run = new LongTailRun(gpu, cfg, data);
      const snap = () => ({
        liveBuffers: gpu.liveBuffers,
        buffersCreated: gpu.stats.buffersCreated,
        bindGroupsCreated: gpu.stats.bindGroupsCreated,
        pipelinesCreated: gpu.stats.pipelinesCreated,
        uniformsCreated: gpu.stats.uniformsCreated,
      });
      const seen: ReturnType<typeof snap>[] = [];
      const hooks = run.hooks();
      const steps = run.stepsOf(0);
      await fit({
        engine: run.parts.engine,
        data: run.source,
        epochs: cfg.epochs,
        lr: (e, s) => run.lr(e, s),
        hooks: {
          ...hooks,
          epochStart: async (e, kind) => {
            await hooks.epochStart!(e, kind);
            await gpu.sync();
            seen.push(snap());
          },
          afterStep: async (_e, s) => {
            if (s !== steps - 1) return;
            await gpu.sync();
            seen.push(snap());
          },
        },
      });
      assert.deepEqual(run.history.map((h) => [h.phase, h.images]), [
        ["plain", data.trainIndices.length],
        ["plain", data.trainIndices.length],
        ["meta", data.trainIndices.length],
        ["meta", data.trainIndices.length],
      ]);
      assert.deepEqual(seen[3], seen[2], "a warm plain epoch created GPU objects");
      assert.deepEqual(seen[7], seen[6], "a warm meta epoch created GPU objects");
      run.destroy();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

gpuTest("runs: LDAM-DRW's first step is the weighted mean's, sum w l / sum w", async (gpu) => {
  const dir = await Deno.makeTempDir({ prefix: "tg-recipe-" });
  try {
    // one step over every image with CB weights (DRW from epoch 0), no decay or momentum yet:
    // a batch of the whole training set (a larger one is refused)
    const settings = {
      ...tiny,
      gpu,
      method: "ldam-drw" as const,
      epochs: 1,
      metaStart: 0,
      lrDecayEpochs: [],
      weightDecay: 0,
      evalEvery: 1,
    };
    const cfg = resolveConfig(settings);
    const batch = (await prepareData(cfg, tiny.data)).trainIndices.length;
    const base = { ...settings, batch };
    const paramsOf = async (out: string) => {
      const f = (await readCheckpoint(join(out, "checkpoint.safetensors")))!;
      return new Map(
        [...f.tensors].filter(([k]) => k === "linear.weight" || k.endsWith("conv1.weight"))
          .map(([k, t]) => [k, t.data as Float32Array]),
      );
    };
    const wm = await train({ ...base, out: join(dir, "wm") });
    const mean = await train({ ...base, reduction: "mean", out: join(dir, "mean") });
    assert.equal(mean.steps, 1);
    assert.equal(wm.config.reduction, "weighted-mean");
    assert.equal(wm.steps, 1);
    const init = classifierInit(wm.config, {
      depth: 8,
      inChannels: 1,
      numClasses: 10,
      cosine: true,
    })
      .get("linear.weight")!;
    const N = wm.data.trainTotal;
    const sumW = wm.data.trainCounts.reduce((s, n, c) => s + n * wm.classWeights[c], 0);
    // the step is linear in the seed: (p_wm - p0) = (p_mean - p0) * N / sum w
    const a = (await paramsOf(join(dir, "wm"))).get("linear.weight")!;
    const b = (await paramsOf(join(dir, "mean"))).get("linear.weight")!;
    const want = Float64Array.from(b, (v, i) => init[i] + (v - init[i]) * (N / sumW));
    expectClose("ldam-drw weighted-mean step", Float64Array.from(a), want, 1e-4);
    assert.ok(Math.abs(N / sumW - 1) > 0.2, `the weights' mean ${sumW / N} is near 1`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

gpuTest(
  "runs: partial, wrap and drop epochs: steps, images, fit's distinct examples, a finite loss",
  async (gpu) => {
    const dir = await Deno.makeTempDir({ prefix: "tg-recipe-" });
    try {
      const base = { ...tiny, gpu, method: "meta" as const, epochs: 2, metaStart: 1, batch: 32 };
      const got: Record<string, [number, number][]> = {};
      const distinct: Record<string, (number | undefined)[]> = {};
      let N = 0;
      for (const lastBatch of ["partial", "wrap", "drop"] as const) {
        const s = await train({ ...base, lastBatch, out: join(dir, lastBatch) });
        N = s.data.trainTotal;
        const lines = (await Deno.readTextFile(join(dir, lastBatch, "metrics.jsonl"))).trim()
          .split("\n").map((l) => JSON.parse(l));
        got[lastBatch] = lines.map((r) => [r.steps, r.images]);
        assert.ok(lines.every((r) => Number.isFinite(r.trainLoss)), lastBatch);
        // what the source tells fit (EpochEnd.examples): each image once, wrapped or not
        const cfg = resolveConfig({ ...base, lastBatch });
        const run = new LongTailRun(gpu, cfg, await prepareData(cfg, tiny.data));
        distinct[lastBatch] = [0, 1].map((e) => run.source.epoch(e).examples);
        run.destroy();
      }
      assert.ok(N % 32 !== 0, `N = ${N} is a multiple of the batch`);
      const steps = Math.ceil(N / 32);
      // metrics.jsonl's images: the rows trained on (wrap counts its refill twice)
      assert.deepEqual(got.partial, [[steps, N], [steps, N]]);
      assert.deepEqual(got.wrap, [[steps, steps * 32], [steps, steps * 32]]);
      assert.deepEqual(got.drop, [[steps - 1, (steps - 1) * 32], [steps - 1, (steps - 1) * 32]]);
      assert.deepEqual(distinct, {
        partial: [N, N],
        wrap: [N, N],
        drop: [(steps - 1) * 32, (steps - 1) * 32],
      });
      await assert.rejects(
        () => train({ ...base, batch: 400, lastBatch: "drop", out: join(dir, "none") }),
        /--last-batch drop with --batch 400: the long-tailed training set has \d+ images/,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test("config: an unknown preset from a program is refused, not replaced by the default", () => {
  assert.throws(
    () => resolveTrainConfig({ preset: "fast" as never }),
    (e: unknown) =>
      e instanceof ConfigError && e.flag === "--preset" &&
      /^invalid --preset "fast": expected one of default, medium, paper-cifar/.test(e.message),
  );
  assert.equal(resolveTrainConfig({ preset: "medium" }).maxPerClass, 1000);
});
