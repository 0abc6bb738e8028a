/** Shared pieces of the GPU tests: one device per test file, float32 rounding, error metric. */
import assert from "node:assert/strict";
import { Gpu } from "../src/gpu/runtime.ts";

let gpuPromise: Promise<Gpu> | null = null;

/** The test file's one GPU device (created on first use). */
export function getGpu(): Promise<Gpu> {
  gpuPromise ??= Gpu.create();
  return gpuPromise;
}

/** A GPU test: one shared device, whose long-lived objects the sanitizers must not count. */
export function gpuTest(name: string, fn: (gpu: Gpu) => Promise<void>): void {
  Deno.test({
    name,
    sanitizeResources: false,
    sanitizeOps: false,
    fn: async () => fn(await getGpu()),
  });
}

/** Float32-representable float64 values (what both sides compute on). */
export function f32(a: ArrayLike<number>): Float64Array {
  return Float64Array.from(Float32Array.from(a));
}

/** max |got - want| / max |want| (or / scale); Infinity on a non-finite value. */
export function maxAbsErr(got: ArrayLike<number>, want: ArrayLike<number>, scale?: number): number {
  assert.equal(got.length, want.length, "length mismatch");
  let d = 0, m = 0;
  for (let i = 0; i < got.length; i++) {
    if (!Number.isFinite(got[i])) return Infinity;
    d = Math.max(d, Math.abs(got[i] - want[i]));
    m = Math.max(m, Math.abs(want[i]));
  }
  return d / Math.max(scale ?? m, 1e-30);
}
