/**
 * The whole network and the training step against the float64 reference (test/reference):
 *
 * - ResNet-8 forward (logits, per-example losses, running statistics), every parameter gradient
 *   of sum_i w_i loss_i, and the JVP of the per-example losses along a random direction (all
 *   parameters, and only some), for CE / focal / eval-mode BN / LDAM's cosine classifier;
 * - MetaReweighter.step (the meta step of a StepEngine): eps vs -tau * metaEpsGrad (and vs -tau * FD of F(eps)), the final
 *   weights, the SGD update that follows, and the running statistics (only the real pass updates
 *   them), for look-ahead "sum" and "mean";
 * - determinism: 20 plain steps twice from the same state give bit-identical parameters;
 * - steady state: after a warm-up, 500 plain steps create no GPU objects (buffers, bind groups,
 *   pipelines, uniforms), read nothing back, submit once per step, and do not grow the process
 *   RSS by more than 50 MB; then 20 alternating meta/plain steps create nothing either.
 *
 * Tolerances (float32 GPU vs float64 reference): per tensor, max-abs-normalised error
 * max_i |gpu_i - ref_i| / max_i |ref_i| <= 5e-5 for losses, logits, running statistics, every
 * parameter gradient and the JVPs; <= 1e-4 for the meta eps and the parameter change of the
 * update that follows (they go through a backward, an update, a second network and a JVP).
 * Measured on llvmpipe: <= 5.5e-6 and <= 1e-6 respectively; each test prints its errors.
 */
import assert from "node:assert/strict";
import type { Gpu } from "../src/gpu/runtime.ts";
import { Tensor } from "../src/tensor.ts";
import { Ctx, Tape } from "../src/autograd/tape.ts";
import { ResNet, type ResNetConfig, resnetInit } from "../src/nn/resnet.ts";
import { Model } from "../src/nn/model.ts";
import { FlatTensors } from "../src/nn/params.ts";
import { classificationLoss } from "../src/ops/loss.ts";
import { Sgd } from "../src/optim/optimizer.ts";
import { StepEngine } from "../src/engine/step.ts";
import { crossEntropy, type MetaOptions, MetaReweighter } from "../src/engine/meta.ts";
import type { SgdOptions } from "../src/optim/sgd.ts";
import * as ref from "./reference/mod.ts";
import { f32, gpuTest, maxAbsErr } from "./gpu_harness.ts";

const TOL = 5e-5;
const META_TOL = 1e-4;

type Arr = Float64Array;

function expectClose(
  label: string,
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  tol: number,
  scale?: number,
): number {
  const err = maxAbsErr(got, want, scale);
  assert.ok(err <= tol, `${label}: max-abs-normalised error ${err.toExponential(3)} > ${tol}`);
  return err;
}

function refConfig(cfg: ResNetConfig): ref.ResNetConfig {
  return {
    inChannels: cfg.inChannels,
    numClasses: cfg.numClasses,
    n: (cfg.depth - 2) / 6,
    classifier: cfg.cosine ? "normed" : "linear",
  };
}

/**
 * The GPU init (resnetInit) with BN affine parameters and the classifier bias moved off their
 * trivial init (gamma 1, beta 0, bias 0) so every gradient is generic; float32 values.
 */
function initValues(
  cfg: ResNetConfig,
  seed: number,
  rng: ref.Rng,
  randomRunning: boolean,
): Map<string, Float32Array> {
  const v = resnetInit(cfg, seed);
  for (const [name, a] of v) {
    if (/bn\d?\.weight$/.test(name)) a.set(rng.normalArray(a.length, 1, 0.3));
    else if (/bn\d?\.bias$/.test(name) || name === "linear.bias") {
      a.set(rng.normalArray(a.length, 0, 0.3));
    } else if (randomRunning && name.endsWith("running_mean")) {
      a.set(rng.normalArray(a.length, 0, 0.3));
    } else if (randomRunning && name.endsWith("running_var")) {
      a.set(rng.uniformArray(a.length, 0.5, 2));
    }
  }
  return v;
}

function toRef(values: Map<string, Float32Array>, names: string[]): ref.Params {
  return new Map(names.map((n) => [n, Float64Array.from(values.get(n)!)]));
}

