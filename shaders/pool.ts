/**
 * Declarations of the 2-D pooling kernels (NCHW, PyTorch semantics: floor output size, padding
 * never wins a max, the average divides by kernel^2 including padding). Every kernel has one
 * thread per element it writes; the backward kernels gather over the windows that hold their
 * input element (outputs in ascending order), so they need no atomics and sum in a fixed order.
 */
import { kernel, type UniformDecl } from "../src/gpu/kernel.ts";

type PoolField = "total" | "H" | "W" | "OH" | "OW" | "k" | "s" | "pad";

/** Geometry shared by every pooling kernel; `total` is the number of threads' elements. */
const uniforms: readonly UniformDecl<PoolField>[] = [
  ["total", "u32"],
  ["H", "u32"],
  ["W", "u32"],
  ["OH", "u32"],
  ["OW", "u32"],
  ["k", "u32"],
  ["s", "u32"],
  ["pad", "u32"],
];

/** Output element i -> (plane nc, window origin h0, w0), possibly negative inside the padding. */
const OUTPUT_WINDOW = `
  let i = flatIndex(gid, nwg);
  if (i >= p.total) { return; }
  let ow = i % p.OW;
  let oh = (i / p.OW) % p.OH;
  let nc = i / (p.OW * p.OH);
  let h0 = i32(oh * p.s) - i32(p.pad);
  let w0 = i32(ow * p.s) - i32(p.pad);`;

/** Input element i -> the range [lo, hi] of output rows and columns whose window holds it. */
const INPUT_WINDOWS = `
  let i = flatIndex(gid, nwg);
  if (i >= p.total) { return; }
  let iw = i % p.W;
  let ih = (i / p.W) % p.H;
  let nc = i / (p.W * p.H);
  let ah = i32(ih + p.pad);
  let aw = i32(iw + p.pad);
  let k = i32(p.k);
  let s = i32(p.s);
  let ohLo = select(0, (ah - k + s) / s, ah >= k);
  let owLo = select(0, (aw - k + s) / s, aw >= k);
  let ohHi = min(i32(p.OH) - 1, ah / s);
  let owHi = min(i32(p.OW) - 1, aw / s);`;

/** Max pooling: y = the window's maximum, arg = its index in the input plane (first wins). */
export const maxPoolForward = kernel({
  name: "maxpool-forward",
  storage: [["x", "read"], ["y", "write"], ["arg", "write", "array<u32>"]],
  uniforms,
  workgroupSize: 256,
  main: `${OUTPUT_WINDOW}
    var best = 0.0;
    var at = 0u;
    var found = false;
    for (var kh = 0; kh < i32(p.k); kh++) {
      let ih = h0 + kh;
      if (ih < 0 || ih >= i32(p.H)) { continue; }
      for (var kw = 0; kw < i32(p.k); kw++) {
        let iw = w0 + kw;
        if (iw < 0 || iw >= i32(p.W)) { continue; }
        let j = u32(ih) * p.W + u32(iw);
        let v = x[nc * p.H * p.W + j];
        if (!found || v > best) { best = v; at = j; found = true; }
      }
    }
    y[i] = best;
    arg[i] = at;`,
});

/** y'[o] = x'[arg[o]] (the tangent at the argmax); total = outputs. */
export const maxPoolJvp = kernel({
  name: "maxpool-jvp",
  storage: [["t", "read"], ["arg", "read", "array<u32>"], ["out", "write"]],
  uniforms,
  workgroupSize: 256,
  main: `
    let i = flatIndex(gid, nwg);
    if (i >= p.total) { return; }
    let nc = i / (p.OW * p.OH);
    out[i] = t[nc * p.H * p.W + arg[i]];`,
});

/** dx[i] = sum of dy[o] over the windows o whose argmax is i; total = inputs. */
export const maxPoolBackward = kernel({
  name: "maxpool-backward",
  storage: [["dy", "read"], ["arg", "read", "array<u32>"], ["dx", "write"]],
  uniforms,
  workgroupSize: 256,
  main: `${INPUT_WINDOWS}
    let here = ih * p.W + iw;
    var acc = 0.0;
    for (var oh = ohLo; oh <= ohHi; oh++) {
      for (var ow = owLo; ow <= owHi; ow++) {
        let o = (nc * p.OH + u32(oh)) * p.OW + u32(ow);
        if (arg[o] == here) { acc += dy[o]; }
      }
    }
    dx[i] = acc;`,
});

/** Average pooling, count_include_pad: window sum / k^2; total = outputs. Also its JVP. */
export const avgPoolForward = kernel({
  name: "avgpool-forward",
  storage: [["x", "read"], ["y", "write"]],
  uniforms,
  workgroupSize: 256,
  main: `${OUTPUT_WINDOW}
    var acc = 0.0;
    for (var kh = 0; kh < i32(p.k); kh++) {
      let ih = h0 + kh;
      if (ih < 0 || ih >= i32(p.H)) { continue; }
      for (var kw = 0; kw < i32(p.k); kw++) {
        let iw = w0 + kw;
        if (iw < 0 || iw >= i32(p.W)) { continue; }
        acc += x[(nc * p.H + u32(ih)) * p.W + u32(iw)];
      }
    }
    y[i] = acc / f32(p.k * p.k);`,
});

/** dx[i] = sum of dy[o] / k^2 over the windows o that hold i; total = inputs. */
export const avgPoolBackward = kernel({
  name: "avgpool-backward",
  storage: [["dy", "read"], ["dx", "write"]],
  uniforms,
  workgroupSize: 256,
  main: `${INPUT_WINDOWS}
    var acc = 0.0;
    for (var oh = ohLo; oh <= ohHi; oh++) {
      for (var ow = owLo; ow <= owHi; ow++) {
        acc += dy[(nc * p.OH + u32(oh)) * p.OW + u32(ow)];
      }
    }
    dx[i] = acc / f32(p.k * p.k);`,
});
