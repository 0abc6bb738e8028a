/**
 * Host side of the GEMM template (shaders/gemm.ts): tile choice per adapter and shape,
 * split-K for tall-K products (conv dW), and the matmul instances used by `linear`.
 */
import { type BufferView, type Gpu, grid1d } from "../gpu/runtime.ts";
import {
  GEMM_BASE_PARAMS,
  type GemmConsts,
  type GemmFamily,
  type GemmHooks,
  gemmKernel,
  gemmReduceKernel,
  type GemmTile,
  usesVectorA,
} from "../../shaders/gemm.ts";

/** Per-adapter GEMM policy; tests and benchmarks may override it. */
export interface GemmPolicy {
  /** Candidate tiles, largest first. */
  tiles: GemmTile[];
  /** Below this many workgroups, split K to create more. */
  minWorkgroups: number;
  /** Never give a split fewer than this many k steps. */
  minKPerSplit: number;
  /**
   * Read A as vec4 along k where the instance and shape allow (default true). Bit-identical
   * either way; off only to test that.
   */
  vectorLoads?: boolean;
  /**
   * Cost model of {@linkcode chooseTile}: the cost of one per-thread operand load relative to one
   * multiply-add. When set, the tile (fitted to the shape, see {@linkcode fitTile}) with the
   * least `padded M*N * (1 + loadCost * (1/tm + 1/tn))` wins; when absent, the first tile whose
   * padding waste stays under 30% does.
   */
  loadCost?: number;
  /** Kernel family (shaders/gemm.ts {@linkcode GemmFamily}); default "register". */
  family?: GemmFamily;
  /** Depth of the workgroup family's k-slabs (a multiple of 4; default 16). */
  kTile?: number;
}

/**
 * llvmpipe runs a workgroup's invocations as SIMD lanes on one core and loads memory one lane
 * at a time, so many outputs per thread (register blocking) and few workgroups pay; real GPUs
 * want many workgroups and smaller per-thread blocks.
 *
 * On llvmpipe (LLVM 15, 256-bit SIMD, measured with the shape-specialised kernels) 16x16
 * outputs per thread and 8 threads along n (one SIMD vector) win at every shape: 1024^3
 * 5.2 GFLOP/s against 3.4 for 8x8 per thread on 8x8 threads, and conv at M = 16 or 32 reaches
 * the same rate when the tile's M matches (2x4 per thread, the old small-M fallback, ran at
 * 1.2). So the three tiles differ only in threads along m: 64, 32 or 16 rows per workgroup.
 */
export function defaultGemmPolicy(gpu: Gpu): GemmPolicy {
  if (
    gpu.adapter.isFallbackAdapter || /llvmpipe|lavapipe|swiftshader/i.test(gpu.adapter.description)
  ) {
    // One SIMD row per workgroup and the biggest block that fits the shape: a per-lane load
    // costs about 6 multiply-adds here (measured: 16x32 > 16x16 > 8x32 > 8x8 per thread by CPU
    // time; bench/results/NOTES.md). 32x16 costs the same as 16x32 in that model and wins the
    // tie where M allows it: half the columns, so half the B strip a workgroup streams through
    // the cache (matmul 1024^3 +35-55%, M = 32 and 64 convs +15-85%).
    return {
      tiles: [
        { wx: 8, wy: 1, tm: 32, tn: 16 },
        { wx: 8, wy: 1, tm: 16, tn: 32 },
        { wx: 8, wy: 1, tm: 16, tn: 16 },
        { wx: 8, wy: 1, tm: 8, tn: 8 },
      ],
      minWorkgroups: 8,
      minKPerSplit: 256,
      loadCost: 6,
    };
  }
  // GPUs: A and B slabs staged in workgroup memory, 64x64 outputs per 256-thread workgroup.
  return {
    tiles: [
      { wx: 16, wy: 16, tm: 4, tn: 4 },
      { wx: 16, wy: 8, tm: 2, tn: 4 },
      { wx: 16, wy: 4, tm: 1, tn: 2 },
    ],
    minWorkgroups: 512,
    minKPerSplit: 64,
    family: "workgroup",
    kTile: 16,
  };
}

