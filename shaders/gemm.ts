/**
 * The one GEMM template: C[m, n] = sum_k A(m, k) * B(k, n).
 *
 * Matmul, conv forward, conv dX and conv dW are all instances; they differ only in how A and B
 * are addressed and where C is stored (implicit GEMM, as TensorFlow.js's WebGPU backend builds
 * convolutions). Address arithmetic is hoisted: `rowA(m)` and `colB(n)` run once per thread and
 * row/column, `kA(k)` / `kB(k)` once per k step, and the loads combine them. Every hook returns a
 * vec4<i32> of whatever it wants to carry.
 *
 * Each thread keeps a TM x TN block of accumulators in registers. Columns are strided by the
 * workgroup width so neighbouring threads touch neighbouring addresses (coalesced on GPUs,
 * contiguous SIMD lanes on llvmpipe). Split-K (gridZ > 1) writes partial sums to
 * `partial[z][m][n]`; a second kernel adds them in a fixed order, so results never depend on
 * scheduling (no float atomics).
 *
 * Both kernels are declarations ({@linkcode gemmKernel}, {@linkcode gemmReduceKernel}) whose
 * shape constants are substituted as literals (`KernelDecl.constants`): no uniform buffer.
 */
import { type KernelDecl, kernelFamily, type StorageDecl } from "../src/gpu/kernel.ts";

/** Tile shape of one GEMM kernel; chosen per adapter and shape (src/ops/gemm.ts). */
export interface GemmTile {
  /** Threads per workgroup along n (x). */
  wx: number;
  /** Threads per workgroup along m (y). */
  wy: number;
  /** Outputs per thread along m. */
  tm: number;
  /** Outputs per thread along n. */
  tn: number;
}

/** What distinguishes one GEMM instance from another. */
export interface GemmHooks {
  /**
   * Names of the instance's shape constants, after M, N, K, kChunk; hooks read them as `p.NAME`
   * and each pipeline is specialised on their values (`KernelDecl.constants`).
   */
  params: string[];
  /** Extra storage bindings after A and B: [name, "read" | "write", wgslType]. */
  extraBindings?: StorageDecl[];
  /** WGSL bodies: fn rowA(m: u32) -> vec4<i32>, fn kA(k: u32) -> vec4<i32>, ... */
  rowA: string;
  kA: string;
  loadA: string; // fn loadA(r: vec4<i32>, k: vec4<i32>) -> f32
  colB: string;
  kB: string;
  loadB: string; // fn loadB(k: vec4<i32>, c: vec4<i32>) -> f32
  /**
   * Optional vector load of A along k: fn loadA4(r, k) -> vec4<f32> = A(m, k..k+3), reading `A`
   * as array<vec4<f32>>. Used when `alignedA` holds for the shape and K and the split length are
   * multiples of 4: one 16-byte load instead of four (llvmpipe gathers each lane's load apart).
   * The multiply-adds keep their k order, so results are bit-identical to the scalar path.
   */
  loadA4?: string;
  /**
   * Whether every A(m, k) with k % 4 == 0 starts a 16-byte-aligned vec4 for these constants, given
   * K % 4 == 0 (default: yes, as for rows of length K).
   */
  alignedA?: (consts: GemmConsts) => boolean;
  /** fn store(m: u32, n: u32, v: f32): writes the final value into `C` (and extras). */
  store: string;
}

/** Shape constants every GEMM instance has, before the instance's own `params`. */
export const GEMM_BASE_PARAMS = ["M", "N", "K", "kChunk"];

/**
 * Values of the shape constants: GEMM_BASE_PARAMS, the instance's params (and `splits`), in
 * that order. Hooks read them as `p.NAME`; they become literals in the WGSL.
 */
export type GemmConsts = Record<string, number>;

