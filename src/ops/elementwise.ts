/**
 * Elementwise and layout ops: relu, add, the ResNet option-A shortcut, global average
 * pooling, and column sums. Forward, backward and JVP of each op sit side by side; their
 * kernels are declared in shaders/elementwise.ts.
 */
import { bind, Tensor } from "../tensor.ts";
import type { Ctx } from "../autograd/tape.ts";
import { type Gpu, grid1d } from "../gpu/runtime.ts";
import { avgPoolKernel, columnSumsKernel, shortcutKernel } from "../../shaders/elementwise.ts";
import { clone, runMap } from "./map.ts";

// The map helpers live below the tape (src/ops/map.ts); re-exported for op files.
export { accumulateInto, clone, runMap, scale, zero } from "./map.ts";

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
  shortcutKernel(direction).dispatch(
    gpu,
    [bind(src), bind(dst)],
    { N, C, H, W, CO, OH, OW, pad, total: outSize },
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

function runPool(
  gpu: Gpu,
  direction: "forward" | "backward",
  src: Tensor,
  dst: Tensor,
  NC: number,
  HW: number,
) {
  const outSize = direction === "forward" ? NC : NC * HW;
  avgPoolKernel(direction).dispatch(
    gpu,
    [bind(src), bind(dst)],
    { NC, HW },
    grid1d(Math.ceil(outSize / 256)),
  );
}

/** Mean over H and W: [N, C, H, W] -> [N, C]. */
export function globalAvgPool(ctx: Ctx, x: Tensor): Tensor {
  if (x.shape.length !== 4 || x.dtype !== "f32") {
    throw new Error(
      `globalAvgPool: expected f32 maps [N, C, H, W], got [${x.shape}] ${x.dtype}`,
    );
  }
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
export function columnSums(gpu: Gpu, a: Tensor, out?: Tensor): Tensor {
  const [R, C] = a.shape;
  out ??= Tensor.empty(gpu, [C]);
  columnSumsKernel.dispatch(gpu, [bind(a), bind(out)], { R, C }, [Math.ceil(C / 64)]);
  return out;
}
