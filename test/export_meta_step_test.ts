/**
 * `scripts/export_meta_step.ts` on checkpoints written by short runs (subprocesses on the
 * synthetic IDX data of test/train_fixtures.ts):
 *
 * - a `meta` run (cross-entropy, stage 2 from epoch 1): the exported eps match the float64
 *   reference meta-gradient of the exported inputs and parameters, final = w + eps, the momentum
 *   before is the run's (non-zero), and the parameters after follow PyTorch's SGD from it;
 * - a `focal` run (no meta epochs, focal loss): the export is the paper's meta step with the
 *   run's loss, recorded in the metadata with the run's full config;
 * - a missing checkpoint is a one-line error naming the file; a bad command line names the flag
 *   and exits 2 before anything is read.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { readCheckpoint, type SafetensorsFile } from "../src/checkpoint/mod.ts";
import { metaEpsGrad, resnetParamSpec } from "./reference/mod.ts";
import { runTrain, tinyArgs, trainCommand, writeSyntheticIdx } from "./train_fixtures.ts";

const SCRIPT = new URL("../scripts/export_meta_step.ts", import.meta.url).pathname;

async function exportStep(root: string, args: string[]) {
  const r = await trainCommand(args, root, SCRIPT).output();
  return { code: r.code, stderr: new TextDecoder().decode(r.stderr) };
}

/** A short run's checkpoint, exported; returns the export file. */
async function runAndExport(root: string, name: string, extra: string[]) {
  const out = join(root, name);
  const t = await runTrain(tinyArgs(root, out, extra), root);
  assert.equal(t.code, 0, t.stderr);
  const dir = join(root, `${name}-export`);
  const r = await exportStep(root, [
    "--checkpoint",
    join(out, "checkpoint.safetensors"),
    "--out",
    dir,
  ]);
  assert.equal(r.code, 0, r.stderr);
  return (await readCheckpoint(join(dir, "meta_step.safetensors")))!;
}

const f64 = (f: SafetensorsFile, k: string) =>
  Float64Array.from(f.tensors.get(k)!.data as Float32Array);

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

Deno.test({
  name: "export-meta-step: a meta run's checkpoint, checked against the float64 reference",
  sanitizeResources: false,
  fn: async () => {
    const root = await writeSyntheticIdx(await Deno.makeTempDir({ prefix: "tg-export-" }));
    try {
      const f = await runAndExport(root, "meta", ["--method", "meta", "--tau", "1"]);
      const cfg = JSON.parse(f.metadata.config);
      const step = JSON.parse(f.metadata.step);
      assert.equal(cfg.method, "meta");
      assert.equal(step.epoch, 2);
      assert.equal(step.rule, "meta");
      assert.equal(JSON.parse(f.metadata.loss).name, "ce");
      const get = (k: string) => f.tensors.get(k)!;
      const refCfg = { inChannels: 1, numClasses: 10, n: 1 };
      const params = new Map<string, Float64Array>();
      for (const s of resnetParamSpec(refCfg)) params.set(s.name, f64(f, `before.${s.name}`));
      const ref = metaEpsGrad({
        cfg: refCfg,
        params,
        x: { shape: get("batch.x").shape, data: f64(f, "batch.x") },
        labels: Array.from(get("batch.labels").data as Int32Array),
        weights: f64(f, "weights"),
        xDev: { shape: get("dev.x").shape, data: f64(f, "dev.x") },
        labelsDev: Array.from(get("dev.labels").data as Int32Array),
        eta: step.eta,
        mode: step.lookahead,
      });
      const eps = get("eps").data as Float32Array;
      const w = get("weights").data as Float32Array;
      const fin = get("final_weights").data as Float32Array;
      const scale = Math.max(...ref.grad.map(Math.abs));
      assert.ok(scale > 0);
      for (let i = 0; i < eps.length; i++) {
        const want = -step.tau * ref.grad[i];
        assert.ok(Math.abs(eps[i] - want) <= 2e-3 * scale, `eps[${i}] ${eps[i]} vs ${want}`);
        assert.ok(Math.abs(fin[i] - (w[i] + eps[i])) <= 1e-6 * Math.abs(w[i]) + 1e-7);
      }
      // the run's momentum (non-zero) before, and PyTorch's Nesterov SGD from it
      const names = resnetParamSpec(refCfg).map((s) => s.name);
      assert.ok(f64(f, "before.optimizer.momentum.conv1.weight").some((v) => v !== 0));
      const residual = sgdResidual(f, names, step.sgd.lr, step.sgd.momentum);
      assert.ok(residual < 1e-6, `SGD residual ${residual}`);
      assert.notDeepEqual(get("after.bn1.running_mean").data, get("before.bn1.running_mean").data);
      assert.equal(get("eta").data[0], Math.fround(step.eta));
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});

Deno.test({
  name: "export-meta-step: a focal run without meta epochs; a missing checkpoint is named",
  sanitizeResources: false,
  fn: async () => {
    const root = await writeSyntheticIdx(await Deno.makeTempDir({ prefix: "tg-export-" }));
    try {
      const f = await runAndExport(root, "focal", ["--method", "focal"]);
      const loss = JSON.parse(f.metadata.loss);
      // focal defaults to Cui's sigmoid form (the paper's focal rows); the export records it
      assert.deepEqual(loss, { name: "focal", gamma: 1, form: "sigmoid", dev: "ce" });
      assert.equal(JSON.parse(f.metadata.config).focalGamma, 1);
      const step = JSON.parse(f.metadata.step);
      assert.equal(step.rule, "meta");
      assert.match(step.phase, /not a meta epoch/);
      const eps = f.tensors.get("eps")!.data as Float32Array;
      assert.ok(eps.some((e) => e !== 0) && eps.every(Number.isFinite));
      const missing = join(root, "nope", "checkpoint.safetensors");
      const r = await exportStep(root, ["--checkpoint", missing, "--out", join(root, "x")]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /--checkpoint .*nope.*: no such file/);
      assert.doesNotMatch(r.stderr, /^\s+at /m);
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});

Deno.test("export-meta-step: a bad command line names the flag, lists the valid ones, exits 2", async () => {
  const root = await Deno.makeTempDir({ prefix: "tg-export-flags-" });
  try {
    for (
      const [args, re] of [
        [["--bogus"], /error: unknown flag --bogus; valid flags: --checkpoint, --out, --data-dir/],
        [["--out"], /error: --out needs a value/],
        [["--checkpoint", "a", "--checkpoint=b"], /error: --checkpoint is given twice/],
        [["--out", join(root, "x")], /error: --checkpoint FILE is required/],
      ] as [string[], RegExp][]
    ) {
      const r = await exportStep(root, args);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, re);
      assert.doesNotMatch(r.stderr, /^\s+at /m);
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
