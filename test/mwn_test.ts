/**
 * Meta-Weight-Net on the GPU against a float64 reference of the same math:
 *
 * - noisy-label: one step (look-ahead with the MLP's weights, dev gradient, per-example
 *   meta-gradient, the MLP's Adam step, normalised final weights, the model's SGD step);
 * - class-imbalance (the authors' class-imbalance code): the reference's meta-gradient, through
 *   the MLP's undetached loss input, is the central difference of the dev loss; GPU steps with a
 *   changing lr and a partial batch match it step by step (look-ahead parameters, the MLP's
 *   gradient, its SGD step, the final weights, the model);
 * - for both: the checkpoint state round-trips; a warm step creates no GPU objects; a step
 *   refused for a dev label (seen once the first forward gives the classes) leaves the buffer
 *   pool, the model and the MLP as they were, and is refused again until a good dev batch.
 */
import assert from "node:assert/strict";
import {
  Adam,
  classificationLoss,
  Linear,
  MetaReweighter,
  Model,
  Sgd,
  StepEngine,
} from "../mod.ts";
import type { Gpu } from "../src/gpu/runtime.ts";
import { MetaWeightNet, type MwnOptions } from "../src/train/mwn.ts";
import { dot, fdGradient, MwnReference, relError } from "./reference/mod.ts";
import { gpuTest, maxAbsErr } from "./gpu_harness.ts";

const D = 5, C = 4, B = 6, DEV = 4, H = 7;

function setup(gpu: Gpu, options: MwnOptions = { hidden: H }) {
  const model = new Model(gpu, new Linear(D, C), 2);
  const optimizer = new Sgd(gpu, model.paramLayout, {
    momentum: 0.9,
    weightDecay: 0,
    nesterov: false,
  });
  const engine = new StepEngine(model, {
    loss: (ctx, y, t) => classificationLoss(ctx, y, t),
    optimizer,
    batch: B,
    input: [D],
  });
  const meta = new MetaReweighter(engine, { devBatch: DEV });
  const mwn = new MetaWeightNet(meta, 3, { hidden: H, ...options });
  const data = fixedData();
  engine.x.upload(gpu, data.x);
  engine.targets.upload(gpu, data.y);
  meta.devX.upload(gpu, data.devX);
  meta.devTargets.upload(gpu, data.devY);
  const destroy = () => {
    mwn.destroy();
    meta.destroy();
    engine.destroy();
    optimizer.destroy();
    model.destroy();
  };
  return { model, engine, meta, mwn, data, destroy };
}

/** Per-example CE losses of a linear model and their gradients (W [C,D] then b [C], flat). */
function linearCe(theta: Float64Array, x: Float32Array, y: Uint32Array) {
  const n = y.length, P = C * D + C;
  const losses = new Float64Array(n);
  const grads = Array.from({ length: n }, () => new Float64Array(P));
  for (let i = 0; i < n; i++) {
    const z = Array.from({ length: C }, (_, c) => {
      let s = theta[C * D + c];
      for (let k = 0; k < D; k++) s += theta[c * D + k] * x[i * D + k];
      return s;
    });
    const mx = Math.max(...z);
    const e = z.map((v) => Math.exp(v - mx));
    const sum = e.reduce((a, b) => a + b, 0);
    losses[i] = Math.log(sum) + mx - z[y[i]];
    for (let c = 0; c < C; c++) {
      const d = e[c] / sum - (c === y[i] ? 1 : 0);
      grads[i][C * D + c] = d;
      for (let k = 0; k < D; k++) grads[i][c * D + k] = d * x[i * D + k];
    }
  }
  return { losses, grads };
}

/** sum_i s_i g_i. */
function combine(grads: Float64Array[], s: ArrayLike<number>): Float64Array {
  const out = new Float64Array(grads[0].length);
  grads.forEach((g, i) => g.forEach((v, k) => (out[k] += s[i] * v)));
  return out;
}

