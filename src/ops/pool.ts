/**
 * 2-D max and average pooling over NCHW tensors (PyTorch semantics: output size
 * floor((H + 2 pad - kernel) / stride) + 1, padding never wins a max, the average divides by
 * kernel^2 including padding). Forward, backward and JVP side by side.
 */
import { bind, Tensor } from "../tensor.ts";
import type { Ctx } from "../autograd/tape.ts";
import { type Gpu, grid1d } from "../gpu/runtime.ts";
import {
  avgPoolBackward,
  avgPoolForward,
  maxPoolBackward,
  maxPoolForward,
  maxPoolJvp,
} from "../../shaders/pool.ts";

/** Pooling window: square `kernel`, `stride` (default `kernel`), zero-size `pad` (default 0). */
export interface PoolOptions {
  /** Window side. */
  kernel: number;
  /** Step between windows; defaults to `kernel`. */
  stride?: number;
  /** Padding on each side; at most kernel / 2 (as PyTorch). */
  pad?: number;
}

/** Validated geometry of one pooling call. */
interface Geometry {
  N: number;
  C: number;
  H: number;
  W: number;
  OH: number;
  OW: number;
  k: number;
  s: number;
  pad: number;
}

function geometry(op: string, x: Tensor, o: PoolOptions): Geometry {
  const k = o.kernel, s = o.stride ?? o.kernel, pad = o.pad ?? 0;
  const whole = (v: number, min: number) => Number.isInteger(v) && v >= min;
  if (!whole(k, 1) || !whole(s, 1) || !whole(pad, 0) || pad > k / 2) {
    throw new Error(
      `${op}: kernel ${k}, stride ${s}, pad ${pad}: expected integers kernel >= 1, ` +
        `stride >= 1 and 0 <= pad <= kernel / 2`,
    );
  }
  if (x.shape.length !== 4 || x.dtype !== "f32") {
    throw new Error(`${op}: expected an f32 [N, C, H, W] input, got [${x.shape}] ${x.dtype}`);
  }
  const [N, C, H, W] = x.shape;
  const OH = Math.floor((H + 2 * pad - k) / s) + 1;
  const OW = Math.floor((W + 2 * pad - k) / s) + 1;
  if (OH < 1 || OW < 1) {
    throw new Error(`${op}: a ${k}x${k} window with pad ${pad} does not fit [${H}, ${W}]`);
  }
  return { N, C, H, W, OH, OW, k, s, pad };
}

/** Uniform values with `total` threads' elements. */
function uniforms(g: Geometry, total: number) {
  return { total, H: g.H, W: g.W, OH: g.OH, OW: g.OW, k: g.k, s: g.s, pad: g.pad };
}

function outShape(g: Geometry): number[] {
  return [g.N, g.C, g.OH, g.OW];
}

/**
 * Max pooling. Backward routes each output's gradient to its window's argmax (the first
 * maximum in scan order), JVP takes the tangent there; the argmax indices (position within
 * the input plane, as PyTorch's `return_indices`) are a u32 tensor of the ctx.
 */
export function maxPool2d(ctx: Ctx, x: Tensor, opts: PoolOptions): Tensor {
  const g = geometry("maxPool2d", x, opts);
  const gpu = ctx.gpu;
  const y = ctx.empty(outShape(g));
  const arg = ctx.empty(outShape(g), "u32");
  const outU = uniforms(g, y.size);
  const outGrid = grid1d(Math.ceil(y.size / 256));
  maxPoolForward.dispatch(gpu, [bind(x), bind(y), bind(arg)], outU, outGrid);
  ctx.record({
    op: "maxPool2d",
    inputs: [x],
    output: y,
    backward: (dy) => {
      const dx = Tensor.empty(gpu, x.shape);
      maxPoolBackward.dispatch(
        gpu,
        [bind(dy), bind(arg), bind(dx)],
        uniforms(g, x.size),
        grid1d(Math.ceil(x.size / 256)),
      );
      return [dx];
    },
    jvp: ([xDot]) => {
      const out = Tensor.empty(gpu, y.shape);
      maxPoolJvp.dispatch(gpu, [bind(xDot!), bind(arg), bind(out)], outU, outGrid);
      return out;
    },
  });
  return y;
}

function avgPoolInto(gpu: Gpu, g: Geometry, src: Tensor, dst: Tensor): void {
  avgPoolForward.dispatch(
    gpu,
    [bind(src), bind(dst)],
    uniforms(g, dst.size),
    grid1d(Math.ceil(dst.size / 256)),
  );
}

/**
 * Average pooling (count_include_pad: every window divides by kernel^2). Linear, so the JVP
 * is the forward of the tangent; backward spreads dy / kernel^2 over each window.
 */
export function avgPool2d(ctx: Ctx, x: Tensor, opts: PoolOptions): Tensor {
  const g = geometry("avgPool2d", x, opts);
  const gpu = ctx.gpu;
  const y = ctx.empty(outShape(g));
  avgPoolInto(gpu, g, x, y);
  ctx.record({
    op: "avgPool2d",
    inputs: [x],
    output: y,
    backward: (dy) => {
      const dx = Tensor.empty(gpu, x.shape);
      avgPoolBackward.dispatch(
        gpu,
        [bind(dy), bind(dx)],
        uniforms(g, x.size),
        grid1d(Math.ceil(x.size / 256)),
      );
      return [dx];
    },
    jvp: ([xDot]) => {
      const out = Tensor.empty(gpu, y.shape);
      avgPoolInto(gpu, g, xDot!, out);
      return out;
    },
  });
  return y;
}
