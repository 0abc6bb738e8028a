/**
 * Elementwise and layout ops: relu, add, the ResNet option-A shortcut, global average
 * pooling, and the small helpers autograd and the optimizer need (accumulate, scale, fill,
 * column sums). Forward, backward and JVP of each op sit side by side.
 */
import { bind, Tensor } from "../tensor.ts";
import type { Ctx } from "../autograd/tape.ts";
import { type Gpu, grid1d, type Program } from "../gpu/runtime.ts";
import {
  columnSumsSource,
  mapSource,
  poolSource,
  shortcutSource,
} from "../../shaders/elementwise.ts";

const programs = new Map<string, Program>();

/**
 * An elementwise kernel over `n` elements: `out[i] = expr`, where expr may read `a[i]`,
 * `b[i]`, ... (the inputs), `out[i]` (its previous value), and the f32 scalars `p.s0`, `p.s1`.
 */
export function mapProgram(key: string, inputs: number, expr: string): Program {
  let p = programs.get(key);
  if (!p) {
    p = {
      key: `map:${key}`,
      code: mapSource(inputs, expr),
      bindings: [...Array(inputs).fill("read"), "write", "uniform"],
    };
    programs.set(key, p);
  }
  return p;
}

/** Uniform block {n: u32, s0: f32, s1: f32, s2: f32}. */
export function mapUniform(gpu: Gpu, n: number, s0 = 0, s1 = 0, s2 = 0) {
  const buf = new ArrayBuffer(16);
  new Uint32Array(buf, 0, 1)[0] = n;
  new Float32Array(buf, 4, 3).set([s0, s1, s2]);
  return gpu.uniform(buf);
}

/** Runs a map kernel: out[i] = expr(inputs[i]...). */
export function runMap(
  gpu: Gpu,
  key: string,
  expr: string,
  inputs: Tensor[],
  out: Tensor,
  s0 = 0,
  s1 = 0,
  s2 = 0,
): void {
  const prog = mapProgram(key, inputs.length, expr);
  gpu.dispatch(
    prog,
    [...inputs.map(bind), bind(out), mapUniform(gpu, out.size, s0, s1, s2)],
    grid1d(Math.ceil(out.size / 256)),
  );
}

/** dst += src (the gradient accumulation of the tape). */
export function accumulateInto(gpu: Gpu, dst: Tensor, src: Tensor): void {
  runMap(gpu, "acc", "out[i] + a[i]", [src], dst);
}

/** out = s0 * a (out may be a fresh tensor). */
export function scale(gpu: Gpu, a: Tensor, s: number, out = Tensor.empty(gpu, a.shape)): Tensor {
  runMap(gpu, "scale", "p.s0 * a[i]", [a], out, s);
  return out;
}

/** A copy of `a` as a fresh pooled tensor. */
export function clone(gpu: Gpu, a: Tensor): Tensor {
  const out = Tensor.empty(gpu, a.shape, a.dtype);
  gpu.copy(a.view, out.view, a.size * 4);
  return out;
}

/** Fills a tensor with zeros (recorded on the command encoder). */
export function zero(gpu: Gpu, t: Tensor): void {
  gpu.encoder().clearBuffer(t.view.buffer, t.view.offset, t.size * 4);
}

// ------------------------------------------------------------------ relu

const RELU_BACK = "select(0.0, a[i], b[i] > 0.0)";

/** max(x, 0). Backward and JVP both mask by x > 0. */
export function relu(ctx: Ctx, x: Tensor): Tensor {
  const y = ctx.empty(x.shape);
  runMap(ctx.gpu, "relu", "max(a[i], 0.0)", [x], y);
  ctx.record({
    op: "relu",
    inputs: [x],
    output: y,
    backward: (dy) => [mask(ctx.gpu, dy, x)],
    jvp: ([xDot]) => mask(ctx.gpu, xDot!, x),
  });
  return y;
}

function mask(gpu: Gpu, g: Tensor, x: Tensor): Tensor {
  const out = Tensor.empty(gpu, x.shape);
  runMap(gpu, "relu-mask", RELU_BACK, [g, x], out);
  return out;
}

// ------------------------------------------------------------------ add

/** a + b (same shape). Residual connections: both inputs get the output's gradient. */
export function add(ctx: Ctx, a: Tensor, b: Tensor): Tensor {
  if (a.size !== b.size) throw new Error(`add: [${a.shape}] vs [${b.shape}]`);
  const y = ctx.empty(a.shape);
  runMap(ctx.gpu, "add", "a[i] + b[i]", [a, b], y);
  ctx.record({
    op: "add",
    inputs: [a, b],
    output: y,
    backward: (dy, needs) => [
      needs[0] ? clone(ctx.gpu, dy) : null,
      needs[1] ? clone(ctx.gpu, dy) : null,
    ],
    jvp: ([aDot, bDot]) => {
      const out = Tensor.empty(ctx.gpu, y.shape);
      if (aDot && bDot) runMap(ctx.gpu, "add", "a[i] + b[i]", [aDot, bDot], out);
      else ctx.gpu.copy((aDot ?? bDot)!.view, out.view, out.size * 4);
      return out;
    },
  });
  return y;
}

