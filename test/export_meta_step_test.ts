/**
 * `scripts/export_meta_step.ts` on checkpoints of short runs on the synthetic IDX data of
 * test/train_fixtures.ts (the exporter runs as a subprocess). Every export is recomputed in
 * float64 (test/reference/) from its own tensors and metadata: the per-example loss at theta
 * (`losses`) under the metadata's `loss`, theta' (`lookahead.*`), the dev loss at theta'
 * (`dev_losses`) under the metadata's `dev_loss`, eps from the reference meta-gradient with
 * those two losses and `step.eta`, and the SGD update from `before.*` to `after.*` with
 * `step.sgd.lr`. So a metadata entry that misdescribes the step fails.
 *
 * - a `meta` run (cross-entropy, stage 2 from epoch 1): also final = w + eps and the run's
 *   (non-zero) momentum before;
 * - a `meta` run with the LDAM loss stopped after 2 of 4 epochs, inside a per-step warm-up and
 *   with `--lr-schedule reference`: eta and the SGD lr are the run's (eta = lr/2, SGD lr = lr/20
 *   at epoch 3), the dev loss is cross-entropy on 30 cos (`--dev-loss ce`); the same checkpoint
 *   with its config's dev loss set to `train` exports LDAM with its margins as the dev loss;
 * - a `focal` run (no meta epochs, focal loss): the paper's meta step with the run's loss,
 *   recorded with the run's full config;
 * - refused with one clear line: a missing checkpoint, a large-run checkpoint, data that is not
 *   there (the hint does not offer a --download the task lacks), a bad command line (exit 2);
 *   --help lists every flag and the write scope.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  decodeSafetensors,
  encodeSafetensors,
  f32,
  readCheckpoint,
  type SafetensorsFile,
} from "../src/checkpoint/mod.ts";
import { Gpu } from "../src/gpu/runtime.ts";
import { train } from "../src/train/mod.ts";
import {
  type LossOpts,
  type Params,
  resnetBackward,
  type ResNetConfig,
  resnetForward,
  resnetJvp,
  resnetParamSpec,
} from "./reference/mod.ts";
import { runTrain, tinyArgs, trainCommand, writeSyntheticIdx } from "./train_fixtures.ts";

const SCRIPT = new URL("../scripts/export_meta_step.ts", import.meta.url).pathname;

async function exportStep(root: string, args: string[]) {
  const r = await trainCommand(args, root, SCRIPT).output();
  const dec = new TextDecoder();
  return { code: r.code, stdout: dec.decode(r.stdout), stderr: dec.decode(r.stderr) };
}

/** Exports `checkpoint` into `root/<name>-export`; returns the export file. */
async function exportOf(root: string, checkpoint: string, name: string) {
  const dir = join(root, `${name}-export`);
  const r = await exportStep(root, ["--checkpoint", checkpoint, "--out", dir]);
  assert.equal(r.code, 0, r.stderr);
  return (await readCheckpoint(join(dir, "meta_step.safetensors")))!;
}

/** A short run's checkpoint (the train script), exported; returns the export file. */
async function runAndExport(root: string, name: string, extra: string[]) {
  const out = join(root, name);
  const t = await runTrain(tinyArgs(root, out, extra), root);
  assert.equal(t.code, 0, t.stderr);
  return await exportOf(root, join(out, "checkpoint.safetensors"), name);
}

const f64 = (f: SafetensorsFile, k: string) =>
  Float64Array.from(f.tensors.get(k)!.data as Float32Array);

/** The reference options of a softmax loss recorded in the metadata (`loss` or `dev_loss`). */
function lossOpts(f: SafetensorsFile, key: "loss" | "dev_loss"): LossOpts {
  const m = JSON.parse(f.metadata[key]);
  assert.equal(m.form, "softmax", `${key}: the reference here has softmax losses only`);
  return { scale: m.scale, margins: m.margins, gamma: m.gamma };
}

