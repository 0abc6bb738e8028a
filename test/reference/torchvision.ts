/**
 * torchvision-layout ResNet (basic and bottleneck blocks, projection shortcuts, 7x7 stem and
 * max-pool), float64 reference: forward of per-example cross-entropy losses recorded on a small
 * tape, backward (VJP of sum_i w_i loss_i w.r.t. every parameter, or only some) and JVP (tangent
 * of the loss vector along parameter tangents). Names follow torchvision's state_dict. Also the
 * classifier-only meta gradient: the look-ahead restricted to `fc`, exactly and by finite
 * differences.
 */
import {
  addForward,
  batchNorm2dBackward,
  batchNorm2dForward,
  batchNorm2dJvp,
  batchNormUpdateRunning,
  type BnMode,
  conv2dBackward,
  conv2dForward,
  conv2dJvp,
  globalAvgPoolBackward,
  globalAvgPoolForward,
  globalAvgPoolJvp,
  linearBackward,
  linearForward,
  linearJvp,
  lossBackward,
  lossForward,
  lossJvp,
  numel,
  reluBackward,
  reluForward,
  type Tensor,
  zeros,
} from "./ops.ts";
import { maxPool2dBackward, maxPool2dForward, maxPool2dJvp } from "./nn_ops.ts";
import type { Params } from "./resnet.ts";
import { fdDerivative } from "./fd.ts";

/** Architecture (as src/nn/torchvision.ts). */
export interface TvRefConfig {
  block: "basic" | "bottleneck";
  blocks: number[];
  width: number;
  inChannels: number;
  numClasses: number;
}

interface Node {
  t: Tensor;
  grad: Tensor | null;
  tan: Tensor | null;
}

interface Rec {
  back(): void;
  jvp(): void;
}

function accumulate(n: Node, g: Tensor): void {
  if (!n.grad) n.grad = { shape: [...g.shape], data: g.data.slice() };
  else for (let i = 0; i < g.data.length; i++) n.grad.data[i] += g.data[i];
}

function node(t: Tensor): Node {
  return { t, grad: null, tan: null };
}

/** One forward pass on a float64 tape. */
export class TvRefPass {
  readonly recs: Rec[] = [];
  readonly grads: Params = new Map();
  readonly cfg: TvRefConfig;
  readonly params: Params;
  readonly buffers: Params;
  readonly mode: BnMode;
  readonly updateRunning: boolean;
  tangents: Params = new Map();
  losses!: Float64Array;
  logits!: Node;
  features!: Node;
  #lossCache!: ReturnType<typeof lossForward>["cache"];

  constructor(cfg: TvRefConfig, params: Params, buffers: Params, mode: BnMode, update = false) {
    this.cfg = cfg;
    this.params = params;
    this.buffers = buffers;
    this.mode = mode;
    this.updateRunning = update;
  }