gpuTest("MWN step on the GPU matches the float64 reference of the same math", async (gpu) => {
  const { model, mwn, data, destroy } = setup(gpu);
  const flat = (sd: Map<string, Float32Array>) =>
    Float64Array.from([...sd.get("weight")!, ...sd.get("bias")!]);
  const theta = flat(await model.stateDict());
  const phi = await mwn.model.stateDict();
  const names = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"];
  const ref = new MwnReference(names.map((n) => phi.get(n)!));
  const eta = 0.3;
  mwn.step(eta);
  // float64: look-ahead with V / B, dev gradient at theta', ldot, Adam on phi, final weights
  const batch = linearCe(theta, data.x, data.y);
  const v = ref.weigh(batch.losses);
  const gLook = combine(batch.grads, Array.from(v, (w) => w / B));
  const thetaLook = theta.map((p, k) => p - eta * gLook[k]);
  const dev = linearCe(thetaLook, data.devX, data.devY);
  const vDev = combine(dev.grads, new Array(DEV).fill(1 / DEV));
  const dV = batch.grads.map((g) => -(eta / B) * g.reduce((a, gk, k) => a + gk * vDev[k], 0));
  ref.update(batch.losses, dV);
  const vAfter = ref.weigh(batch.losses);
  const total = vAfter.reduce((a, b) => a + b, 0);
  const gFinal = combine(batch.grads, Array.from(vAfter, (w) => w / total));
  const thetaAfter = theta.map((p, k) => p - eta * gFinal[k]); // first SGD step: buf = g

  const errors: Record<string, number> = {};
  const check = (what: string, got: ArrayLike<number>, want: ArrayLike<number>, tol: number) => {
    errors[what] = maxAbsErr(got, want);
    assert.ok(errors[what] <= tol, `${what}: error ${errors[what]} > ${tol}`);
  };
  const phiAfter = await mwn.model.stateDict();
  assert.ok(mwn.optimizer instanceof Adam);
  const expAvg = await mwn.optimizer.expAvg.download();
  names.forEach((n, k) => {
    check(`phi ${n}`, phiAfter.get(n)!, ref.params[k], 1e-5);
    check(`exp_avg ${n}`, expAvg.get(n)!, ref.m[k], 1e-4);
  });
  check("V(loss; phi')", await mwn.lastWeights.read(gpu), vAfter, 1e-5);
  check("theta after", flat(await model.stateDict()), thetaAfter, 1e-5);
  assert.equal(mwn.optimizer.stepCount, 1);
  assert.ok(ref.m[0].some((m) => m !== 0), "the meta-gradient is zero: the test shows nothing");
  console.log(errors);
  destroy();
});

const NAMES = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"];
const flatLinear = (sd: Map<string, Float32Array>) =>
  Float64Array.from([...sd.get("weight")!, ...sd.get("bias")!]);

/** The class-imbalance look-ahead's dev loss as a function of phi, and its pieces (float64). */
function imbalanceProblem(theta: Float64Array, eta: number, data: ReturnType<typeof fixedData>) {
  const batch = linearCe(theta, data.x, data.y);
  const devLoss = (ref: MwnReference, throughInput = true) => {
    const s = ref.imbalanceSeed(batch.losses, throughInput);
    const look = combine(batch.grads, s).map((g, k) => theta[k] - eta * g);
    const dev = linearCe(look, data.devX, data.devY);
    return { value: dev.losses.reduce((a, b) => a + b, 0) / DEV, look, dev };
  };
  /** g_i = d L_dev / d s_i = -eta <grad L_dev(theta'), grad l_i(theta)>. */
  const signal = (ref: MwnReference, throughInput = true) => {
    const { dev } = devLoss(ref, throughInput);
    const v = combine(dev.grads, new Array(DEV).fill(1 / DEV));
    return batch.grads.map((g) => -eta * dot(g, v));
  };
  return { batch, devLoss, signal };
}

/** The data of `setup`, on the host. */
function fixedData() {
  return {
    x: Float32Array.from({ length: B * D }, (_, i) => Math.sin(1.7 * i + 0.3)),
    y: Uint32Array.from({ length: B }, (_, i) => (i * 3) % C),
    devX: Float32Array.from({ length: DEV * D }, (_, i) => Math.cos(0.9 * i)),
    devY: Uint32Array.from({ length: DEV }, (_, i) => i % C),
  };
}

