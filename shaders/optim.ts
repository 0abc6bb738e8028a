/**
 * Declarations of the optimizer kernels: one fused SGD kernel over the flat parameter buffer
 * (PyTorch semantics, dampening 0): g' = g + wd * p; buf = momentum * buf + g';
 * d = nesterov ? g' + momentum * buf : buf; p -= lr * d.
 */
import { kernel } from "../src/gpu/kernel.ts";

/** Fused SGD with momentum, Nesterov option and weight decay. */
export const sgdKernel = kernel({
  name: "sgd",
  storage: [["g", "read"], ["param", "write"], ["buf", "write"]],
  uniforms: [["n", "u32"], ["nesterov", "u32"], ["lr", "f32"], ["momentum", "f32"], ["wd", "f32"]],
  workgroupSize: 256,
  main: `
    let i = flatIndex(gid, nwg);
    if (i >= p.n) { return; }
    let gi = g[i] + p.wd * param[i];
    let b = p.momentum * buf[i] + gi;
    buf[i] = b;
    let d = select(b, gi + p.momentum * b, p.nesterov == 1u);
    param[i] = param[i] - p.lr * d;`,
});
