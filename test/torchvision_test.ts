/**
 * torchvision-layout ResNets against the float64 reference (test/reference/torchvision.ts):
 * ResNet-50's layout forward and backward, a ResNet-18 safetensors file with torchvision's
 * names loaded as it is, the pretrained check (without a GPU) and loading errors, and the
 * classifier-only meta step's eps against the float64 reference and finite differences (backbone
 * trained and frozen).
 */
import assert from "node:assert/strict";
import {
  checkPretrained,
  loadPretrained,
  pretrainedProblems,
  type TorchvisionDepth,
  TorchvisionResNet,
} from "../src/nn/torchvision.ts";
import { Model } from "../src/nn/model.ts";
import { EVAL, moduleSpecs, TRAIN } from "../src/nn/module.ts";
import { Ctx, Tape } from "../src/autograd/tape.ts";
import { Tensor } from "../src/tensor.ts";
import { Sgd } from "../src/optim/optimizer.ts";
import { StepEngine } from "../src/engine/step.ts";
import { crossEntropy, MetaReweighter } from "../src/engine/meta.ts";
import {
  encodeSafetensors,
  type SafeTensor,
  type SafetensorsFile,
} from "../src/checkpoint/safetensors.ts";
import { UserError } from "../src/errors.ts";
import type { Gpu } from "../src/gpu/runtime.ts";
import { Rng } from "./reference/rng.ts";
import {
  headMetaEpsGrad,
  headMetaEpsGradFd,
  type HeadMetaProblem,
  type TvRefConfig,
  TvRefPass,
  tvRefSpecs,
} from "./reference/torchvision.ts";
import type { Params } from "./reference/resnet.ts";
import { f32, gpuTest, maxAbsErr } from "./gpu_harness.ts";

const LAYOUT: Record<number, Omit<TvRefConfig, "width" | "inChannels" | "numClasses">> = {
  10: { block: "basic", blocks: [1, 1, 1, 1] },
  18: { block: "basic", blocks: [2, 2, 2, 2] },
  50: { block: "bottleneck", blocks: [3, 4, 6, 3] },
};

/** Random float32-representable parameters and buffers of a reference config. */
function randomState(cfg: TvRefConfig, seed: number): { params: Params; buffers: Params } {
  const rng = new Rng(seed);
  const { params, buffers } = tvRefSpecs(cfg);
  const p: Params = new Map(), b: Params = new Map();
  for (const [name, shape] of params) {
    const n = shape.reduce((a, c) => a * c, 1);
    const fanIn = shape.length > 1 ? n / shape[0] : 1;
    const std =
      name.includes(".bn") || name.startsWith("bn") || name.endsWith("downsample.1.weight")
        ? 0.2
        : Math.sqrt(2 / fanIn);
    const base = shape.length === 1 && name.endsWith(".weight") ? 1 : 0;
    p.set(name, f32(Array.from({ length: n }, () => base + rng.normal() * std)));
  }
  for (const [name, shape] of buffers) {
    const v = name.endsWith("running_var")
      ? Array.from({ length: shape[0] }, () => 0.5 + rng.uniform())
      : Array.from({ length: shape[0] }, () => 0.1 * rng.normal());
    b.set(name, f32(v));
  }
  return { params: p, buffers: b };
}

function toF32(m: Params): Map<string, Float32Array> {
  return new Map([...m].map(([k, v]) => [k, Float32Array.from(v)]));
}

function randomInput(shape: number[], seed: number): { shape: number[]; data: Float64Array } {
  const rng = new Rng(seed);
  const n = shape.reduce((a, c) => a * c, 1);
  return { shape, data: f32(Array.from({ length: n }, () => rng.normal())) };
}

function buildModel(gpu: Gpu, depth: TorchvisionDepth, width: number, classes: number) {
  return new Model(gpu, new TorchvisionResNet({ depth, numClasses: classes, width }), 0);
}