/**
 * How a GEMM kernel feeds its multiply-adds: "register" keeps each thread's operands in
 * registers and loads them straight from storage (right for llvmpipe, where a workgroup is SIMD
 * lanes on one core and workgroup memory is just more memory); "workgroup" stages a k-slab of A
 * and B tiles in workgroup memory, loaded cooperatively by every thread of the workgroup (A as
 * vec4 where the instance allows), so each global value is read once per workgroup instead of
 * once per thread that uses it (what a discrete GPU wants).
 */
export type GemmFamily = "register" | "workgroup";

/** One GEMM kernel to declare: an instance's hooks on a tile, split or not, for one shape. */
export interface GemmVariant {
  /** Names the instance in pipeline labels and profiles (e.g. "conv-fwd:set"). */
  label: string;
  /** The instance's hooks. */
  hooks: GemmHooks;
  /** Tile shape. */
  tile: GemmTile;
  /** Split-K: C is the partial-sum buffer and `store` is not used. */
  split: boolean;
  /** The shape constants. */
  consts: GemmConsts;
  /** Read A four k at a time (see {@linkcode GemmHooks.loadA4}). */
  vectorA: boolean;
  /** Kernel family (default "register"). */
  family?: GemmFamily;
  /** The workgroup family's k-slab depth (a multiple of 4; default 16). */
  kTile?: number;
}

/** Identities of hooks objects: two instances never share kernels by an accident of labels. */
const hookIds = new WeakMap<GemmHooks, number>();
let nextHooksId = 1;
function hooksId(hooks: GemmHooks): number {
  let id = hookIds.get(hooks);
  if (id === undefined) hookIds.set(hooks, id = nextHooksId++);
  return id;
}

/**
 * Whether a GEMM of these constants loads A as vec4 along k (see {@linkcode GemmHooks.loadA4});
 * `offsetBytes` is the byte offset A is bound at.
 */
export function usesVectorA(hooks: GemmHooks, consts: GemmConsts, offsetBytes: number): boolean {
  return hooks.loadA4 !== undefined && consts.K % 4 === 0 && consts.kChunk % 4 === 0 &&
    offsetBytes % 16 === 0 && (hooks.alignedA?.(consts) ?? true);
}

