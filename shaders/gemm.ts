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
 */

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
   * and each pipeline is specialised on their values (see {@linkcode specialize}).
   */
  params: string[];
  /** Extra storage bindings after A and B: [name, "read" | "write", wgslType]. */
  extraBindings?: [string, "read" | "write", string][];
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

/** Values of the shape constants: GEMM_BASE_PARAMS, the instance's params (and `splits`). */
export type GemmConsts = Record<string, number>;

/**
 * Specialises WGSL on the shape: every `p.NAME` becomes the literal `VALUEu`, so divisions and
 * modulos by shape constants compile to multiplies and shifts and bounds checks fold. Pipelines
 * are keyed by the values (src/ops/gemm.ts); there is no uniform buffer.
 */
function specialize(code: string, consts: GemmConsts): string {
  return code.replace(/\bp\.([A-Za-z_]\w*)/g, (_, name: string) => {
    const v = consts[name];
    if (v === undefined || !Number.isInteger(v) || v < 0 || v > 0xffffffff) {
      throw new Error(`gemm: no u32 value for shape constant p.${name}`);
    }
    return `${v}u`;
  });
}

function bindingLines(extra: [string, "read" | "write", string][], first: number): string[] {
  return extra.map(([name, mode, type], i) =>
    `@group(0) @binding(${first + i}) var<storage, ${
      mode === "read" ? "read" : "read_write"
    }> ${name}: ${type};`
  );
}

/**
 * Whether a GEMM of these constants loads A as vec4 along k (see {@linkcode GemmHooks.loadA4});
 * `offsetBytes` is the byte offset A is bound at.
 */
export function usesVectorA(hooks: GemmHooks, consts: GemmConsts, offsetBytes: number): boolean {
  return hooks.loadA4 !== undefined && consts.K % 4 === 0 && consts.kChunk % 4 === 0 &&
    offsetBytes % 16 === 0 && (hooks.alignedA?.(consts) ?? true);
}

/**
 * WGSL of a GEMM instance. With `split` true, C is the partial-sum buffer and `store` is not
 * used (see {@linkcode gemmReduceSource}). With `vectorA`, A is read four k at a time.
 */
