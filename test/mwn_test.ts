/**
 * Meta-Weight-Net on the GPU: one MWN step of a small model against a float64 reference of the
 * same math (look-ahead with the MLP's weights, dev gradient, per-example meta-gradient, the
 * MLP's Adam step, normalised final weights, the model's SGD step); its checkpoint state
 * round-trips; a warm MWN step creates no GPU objects and reads nothing back.
 */
import assert from "node:assert/strict";
import { classificationLoss, Linear, MetaReweighter, Model, Sgd, StepEngine } from "../mod.ts";
import type { Gpu } from "../src/gpu/runtime.ts";
import { MetaWeightNet } from "../src/train/mwn.ts";
import { MwnReference } from "./reference/mod.ts";
import { gpuTest, maxAbsErr } from "./gpu_harness.ts";

const D = 5, C = 4, B = 6, DEV = 4, H = 7;

function setup(gpu: Gpu) {
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
  const mwn = new MetaWeightNet(meta, 3, { hidden: H });
  const data = {
    x: Float32Array.from({ length: B * D }, (_, i) => Math.sin(1.7 * i + 0.3)),
    y: Uint32Array.from({ length: B }, (_, i) => (i * 3) % C),
    devX: Float32Array.from({ length: DEV * D }, (_, i) => Math.cos(0.9 * i)),
    devY: Uint32Array.from({ length: DEV }, (_, i) => i % C),
  };
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

gpuTest("MWN: checkpoint state round-trips; warm steps create no GPU objects", async (gpu) => {
  const a = setup(gpu);
  for (let i = 0; i < 3; i++) a.mwn.step(0.1);
  await gpu.sync();
  const snap = () => ({ ...gpu.stats, submits: 0, dispatches: 0, liveBuffers: gpu.liveBuffers });
  const s0 = snap();
  // a learning rate that changes every step (a per-step schedule) creates nothing either
  for (let i = 0; i < 10; i++) a.mwn.step(0.1 * 0.99 ** i);
  await gpu.sync();
  assert.deepEqual(snap(), s0);
  const state = await a.mwn.state();
  assert.deepEqual(
    [...state].map(([k, t]) => `${k} ${t.dtype} [${t.shape}]`),
    MetaWeightNet.stateSpecs(H).map(([k, d, s]) => `${k} ${d} [${s}]`),
  );
  assert.equal(state.get("mwn.adam.step")!.data[0], 13n);
  const b = setup(gpu);
  b.mwn.load(state);
  assert.deepEqual(await b.mwn.state(), state);
  state.delete("mwn.fc2.bias");
  assert.throws(() => b.mwn.load(state), /checkpoint lacks mwn\.fc2\.bias/);
  a.destroy();
  b.destroy();
});