const policies = new WeakMap<Gpu, GemmPolicy>();

/** The policy in force for a device. */
export function gemmPolicy(gpu: Gpu): GemmPolicy {
  let p = policies.get(gpu);
  if (!p) policies.set(gpu, p = defaultGemmPolicy(gpu));
  return p;
}

/** Replaces the GEMM policy of a device (benchmarks compare variants this way). */
export function setGemmPolicy(gpu: Gpu, policy: GemmPolicy): void {
  policies.set(gpu, policy);
}

/**
 * Chooses a tile for an M x N product: by the policy's cost model when it has one (each tile
 * fitted to the shape first), else the first tile whose padding waste stays small.
 */
export function chooseTile(policy: GemmPolicy, M: number, N: number): GemmTile {
  if (policy.loadCost !== undefined) {
    let best = policy.tiles[0];
    let bestCost = Infinity;
    for (const base of policy.tiles) {
      const t = fitTile(base, M, N, ...gridOf(base, M, N));
      const padded = Math.ceil(M / (t.wy * t.tm)) * t.wy * t.tm *
        Math.ceil(N / (t.wx * t.tn)) * t.wx * t.tn;
      const cost = padded * (1 + policy.loadCost * (1 / t.tm + 1 / t.tn));
      if (cost < bestCost) [best, bestCost] = [base, cost];
    }
    return best;
  }
  for (const t of policy.tiles) {
    const tileM = t.wy * t.tm;
    const tileN = t.wx * t.tn;
    const waste = (Math.ceil(M / tileM) * tileM * Math.ceil(N / tileN) * tileN) / (M * N);
    if (waste <= 1.3) return t;
  }
  return policy.tiles[policy.tiles.length - 1];
}

/** Workgroups along n and m (gx, gy) that a tile needs for M x N. */
export function gridOf(tile: GemmTile, M: number, N: number): [number, number] {
  return [Math.ceil(N / (tile.wx * tile.tn)), Math.ceil(M / (tile.wy * tile.tm))];
}

/**
 * Shrinks a tile's register block to the fewest outputs per thread that still cover M x N with
 * the same gx x gy workgroups: N = 144 on 8 x 16-column threads would run two 128-column tiles
 * (44% of the work on padding); 8 x 9 columns run the same two workgroups with none. The grid,
 * and so the split of K, is unchanged, which keeps results bit-identical.
 */
export function fitTile(tile: GemmTile, M: number, N: number, gx: number, gy: number): GemmTile {
  return {
    ...tile,
    tm: Math.min(tile.tm, Math.ceil(M / (gy * tile.wy))),
    tn: Math.min(tile.tn, Math.ceil(N / (gx * tile.wx))),
  };
}

/** One GEMM instance to run: hooks plus a label that names them in pipelines and profiles. */
export interface GemmInstance {
  /** Label (e.g. "conv-fwd:set"); kernels are told apart by their hooks, not by this. */
  key: string;
  /** What the instance computes (shaders/gemm.ts). */
  hooks: GemmHooks;
}

/** Longest k loop of one workgroup (see runGemm). */
export const MAX_K_PER_SPLIT = 32768;

/**
 * Runs C = A * B through the instance's hooks. `extras` bind in the order of
 * `hooks.extraBindings`; `params` in the order of `hooks.params`.
 */