gpuTest("torchvision ResNet: state_dict names and shapes of ResNet-10/18/50", async (gpu) => {
  for (const depth of [10, 18, 50] as const) {
    const model = buildModel(gpu, depth, 8, 5);
    const want = tvRefSpecs({ ...LAYOUT[depth], width: 8, inChannels: 3, numClasses: 5 });
    assert.deepEqual(
      model.specs.params.map((s) => [s.name, s.shape]),
      want.params,
      `resnet${depth} params`,
    );
    assert.deepEqual(model.specs.buffers.map((s) => [s.name, s.shape]), want.buffers);
    model.destroy();
  }
  // torchvision's init: conv N(0, 2 / fan_out), BN 1 / 0, fc U(+-1/sqrt(in))
  const model = buildModel(gpu, 50, 16, 10);
  const sd = await model.stateDict();
  const w = sd.get("layer3.0.conv2.weight")!; // [64, 64, 3, 3]: fan_out 576
  const sd2 = Math.sqrt(w.reduce((s, v) => s + v * v, 0) / w.length);
  assert.ok(Math.abs(sd2 - Math.sqrt(2 / 576)) < 0.05 * Math.sqrt(2 / 576), `conv std ${sd2}`);
  assert.ok(sd.get("layer1.0.bn3.weight")!.every((v) => v === 1));
  assert.ok(sd.get("layer1.0.downsample.1.bias")!.every((v) => v === 0));
  const fc = sd.get("fc.weight")!, bound = 1 / Math.sqrt(2048 / 4);
  assert.ok(fc.every((v) => Math.abs(v) <= bound) && Math.max(...fc.map(Math.abs)) > 0.9 * bound);
  model.destroy();
});

gpuTest(
  "torchvision ResNet-50 layout: forward (train and eval) and backward match float64",
  async (gpu) => {
    const cfg: TvRefConfig = { ...LAYOUT[50], width: 4, inChannels: 3, numClasses: 7 };
    const { params, buffers } = randomState(cfg, 5);
    const model = buildModel(gpu, 50, 4, 7);
    model.loadStateDict(new Map([...toF32(params), ...toF32(buffers)]));
    const B = 3;
    const x = randomInput([B, 3, 35, 29], 9);
    const labels = [1, 6, 3];
    const weights = [0.5, 1, 2];
    const ref = new TvRefPass(
      cfg,
      params,
      new Map([...buffers].map(([k, v]) => [k, v.slice()])),
      "train",
      true,
    )
      .run(x, labels);
    const refGrads = ref.backward(weights);
    const xg = Tensor.from(gpu, Float32Array.from(x.data), x.shape);
    const t = Tensor.from(gpu, labels, [B], "u32");
    const tape = new Tape(), ctx = new Ctx(gpu, tape);
    const logits = model.forward(ctx, xg, TRAIN);
    const losses = crossEntropy(ctx, logits, t);
    const seed = Tensor.from(gpu, weights, [B]);
    const grads = tape.backward(gpu, losses, seed, model.params.tensors);
    assert.ok(maxAbsErr(await logits.read(gpu), ref.logits.t.data) < 1e-4, "train logits");
    // float32 through 53 train-mode batch norms, those of layer4 over 6 values per channel:
    // about 5e-4 of each tensor's largest gradient (the CIFAR ResNet-8 reaches 5e-5)
    const got: number[] = [], want: number[] = [];
    for (const [i, p] of model.params.tensors.entries()) {
      const g = await grads.get(p)!.read(gpu), r = refGrads.get(p.name!)!;
      const err = maxAbsErr(g, r);
      assert.ok(err < 5e-3, `grad ${model.specs.params[i].name}: ${err}`);
      got.push(...g);
      want.push(...r);
    }
    const all = maxAbsErr(got, want);
    assert.ok(all < 1e-3, `all gradients: ${all}`);
    // the running statistics updated by the train pass
    const bufs = await model.buffers.download();
    const refBuf = new Map([...buffers].map(([k, v]) => [k, v.slice()]));
    new TvRefPass(cfg, params, refBuf, "train", true).run(x, labels);
    for (const name of ["bn1.running_var", "layer4.2.bn3.running_mean"]) {
      assert.ok(maxAbsErr(bufs.get(name)!, refBuf.get(name)!) < 1e-4, name);
    }
    ctx.release();
    const evalCtx = new Ctx(gpu, null);
    const evalLogits = await model.forward(evalCtx, xg, EVAL).read(gpu);
    const refEval = new TvRefPass(cfg, params, refBuf, "eval").run(x, labels);
    assert.ok(maxAbsErr(evalLogits, refEval.logits.t.data) < 1e-4, "eval logits");
    evalCtx.release();
    for (const tt of [xg, t, seed]) tt.release(gpu);
    for (const g of grads.values()) g.release(gpu);
    model.destroy();
  },
);

/** A safetensors file of `state` with torchvision's names (plus num_batches_tracked). */
function torchvisionFile(
  state: Map<string, Float32Array>,
  shapes: Map<string, number[]>,
): Uint8Array {
  const tensors = new Map<string, SafeTensor>();
  for (const [name, v] of state) {
    tensors.set(name, { dtype: "F32", shape: shapes.get(name)!, data: v });
    if (name.endsWith("running_var")) {
      tensors.set(name.replace("running_var", "num_batches_tracked"), {
        dtype: "I64",
        shape: [],
        data: new BigInt64Array([12345n]),
      });
    }
  }
  return encodeSafetensors(tensors, { format: "pt" });
}

