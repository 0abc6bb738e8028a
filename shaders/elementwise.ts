/** Declarations of the elementwise family: generic maps, option-A shortcut, average pooling. */
import { kernel, kernelFamily } from "../src/gpu/kernel.ts";

const INPUT_NAMES = ["a", "b", "c", "d"];

/** What makes one map kernel: its label, number of inputs and expression. */
export interface MapVariant {
  /** Label of the pipeline (profiles); kernels are told apart by their code. */
  name: string;
  /** Inputs a..d read by `expr` (0 to 4). */
  inputs: number;
  /** WGSL expression of out[i] over a[i].., out[i] and the scalars p.s0..p.s2. */
  expr: string;
}

/** out[i] = expr over up to four inputs a..d and the scalars p.s0..p.s2. */
export const mapKernel = kernelFamily((v: MapVariant) => ({
  name: `map:${v.name}`,
  storage: [
    ...INPUT_NAMES.slice(0, v.inputs).map((name) => [name, "read"] as const),
    ["out", "write"] as const,
  ],
  uniforms: [["n", "u32"], ["s0", "f32"], ["s1", "f32"], ["s2", "f32"]] as const,
  workgroupSize: 256,
  main: `
    let i = flatIndex(gid, nwg);
    if (i >= p.n) { return; }
    out[i] = ${v.expr};`,
}));

/**
 * Option-A shortcut. forward: y[n,c,h,w] = x[n,c-pad,2h,2w] inside the kept channels, else 0.
 * backward: dx[n,c,h,w] = dy[n,c+pad,h/2,w/2] at even h and w, else 0.
 */
export const shortcutKernel = kernelFamily((direction: "forward" | "backward") => ({
  name: `shortcut:${direction}`,
  storage: [["x", "read"], ["dst", "write"]] as const,
  uniforms: [
    ["N", "u32"],
    ["C", "u32"],
    ["H", "u32"],
    ["W", "u32"],
    ["CO", "u32"],
    ["OH", "u32"],
    ["OW", "u32"],
    ["pad", "u32"],
    ["total", "u32"],
  ] as const,
  workgroupSize: 256,
  main: `
    let i = flatIndex(gid, nwg);
    if (i >= p.total) { return; }
    ${
    direction === "forward"
      ? `let ow = i % p.OW; let oh = (i / p.OW) % p.OH; let co = (i / (p.OW * p.OH)) % p.CO;
    let n = i / (p.OW * p.OH * p.CO);
    let inside = co >= p.pad && co < p.pad + p.C;
    let src = ((n * p.C + select(0u, co - p.pad, inside)) * p.H + 2u * oh) * p.W + 2u * ow;
    dst[i] = select(0.0, x[src], inside);`
      : `let w = i % p.W; let h = (i / p.W) % p.H; let c = (i / (p.W * p.H)) % p.C;
    let n = i / (p.W * p.H * p.C);
    let kept = (h % 2u) == 0u && (w % 2u) == 0u;
    let src = ((n * p.CO + c + p.pad) * p.OH + h / 2u) * p.OW + w / 2u;
    dst[i] = select(0.0, x[select(0u, src, kept)], kept);`
  }`,
}));

/** Global average pooling over H*W: forward sums in order; backward broadcasts g / HW. */
export const avgPoolKernel = kernelFamily((direction: "forward" | "backward") => ({
  name: `pool:${direction}`,
  storage: [["x", "read"], ["dst", "write"]] as const,
  uniforms: [["NC", "u32"], ["HW", "u32"]] as const,
  workgroupSize: 256,
  main: `
    let i = flatIndex(gid, nwg);
    ${
    direction === "forward"
      ? `if (i >= p.NC) { return; }
    var s = 0.0;
    for (var j = 0u; j < p.HW; j++) { s += x[i * p.HW + j]; }
    dst[i] = s / f32(p.HW);`
      : `if (i >= p.NC * p.HW) { return; }
    dst[i] = x[i / p.HW] / f32(p.HW);`
  }`,
}));

/** Sums the rows of a [R, C] matrix, one thread per column, rows in order (bias gradients). */
export const columnSumsKernel = kernel({
  name: "colsum",
  storage: [["a", "read"], ["out", "write"]],
  uniforms: [["R", "u32"], ["C", "u32"]],
  workgroupSize: 64,
  main: `
    let c = gid.x;
    if (c >= p.C) { return; }
    var s = 0.0;
    for (var r = 0u; r < p.R; r++) { s += a[r * p.C + c]; }
    out[c] = s;`,
});
