/**
 * Declarations of the per-channel bias of [N, C, ...] tensors (inner = product of the axes after
 * C): y = x + b[c], and the bias gradient db[c] = sum of dy over N and inner. The sum runs in
 * one workgroup per channel with a fixed strided split and a fixed tree, so its bits do not
 * change from run to run.
 */
import { kernel, kernelFamily } from "../src/gpu/kernel.ts";

const WG = 256;

/** y[i] = x[i] + b[c(i)]; without x, y[i] = b[c(i)] (the tangent of the bias alone). */
export const channelBiasAdd = kernelFamily((withX: boolean) => ({
  name: withX ? "channel-bias" : "channel-bias-broadcast",
  storage: withX ? [["x", "read"], ["b", "read"], ["y", "write"]] : [["b", "read"], ["y", "write"]],
  uniforms: [["total", "u32"], ["C", "u32"], ["inner", "u32"]],
  workgroupSize: 256,
  main: `
    let i = flatIndex(gid, nwg);
    if (i >= p.total) { return; }
    y[i] = ${withX ? "x[i] + " : ""}b[(i / p.inner) % p.C];`,
}));

/** db[c] = sum over n and the inner axes of dy; one workgroup per channel. */
export const channelBiasGrad = kernel({
  name: "channel-bias-grad",
  storage: [["dy", "read"], ["db", "write"]],
  uniforms: [["N", "u32"], ["C", "u32"], ["inner", "u32"]],
  workgroupSize: WG,
  helpers: `var<workgroup> red: array<f32, ${WG}>;`,
  main: `
    let c = wid.x;
    let t = lidx;
    let M = p.N * p.inner;
    var s = 0.0;
    for (var m = t; m < M; m += ${WG}u) {
      s += dy[((m / p.inner) * p.C + c) * p.inner + m % p.inner];
    }
    red[t] = s;
    for (var step = ${WG / 2}u; step > 0u; step = step >> 1u) {
      workgroupBarrier();
      if (t < step) { red[t] += red[t + step]; }
    }
    if (t == 0u) { db[c] = red[0]; }`,
});