/** The declaration of a GEMM kernel (see {@linkcode GemmVariant}). */
function gemmDecl(v: GemmVariant): KernelDecl {
  const { tile, split, consts, vectorA } = v;
  const { wx, wy, tm, tn } = tile;
  const { M, N } = consts;
  // Whole tiles only: no row / column masks at all.
  const fullM = M % (wy * tm) === 0;
  const fullN = N % (wx * tn) === 0;
  const lines: string[] = [];
  const acc = (i: number, j: number) => `acc_${i}_${j}`;
  // The host fits tm x tn to the shape (src/ops/gemm.ts fitTile): no thread has a row or column
  // that lies past M or N in every workgroup.
  const rows = tm, cols = tn;
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) lines.push(`var ${acc(i, j)} = 0.0;`);
  }
  for (let i = 0; i < rows; i++) {
    lines.push(`let m${i} = mBase + ${i * wy}u;`);
    if (fullM) lines.push(`let r${i} = rowA(m${i});`);
    else {
      lines.push(`let okM${i} = m${i} < p.M;`);
      lines.push(`let r${i} = rowA(min(m${i}, p.M - 1u));`);
    }
  }
  for (let j = 0; j < cols; j++) {
    lines.push(`let n${j} = nBase + ${j * wx}u;`);
    if (fullN) lines.push(`let c${j} = colB(n${j});`);
    else {
      lines.push(`let okN${j} = n${j} < p.N;`);
      lines.push(`let c${j} = colB(min(n${j}, p.N - 1u));`);
    }
  }
  const loadAs = (k: string) => {
    for (let i = 0; i < rows; i++) {
      const load = vectorA ? `loadA4(r${i}, ${k})` : `loadA(r${i}, ${k})`;
      const zero = vectorA ? "vec4<f32>()" : "0.0";
      lines.push(`let a${i} = ${fullM ? load : `select(${zero}, ${load}, okM${i})`};`);
    }
  };
  // One k step: B's loads, then every multiply-add of the step (a${i}${lane} is A(m_i, k)).
  const step = (lane: string) => {
    for (let j = 0; j < cols; j++) {
      lines.push(
        fullN
          ? `let b${j}${lane} = loadB(kb${lane}, c${j});`
          : `let b${j}${lane} = select(0.0, loadB(kb${lane}, c${j}), okN${j});`,
      );
    }
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < cols; j++) {
        const a = vectorA ? `a${i}.${lane}` : `a${i}`;
        lines.push(`${acc(i, j)} = fma(${a}, b${j}${lane}, ${acc(i, j)});`);
      }
    }
  };
  if (vectorA) {
    lines.push(`for (var k = kBegin; k < kEnd; k += 4u) {`, `let ka = kA(k);`);
    loadAs("ka");
    ["x", "y", "z", "w"].forEach((lane, d) => {
      lines.push(`let kb${lane} = kB(k + ${d}u);`);
      step(lane);
    });
  } else {
    lines.push(`for (var k = kBegin; k < kEnd; k++) {`, `let ka = kA(k);`, `let kb = kB(k);`);
    loadAs("ka");
    step("");
  }
  lines.push(`}`);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      const target = split
        ? `C[(wid.z * p.M + m${i}) * p.N + n${j}] = ${acc(i, j)};`
        : `store(m${i}, n${j}, ${acc(i, j)});`;
      const ok = [fullM ? "" : `okM${i}`, fullN ? "" : `okN${j}`].filter((c) => c);
      lines.push(ok.length ? `if (${ok.join(" && ")}) { ${target} }` : target);
    }
  }
  return {
    ...gemmFrame(v, "gemm"),
    main: `
let mBase = wid.y * ${wy * tm}u + lid.y;
let nBase = wid.x * ${wx * tn}u + lid.x;
${kRange(v)}
${lines.join("\n")}`,
  };
}

/** `kBegin` and `kEnd` of this workgroup's part of K. */
function kRange({ split, consts: { K, kChunk } }: GemmVariant): string {
  const kEnd = split
    ? (K % kChunk === 0 ? "kBegin + p.kChunk" : "min(p.K, kBegin + p.kChunk)")
    : "p.K";
  return `let kBegin = ${split ? "wid.z * p.kChunk" : "0u"};\nlet kEnd = ${kEnd};`;
}

/** Everything of a GEMM declaration but its `main`: name, bindings, hook functions. */
function gemmFrame(v: GemmVariant, prefix: string, helpers = ""): Omit<KernelDecl, "main"> {
  const { hooks, tile: { wx, wy, tm, tn }, split, consts, vectorA } = v;
  const load = vectorA
    ? `fn loadA4(r: vec4<i32>, k: vec4<i32>) -> vec4<f32> { ${hooks.loadA4} }`
    : `fn loadA(r: vec4<i32>, k: vec4<i32>) -> f32 { ${hooks.loadA} }`;
  return {
    name: `${prefix}:${v.label}:${wx}x${wy}x${tm}x${tn}:${split}${vectorA ? ":a4" : ""}:${
      Object.values(consts).join(",")
    }`,
    storage: [
      ["A", "read", vectorA ? "array<vec4<f32>>" : "array<f32>"],
      ["B", "read"],
      ...(hooks.extraBindings ?? []),
      ["C", "write"],
    ],
    workgroupSize: [wx, wy, 1],
    constants: consts,
    helpers: `
fn rowA(m: u32) -> vec4<i32> { ${hooks.rowA} }
fn kA(k: u32) -> vec4<i32> { ${hooks.kA} }
${load}
fn colB(n: u32) -> vec4<i32> { ${hooks.colB} }
fn kB(k: u32) -> vec4<i32> { ${hooks.kB} }
fn loadB(k: vec4<i32>, c: vec4<i32>) -> f32 { ${hooks.loadB} }
${split ? "" : `fn store(m: u32, n: u32, v: f32) { ${hooks.store} }`}
${helpers}`,
  };
}