/** A tangent per parameter, scaled to that parameter's RMS (as in reference_test.ts). */
function randomTangent(params: ref.Params, rng: ref.Rng): ref.Params {
  const t: ref.Params = new Map();
  for (const [name, v] of params) {
    const rms = Math.sqrt(ref.dot(v, v) / v.length) || 0.1;
    t.set(name, f32(rng.normalArray(v.length, 0, rms)));
  }
  return t;
}

function toF32Map(p: ref.Params): Map<string, Float32Array> {
  return new Map([...p].map(([k, v]) => [k, Float32Array.from(v)]));
}

// ------------------------------------------------------------------------------ whole network

interface NetCase {
  label: string;
  cfg: ResNetConfig;
  image: [number, number, number];
  batch: number;
  bn: "train" | "eval";
  gamma: number;
  scale: number;
  margins: number[] | null;
  seed: number;
}

const netCases: NetCase[] = [
  {
    label: "CE, train BN, 4 x 1x7x7, 5 classes",
    cfg: { depth: 8, inChannels: 1, numClasses: 5 },
    image: [1, 7, 7],
    batch: 4,
    bn: "train",
    gamma: 0,
    scale: 1,
    margins: null,
    seed: 1,
  },
  {
    label: "CE, eval BN, 4 x 3x8x8, 5 classes",
    cfg: { depth: 8, inChannels: 3, numClasses: 5 },
    image: [3, 8, 8],
    batch: 4,
    bn: "eval",
    gamma: 0,
    scale: 1,
    margins: null,
    seed: 2,
  },
  {
    label: "focal gamma 2, train BN, 4 x 3x8x8, 5 classes",
    cfg: { depth: 8, inChannels: 3, numClasses: 5 },
    image: [3, 8, 8],
    batch: 4,
    bn: "train",
    gamma: 2,
    scale: 1,
    margins: null,
    seed: 3,
  },
  {
    label: "LDAM cosine classifier s=30 with margins, train BN, 4 x 1x7x7, 5 classes",
    cfg: { depth: 8, inChannels: 1, numClasses: 5, cosine: true },
    image: [1, 7, 7],
    batch: 4,
    bn: "train",
    gamma: 0,
    scale: 30,
    margins: [0.5, 0.42, 0.38, 0.35, 0.33],
    seed: 4,
  },
];