export function gemmSource(
  hooks: GemmHooks,
  tile: GemmTile,
  split: boolean,
  consts: GemmConsts,
  vectorA = false,
): string {
  const { wx, wy, tm, tn } = tile;
  const { M, N, K, kChunk } = consts;
  const extra = hooks.extraBindings ?? [];
  const bindings = [
    `@group(0) @binding(0) var<storage, read> A: array<${vectorA ? "vec4<f32>" : "f32"}>;`,
    `@group(0) @binding(1) var<storage, read> B: array<f32>;`,
    ...bindingLines(extra, 2),
    `@group(0) @binding(${2 + extra.length}) var<storage, read_write> C: array<f32>;`,
  ];
  // Whole tiles only: no row / column masks at all.
  const fullM = M % (wy * tm) === 0;
  const fullN = N % (wx * tn) === 0;
  const lines: string[] = [];
  const acc = (i: number, j: number) => `acc_${i}_${j}`;
  // The host fits tm x tn to the shape (src/ops/gemm.ts fitTile): no thread has a row or column
  // that lies past M or N in every workgroup.
  const rows = tm, cols = tn;
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) lines.push(`  var ${acc(i, j)} = 0.0;`);
  }
  for (let i = 0; i < rows; i++) {
    lines.push(`  let m${i} = mBase + ${i * wy}u;`);
    if (fullM) lines.push(`  let r${i} = rowA(m${i});`);
    else {
      lines.push(`  let okM${i} = m${i} < p.M;`);
      lines.push(`  let r${i} = rowA(min(m${i}, p.M - 1u));`);
    }
  }
  for (let j = 0; j < cols; j++) {
    lines.push(`  let n${j} = nBase + ${j * wx}u;`);
    if (fullN) lines.push(`  let c${j} = colB(n${j});`);
    else {
      lines.push(`  let okN${j} = n${j} < p.N;`);
      lines.push(`  let c${j} = colB(min(n${j}, p.N - 1u));`);
    }
  }
  const loadAs = (k: string) => {
    for (let i = 0; i < rows; i++) {
      const load = vectorA ? `loadA4(r${i}, ${k})` : `loadA(r${i}, ${k})`;
      const zero = vectorA ? "vec4<f32>()" : "0.0";
      lines.push(`    let a${i} = ${fullM ? load : `select(${zero}, ${load}, okM${i})`};`);
    }
  };
  // One k step: B's loads, then every multiply-add of the step (a${i}${lane} is A(m_i, k)).
  const step = (lane: string) => {
    for (let j = 0; j < cols; j++) {
      lines.push(
        fullN
          ? `    let b${j}${lane} = loadB(kb${lane}, c${j});`
          : `    let b${j}${lane} = select(0.0, loadB(kb${lane}, c${j}), okN${j});`,
      );
    }
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < cols; j++) {
        const a = vectorA ? `a${i}.${lane}` : `a${i}`;
        lines.push(`    ${acc(i, j)} = fma(${a}, b${j}${lane}, ${acc(i, j)});`);
      }
    }
  };
  if (vectorA) {
    lines.push(`  for (var k = kBegin; k < kEnd; k += 4u) {`);
    lines.push(`    let ka = kA(k);`);
    loadAs("ka");
    ["x", "y", "z", "w"].forEach((lane, d) => {
      lines.push(`    let kb${lane} = kB(k + ${d}u);`);
      step(lane);
    });
  } else {
    lines.push(`  for (var k = kBegin; k < kEnd; k++) {`);
    lines.push(`    let ka = kA(k);`);
    lines.push(`    let kb = kB(k);`);
    loadAs("ka");
    step("");
  }
  lines.push(`  }`);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      const target = split
        ? `C[(wg.z * p.M + m${i}) * p.N + n${j}] = ${acc(i, j)};`
        : `store(m${i}, n${j}, ${acc(i, j)});`;
      const ok = [fullM ? "" : `okM${i}`, fullN ? "" : `okN${j}`].filter((c) => c);
      lines.push(ok.length ? `  if (${ok.join(" && ")}) { ${target} }` : `  ${target}`);
    }
  }
  const kEnd = split
    ? (K % kChunk === 0 ? "kBegin + p.kChunk" : "min(p.K, kBegin + p.kChunk)")
    : "p.K";
  return specialize(
    `${bindings.join("\n")}
fn rowA(m: u32) -> vec4<i32> { ${hooks.rowA} }
fn kA(k: u32) -> vec4<i32> { ${hooks.kA} }
${
      vectorA
        ? `fn loadA4(r: vec4<i32>, k: vec4<i32>) -> vec4<f32> { ${hooks.loadA4} }`
        : `fn loadA(r: vec4<i32>, k: vec4<i32>) -> f32 { ${hooks.loadA} }`
    }
fn colB(n: u32) -> vec4<i32> { ${hooks.colB} }
fn kB(k: u32) -> vec4<i32> { ${hooks.kB} }
fn loadB(k: vec4<i32>, c: vec4<i32>) -> f32 { ${hooks.loadB} }
${split ? "" : `fn store(m: u32, n: u32, v: f32) { ${hooks.store} }`}
@compute @workgroup_size(${wx}, ${wy})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let mBase = wg.y * ${wy * tm}u + lid.y;
  let nBase = wg.x * ${wx * tn}u + lid.x;
  let kBegin = ${split ? "wg.z * p.kChunk" : "0u"};
  let kEnd = ${kEnd};
${lines.join("\n")}
}
`,
    consts,
  );
}

/**
 * WGSL that adds `splits` partial GEMM results in index order and applies the instance's
 * `store`: deterministic split-K.
 */
export function gemmReduceSource(hooks: GemmHooks, consts: GemmConsts): string {
  const extra = hooks.extraBindings ?? [];
  return specialize(
    `@group(0) @binding(0) var<storage, read> partial: array<f32>;
${bindingLines(extra, 1).join("\n")}
@group(0) @binding(${1 + extra.length}) var<storage, read_write> C: array<f32>;
fn store(m: u32, n: u32, v: f32) { ${hooks.store} }
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 64u;
  let total = p.M * p.N;
  if (i >= total) { return; }
  var s = 0.0;
  for (var z = 0u; z < p.splits; z++) { s += partial[z * total + i]; }
  store(i / p.N, i % p.N, s);
}
`,
    consts,
  );
}
