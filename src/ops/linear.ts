/**
 * The classifier family: linear (y = x W^T + b, W stored [out, in] as in PyTorch) through the
 * GEMM template, and row normalisation for LDAM's cosine classifier.
 */
import { bind, Tensor } from "../tensor.ts";
import type { Ctx } from "../autograd/tape.ts";
import { type Gpu, grid1d } from "../gpu/runtime.ts";
import { matmulInstance, runGemm } from "./gemm.ts";
import { columnSums } from "./elementwise.ts";
import { runMap } from "./map.ts";
import { rowNormalizeKernel } from "../../shaders/linear.ts";

/** out[M,N] = op(a) * op(b) (+ bias[n]) (+ out when accumulating). */
export function matmulInto(
  gpu: Gpu,
  a: Tensor,
  b: Tensor,
  out: Tensor,
  opts: { transA?: boolean; transB?: boolean; bias?: Tensor | null; accumulate?: boolean } = {},
): void {
  const transA = opts.transA ?? false;
  const transB = opts.transB ?? false;
  const [M, K] = transA ? [a.shape[1], a.shape[0]] : [a.shape[0], a.shape[1]];
  const [K2, N] = transB ? [b.shape[1], b.shape[0]] : [b.shape[0], b.shape[1]];
  if (K !== K2 || out.size !== M * N) {
    throw new Error(
      `matmul: [${a.shape}]${transA ? "^T" : ""} x [${b.shape}]${transB ? "^T" : ""}`,
    );
  }
  const inst = matmulInstance(transA, transB, !!opts.bias, opts.accumulate ? "accumulate" : "set");
  runGemm(
    gpu,
    inst,
    { M, N, K },
    bind(a),
    bind(b),
    opts.bias ? [bind(opts.bias)] : [],
    bind(out),
    [],
  );
}

/** A fresh [M, N] product. */
export function matmul(gpu: Gpu, a: Tensor, b: Tensor, transA = false, transB = false): Tensor {
  const M = transA ? a.shape[1] : a.shape[0];
  const N = transB ? b.shape[0] : b.shape[1];
  const out = Tensor.empty(gpu, [M, N]);
  matmulInto(gpu, a, b, out, { transA, transB });
  return out;
}

/**
 * y = x W^T + b. Backward: dx = dy W, dW = dy^T x, db = column sums of dy.
 * JVP: y' = x' W^T + x W'^T + b'.
 */
export function linear(ctx: Ctx, x: Tensor, w: Tensor, b: Tensor | null): Tensor {
  const [B] = x.shape;
  const [O] = w.shape;
  const y = ctx.empty([B, O]);
  matmulInto(ctx.gpu, x, w, y, { transB: true, bias: b });
  const gpu = ctx.gpu;
  ctx.record({
    op: "linear",
    inputs: b ? [x, w, b] : [x, w],
    output: y,
    backward: (dy, needs, into) => {
      let dw: Tensor | null = null;
      if (needs[1]) {
        dw = into?.[1] ?? Tensor.empty(gpu, w.shape);
        matmulInto(gpu, dy, x, dw, { transA: true });
      }
      return [
        needs[0] ? matmul(gpu, dy, w) : null,
        dw,
        ...(b ? [needs[2] ? columnSums(gpu, dy, into?.[2] ?? undefined) : null] : []),
      ];
    },
    jvp: ([xDot, wDot, bDot]) => {
      const out = Tensor.empty(gpu, y.shape);
      let first = true;
      if (xDot) {
        matmulInto(gpu, xDot, w, out, { transB: true, bias: bDot ?? null });
        first = false;
      }
      if (wDot) {
        matmulInto(gpu, x, wDot, out, {
          transB: true,
          bias: first ? bDot ?? null : null,
          accumulate: !first,
        });
        first = false;
      }
      if (first) {
        // only the bias moves: y' = b' on every row
        runMap(gpu, `rows:${O}`, `a[i % ${O}u]`, [bDot!], out);
      }
      return out;
    },
  });
  return y;
}

// ------------------------------------------------------------------ row normalisation

/**
 * y = x / ||x|| per row. Backward and JVP share one form: (g - y <y, g>) / ||x||, because
 * the Jacobian (I - y y^T) / ||x|| is symmetric.
 */
export function rowNormalize(ctx: Ctx, x: Tensor): Tensor {
  const [R, D] = x.shape;
  const y = ctx.empty(x.shape);
  const grid = grid1d(Math.ceil(R / 64));
  rowNormalizeKernel("forward").dispatch(ctx.gpu, [bind(x), bind(y)], { R, D }, grid);
  const project = (g: Tensor) => {
    const out = Tensor.empty(ctx.gpu, x.shape);
    rowNormalizeKernel("project").dispatch(
      ctx.gpu,
      [bind(g), bind(x), bind(y), bind(out)],
      { R, D },
      grid,
    );
    return out;
  };
  ctx.record({
    op: "rowNormalize",
    inputs: [x],
    output: y,
    backward: (dy) => [project(dy)],
    jvp: ([xDot]) => project(xDot!),
  });
  return y;
}
