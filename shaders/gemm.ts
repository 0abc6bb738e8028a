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
  /** Threads per workgroup along n (x) and m (y). */
  wx: number;
  wy: number;
  /** Outputs per thread along m and n. */
  tm: number;
  tn: number;
}

/** What distinguishes one GEMM instance from another. */
export interface GemmHooks {
  /** Extra u32 fields of the uniform struct `p`, after M, N, K, kChunk. */
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
  /** fn store(m: u32, n: u32, v: f32): writes the final value into `C` (and extras). */
  store: string;
}

/** Uniform header shared by all GEMM instances. */
export const GEMM_BASE_PARAMS = ["M", "N", "K", "kChunk"];

function paramStruct(fields: string[]): string {
  return `struct Params {\n${fields.map((f) => `  ${f}: u32,`).join("\n")}\n}`;
}

/**
 * WGSL of a GEMM instance. With `split` true, C is the partial-sum buffer and `store` is not
 * used (see {@linkcode gemmReduceSource}).
 */
export function gemmSource(hooks: GemmHooks, tile: GemmTile, split: boolean): string {
  const { wx, wy, tm, tn } = tile;
  const extra = hooks.extraBindings ?? [];
  const fields = [...GEMM_BASE_PARAMS, ...hooks.params];
  const bindings = [
    `@group(0) @binding(0) var<storage, read> A: array<f32>;`,
    `@group(0) @binding(1) var<storage, read> B: array<f32>;`,
    ...extra.map(([name, mode, type], i) =>
      `@group(0) @binding(${2 + i}) var<storage, ${
        mode === "read" ? "read" : "read_write"
      }> ${name}: ${type};`
    ),
    `@group(0) @binding(${2 + extra.length}) var<storage, read_write> C: array<f32>;`,
    `@group(0) @binding(${3 + extra.length}) var<uniform> p: Params;`,
  ];
  const lines: string[] = [];
  const acc = (i: number, j: number) => `acc_${i}_${j}`;
  for (let i = 0; i < tm; i++) {
    for (let j = 0; j < tn; j++) lines.push(`  var ${acc(i, j)} = 0.0;`);
  }
  for (let i = 0; i < tm; i++) {
    lines.push(`  let m${i} = mBase + ${i * wy}u;`);
    lines.push(`  let okM${i} = m${i} < p.M;`);
    lines.push(`  let r${i} = rowA(min(m${i}, p.M - 1u));`);
  }
  for (let j = 0; j < tn; j++) {
    lines.push(`  let n${j} = nBase + ${j * wx}u;`);
    lines.push(`  let okN${j} = n${j} < p.N;`);
    lines.push(`  let c${j} = colB(min(n${j}, p.N - 1u));`);
  }
  lines.push(`  for (var k = kBegin; k < kEnd; k++) {`);
  lines.push(`    let ka = kA(k);`);
  lines.push(`    let kb = kB(k);`);
  for (let i = 0; i < tm; i++) {
    lines.push(`    let a${i} = select(0.0, loadA(r${i}, ka), okM${i});`);
  }
  for (let j = 0; j < tn; j++) {
    lines.push(`    let b${j} = select(0.0, loadB(kb, c${j}), okN${j});`);
  }
  for (let i = 0; i < tm; i++) {
    for (let j = 0; j < tn; j++) {
      lines.push(`    ${acc(i, j)} = fma(a${i}, b${j}, ${acc(i, j)});`);
    }
  }
  lines.push(`  }`);
  for (let i = 0; i < tm; i++) {
    for (let j = 0; j < tn; j++) {
      const target = split
        ? `C[(wg.z * p.M + m${i}) * p.N + n${j}] = ${acc(i, j)};`
        : `store(m${i}, n${j}, ${acc(i, j)});`;
      lines.push(`  if (okM${i} && okN${j}) { ${target} }`);
    }
  }
  return `${paramStruct(fields)}
${bindings.join("\n")}
fn rowA(m: u32) -> vec4<i32> { ${hooks.rowA} }
fn kA(k: u32) -> vec4<i32> { ${hooks.kA} }
fn loadA(r: vec4<i32>, k: vec4<i32>) -> f32 { ${hooks.loadA} }
fn colB(n: u32) -> vec4<i32> { ${hooks.colB} }
fn kB(k: u32) -> vec4<i32> { ${hooks.kB} }
fn loadB(k: vec4<i32>, c: vec4<i32>) -> f32 { ${hooks.loadB} }
${split ? "" : `fn store(m: u32, n: u32, v: f32) { ${hooks.store} }`}
@compute @workgroup_size(${wx}, ${wy})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let mBase = wg.y * ${wy * tm}u + lid.y;
  let nBase = wg.x * ${wx * tn}u + lid.x;
  let kBegin = wg.z * p.kChunk;
  let kEnd = min(p.K, kBegin + p.kChunk);
${lines.join("\n")}
}
`;
}

/**
 * WGSL that adds `splits` partial GEMM results in index order and applies the instance's
 * `store`: deterministic split-K.
 */
export function gemmReduceSource(hooks: GemmHooks): string {
  const extra = hooks.extraBindings ?? [];
  const fields = [...GEMM_BASE_PARAMS, ...hooks.params, "splits"];
  return `${paramStruct(fields)}
@group(0) @binding(0) var<storage, read> partial: array<f32>;
${
    extra.map(([name, mode, type], i) =>
      `@group(0) @binding(${1 + i}) var<storage, ${
        mode === "read" ? "read" : "read_write"
      }> ${name}: ${type};`
    ).join("\n")
  }
@group(0) @binding(${1 + extra.length}) var<storage, read_write> C: array<f32>;
@group(0) @binding(${2 + extra.length}) var<uniform> p: Params;
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
`;
}