/** Max |after - (before - lr (g' + m buf'))| with g' = buf' - m buf (Nesterov SGD, PyTorch). */
function sgdResidual(f: SafetensorsFile, names: string[], lr: number, m: number): number {
  let worst = 0;
  for (const n of names) {
    const p = f64(f, `before.${n}`), q = f64(f, `after.${n}`);
    const buf = f64(f, `before.optimizer.momentum.${n}`);
    const buf2 = f64(f, `after.optimizer.momentum.${n}`);
    for (let i = 0; i < p.length; i++) {
      const g = buf2[i] - m * buf[i];
      worst = Math.max(worst, Math.abs(q[i] - (p[i] - lr * (g + m * buf2[i]))));
    }
  }
  return worst;
}

/** Asserts |got_i - want_i| <= tol * max(floor, max |want|) for every i. */
function assertClose(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  tol: number,
  what: string,
  floor = 1,
) {
  assert.equal(got.length, want.length, `${what}: length`);
  let scale = floor;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]));
  for (let i = 0; i < want.length; i++) {
    assert.ok(Math.abs(got[i] - want[i]) <= tol * scale, `${what}[${i}]: ${got[i]} vs ${want[i]}`);
  }
}

/**
 * Recomputes the exported step in float64 from its tensors and metadata (see the module doc)
 * and returns the metadata's step.
 */
function checkAgainstReference(f: SafetensorsFile, refCfg: ResNetConfig) {
  const step = JSON.parse(f.metadata.step);
  const get = (k: string) => f.tensors.get(k)!;
  const specs = resnetParamSpec(refCfg);
  const params: Params = new Map(specs.map((s) => [s.name, f64(f, `before.${s.name}`)]));
  const x = { shape: get("batch.x").shape, data: f64(f, "batch.x") };
  const xDev = { shape: get("dev.x").shape, data: f64(f, "dev.x") };
  const labels = Array.from(get("batch.labels").data as Int32Array);
  const labelsDev = Array.from(get("dev.labels").data as Int32Array);
  const fwd = resnetForward(refCfg, params, x, labels, lossOpts(f, "loss"), "train");
  assertClose(get("losses").data as Float32Array, fwd.losses, 1e-4, "losses");
  // theta' = theta - eta * grad sum_i a_i w_i loss_i (look-ahead weights w)
  assert.equal(step.lookaheadWeights, "w");
  const a = step.lookahead === "mean" ? 1 / labels.length : 1;
  const g = resnetBackward(fwd, f64(f, "weights").map((w) => a * w));
  const thetaPrime: Params = new Map();
  for (const s of specs) {
    const want = params.get(s.name)!.map((v, i) => v - step.eta * g.get(s.name)![i]);
    assertClose(get(`lookahead.${s.name}`).data as Float32Array, want, 1e-4, `lookahead.${s.name}`);
    thetaPrime.set(s.name, want);
  }
  // the engine's dev loss at its own theta' is the metadata's dev loss
  const exported: Params = new Map(specs.map((s) => [s.name, f64(f, `lookahead.${s.name}`)]));
  const devOpts = lossOpts(f, "dev_loss");
  const devAt = resnetForward(refCfg, exported, xDev, labelsDev, devOpts, "train");
  assertClose(get("dev_losses").data as Float32Array, devAt.losses, 1e-4, "dev_losses");
  // eps = -tau dL_dev/deps = tau * eta * a * <grad L_dev(theta'), grad loss_i(theta)>
  const dev = resnetForward(refCfg, thetaPrime, xDev, labelsDev, devOpts, "train");
  const devGrad = resnetBackward(
    dev,
    new Float64Array(labelsDev.length).fill(1 / labelsDev.length),
  );
  const want = resnetJvp(fwd, devGrad).map((v) => step.tau * step.eta * a * v);
  assert.ok(want.some((v) => v !== 0));
  assertClose(get("eps").data as Float32Array, want, 2e-3, "eps", 0);
  // one PyTorch SGD step with the exported lr from the run's momentum
  const residual = sgdResidual(f, specs.map((s) => s.name), step.sgd.lr, step.sgd.momentum);
  assert.ok(residual < 1e-6, `SGD residual ${residual}`);
  assert.equal(get("eta").data[0], Math.fround(step.eta));
  assert.equal(get("lr").data[0], Math.fround(step.sgd.lr));
  assert.equal(step.lr, step.sgd.lr);
  return step;
}