for (const nc of netCases) {
  gpuTest(`ResNet-8 vs reference: ${nc.label}`, async (gpu) => {
    const rng = new ref.Rng(100 + nc.seed);
    const { cfg, batch: B } = nc;
    const rcfg = refConfig(cfg);
    const model = new Model(gpu, new ResNet(cfg));
    // same names, order and shapes as the reference (PyTorch's state_dict)
    const pNames = ref.resnetParamSpec(rcfg).map((s) => s.name);
    const bNames = ref.resnetBufferSpec(rcfg).map((s) => s.name);
    assert.deepEqual(model.paramLayout.specs, ref.resnetParamSpec(rcfg));
    assert.deepEqual(model.bufferLayout.specs, ref.resnetBufferSpec(rcfg));

    const values = initValues(cfg, nc.seed, rng, nc.bn === "eval");
    const { params, buffers } = model;
    params.upload(values);
    buffers.upload(values);
    const rParams = toRef(values, pNames), rBuffers = toRef(values, bNames);

    const xShape = [B, ...nc.image];
    const x = f32(rng.normalArray(ref.numel(xShape)));
    const labels = rng.intArray(B, cfg.numClasses);
    const weights = f32(rng.uniformArray(B, 0.2, 2));
    const xT = Tensor.from(gpu, x, xShape);
    const labelsT = Tensor.from(gpu, labels, [B], "u32");
    const weightsT = Tensor.from(gpu, weights, [B]);
    const marginsT = nc.margins ? Tensor.from(gpu, nc.margins, [cfg.numClasses]) : null;
    const lossOpts = { gamma: nc.gamma, scale: nc.scale, margins: marginsT };
    const refLoss: ref.LossOpts = { gamma: nc.gamma, scale: nc.scale, margins: nc.margins };

    const tape = new Tape();
    const ctx = new Ctx(gpu, tape);
    const logits = model.forward(ctx, xT, { bn: nc.bn, updateRunningStats: nc.bn === "train" });
    const loss = classificationLoss(ctx, logits, labelsT, lossOpts);
    const fwd = ref.resnetForward(
      rcfg,
      rParams,
      { shape: xShape, data: x },
      labels,
      refLoss,
      nc.bn,
      rBuffers,
    );
    const errs: Record<string, number> = {};
    errs.logits = expectClose("logits", await logits.read(gpu), fwd.logits.data, TOL);
    errs.losses = expectClose("losses", await loss.read(gpu), fwd.losses, TOL);

    // running statistics: updated from the batch statistics in train mode, untouched in eval
    const gotBuf = await buffers.download();
    if (nc.bn === "train") ref.resnetUpdateBuffers(fwd, rBuffers);
    errs.buffers = 0;
    for (const name of bNames) {
      errs.buffers = Math.max(
        errs.buffers,
        expectClose(`buffer ${name}`, gotBuf.get(name)!, rBuffers.get(name)!, TOL),
      );
    }

    // every parameter gradient of sum_i w_i loss_i
    const grads = tape.backward(gpu, loss, weightsT, params.tensors);
    const rGrads = ref.resnetBackward(fwd, weights);
    errs.grads = 0;
    for (const p of params.tensors) {
      const g = grads.get(p)!;
      const got = await g.read(gpu);
      g.release(gpu);
      errs.grads = Math.max(
        errs.grads,
        expectClose(`grad ${p.name}`, got, rGrads.get(p.name!)!, TOL),
      );
    }

    // JVP of the per-example losses along a random direction: all parameters, then some
    const t = randomTangent(rParams, rng);
    const dir = new FlatTensors(gpu, model.paramLayout, false);
    dir.upload(toF32Map(t));
    const partial = (name: string) => name.startsWith("layer3") || name.startsWith("linear");
    for (const which of ["all", "layer3+linear"] as const) {
      const tangents = new Map<Tensor, Tensor>();
      params.tensors.forEach((p, i) => {
        if (which === "all" || partial(p.name!)) tangents.set(p, dir.tensors[i]);
      });
      const out = tape.jvp(gpu, tangents, loss);
      assert.ok(out, "jvp returned null");
      const got = await out.read(gpu);
      out.release(gpu);
      const rt = which === "all" ? t : new Map([...t].filter(([k]) => partial(k)));
      const want = ref.resnetJvp(fwd, rt);
      // and the reference itself against FD of the per-example losses
      const fd = ref.fdDerivativeVec((s) => {
        const shifted: ref.Params = new Map();
        for (const [k, v] of rParams) shifted.set(k, ref.axpy(v, s, rt.get(k) ?? null));
        return ref.resnetForward(rcfg, shifted, fwd.x, labels, refLoss, nc.bn, rBuffers).losses;
      }, 1e-6);
      ref.assertClose(want, fd, 1e-5, undefined, `reference jvp ${which} vs FD`);
      errs[`jvp ${which}`] = expectClose(`jvp ${which}`, got, want, TOL);
    }
    console.log(
      Object.entries(errs).map(([k, v]) => `${k}: ${v.toExponential(2)}`).join(", "),
    );
    ctx.release();
    for (const tt of [xT, labelsT, weightsT, ...(marginsT ? [marginsT] : [])]) tt.release(gpu);
    dir.destroy();
    model.destroy();
  });
}

// ------------------------------------------------------------------------------ StepEngine

const SGD: SgdOptions = { lr: 0.1, momentum: 0.9, weightDecay: 5e-4, nesterov: true };

/** Static sizes of a test problem. */
interface StepShapes {
  batch: number;
  devBatch: number;
  image: [number, number, number];
  numClasses: number;
}

interface Problem {
  cfg: ResNetConfig;
  shapes: StepShapes;
  values: Map<string, Float32Array>;
  x: Arr;
  labels: Int32Array;
  weights: Arr;
  devX: Arr;
  devLabels: Int32Array;
}