/**
 * The cooperative loads of one operand's slab into workgroup memory `dst`: `rows` x `kt`
 * values (rows of A along m, or columns of B along n), element e of the slab loaded by thread
 * e % threads. Each thread's rows / columns and k offsets are the same in every slab, so their
 * `rowA` / `colB` run once, before the k loop (`pre`); `kA` / `kB` run once per slab (`body`).
 * With `vec`, A is read four k at a time.
 */
function stageLines(
  operand: "A" | "B",
  rows: number,
  kt: number,
  threads: number,
  vec: boolean,
  full: { rows: boolean; k: boolean },
): { pre: string[]; body: string[] } {
  const pre: string[] = [], body: string[] = [];
  const width = vec ? 4 : 1;
  const perRow = kt / width; // loads per row of the slab
  const count = rows * perRow;
  const [base, limit, row, at] = operand === "A"
    ? ["mBase0", "p.M", "rowA", "As"]
    : ["nBase0", "p.N", "colB", "Bs"];
  for (let j = 0; j * threads < count; j++) {
    const e = `(lidx + ${j * threads}u)`;
    const guard = (j + 1) * threads > count ? `${e} < ${count}u` : "";
    const name = `${operand.toLowerCase()}${j}`;
    pre.push(`let ${name}r = ${e} / ${perRow}u;`);
    pre.push(`let ${name}k = (${e} % ${perRow}u) * ${width}u;`);
    pre.push(`let ${name}ok = ${full.rows ? "true" : `${base} + ${name}r < ${limit}`};`);
    pre.push(`let ${name}h = ${row}(min(${base} + ${name}r, ${limit} - 1u));`);
    const k = `k0 + ${name}k`;
    const ok = [`${name}ok`, full.k ? "" : `${k} < kEnd`].filter((c) => c).join(" && ");
    const kk = full.k ? k : `min(${k}, kEnd - 1u)`;
    const load = operand === "A"
      ? (vec ? `loadA4(${name}h, kA(${kk}))` : `loadA(${name}h, kA(${kk}))`)
      : `loadB(kB(${kk}), ${name}h)`;
    const zero = vec ? "vec4<f32>()" : "0.0";
    const lines = [`let ${name}v = select(${zero}, ${load}, ${ok});`];
    const stride = operand === "A" ? "BM" : "BN";
    if (vec) {
      ["x", "y", "z", "w"].forEach((lane, d) =>
        lines.push(`${at}[(${name}k + ${d}u) * ${stride} + ${name}r] = ${name}v.${lane};`)
      );
    } else lines.push(`${at}[${name}k * ${stride} + ${name}r] = ${name}v;`);
    body.push(guard ? `if (${guard}) { ${lines.join(" ")} }` : lines.join("\n"));
  }
  return { pre, body };
}

/**
 * The workgroup family (see {@linkcode GemmFamily}): per k-slab of depth kt, every thread loads
 * its share of the A slab (BM x kt) and the B slab (kt x BN) into workgroup memory, then each
 * thread runs its TM x TN block of multiply-adds from there, k in order (so each output's sum
 * has the same order as in the register family).
 */