  #p(name: string): Float64Array {
    const v = this.params.get(name);
    if (!v) throw new Error(`reference: no parameter ${name}`);
    return v;
  }

  #addGrad(name: string, g: Float64Array): void {
    const cur = this.grads.get(name);
    if (!cur) this.grads.set(name, g.slice());
    else for (let i = 0; i < g.length; i++) cur[i] += g[i];
  }

  conv(x: Node, name: string, shape: number[], stride: number, pad: number): Node {
    const w: Tensor = { shape, data: this.#p(name + ".weight") };
    const y = node(conv2dForward(x.t, w, stride, pad));
    this.recs.push({
      back: () => {
        const { dx, dw } = conv2dBackward(x.t, w, stride, pad, y.grad!);
        accumulate(x, dx);
        this.#addGrad(name + ".weight", dw.data);
      },
      jvp: () => {
        const tw = this.tangents.get(name + ".weight");
        y.tan = conv2dJvp(x.t, w, stride, pad, x.tan, tw ? { shape, data: tw } : null);
      },
    });
    return y;
  }

  bn(x: Node, name: string, relu: boolean): Node {
    const gamma = this.#p(name + ".weight"), beta = this.#p(name + ".bias");
    const running = {
      mean: this.buffers.get(name + ".running_mean")!,
      var: this.buffers.get(name + ".running_var")!,
    };
    const { y, cache } = batchNorm2dForward(x.t, gamma, beta, this.mode, running);
    if (this.mode === "train" && this.updateRunning) {
      batchNormUpdateRunning(running.mean, running.var, cache);
    }
    const out = node(y);
    this.recs.push({
      back: () => {
        const { dx, dgamma, dbeta } = batchNorm2dBackward(cache, out.grad!);
        accumulate(x, dx);
        this.#addGrad(name + ".weight", dgamma);
        this.#addGrad(name + ".bias", dbeta);
      },
      jvp: () => {
        const tg = this.tangents.get(name + ".weight") ?? null;
        const tb = this.tangents.get(name + ".bias") ?? null;
        out.tan = batchNorm2dJvp(cache, x.tan, tg, tb);
      },
    });
    return relu ? this.relu(out) : out;
  }

  relu(x: Node): Node {
    const y = node(reluForward(x.t));
    this.recs.push({
      back: () => accumulate(x, reluBackward(x.t, y.grad!)),
      jvp: () => {
        y.tan = x.tan ? reluBackward(x.t, x.tan) : null;
      },
    });
    return y;
  }

  addRelu(a: Node, b: Node): Node {
    const s = node(addForward(a.t, b.t));
    this.recs.push({
      back: () => {
        accumulate(a, s.grad!);
        accumulate(b, s.grad!);
      },
      jvp: () => {
        if (!a.tan && !b.tan) return;
        const t = zeros(s.t.shape);
        for (const n of [a, b]) {
          if (n.tan) { for (let i = 0; i < t.data.length; i++) t.data[i] += n.tan.data[i]; }
        }
        s.tan = t;
      },
    });
    return this.relu(s);
  }

  maxPool(x: Node): Node {
    const { y, argmax } = maxPool2dForward(x.t, { kernel: 3, stride: 2, pad: 1 });
    const out = node(y);
    this.recs.push({
      back: () => accumulate(x, maxPool2dBackward(x.t.shape, argmax, out.grad!)),
      jvp: () => {
        out.tan = x.tan ? maxPool2dJvp(y.shape, argmax, x.tan) : null;
      },
    });
    return out;
  }

  gap(x: Node): Node {
    const y = node(globalAvgPoolForward(x.t));
    this.recs.push({
      back: () => accumulate(x, globalAvgPoolBackward(y.grad!, x.t.shape)),
      jvp: () => {
        y.tan = x.tan ? globalAvgPoolJvp(x.t.shape, x.tan) : null;
      },
    });
    return y;
  }

  fc(x: Node): Node {
    const C = this.cfg.numClasses, F = x.t.shape[1];
    const w: Tensor = { shape: [C, F], data: this.#p("fc.weight") };
    const b = this.#p("fc.bias");
    const y = node(linearForward(x.t, w, b));
    this.recs.push({
      back: () => {
        const { dx, dw, db } = linearBackward(x.t, w, y.grad!);
        accumulate(x, dx);
        this.#addGrad("fc.weight", dw.data);
        this.#addGrad("fc.bias", db!);
      },
      jvp: () => {
        const tw = this.tangents.get("fc.weight");
        const tb = this.tangents.get("fc.bias") ?? null;
        if (!x.tan && !tw && !tb) return;
        y.tan = linearJvp(x.t, w, x.tan, tw ? { shape: [C, F], data: tw } : null, tb);
      },
    });
    return y;
  }

  /** Runs the network on `x` and the per-example cross-entropy of `labels`. */
  run(x: Tensor, labels: ArrayLike<number>, features?: Tensor): this {
    this.features = features ? node(features) : this.#body(node(x));
    this.logits = this.fc(this.features);
    const { losses, cache } = lossForward(this.logits.t, labels, {});
    this.losses = losses;
    this.#lossCache = cache;
    return this;
  }

  #body(x: Node): Node {
    const { cfg } = this;
    const w = cfg.width;
    let h = this.bn(this.conv(x, "conv1", [w, cfg.inChannels, 7, 7], 2, 3), "bn1", true);
    h = this.maxPool(h);
    let inC = w;
    const exp = cfg.block === "basic" ? 1 : 4;
    cfg.blocks.forEach((n, stage) => {
      const planes = w << stage;
      for (let b = 0; b < n; b++) {
        const stride = stage > 0 && b === 0 ? 2 : 1;
        h = this.#block(h, `layer${stage + 1}.${b}`, inC, planes, stride);
        inC = planes * exp;
      }
    });
    return this.gap(h);
  }

  #block(x: Node, p: string, inC: number, planes: number, stride: number): Node {
    let h: Node;
    let out: number;
    if (this.cfg.block === "basic") {
      out = planes;
      h = this.bn(this.conv(x, `${p}.conv1`, [planes, inC, 3, 3], stride, 1), `${p}.bn1`, true);
      h = this.bn(this.conv(h, `${p}.conv2`, [planes, planes, 3, 3], 1, 1), `${p}.bn2`, false);
    } else {
      out = planes * 4;
      h = this.bn(this.conv(x, `${p}.conv1`, [planes, inC, 1, 1], 1, 0), `${p}.bn1`, true);
      h = this.bn(this.conv(h, `${p}.conv2`, [planes, planes, 3, 3], stride, 1), `${p}.bn2`, true);
      h = this.bn(this.conv(h, `${p}.conv3`, [out, planes, 1, 1], 1, 0), `${p}.bn3`, false);
    }
    let sc = x;
    if (stride !== 1 || inC !== out) {
      sc = this.bn(
        this.conv(x, `${p}.downsample.0`, [out, inC, 1, 1], stride, 0),
        `${p}.downsample.1`,
        false,
      );
    }
    return this.addRelu(h, sc);
  }

  /** Gradients of sum_i weights_i loss_i w.r.t. every parameter reached. */
  backward(weights: ArrayLike<number>): Params {
    this.logits.grad = lossBackward(this.#lossCache, weights);
    for (let r = this.recs.length - 1; r >= 0; r--) this.recs[r].back();
    return this.grads;
  }

  /** Tangent of the loss vector along parameter tangents (absent names: zero). */
  jvp(tangents: Params): Float64Array {
    this.tangents = tangents;
    for (const r of this.recs) r.jvp();
    return lossJvp(this.#lossCache, this.logits.tan);
  }
}

/** Parameter and buffer specs in torchvision's state_dict order. */
export function tvRefSpecs(
  cfg: TvRefConfig,
): { params: [string, number[]][]; buffers: [string, number[]][] } {
  const params: [string, number[]][] = [];
  const buffers: [string, number[]][] = [];
  const bn = (n: string, c: number) => {
    params.push([`${n}.weight`, [c]], [`${n}.bias`, [c]]);
    buffers.push([`${n}.running_mean`, [c]], [`${n}.running_var`, [c]]);
  };
  const w = cfg.width;
  params.push(["conv1.weight", [w, cfg.inChannels, 7, 7]]);
  bn("bn1", w);
  let inC = w;
  const exp = cfg.block === "basic" ? 1 : 4;
  cfg.blocks.forEach((n, stage) => {
    const planes = w << stage;
    for (let b = 0; b < n; b++) {
      const p = `layer${stage + 1}.${b}`;
      const stride = stage > 0 && b === 0 ? 2 : 1;
      const out = planes * exp;
      if (cfg.block === "basic") {
        params.push([`${p}.conv1.weight`, [planes, inC, 3, 3]]);
        bn(`${p}.bn1`, planes);
        params.push([`${p}.conv2.weight`, [planes, planes, 3, 3]]);
        bn(`${p}.bn2`, planes);
      } else {
        params.push([`${p}.conv1.weight`, [planes, inC, 1, 1]]);
        bn(`${p}.bn1`, planes);
        params.push([`${p}.conv2.weight`, [planes, planes, 3, 3]]);
        bn(`${p}.bn2`, planes);
        params.push([`${p}.conv3.weight`, [out, planes, 1, 1]]);
        bn(`${p}.bn3`, out);
      }
      if (stride !== 1 || inC !== out) {
        params.push([`${p}.downsample.0.weight`, [out, inC, 1, 1]]);
        bn(`${p}.downsample.1`, out);
      }
      inC = out;
    }
  });
  params.push(["fc.weight", [cfg.numClasses, inC]], ["fc.bias", [cfg.numClasses]]);
  return { params, buffers };
}

/** Number of values of a spec. */
export function specSize(shape: number[]): number {
  return numel(shape);
}

/** Inputs of a classifier-only meta step. */
export interface HeadMetaProblem {
  cfg: TvRefConfig;
  params: Params;
  buffers: Params;
  x: Tensor;
  labels: ArrayLike<number>;
  weights: ArrayLike<number>;
  xDev: Tensor;
  labelsDev: ArrayLike<number>;
  eta: number;
  /** "mean": the look-ahead loss divided by |B|. */
  mean: boolean;
  /** Frozen backbone: features in eval mode (running statistics); else batch statistics. */
  frozen: boolean;
}

const HEAD = ["fc.weight", "fc.bias"];

/** The features of `x` under the problem's backbone mode. */
function featuresOf(p: HeadMetaProblem, x: Tensor, labels: ArrayLike<number>): Tensor {
  const pass = new TvRefPass(p.cfg, p.params, p.buffers, p.frozen ? "eval" : "train");
  return pass.run(x, labels).features.t;
}

/** F(eps) = L_dev(theta_b, fc - eta * grad_fc sum_i a (w_i + eps_i) loss_i). */
export function headMetaObjective(p: HeadMetaProblem, eps: ArrayLike<number>): number {
  const B = p.labels.length;
  const a = p.mean ? 1 / B : 1;
  const f = featuresOf(p, p.x, p.labels);
  const pass = new TvRefPass(p.cfg, p.params, p.buffers, "train").run(p.x, p.labels, f);
  const g = pass.backward(Array.from({ length: B }, (_, i) => a * (p.weights[i] + eps[i])));
  const prime = new Map(p.params);
  for (const n of HEAD) prime.set(n, p.params.get(n)!.map((v, i) => v - p.eta * g.get(n)![i]));
  const fDev = featuresOf(p, p.xDev, p.labelsDev);
  const dev = new TvRefPass(p.cfg, prime, p.buffers, "train").run(p.xDev, p.labelsDev, fDev);
  return dev.losses.reduce((s, l) => s + l, 0) / dev.losses.length;
}

/** Exact dF/deps at 0 through one JVP of the batch losses along grad_fc L_dev(theta'). */
export function headMetaEpsGrad(p: HeadMetaProblem): Float64Array {
  const B = p.labels.length, Bd = p.labelsDev.length;
  const a = p.mean ? 1 / B : 1;
  const f = featuresOf(p, p.x, p.labels);
  const pass = new TvRefPass(p.cfg, p.params, p.buffers, "train").run(p.x, p.labels, f);
  const g = pass.backward(Array.from({ length: B }, (_, i) => a * p.weights[i]));
  const prime = new Map(p.params);
  for (const n of HEAD) prime.set(n, p.params.get(n)!.map((v, i) => v - p.eta * g.get(n)![i]));
  const fDev = featuresOf(p, p.xDev, p.labelsDev);
  const dev = new TvRefPass(p.cfg, prime, p.buffers, "train").run(p.xDev, p.labelsDev, fDev);
  const v = dev.backward(new Float64Array(Bd).fill(1 / Bd));
  const fresh = new TvRefPass(p.cfg, p.params, p.buffers, "train").run(p.x, p.labels, f);
  const jv = fresh.jvp(new Map(HEAD.map((n) => [n, v.get(n)!])));
  return jv.map((t) => -p.eta * a * t);
}

/** Central finite differences of {@linkcode headMetaObjective}, one coordinate at a time. */
export function headMetaEpsGradFd(p: HeadMetaProblem, h = 1e-5): Float64Array {
  const B = p.labels.length;
  return Float64Array.from({ length: B }, (_, i) =>
    fdDerivative((s) => {
      const eps = new Float64Array(B);
      eps[i] = s;
      return headMetaObjective(p, eps);
    }, h));
}