function makeProblem(
  cfg: ResNetConfig,
  shapes: StepShapes,
  seed: number,
): Problem {
  const rng = new ref.Rng(seed);
  const [C, Hh, W] = shapes.image;
  return {
    cfg,
    shapes,
    values: initValues(cfg, seed, rng, false),
    x: f32(rng.normalArray(shapes.batch * C * Hh * W)),
    labels: rng.intArray(shapes.batch, cfg.numClasses),
    weights: f32(rng.uniformArray(shapes.batch, 0.3, 2)),
    devX: f32(rng.normalArray(shapes.devBatch * C * Hh * W)),
    devLabels: rng.intArray(shapes.devBatch, cfg.numClasses),
  };
}

/** A ResNet, SGD, the step engine and its meta re-weighting, loaded with problem `p`. */
interface State {
  model: Model;
  engine: StepEngine;
  meta: MetaReweighter;
  destroy(): void;
}

function makeState(gpu: Gpu, p: Problem): State {
  const model = new Model(gpu, new ResNet(p.cfg));
  model.loadStateDict(p.values);
  const { momentum, weightDecay, nesterov } = SGD;
  const optimizer = new Sgd(gpu, model.paramLayout, { momentum, weightDecay, nesterov });
  const engine = new StepEngine(model, {
    loss: crossEntropy,
    optimizer,
    batch: p.shapes.batch,
    input: p.shapes.image,
  });
  const meta = new MetaReweighter(engine, {
    devBatch: p.shapes.devBatch,
    numClasses: p.cfg.numClasses,
  });
  engine.x.upload(gpu, p.x);
  engine.targets.upload(gpu, p.labels);
  engine.weights.upload(gpu, p.weights);
  meta.devX.upload(gpu, p.devX);
  meta.devTargets.upload(gpu, p.devLabels);
  meta.classWeights.upload(gpu, new Float32Array(p.cfg.numClasses).fill(1));
  return {
    model,
    engine,
    meta,
    destroy() {
      meta.destroy();
      engine.destroy();
      optimizer.destroy();
      model.destroy();
    },
  };
}

