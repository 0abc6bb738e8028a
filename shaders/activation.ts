/**
 * Declarations of the smooth activations, written so no intermediate overflows: with
 * e = exp(-|x|) (or exp(-2|x|)), sigmoid = 1 / (1 + e) or e / (1 + e) by sign, and
 * tanh = sign(x) (1 - e) / (1 + e) away from 0 (the builtin near 0, where it is exact enough
 * and the quotient would lose digits). Their derivatives are functions of the output y.
 */
import { kernelFamily } from "../src/gpu/kernel.ts";

/** Which activation. */
export type Activation = "sigmoid" | "tanh";

const forward: Record<Activation, string> = {
  sigmoid: `
    let e = exp(-abs(v));
    out[i] = select(e / (1.0 + e), 1.0 / (1.0 + e), v >= 0.0);`,
  tanh: `
    let e = exp(-2.0 * abs(v));
    out[i] = select(sign(v) * (1.0 - e) / (1.0 + e), tanh(v), abs(v) < 0.5);`,
};

const derivative: Record<Activation, string> = {
  sigmoid: "y[i] * (1.0 - y[i])",
  tanh: "1.0 - y[i] * y[i]",
};

/** out = act(x). */
export const activationForward = kernelFamily((act: Activation) => ({
  name: `${act}-forward`,
  storage: [["x", "read"], ["out", "write"]],
  uniforms: [["n", "u32"]],
  workgroupSize: 256,
  main: `
    let i = flatIndex(gid, nwg);
    if (i >= p.n) { return; }
    let v = x[i];${forward[act]}`,
}));

/** out = g * act'(x) from the output y: the backward (g = dy) and the JVP (g = x'). */
export const activationDerivative = kernelFamily((act: Activation) => ({
  name: `${act}-derivative`,
  storage: [["g", "read"], ["y", "read"], ["out", "write"]],
  uniforms: [["n", "u32"]],
  workgroupSize: 256,
  main: `
    let i = flatIndex(gid, nwg);
    if (i >= p.n) { return; }
    out[i] = g[i] * (${derivative[act]});`,
}));