Deno.test("MWN class-imbalance reference: its meta-gradient is the dev loss's central difference", () => {
  const data = fixedData();
  const theta = Float64Array.from({ length: C * D + C }, (_, k) => 0.4 * Math.sin(2.3 * k + 1));
  const phi = [
    Float64Array.from({ length: H }, (_, j) => 0.9 * Math.sin(j + 1)),
    Float64Array.from({ length: H }, (_, j) => 0.5 * Math.cos(2 * j)),
    Float64Array.from({ length: H }, (_, j) => Math.sin(3 * j + 0.5)),
    Float64Array.from([0.1]),
  ];
  const eta = 0.7;
  const p = imbalanceProblem(theta, eta, data);
  // no ReLU kink within the differences' reach: the function is smooth there
  const kink = Math.min(
    ...Array.from(p.batch.losses).flatMap((l) =>
      Array.from(phi[0], (a, j) => Math.abs(a * l + phi[1][j]))
    ),
  );
  assert.ok(kink > 1e-3, `a hidden unit at ${kink} from its kink`);
  const at = (flat: Float64Array) =>
    new MwnReference([flat.slice(0, H), flat.slice(H, 2 * H), flat.slice(2 * H, 3 * H), [
      flat[3 * H],
    ]]);
  const phiFlat = Float64Array.from(phi.flatMap((t) => [...t]));
  const ref = at(phiFlat);
  const analytic = Float64Array.from(
    ref.imbalanceGradient(p.batch.losses, p.signal(ref))
      .flatMap((t) => [...t]),
  );
  const fd = fdGradient((x) => p.devLoss(at(x)).value, phiFlat, 1e-5);
  const err = relError(analytic, fd);
  assert.ok(err < 1e-7, `reference vs central differences: relative error ${err}`);
  // the loss input's derivative matters: a detached input's gradient is far from it
  const detached = fdGradient((x) => p.devLoss(at(x), false).value, phiFlat, 1e-5);
  const detachedRef = Float64Array.from(
    ref.imbalanceGradient(p.batch.losses, p.signal(ref, false), false).flatMap((t) => [...t]),
  );
  assert.ok(relError(detachedRef, detached) < 1e-7, "the detached reference");
  const gap = relError(detached, fd);
  assert.ok(gap > 1e-2, `the input's derivative changes the gradient by only ${gap}`);
  console.log({ err, gap });
});

gpuTest("MWN class-imbalance: GPU steps match the float64 reference step by step", async (gpu) => {
  // 7 hidden units, and the authors' 100 (two workgroups of the gradient kernel)
  for (const hidden of [H, 100]) await imbalanceSteps(gpu, hidden);
  // the authors' optimiser by default
  const { meta, destroy } = setup(gpu);
  const byDefault = new MetaWeightNet(meta, 3, { recipe: "class-imbalance" });
  assert.ok(byDefault.optimizer instanceof Sgd);
  assert.deepEqual(
    [byDefault.lr, byDefault.hidden, byDefault.optimizer.config],
    [1e-5, 100, { momentum: 0.9, nesterov: true, weightDecay: 5e-4 }],
  );
  byDefault.destroy();
  destroy();
});

/** Three class-imbalance steps of an MLP with `hidden` units against the float64 reference. */
async function imbalanceSteps(gpu: Gpu, hidden: number) {
  const VNET_LR = 0.5; // the authors' 1e-5 would move phi below float32's resolution
  const { model, meta, mwn, data, destroy } = setup(gpu, {
    hidden,
    recipe: "class-imbalance",
    lr: VNET_LR,
  });
  assert.ok(mwn.optimizer instanceof Sgd);
  const phi0 = await mwn.model.stateDict();
  const ref = new MwnReference(NAMES.map((n) => phi0.get(n)!), VNET_LR, 5e-4);
  let theta = flatLinear(await model.stateDict());
  let thetaBuf = new Float64Array(theta.length);
  const errors: Record<string, number>[] = [];
  // a learning rate that changes every step, eta != lr once, and a partial last batch
  for (const [lr, eta, n] of [[0.3, 0.3, B], [0.2, 0.25, B], [0.05, 0.05, B - 2]]) {
    mwn.step(lr, eta, n);
    const part = {
      ...data,
      x: data.x.slice(0, n * D),
      y: data.y.slice(0, n),
    };
    const p = imbalanceProblem(theta, eta, part);
    const { look } = p.devLoss(ref);
    const grad = ref.imbalanceGradient(p.batch.losses, p.signal(ref));
    const gradDetached = ref.imbalanceGradient(p.batch.losses, p.signal(ref, false), false);
    ref.sgdStep(grad, VNET_LR, 0.9, true);
    const v = ref.weigh(p.batch.losses);
    const total = v.reduce((a, b) => a + b, 0);
    const gFinal = combine(p.batch.grads, Array.from(v, (w) => w / total));
    thetaBuf = thetaBuf.map((b, k) => 0.9 * b + gFinal[k]);
    theta = theta.map((t, k) => t - lr * thetaBuf[k]);

    const e: Record<string, number> = {};
    const check = (what: string, got: ArrayLike<number>, want: ArrayLike<number>, tol: number) => {
      e[what] = maxAbsErr(got, want);
      assert.ok(e[what] <= tol, `step ${errors.length}: ${what}: error ${e[what]} > ${tol}`);
    };
    check("theta'", flatLinear(await meta.lookahead.download()), look, 1e-5);
    const grads = await mwn.grads.download();
    const gotGrad = NAMES.flatMap((n) => [...grads.get(n)!]);
    const wantGrad = grad.flatMap((t) => [...t]);
    check("grad phi", gotGrad, wantGrad, 2e-5);
    // the check can tell the undetached gradient from the detached one
    e["detached gap"] = maxAbsErr(gradDetached.flatMap((t) => [...t]), wantGrad);
    assert.ok(e["detached gap"] > 100 * e["grad phi"], "the input's derivative is invisible");
    const phi = await mwn.model.stateDict();
    const buf = await mwn.optimizer.momentum.download();
    NAMES.forEach((name, k) => {
      check(`phi ${name}`, phi.get(name)!, ref.params[k], 1e-5);
      check(`momentum ${name}`, buf.get(name)!, ref.buf![k], 2e-5);
    });
    check("V(loss; phi')", (await mwn.lastWeights.read(gpu)).slice(0, n), v, 1e-5);
    check("theta", flatLinear(await model.stateDict()), theta, 1e-5);
    errors.push(e);
  }
  // the MLP moved: its checks above could see a wrong update
  const moved = maxAbsErr(
    ref.params.flatMap((t) => [...t]),
    NAMES.flatMap((n) => [...phi0.get(n)!]),
  );
  assert.ok(moved > 1e-2, `phi moved by only ${moved}`);
  console.log(hidden, errors, { moved });
  destroy();
}