export function runGemm(
  gpu: Gpu,
  inst: GemmInstance,
  dims: { M: number; N: number; K: number },
  a: BufferView,
  b: BufferView,
  extras: BufferView[],
  c: BufferView,
  params: number[],
): void {
  const { M, N, K } = dims;
  if (M === 0 || N === 0) return; // nothing to store (e.g. a dX phase that no pixel lies in)
  const policy = gemmPolicy(gpu);
  const chosen = chooseTile(policy, M, N);
  const [gx, gy] = gridOf(chosen, M, N);
  const tile = fitTile(chosen, M, N, gx, gy);
  // llvmpipe stops any shader loop after 65535 iterations (gallivm's loop limiter), so no
  // split may run longer than that, on any adapter.
  // K = 0 (e.g. a dX phase no tap reaches) runs one empty loop and stores zeros.
  let splits = Math.max(1, Math.ceil(K / MAX_K_PER_SPLIT));
  if (gx * gy * splits < policy.minWorkgroups) {
    splits = Math.max(
      splits,
      Math.min(
        Math.ceil(policy.minWorkgroups / (gx * gy)),
        Math.max(1, Math.floor(K / policy.minKPerSplit)),
      ),
    );
  }
  // The vec4 path needs kChunk % 4 == 0 but does not round kChunk to get it: the partition
  // of K fixes the float rounding, and it stays what it was before vec4 loads existed.
  const kChunk = Math.max(1, Math.ceil(K / splits));
  splits = Math.max(1, Math.ceil(K / kChunk));
  const split = splits > 1;
  const names = [...GEMM_BASE_PARAMS, ...inst.hooks.params];
  const values = [M, N, K, kChunk, ...params];
  if (values.length !== names.length) {
    throw new Error(`gemm ${inst.key}: ${names.length} shape constants, got ${values.length}`);
  }
  const consts: GemmConsts = {};
  names.forEach((name, i) => consts[name] = values[i]);
  const vectorA = policy.vectorLoads !== false && usesVectorA(inst.hooks, consts, a.offset);
  // Each kernel is specialised on its shape constants (literals in the WGSL).
  const variant = {
    label: inst.key,
    hooks: inst.hooks,
    tile,
    split,
    consts,
    vectorA,
    family: policy.family,
    kTile: policy.kTile,
  };
  if (!split) {
    gemmKernel(variant).dispatch(gpu, [a, b, ...extras, c], null, [gx, gy, 1]);
    return;
  }
  const partialBytes = splits * M * N * 4;
  const partial = gpu.alloc(partialBytes);
  const pv = { buffer: partial, offset: 0, size: partialBytes };
  gemmKernel(variant).dispatch(gpu, [a, b, ...extras, pv], null, [gx, gy, splits]);
  gemmReduceKernel({ ...variant, consts: { ...consts, splits } }).dispatch(
    gpu,
    [pv, ...extras, c],
    null,
    grid1d(Math.ceil((M * N) / 64)),
  );
  gpu.release(partial);
}

/** Store modes shared by every instance. */
export type StoreMode = "set" | "accumulate";

/**
 * Matmul instance: C[M,N] (row-major) = op(A) * op(B), where op transposes when asked;
 * A is [M,K] or, transposed, stored [K,M]; B is [K,N] or stored [N,K]. With `bias`, adds
 * bias[n] (an extra read binding).
 */
export function matmulInstance(
  transA: boolean,
  transB: boolean,
  bias: boolean,
  mode: StoreMode,
): GemmInstance {
  const value = `v${bias ? " + bias[n]" : ""}${mode === "accumulate" ? " + C[m * p.N + n]" : ""}`;
  return {
    key: `mm:${transA ? "T" : "N"}${transB ? "T" : "N"}:${bias ? "b" : ""}:${mode}`,
    hooks: {
      params: [],
      extraBindings: bias ? [["bias", "read", "array<f32>"]] : [],
      rowA: transA
        ? "return vec4<i32>(i32(m), 0, 0, 0);"
        : "return vec4<i32>(i32(m * p.K), 0, 0, 0);",
      kA: transA
        ? "return vec4<i32>(i32(k * p.M), 0, 0, 0);"
        : "return vec4<i32>(i32(k), 0, 0, 0);",
      loadA: "return A[u32(r.x + k.x)];",
      // Rows of a row-major A are contiguous along k (aligned when K % 4 == 0).
      ...(transA ? {} : { loadA4: "return A[u32(r.x + k.x) >> 2u];" }),
      colB: transB
        ? "return vec4<i32>(i32(n * p.K), 0, 0, 0);"
        : "return vec4<i32>(i32(n), 0, 0, 0);",
      kB: transB
        ? "return vec4<i32>(i32(k), 0, 0, 0);"
        : "return vec4<i32>(i32(k * p.N), 0, 0, 0);",
      loadB: "return B[u32(k.x + c.x)];",
      store: `C[m * p.N + n] = ${value};`,
    },
  };
}