Deno.test({
  name: "export-meta-step: a meta run's checkpoint, checked against the float64 reference",
  sanitizeResources: false,
  fn: async () => {
    const root = await writeSyntheticIdx(await Deno.makeTempDir({ prefix: "tg-export-" }));
    try {
      const f = await runAndExport(root, "meta", ["--method", "meta", "--tau", "1"]);
      const cfg = JSON.parse(f.metadata.config);
      assert.equal(cfg.method, "meta");
      assert.deepEqual(JSON.parse(f.metadata.loss), {
        name: "ce",
        form: "softmax",
        gamma: 0,
        scale: 1,
        margins: null,
      });
      assert.deepEqual(JSON.parse(f.metadata.dev_loss), {
        option: "ce",
        form: "softmax",
        gamma: 0,
        scale: 1,
        margins: null,
      });
      const step = checkAgainstReference(f, { inChannels: 1, numClasses: 10, n: 1 });
      assert.equal(step.epoch, 2);
      assert.equal(step.rule, "meta");
      // no warm-up, aligned schedule: eta = the SGD lr = lr decayed once at epoch 2
      assert.equal(step.eta, cfg.lr * 0.1);
      assert.equal(step.sgd.lr, step.eta);
      const w = f.tensors.get("weights")!.data as Float32Array;
      const eps = f.tensors.get("eps")!.data as Float32Array;
      const fin = f.tensors.get("final_weights")!.data as Float32Array;
      for (let i = 0; i < eps.length; i++) {
        assert.ok(Math.abs(fin[i] - (w[i] + eps[i])) <= 1e-6 * Math.abs(w[i]) + 1e-7);
      }
      assert.ok(f64(f, "before.optimizer.momentum.conv1.weight").some((v) => v !== 0));
      assert.notDeepEqual(
        f.tensors.get("after.bn1.running_mean")!.data,
        f.tensors.get("before.bn1.running_mean")!.data,
      );
      assert.match(
        f.metadata.definition,
        /-log softmax\(u\)_y with u = z \(the raw model output\)/,
      );
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});

/** `ckpt` with its config's dev loss set to `devLoss`, written to `path`. */
async function withDevLoss(ckpt: string, path: string, devLoss: string): Promise<void> {
  const file = decodeSafetensors(await Deno.readFile(ckpt));
  const config = { ...JSON.parse(file.metadata.config), devLoss };
  await Deno.mkdir(join(path, ".."), { recursive: true });
  await Deno.writeFile(
    path,
    encodeSafetensors(file.tensors, { ...file.metadata, config: JSON.stringify(config) }),
  );
}

Deno.test({
  name: "export-meta-step: LDAM inside a warm-up with the reference lr schedule; both dev losses",
  sanitizeResources: false,
  fn: async () => {
    const root = await writeSyntheticIdx(await Deno.makeTempDir({ prefix: "tg-export-ldam-" }));
    const gpu = await Gpu.create();
    try {
      const out = join(root, "ldam");
      const lr = 0.1;
      // 2 of 4 epochs: the export is epoch 3 (index 2), its first step half-way up the warm-up
      const s = await train({
        gpu,
        progress: null,
        dataset: "mnist",
        dataDir: root,
        download: false,
        imbalance: 10,
        maxPerClass: 40,
        testPerClass: 10,
        model: "resnet8",
        batch: 16,
        method: "meta",
        loss: "ldam",
        tau: 1,
        epochs: 4,
        metaStart: 1,
        lr,
        lrDecayEpochs: [3],
        lrDecayFactor: 0.1,
        lrSchedule: "reference",
        warmup: "per-step",
        warmupEpochs: 4,
        out,
        maxEpochs: 2,
      });
      assert.equal(s.status, "running");
      const ckpt = join(out, "checkpoint.safetensors");
      const f = await exportOf(root, ckpt, "ldam");
      const cosine: ResNetConfig = { inChannels: 1, numClasses: 10, n: 1, classifier: "normed" };
      const loss = JSON.parse(f.metadata.loss);
      assert.equal(loss.name, "ldam");
      assert.equal(loss.scale, 30);
      assert.equal(loss.margins.length, 10);
      assert.equal(Math.max(...loss.margins), Math.fround(0.5));
      assert.ok(Math.min(...loss.margins) < 0.5);
      // --dev-loss ce with LDAM: cross-entropy on 30 cos, no margins
      assert.deepEqual(JSON.parse(f.metadata.dev_loss), {
        option: "ce",
        form: "softmax",
        gamma: 0,
        scale: 30,
        margins: null,
      });
      assert.match(
        f.metadata.definition,
        /L_dev = mean_j of -log softmax\(u\)_y with u = 30 \* z,/,
      );
      const step = checkAgainstReference(f, cosine);
      assert.equal(step.epoch, 2);
      assert.equal(step.rule, "meta");
      // warm-up factor 2 S / (4 S) = 1/2 at step 0 of epoch 2; the optimiser's lr already has
      // the decay of epoch 3 (reference schedule), eta not yet
      assert.equal(step.eta, lr * 0.5);
      assert.equal(step.sgd.lr, lr * 0.1 * 0.5);

      // the same checkpoint with --dev-loss train: LDAM itself (scale and margins) on dev
      const trainDev = join(root, "ldam-train-dev", "checkpoint.safetensors");
      await withDevLoss(ckpt, trainDev, "train");
      const g = await exportOf(root, trainDev, "ldam-train-dev");
      const { name: _, ...ldam } = loss;
      assert.deepEqual(JSON.parse(g.metadata.dev_loss), { option: "train", ...ldam });
      assert.match(g.metadata.definition, /L_dev = mean_j of .*m = metadata dev_loss\.margins/);
      checkAgainstReference(g, cosine);
      assert.deepEqual(g.tensors.get("batch.x")!.data, f.tensors.get("batch.x")!.data);
      assert.notDeepEqual(g.tensors.get("eps")!.data, f.tensors.get("eps")!.data);
    } finally {
      gpu.dispose();
      await Deno.remove(root, { recursive: true });
    }
  },
});

Deno.test({
  name: "export-meta-step: a focal run without meta epochs; missing data and files are named",
  sanitizeResources: false,
  fn: async () => {
    const root = await writeSyntheticIdx(await Deno.makeTempDir({ prefix: "tg-export-" }));
    try {
      const f = await runAndExport(root, "focal", ["--method", "focal"]);
      // focal defaults to Cui's sigmoid form (the paper's focal rows); the export records it
      const loss = JSON.parse(f.metadata.loss);
      assert.deepEqual(loss, { name: "focal", form: "sigmoid", gamma: 1, scale: 1, margins: null });
      assert.equal(JSON.parse(f.metadata.dev_loss).option, "ce");
      assert.equal(JSON.parse(f.metadata.config).focalGamma, 1);
      assert.match(f.metadata.definition, /loss_i = sum_c -\(1 - q_c\)\^1 log q_c/);
      const step = JSON.parse(f.metadata.step);
      assert.equal(step.rule, "meta");
      assert.match(step.phase, /not a meta epoch/);
      const eps = f.tensors.get("eps")!.data as Float32Array;
      assert.ok(eps.some((e) => e !== 0) && eps.every(Number.isFinite));
      const ckpt = join(root, "focal", "checkpoint.safetensors");
      // a second export replaces the first (its own file, same bits); a file of that name that
      // is not an export is the user's: refused before any work, left as it was
      assert.equal(f.metadata.format, "tailgrad-meta-step/1");
      const again = await exportOf(root, ckpt, "focal");
      assert.deepEqual(again.tensors.get("eps")!.data, f.tensors.get("eps")!.data);
      const theirs = join(root, "theirs");
      await Deno.mkdir(theirs);
      await Deno.writeTextFile(join(theirs, "meta_step.safetensors"), "the user's notes");
      const kept = await exportStep(root, ["--checkpoint", ckpt, "--out", theirs]);
      assert.equal(kept.code, 2, kept.stderr);
      assert.match(
        kept.stderr,
        /meta_step\.safetensors exists and is not an export of this command/,
      );
      assert.match(kept.stderr, /to fix: move the file away, or choose another --out folder/);
      assert.equal(
        await Deno.readTextFile(join(theirs, "meta_step.safetensors")),
        "the user's notes",
      );
      const x = join(root, "x");
      const refused = async (args: string[], re: RegExp) => {
        const r = await exportStep(root, args);
        assert.equal(r.code, 1, r.stderr);
        assert.match(r.stderr, re);
        assert.doesNotMatch(r.stderr, /^\s+at /m);
        return r.stderr;
      };
      const missing = join(root, "nope", "checkpoint.safetensors");
      await refused(["--checkpoint", missing, "--out", x], /--checkpoint .*nope.*: no such file/);
      // the data moved: the hint says what to do without offering --download
      const empty = join(root, "empty");
      await Deno.mkdir(empty);
      const noData = await refused(
        ["--checkpoint", ckpt, "--data-dir", empty, "--out", x],
        /error: MNIST was not found \(looked in: .*empty/,
      );
      assert.match(
        noData,
        /to fix: export-meta-step reads the run's mnist data and never downloads/,
      );
      assert.doesNotMatch(noData, /--download/);
      // a large-run checkpoint is refused by name, before its data is looked for
      const large = join(root, "large", "checkpoint.safetensors");
      await Deno.mkdir(join(root, "large"));
      await Deno.writeFile(
        large,
        encodeSafetensors(new Map([["fc.weight", f32([1, 2])]]), {
          format: "tailgrad-large-checkpoint/1",
        }),
      );
      await refused(
        ["--checkpoint", large, "--out", x],
        /--checkpoint .*large.checkpoint\.safetensors: a large-run checkpoint .*supports only .*tailgrad-train-checkpoint\/1/,
      );
      await assert.rejects(Deno.stat(x), Deno.errors.NotFound);
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});

Deno.test("export-meta-step: a bad command line names the flag, lists the valid ones, exits 2", async () => {
  const root = await Deno.makeTempDir({ prefix: "tg-export-flags-" });
  const file = join(root, "a-file");
  await Deno.writeTextFile(file, "the user's");
  try {
    for (
      const [args, re] of [
        [["--bogus"], /error: unknown flag --bogus; valid flags: --checkpoint, --out, --data-dir/],
        [["--out"], /error: --out needs a value/],
        [["--checkpoint", "a", "--checkpoint=b"], /error: --checkpoint is given twice/],
        [["--out", join(root, "x")], /error: --checkpoint FILE is required/],
        [["--checkpoint", "a"], /error: --out DIR is required/],
        [["--checkpoint", "a", "--out", "/proc/x"], /--out \/proc\/x: no permission to write/],
        // was "<file>/meta_step.safetensors exists and is not an export of this command"
        [
          ["--checkpoint", "a", "--out", file],
          new RegExp(
            `^error: --out ${file} is a file; expected a folder for meta_step\\.safetensors\\n` +
              " {2}to fix: choose another --out$",
            "m",
          ),
        ],
        [
          ["--checkpoint", "a", "--out", join(file, "x")],
          new RegExp(
            `^error: --out ${file}/x: ${file} is a file, so the folder cannot be created$`,
            "m",
          ),
        ],
      ] as [string[], RegExp][]
    ) {
      const r = await exportStep(root, args);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, re);
      assert.doesNotMatch(r.stderr, /^\s+at /m);
    }
    const help = await exportStep(root, ["--help"]);
    assert.equal(help.code, 0, help.stderr);
    for (const flag of ["--checkpoint", "--out", "--data-dir", "--help"]) {
      assert.match(help.stdout, new RegExp(`^  ${flag}\\b`, "m"));
    }
    assert.match(help.stdout, /runs\/ and \/tmp/);
    assert.match(help.stdout, /tailgrad-large-checkpoint\/1\) are not supported/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