/** relu(a + b): the fused tail of a residual block. */
export function addRelu(ctx: Ctx, a: Tensor, b: Tensor): Tensor {
  if (a.size !== b.size) throw new Error(`addRelu: [${a.shape}] vs [${b.shape}]`);
  const y = ctx.empty(a.shape);
  runMap(ctx.gpu, "add-relu", "max(a[i] + b[i], 0.0)", [a, b], y);
  const back = (g: Tensor) => mask(ctx.gpu, g, y);
  ctx.record({
    op: "add-relu",
    inputs: [a, b],
    output: y,
    backward: (dy, needs) => [needs[0] ? back(dy) : null, needs[1] ? back(dy) : null],
    jvp: ([aDot, bDot]) => {
      const out = Tensor.empty(ctx.gpu, y.shape);
      if (aDot && bDot) {
        runMap(
          ctx.gpu,
          "add-relu-jvp",
          "select(0.0, a[i] + b[i], c[i] > 0.0)",
          [aDot, bDot, y],
          out,
        );
      } else runMap(ctx.gpu, "relu-mask", RELU_BACK, [(aDot ?? bDot)!, y], out);
      return out;
    },
  });
  return y;
}

// ------------------------------------------------------------------ option-A shortcut

const shortcutPrograms = new Map<string, Program>();
function shortcutProgram(direction: "forward" | "backward"): Program {
  let p = shortcutPrograms.get(direction);
  if (!p) {
    p = {
      key: `shortcut:${direction}`,
      code: shortcutSource(direction),
      bindings: ["read", "write", "uniform"],
    };
    shortcutPrograms.set(direction, p);
  }
  return p;
}

function runShortcut(
  gpu: Gpu,
  direction: "forward" | "backward",
  src: Tensor,
  dst: Tensor,
  x: readonly number[],
  yShape: readonly number[],
) {
  const [N, C, H, W] = x;
  const [, CO, OH, OW] = yShape;
  const pad = (CO - C) / 2;
  const outSize = direction === "forward" ? N * CO * OH * OW : N * C * H * W;
  gpu.dispatch(
    shortcutProgram(direction),
    [bind(src), bind(dst), gpu.uniform(new Uint32Array([N, C, H, W, CO, OH, OW, pad, outSize]))],
    grid1d(Math.ceil(outSize / 256)),
  );
}

/**
 * The CIFAR ResNet option-A shortcut: keep every second row and column, then pad the channels
 * with zeros on both sides up to `outChannels` (PyTorch: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0,
 * p, p))). Linear, so the JVP is the forward of the tangent; backward picks the kept entries.
 */
export function shortcutA(ctx: Ctx, x: Tensor, outChannels: number): Tensor {
  const [N, C, H, W] = x.shape;
  if ((outChannels - C) % 2 !== 0 || outChannels < C) {
    throw new Error(`shortcutA: cannot pad ${C} channels to ${outChannels}`);
  }
  const yShape = [N, outChannels, Math.ceil(H / 2), Math.ceil(W / 2)];
  const y = ctx.empty(yShape);
  runShortcut(ctx.gpu, "forward", x, y, x.shape, yShape);
  ctx.record({
    op: "shortcutA",
    inputs: [x],
    output: y,
    backward: (dy) => {
      const dx = Tensor.empty(ctx.gpu, x.shape);
      runShortcut(ctx.gpu, "backward", dy, dx, x.shape, yShape);
      return [dx];
    },
    jvp: ([xDot]) => {
      const out = Tensor.empty(ctx.gpu, yShape);
      runShortcut(ctx.gpu, "forward", xDot!, out, x.shape, yShape);
      return out;
    },
  });
  return y;
}

// ------------------------------------------------------------------ global average pooling

const poolPrograms = new Map<string, Program>();
function poolProgram(direction: "forward" | "backward"): Program {
  let p = poolPrograms.get(direction);
  if (!p) {
    p = {
      key: `pool:${direction}`,
      code: poolSource(direction),
      bindings: ["read", "write", "uniform"],
    };
    poolPrograms.set(direction, p);
  }
  return p;
}

function runPool(
  gpu: Gpu,
  direction: "forward" | "backward",
  src: Tensor,
  dst: Tensor,
  NC: number,
  HW: number,
) {
  const outSize = direction === "forward" ? NC : NC * HW;
  gpu.dispatch(
    poolProgram(direction),
    [bind(src), bind(dst), gpu.uniform(new Uint32Array([NC, HW]))],
    grid1d(Math.ceil(outSize / 256)),
  );
}

/** Mean over H and W: [N, C, H, W] -> [N, C]. */
export function globalAvgPool(ctx: Ctx, x: Tensor): Tensor {
  const [N, C, H, W] = x.shape;
  const y = ctx.empty([N, C]);
  runPool(ctx.gpu, "forward", x, y, N * C, H * W);
  ctx.record({
    op: "globalAvgPool",
    inputs: [x],
    output: y,
    backward: (dy) => {
      const dx = Tensor.empty(ctx.gpu, x.shape);
      runPool(ctx.gpu, "backward", dy, dx, N * C, H * W);
      return [dx];
    },
    jvp: ([xDot]) => {
      const out = Tensor.empty(ctx.gpu, [N, C]);
      runPool(ctx.gpu, "forward", xDot!, out, N * C, H * W);
      return out;
    },
  });
  return y;
}

// ------------------------------------------------------------------ column sums

/** Sums the rows of a [R, C] matrix: [C] (bias gradients), one thread per column, in order. */
export function columnSums(gpu: Gpu, a: Tensor): Tensor {
  const [R, C] = a.shape;
  const out = Tensor.empty(gpu, [C]);
  const key = "colsum";
  let prog = programs.get(key);
  if (!prog) {
    prog = {
      key,
      code: columnSumsSource(),
      bindings: ["read", "write", "uniform"],
    };
    programs.set(key, prog);
  }
  gpu.dispatch(prog, [bind(a), bind(out), gpu.uniform(new Uint32Array([R, C]))], [
    Math.ceil(C / 64),
  ]);
  return out;
}