gpuTest(
  "torchvision ResNet-18: a torchvision-named safetensors file loads as it is",
  async (gpu) => {
    const cfg: TvRefConfig = { ...LAYOUT[18], width: 64, inChannels: 3, numClasses: 1000 };
    const { params, buffers } = randomState(cfg, 18);
    const specs = tvRefSpecs(cfg);
    const shapes = new Map([...specs.params, ...specs.buffers]);
    const dir = await Deno.makeTempDir({ prefix: "tg-tv-" });
    const path = `${dir}/resnet18.safetensors`;
    await Deno.writeFile(
      path,
      torchvisionFile(new Map([...toF32(params), ...toF32(buffers)]), shapes),
    );
    try {
      const model = buildModel(gpu, 18, 64, 1000);
      const r = await loadPretrained(model, path);
      assert.deepEqual(r, { loaded: shapes.size, classifierReset: false, fileClasses: 1000 });
      const x = randomInput([2, 3, 32, 32], 3);
      const ctx = new Ctx(gpu, null);
      const xg = Tensor.from(gpu, Float32Array.from(x.data), x.shape);
      const logits = await model.forward(ctx, xg, EVAL).read(gpu);
      const ref = new TvRefPass(cfg, params, buffers, "eval").run(x, [0, 1]);
      const err = maxAbsErr(logits, ref.logits.t.data);
      assert.ok(err < 1e-4, `eval logits vs float64: ${err}`);
      ctx.release();
      xg.release(gpu);
      model.destroy();
      // another class count: the backbone loads, fc keeps its own init
      const ten = buildModel(gpu, 18, 64, 10);
      const fresh = (await ten.stateDict()).get("fc.weight")!;
      const r10 = await loadPretrained(ten, path);
      assert.equal(r10.classifierReset, true);
      assert.equal(r10.fileClasses, 1000);
      const sd = await ten.stateDict();
      assert.deepEqual(sd.get("fc.weight"), fresh);
      assert.deepEqual(
        sd.get("layer4.1.conv2.weight"),
        Float32Array.from(params.get("layer4.1.conv2.weight")!),
      );
      ten.destroy();
      // a ResNet-34 or -50 cannot take it: the same check as the CLI's, listing what does not fit
      const r34 = buildModel(gpu, 34, 64, 1000);
      await assert.rejects(() => loadPretrained(r34, path), (e: Error) => {
        assert.ok(e instanceof UserError);
        assert.equal(
          e.message,
          `--pretrained ${path} does not fit this run's ResNet-34 (width 64):` +
            "\n  - lacks layer1.2.conv1.weight [64,64,3,3]" +
            "\n  - lacks layer1.2.bn1.weight [64]" +
            "\n  - lacks layer1.2.bn1.bias [64]" +
            "\n  - lacks layer1.2.conv2.weight [64,64,3,3]" +
            "\n  - lacks layer1.2.bn2.weight [64]" +
            "\n  - lacks layer1.2.bn2.bias [64]" +
            "\n  - ... and 74 more" + // 8 more blocks of 6 parameters and 4 statistics
            "\n  to fix: pass a checkpoint of torchvision's resnet34 (width 64), or train from " +
            "scratch without --pretrained",
        );
        assert.deepEqual([e.file, e.flag], [path, "--pretrained"]);
        return true;
      });
      r34.destroy();
      const r50 = buildModel(gpu, 50, 64, 1000);
      await assert.rejects(
        () => loadPretrained(r50, path),
        /resnet18\.safetensors does not fit this run's ResNet-50 \(width 64\):\n {2}- layer1\.0\.conv1\.weight is \[64,64,3,3\], the model's is \[64,64,1,1\]\n/,
      );
      r50.destroy();
      const small = buildModel(gpu, 18, 8, 1000);
      await assert.rejects(
        () => loadPretrained(small, `${dir}/none.safetensors`),
        /does not exist/,
      );
      await Deno.writeTextFile(`${dir}/bad.safetensors`, "not a checkpoint");
      await assert.rejects(
        () => loadPretrained(small, `${dir}/bad.safetensors`),
        /bad\.safetensors is not a readable safetensors file/,
      );
      small.destroy();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

/** The state of a width-`width` ResNet of `depth` as a decoded file: zeros, F32. */
function zeroState(depth: TorchvisionDepth, width: number, numClasses: number): SafetensorsFile {
  const specs = moduleSpecs(new TorchvisionResNet({ depth, width, numClasses }));
  const tensors = new Map<string, SafeTensor>();
  for (const s of [...specs.params, ...specs.buffers]) {
    const n = s.shape.reduce((a, c) => a * c, 1);
    tensors.set(s.name, { dtype: "F32", shape: [...s.shape], data: new Float32Array(n) });
  }
  return { tensors, metadata: {} };
}

Deno.test("pretrained check (no GPU): each kind of misfit named, fc of another class count kept", () => {
  const arch = { depth: 10, width: 4, numClasses: 3 } as const;
  const fits = zeroState(10, 4, 3);
  fits.tensors.set("bn1.num_batches_tracked", {
    dtype: "I64",
    shape: [],
    data: new BigInt64Array(1),
  });
  assert.deepEqual(pretrainedProblems(fits, arch), []);
  checkPretrained(fits, "fits.safetensors", arch); // returns
  // another class count on the same 32 features: fc is the model's own, not a problem
  assert.deepEqual(pretrainedProblems(zeroState(10, 4, 1000), arch), []);
  // another class count on other features is a misshapen fc
  const wide = zeroState(10, 4, 3);
  wide.tensors.set("fc.weight", { dtype: "F32", shape: [7, 16], data: new Float32Array(112) });
  assert.deepEqual(pretrainedProblems(wide, arch), ["fc.weight is [7,16], the model's is [3,32]"]);
  // one of each: unexpected (listed first), misshapen, non-float, missing (statistics last)
  const bad = zeroState(10, 4, 3);
  bad.tensors.set("extra.weight", { dtype: "F32", shape: [1], data: new Float32Array(1) });
  bad.tensors.set("conv1.weight", {
    dtype: "F32",
    shape: [4, 1, 7, 7],
    data: new Float32Array(196),
  });
  bad.tensors.set("layer1.0.bn1.bias", { dtype: "I32", shape: [4], data: new Int32Array(4) });
  bad.tensors.delete("bn1.running_var");
  assert.deepEqual(pretrainedProblems(bad, arch), [
    "holds extra.weight, which the model does not have",
    "conv1.weight is [4,1,7,7], the model's is [4,3,7,7]",
    "layer1.0.bn1.bias is I32, expected F32 or F64 (convert with .float())",
    "lacks bn1.running_var [4]",
  ]);
  // a ResNet-18 against a ResNet-10: its 4 second blocks (6 parameters, 4 statistics each)
  assert.throws(() => checkPretrained(zeroState(18, 4, 3), "r18.safetensors", arch), (e: Error) => {
    assert.ok(e instanceof UserError);
    assert.equal(
      e.message,
      "--pretrained r18.safetensors does not fit this run's ResNet-10 (width 4):" +
        "\n  - holds layer1.1.conv1.weight, which the model does not have" +
        "\n  - holds layer1.1.bn1.weight, which the model does not have" +
        "\n  - holds layer1.1.bn1.bias, which the model does not have" +
        "\n  - holds layer1.1.conv2.weight, which the model does not have" +
        "\n  - holds layer1.1.bn2.weight, which the model does not have" +
        "\n  - holds layer1.1.bn2.bias, which the model does not have" +
        "\n  - ... and 34 more" +
        "\n  to fix: pass a checkpoint of torchvision's resnet10 (width 4), or train from " +
        "scratch without --pretrained",
    );
    assert.deepEqual([e.file, e.flag, e.exitCode], ["r18.safetensors", "--pretrained", 1]);
    return true;
  });
});

/** A classifier-only meta step on the GPU and its float64 problem. */
async function headMetaCase(gpu: Gpu, frozen: boolean) {
  const cfg: TvRefConfig = { ...LAYOUT[10], width: 4, inChannels: 3, numClasses: 3 };
  const { params, buffers } = randomState(cfg, frozen ? 31 : 32);
  const B = 6, Bd = 3, S = 24, eta = 0.5;
  const x = randomInput([B, 3, S, S], 41);
  const xDev = randomInput([Bd, 3, S, S], 42);
  const labels = [0, 1, 2, 0, 1, 1], labelsDev = [0, 1, 2];
  const weights = [1, 0.5, 2, 1, 0.5, 0.5];
  const model = buildModel(gpu, 10, 4, 3);
  model.loadStateDict(new Map([...toF32(params), ...toF32(buffers)]));
  const optimizer = new Sgd(gpu, model.paramLayout, {
    momentum: 0,
    weightDecay: 0,
    nesterov: false,
  });
  const engine = new StepEngine(model, {
    loss: crossEntropy,
    optimizer,
    batch: B,
    input: [3, S, S],
  });
  const meta = new MetaReweighter(engine, {
    devBatch: Bd,
    numClasses: 3,
    params: "classifier",
    freezeBackbone: frozen,
  });
  engine.x.upload(gpu, Float32Array.from(x.data));
  engine.targets.upload(gpu, labels);
  engine.weights.upload(gpu, weights);
  meta.devX.upload(gpu, Float32Array.from(xDev.data));
  meta.devTargets.upload(gpu, labelsDev);
  const before = await model.stateDict();
  meta.step(0.1, { eta, tau: 1, lookahead: "mean", rule: "meta", lookaheadWeights: "w" });
  const eps = await meta.eps.read(gpu);
  const final = await meta.finalWeights.read(gpu);
  const after = await model.stateDict();
  const problem: HeadMetaProblem = {
    cfg,
    params,
    buffers,
    x,
    labels,
    weights,
    xDev,
    labelsDev,
    eta,
    mean: true,
    frozen,
  };
  const destroy = () => {
    meta.destroy();
    engine.destroy();
    optimizer.destroy();
    model.destroy();
  };
  return { problem, eps, final, before, after, destroy };
}

for (const frozen of [false, true]) {
  gpuTest(
    `classifier-only meta step (backbone ${frozen ? "frozen" : "trained"}): eps vs float64 and FD`,
    async (gpu) => {
      const { problem, eps, final, before, after, destroy } = await headMetaCase(gpu, frozen);
      const exact = headMetaEpsGrad(problem);
      const fd = headMetaEpsGradFd(problem);
      assert.ok(maxAbsErr(exact, fd) < 1e-5, `float64 exact vs FD: ${maxAbsErr(exact, fd)}`);
      const want = exact.map((g) => -g); // eps = -tau * dF/deps, tau = 1
      assert.ok(Math.max(...want.map(Math.abs)) > 1e-6, "eps is not trivially zero");
      const err = maxAbsErr(eps, want);
      assert.ok(err < 2e-3, `GPU eps vs float64: ${err} (${eps} vs ${want})`);
      // the update: SGD (lr 0.1) on sum_i final_i / B * loss_i; a frozen backbone stays
      const B = problem.labels.length;
      const mode = frozen ? "eval" : "train";
      const f = new TvRefPass(problem.cfg, problem.params, problem.buffers, mode)
        .run(problem.x, problem.labels).features.t;
      const pass = new TvRefPass(problem.cfg, problem.params, problem.buffers, "train");
      const g = frozen
        ? pass.run(problem.x, problem.labels, f).backward(Array.from(final, (v) => v / B))
        : pass.run(problem.x, problem.labels).backward(Array.from(final, (v) => v / B));
      for (const name of ["fc.weight", "fc.bias", "conv1.weight", "layer3.0.bn2.weight"]) {
        const head = name.startsWith("fc");
        const p0 = before.get(name)!;
        const step = Array.from(after.get(name)!, (v, i) => p0[i] - v);
        if (frozen && !head) {
          assert.deepEqual(after.get(name), p0, `${name} frozen`);
          continue;
        }
        const wantStep = Array.from(g.get(name)!, (v) => 0.1 * v);
        const e = maxAbsErr(step, wantStep);
        assert.ok(e < 5e-3, `${name} update vs float64: ${e}`);
      }
      if (frozen) {
        assert.deepEqual(after.get("bn1.running_mean"), before.get("bn1.running_mean"));
      } else {
        assert.notDeepEqual(after.get("bn1.running_mean"), before.get("bn1.running_mean"));
      }
      destroy();
    },
  );
}

gpuTest("classifier-only meta step: refuses a model without a head split", async (gpu) => {
  const { Sequential, Linear } = await import("../src/nn/layers.ts");
  const model = new Model(gpu, new Sequential(new Linear(4, 3)), 0);
  const optimizer = new Sgd(gpu, model.paramLayout, {
    momentum: 0,
    weightDecay: 0,
    nesterov: false,
  });
  const engine = new StepEngine(model, { loss: crossEntropy, optimizer, batch: 2, input: [4] });
  assert.throws(
    () => new MetaReweighter(engine, { devBatch: 2, params: "classifier" }),
    /HeadSplit/,
  );
  engine.destroy();
  optimizer.destroy();
  model.destroy();
});