for (const mode of ["sum", "mean"] as const) {
  gpuTest(
    `MetaReweighter.step (lookahead ${mode}): eps, final weights, update vs reference`,
    async (gpu) => {
      const cfg: ResNetConfig = { depth: 8, inChannels: 2, numClasses: 3 };
      const shapes: StepShapes = { batch: 3, devBatch: 4, image: [2, 6, 6], numClasses: 3 };
      const p = makeProblem(cfg, shapes, mode === "sum" ? 7 : 8);
      const meta: MetaOptions = {
        eta: mode === "sum" ? 0.05 : 0.15,
        tau: 0.7,
        lookahead: mode,
        rule: "meta",
        lookaheadWeights: "w",
      };
      const state = makeState(gpu, p);
      const res = state.meta.step(SGD.lr, meta);
      const eps = await res.eps.read(gpu);
      const finalW = await res.finalWeights.read(gpu);
      const after = await state.model.params.download();
      const bufAfter = await state.model.buffers.download();

      const rcfg = refConfig(cfg);
      const pNames = ref.resnetParamSpec(rcfg).map((s) => s.name);
      const bNames = ref.resnetBufferSpec(rcfg).map((s) => s.name);
      const rParams = toRef(p.values, pNames);
      const xShape = [shapes.batch, ...shapes.image];
      const problem: ref.MetaProblem = {
        cfg: rcfg,
        params: rParams,
        x: { shape: xShape, data: p.x },
        labels: p.labels,
        weights: p.weights,
        xDev: { shape: [shapes.devBatch, ...shapes.image], data: p.devX },
        labelsDev: p.devLabels,
        eta: meta.eta,
        mode,
      };
      const exact = ref.metaEpsGrad(problem);
      const wantEps = exact.grad.map((g) => -meta.tau * g);
      assert.ok(ref.maxAbs(wantEps) > 1e-4, `eps too small to test: ${wantEps}`);
      const errEps = expectClose("eps vs -tau * metaEpsGrad", eps, wantEps, META_TOL);
      // the reference's exact meta-gradient is FD of F(eps); so the GPU eps is -tau * FD of F too
      const fd = ref.metaEpsGradFd(problem, 1e-5);
      ref.assertClose(exact.grad, fd, 1e-6, undefined, "reference metaEpsGrad vs FD");
      const errFd = expectClose(
        "eps vs -tau * FD of F",
        eps,
        fd.map((g) => -meta.tau * g),
        META_TOL,
      );
      // the other look-ahead mode's value must not pass (the 1/|B| factor is checked)
      const other = ref.metaEpsGrad({ ...problem, mode: mode === "sum" ? "mean" : "sum" }).grad;
      assert.ok(
        maxAbsErr(eps, other.map((g) => -meta.tau * g)) > 0.1,
        "eps ignores lookahead mode",
      );
      // final weights of rule "meta": w + eps
      expectClose("final weights", finalW, p.weights.map((w, i) => w + eps[i]), 1e-6);

      // the update: grad of sum_i (w_i + eps_i) / B * loss_i at theta, then one SGD step from
      // zero momentum; compared as the parameter change theta_new - theta
      const fwd = ref.resnetForward(rcfg, rParams, problem.x, p.labels, {}, "train");
      const g = ref.resnetBackward(fwd, finalW.map((w) => w / shapes.batch));
      let dGot: number[] = [], dWant: number[] = [];
      for (const name of pNames) {
        const pr = new Float64Array(rParams.get(name)!), buf = new Float64Array(pr.length);
        ref.sgdStep(pr, g.get(name)!, buf, SGD);
        const got = after.get(name)!, before = rParams.get(name)!;
        dGot = dGot.concat(Array.from(got, (v, i) => v - before[i]));
        dWant = dWant.concat(Array.from(pr, (v, i) => v - before[i]));
      }
      const errUpd = expectClose("update theta_new - theta", dGot, dWant, META_TOL);
      // running statistics: the real forward updates them once; the dev pass must not
      const rBuf = toRef(p.values, bNames);
      ref.resnetUpdateBuffers(fwd, rBuf);
      let errBuf = 0;
      for (const name of bNames) {
        errBuf = Math.max(errBuf, expectClose(name, bufAfter.get(name)!, rBuf.get(name)!, TOL));
      }
      console.log(
        `eps ${[...eps].map((e) => e.toFixed(5))}; err vs exact ${errEps.toExponential(2)}, ` +
          `vs FD ${errFd.toExponential(2)}, update ${errUpd.toExponential(2)}, ` +
          `running stats ${errBuf.toExponential(2)}`,
      );
      state.destroy();
    },
  );
}

// ------------------------------------------------------------------------------ determinism

gpuTest("determinism: 20 plain steps twice give bit-identical parameters", async (gpu) => {
  const cfg: ResNetConfig = { depth: 8, inChannels: 1, numClasses: 5 };
  const shapes: StepShapes = { batch: 4, devBatch: 4, image: [1, 8, 8], numClasses: 5 };
  const p = makeProblem(cfg, shapes, 11);
  const rng = new ref.Rng(12);
  const batches = Array.from({ length: 20 }, () => ({
    x: f32(rng.normalArray(p.x.length)),
    labels: rng.intArray(shapes.batch, cfg.numClasses),
  }));
  const run = async () => {
    const state = makeState(gpu, p);
    for (const b of batches) {
      state.engine.x.upload(gpu, b.x);
      state.engine.targets.upload(gpu, b.labels);
      state.engine.step(SGD.lr);
    }
    const bytes = (b: ArrayBuffer) => new Uint8Array(b);
    const out = {
      params: bytes(await gpu.read(state.model.params.all)),
      buffers: bytes(await gpu.read(state.model.buffers.all)),
      loss: await state.engine.takeMeanLoss(),
    };
    state.destroy();
    return out;
  };
  const a = await run();
  const b = await run();
  assert.ok(Number.isFinite(a.loss), `mean loss ${a.loss}`);
  const probe = makeState(gpu, p);
  const initBytes = new Uint8Array(await gpu.read(probe.model.params.all));
  probe.destroy();
  assert.notDeepEqual(a.params, initBytes, "parameters did not change");
  assert.deepEqual(a.params, b.params, "parameters differ between identical runs");
  assert.deepEqual(a.buffers, b.buffers, "running statistics differ between identical runs");
  assert.equal(a.loss, b.loss);
});

