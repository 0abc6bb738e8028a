/** Declarations of row normalisation (LDAM's cosine classifier): one thread per row, fixed order. */
import { kernelFamily } from "../src/gpu/kernel.ts";

/**
 * forward: y = x / max(||x||, 1e-12). project: out = (g - y <y, g>) / max(||x||, 1e-12),
 * which is both the VJP and the JVP of the normalisation.
 */
export const rowNormalizeKernel = kernelFamily((kind: "forward" | "project") => ({
  name: `rownorm:${kind}`,
  storage: kind === "forward"
    ? [["x", "read"], ["y", "write"]] as const
    : [["g", "read"], ["x", "read"], ["y", "read"], ["out", "write"]] as const,
  uniforms: [["R", "u32"], ["D", "u32"]] as const,
  workgroupSize: 64,
  main: `
    let r = flatIndex(gid, nwg);
    if (r >= p.R) { return; }
    let base = r * p.D;
    var ss = 0.0;
    for (var j = 0u; j < p.D; j++) { ss += x[base + j] * x[base + j]; }
    let norm = max(sqrt(ss), 1e-12);
    ${
    kind === "forward"
      ? `for (var j = 0u; j < p.D; j++) { y[base + j] = x[base + j] / norm; }`
      : `var dot = 0.0;
    for (var j = 0u; j < p.D; j++) { dot += y[base + j] * g[base + j]; }
    for (var j = 0u; j < p.D; j++) { out[base + j] = (g[base + j] - y[base + j] * dot) / norm; }`
  }`,
}));