function gemmWorkgroupDecl(v: GemmVariant): KernelDecl {
  const { tile: { wx, wy, tm, tn }, split, consts, vectorA } = v;
  const { M, N, K, kChunk } = consts;
  const kt = v.kTile ?? 16;
  const BM = wy * tm, BN = wx * tn, threads = wx * wy;
  const span = split ? kChunk : K;
  const fullK = span % kt === 0 && (!split || K % kChunk === 0);
  const a = stageLines("A", BM, kt, threads, vectorA, { rows: M % BM === 0, k: fullK });
  const b = stageLines("B", BN, kt, threads, false, { rows: N % BN === 0, k: fullK });
  const lines: string[] = [];
  for (let i = 0; i < tm; i++) for (let j = 0; j < tn; j++) lines.push(`var acc_${i}_${j} = 0.0;`);
  lines.push(...a.pre, ...b.pre);
  lines.push(`for (var k0 = kBegin; k0 < kEnd; k0 += ${kt}u) {`, ...a.body, ...b.body);
  lines.push(`workgroupBarrier();`, `for (var kk = 0u; kk < ${kt}u; kk++) {`);
  for (let i = 0; i < tm; i++) lines.push(`let a${i} = As[kk * BM + lid.y + ${i * wy}u];`);
  for (let j = 0; j < tn; j++) lines.push(`let b${j} = Bs[kk * BN + lid.x + ${j * wx}u];`);
  for (let i = 0; i < tm; i++) {
    for (let j = 0; j < tn; j++) lines.push(`acc_${i}_${j} = fma(a${i}, b${j}, acc_${i}_${j});`);
  }
  lines.push(`}`, `workgroupBarrier();`, `}`);
  for (let i = 0; i < tm; i++) {
    for (let j = 0; j < tn; j++) {
      const m = `mBase0 + lid.y + ${i * wy}u`, n = `nBase0 + lid.x + ${j * wx}u`;
      const target = split
        ? `C[(wid.z * p.M + ${m}) * p.N + ${n}] = acc_${i}_${j};`
        : `store(${m}, ${n}, acc_${i}_${j});`;
      lines.push(`if (${m} < p.M && ${n} < p.N) { ${target} }`);
    }
  }
  const shared = `
const BM = ${BM}u;
const BN = ${BN}u;
var<workgroup> As: array<f32, ${BM * kt}>;
var<workgroup> Bs: array<f32, ${BN * kt}>;`;
  return {
    ...gemmFrame(v, `gemm-wg${kt}`, shared),
    main: `
let mBase0 = wid.y * BM;
let nBase0 = wid.x * BN;
${kRange(v)}
${lines.join("\n")}`,
  };
}

/** The values of a variant's shape constants, in order: the shape part of keys and names. */
function shapeKey(v: GemmVariant): string {
  return Object.values(v.consts).join(",");
}

/** The GEMM kernels, one per variant (see {@linkcode GemmVariant}) of either family. */
export const gemmKernel = kernelFamily(
  (v: GemmVariant) => (v.family === "workgroup" ? gemmWorkgroupDecl(v) : gemmDecl(v)),
  (v) => {
    const { wx, wy, tm, tn } = v.tile;
    const family = v.family === "workgroup" ? `wg${v.kTile ?? 16}` : "reg";
    return `${hooksId(v.hooks)}:${family}:${wx}x${wy}x${tm}x${tn}:${v.split}:${v.vectorA}:${
      shapeKey(v)
    }`;
  },
);

/**
 * Adds `consts.splits` partial GEMM results in index order and applies the instance's `store`:
 * deterministic split-K. The variant's `tile`, `split` and `vectorA` are not used.
 */
export const gemmReduceKernel = kernelFamily((v: GemmVariant): KernelDecl => ({
  name: `gemm-reduce:${v.label}:${shapeKey(v)}`,
  storage: [["partial", "read"], ...(v.hooks.extraBindings ?? []), ["C", "write"]],
  workgroupSize: 64,
  constants: v.consts,
  helpers: `fn store(m: u32, n: u32, v: f32) { ${v.hooks.store} }`,
  main: `
    let i = flatIndex(gid, nwg);
    let total = p.M * p.N;
    if (i >= total) { return; }
    var s = 0.0;
    for (var z = 0u; z < p.splits; z++) { s += partial[z * total + i]; }
    store(i / p.N, i % p.N, s);`,
}), (v) => `${hooksId(v.hooks)}:${shapeKey(v)}`);