// ------------------------------------------------------------------------------ steady state

gpuTest(
  "steady state: 500 plain + 20 mixed steps create no GPU objects, no readback, 1 submit each",
  async (gpu) => {
    const cfg: ResNetConfig = { depth: 8, inChannels: 1, numClasses: 5 };
    const shapes: StepShapes = { batch: 4, devBatch: 4, image: [1, 8, 8], numClasses: 5 };
    const p = makeProblem(cfg, shapes, 21);
    const state = makeState(gpu, p);
    const meta: MetaOptions = {
      eta: 0.1,
      tau: 1,
      lookahead: "mean",
      rule: "meta",
      lookaheadWeights: "w",
    };
    // warm-up: a few plain and meta steps
    for (let i = 0; i < 2; i++) state.engine.step(SGD.lr);
    for (let i = 0; i < 2; i++) state.meta.step(SGD.lr, meta);
    for (let i = 0; i < 2; i++) state.engine.step(SGD.lr);
    await gpu.sync();
    const snap = () => ({
      liveBuffers: gpu.liveBuffers,
      buffersCreated: gpu.stats.buffersCreated,
      bindGroupsCreated: gpu.stats.bindGroupsCreated,
      pipelinesCreated: gpu.stats.pipelinesCreated,
      uniformsCreated: gpu.stats.uniformsCreated,
      readbacks: gpu.stats.readbacks,
      submits: gpu.stats.submits,
    });
    const s0 = snap();
    const rss0 = Deno.memoryUsage().rss;

    // one step on its own: exactly one submit, no readback
    state.engine.step(SGD.lr);
    const s1 = snap();
    assert.equal(s1.submits - s0.submits, 1, "a step must submit exactly once");
    assert.equal(s1.readbacks, s0.readbacks, "a step must not read back");

    const steps = 500;
    const t0 = performance.now();
    for (let i = 0; i < steps; i++) {
      state.engine.step(SGD.lr);
      if (i % 50 === 49) await gpu.sync(); // keep the queue bounded; sync is not a readback
    }
    await gpu.sync();
    const ms = performance.now() - t0;
    const s2 = snap();
    const rss1 = Deno.memoryUsage().rss;
    console.log(
      `${steps} plain steps: ${(ms / steps).toFixed(2)} ms/step; rss ${
        ((rss1 - rss0) / 2 ** 20).toFixed(1)
      } MB growth; stats after warm-up ${JSON.stringify(s0)}, after ${JSON.stringify(s2)}`,
    );
    assert.equal(s2.submits - s1.submits, steps, "one submit per step");
    assert.equal(s2.readbacks, s0.readbacks, "steady-state steps read nothing back");
    for (
      const k of [
        "liveBuffers",
        "buffersCreated",
        "bindGroupsCreated",
        "pipelinesCreated",
        "uniformsCreated",
      ] as const
    ) {
      assert.equal(s2[k], s0[k], `${k} grew after warm-up: ${s0[k]} -> ${s2[k]}`);
    }
    assert.ok(rss1 - rss0 < 50 * 2 ** 20, `RSS grew by ${(rss1 - rss0) / 2 ** 20} MB`);
    // alternating meta and plain steps are warm too (each step type's buffer assignment must not
    // depend on the step before it)
    const s3 = snap();
    for (let i = 0; i < 20; i++) {
      if (i % 2 === 0) state.meta.step(SGD.lr, meta);
      else state.engine.step(SGD.lr);
    }
    await gpu.sync();
    const s4 = snap();
    for (
      const k of [
        "liveBuffers",
        "buffersCreated",
        "bindGroupsCreated",
        "pipelinesCreated",
        "uniformsCreated",
      ] as const
    ) {
      assert.equal(s4[k], s3[k], `alternating steps: ${k} grew ${s3[k]} -> ${s4[k]}`);
    }
    assert.equal(s4.submits - s3.submits, 20, "one submit per meta or plain step");
    assert.equal(s4.readbacks, s3.readbacks, "meta steps read nothing back");
    assert.ok(Number.isFinite(await state.engine.takeMeanLoss()));
    state.destroy();
  },
);