gpuTest("MWN: checkpoint state round-trips; warm steps create no GPU objects", async (gpu) => {
  for (const recipe of ["noisy-label", "class-imbalance"] as const) {
    const a = setup(gpu, { hidden: H, recipe });
    for (let i = 0; i < 3; i++) a.mwn.step(0.1);
    a.mwn.step(0.1, 0.1, B - 1); // a partial batch's pipelines and bind groups, once
    await gpu.sync();
    const snap = () => ({
      ...gpu.stats,
      submits: 0,
      dispatches: 0,
      liveBuffers: gpu.liveBuffers,
    });
    const s0 = snap();
    // a learning rate that changes every step (a per-step schedule) creates nothing either
    for (let i = 0; i < 10; i++) a.mwn.step(0.1 * 0.99 ** i, 0.1 * 0.99 ** i, i % 5 ? B : B - 1);
    await gpu.sync();
    assert.deepEqual(snap(), s0, recipe);
    const state = await a.mwn.state();
    assert.deepEqual(
      [...state].map(([k, t]) => `${k} ${t.dtype} [${t.shape}]`),
      MetaWeightNet.stateSpecs({ hidden: H, recipe }).map(([k, d, s]) => `${k} ${d} [${s}]`),
    );
    if (recipe === "noisy-label") assert.equal(state.get("mwn.adam.step")!.data[0], 14n);
    else assert.ok(state.has("mwn.sgd.momentum_buffer.fc1.weight"));
    const b = setup(gpu, { hidden: H, recipe });
    b.mwn.load(state);
    assert.deepEqual(await b.mwn.state(), state);
    state.delete("mwn.fc2.bias");
    assert.throws(() => b.mwn.load(state), /checkpoint lacks mwn\.fc2\.bias/);
    a.destroy();
    b.destroy();
  }
});

gpuTest(
  "MWN: a step refused for a dev label leaves the pool, the model and the MLP as they were",
  async (gpu) => {
    for (const recipe of ["noisy-label", "class-imbalance"] as const) {
      const state = async (s: ReturnType<typeof setup>) => ({
        model: await s.model.stateDict(),
        mwn: await s.mwn.state(),
        loss: await s.engine.readLossSum(),
      });
      const fresh = setup(gpu, { hidden: H, recipe });
      const initial = await state(fresh);
      fresh.mwn.step(0.1);
      const want = await state(fresh);
      fresh.destroy();

      const s = setup(gpu, { hidden: H, recipe });
      const { x, y, devX, devY } = s.data;
      s.engine.writeBatch(x, y);
      // written before the first forward: the step finds the bad label once C is known
      s.meta.writeDevBatch(devX, Uint32Array.from(devY, (v, i) => i === 1 ? 9 : v));
      const inUse = gpu.memory.inUseBytes;
      const refused = new RangeError(
        "MetaReweighter: the label of row 1 of the dev batch is 9, not a class in [0, 4) " +
          "(the model outputs 4 classes)",
      );
      assert.throws(() => s.mwn.step(0.1), refused, recipe);
      assert.equal(gpu.memory.inUseBytes, inUse, `${recipe}: its tensors went back to the pool`);
      assert.throws(() => s.mwn.step(0.1), refused, `${recipe}: refused again`);
      assert.equal(gpu.memory.inUseBytes, inUse, recipe);
      assert.deepEqual(await state(s), initial, `${recipe}: nothing of the refused steps ran`);
      s.meta.writeDevBatch(devX, devY);
      s.mwn.step(0.1);
      assert.deepEqual(await state(s), want, `${recipe}: bit for bit a fresh MWN's step`);
      s.destroy();
    }
    await gpu.sync();
    assert.deepEqual(gpu.errors, []);
  },
);
