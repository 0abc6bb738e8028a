/** Kernel declarations: generated WGSL, uniform packing, and the code-keyed pipeline cache. */
import assert from "node:assert/strict";
import { kernel, kernelFamily, kernelSource } from "../src/gpu/kernel.ts";
import { grid1d } from "../src/gpu/runtime.ts";
import { bind, Tensor } from "../src/tensor.ts";
import { gpuTest } from "./gpu_harness.ts";

const axpy = kernel({
  name: "test-axpy",
  storage: [["x", "read"], ["y", "write"]],
  uniforms: [["n", "u32"], ["a", "f32"], ["shift", "i32"]],
  workgroupSize: 64,
  main: `
    let i = flatIndex(gid, nwg);
    if (i >= p.n) { return; }
    y[i] = y[i] + p.a * x[i] + f32(p.shift);`,
});

Deno.test("a declaration generates its bindings, uniform struct and entry point", () => {
  const code = axpy.program.code;
  assert.match(code, /struct Params \{ n: u32, a: f32, shift: i32 \}/);
  assert.match(code, /@binding\(0\) var<storage, read> x: array<f32>;/);
  assert.match(code, /@binding\(1\) var<storage, read_write> y: array<f32>;/);
  assert.match(code, /@binding\(2\) var<uniform> p: Params;/);
  assert.match(code, /@workgroup_size\(64\)/);
  assert.deepEqual(axpy.program.bindings, ["read", "write", "uniform"]);
  const plain = kernelSource({
    name: "no-uniforms",
    storage: [["o", "write", "array<u32>"]],
    workgroupSize: [8, 4, 1],
    main: "o[lidx] = 1u;",
  });
  assert.doesNotMatch(plain, /Params/);
  assert.match(plain, /var<storage, read_write> o: array<u32>;/);
  assert.match(plain, /@workgroup_size\(8, 4, 1\)/);
});

gpuTest("shape constants become literals; uniform fields stay uniform", async (gpu) => {
  const fill = kernel({
    name: "test-constants",
    storage: [["o", "write"]],
    uniforms: [["n", "u32"]],
    workgroupSize: 64,
    constants: { K: 7 },
    main: "let i = flatIndex(gid, nwg); if (i < p.n) { o[i] = f32(p.K * i); }",
  });
  assert.match(fill.program.code, /f32\(7u \* i\)/);
  assert.match(fill.program.code, /i < p\.n/);
  const o = Tensor.empty(gpu, [70]);
  fill.dispatch(gpu, [bind(o)], { n: 70 }, [2]);
  assert.deepEqual([...await o.read(gpu)], Array.from({ length: 70 }, (_, i) => 7 * i));
  o.release(gpu);
  assert.throws(
    () => kernel({ ...fill.decl, constants: { Q: 1 } }),
    /test-constants: no u32 value for shape constant p\.K/,
  );
  assert.throws(() => kernel({ ...fill.decl, constants: { K: -1 } }), /p\.K/);
});

gpuTest("uniform values are packed in declaration order with their types", async (gpu) => {
  const n = 300; // not a multiple of the workgroup size
  const x = Tensor.from(gpu, Array.from({ length: n }, (_, i) => i), [n]);
  const y = Tensor.from(gpu, new Array(n).fill(1), [n]);
  axpy.dispatch(gpu, [bind(x), bind(y)], { n, a: 0.5, shift: -3 }, grid1d(Math.ceil(n / 64)));
  const got = await y.read(gpu);
  for (let i = 0; i < n; i++) assert.equal(got[i], 1 + 0.5 * i - 3);
  x.release(gpu);
  y.release(gpu);
});

gpuTest("a uniform of the wrong kind or a missing one is refused by name", (gpu) => {
  assert.throws(() => axpy.uniform(gpu, { n: 1.5, a: 0, shift: 0 }), /test-axpy: uniform n = 1.5/);
  assert.throws(() => axpy.uniform(gpu, { n: -1, a: 0, shift: 0 }), /not a u32/);
  assert.throws(
    () => axpy.uniform(gpu, { n: 1, a: 0 } as unknown as { n: number; a: number; shift: number }),
    /uniform shift has no value/,
  );
  assert.throws(() => axpy.dispatch(gpu, [], { n: 1, a: 0, shift: 0 }, [1]), /2 storage bindings/);
  return Promise.resolve();
});

gpuTest("kernels with one name but other code get their own pipelines", async (gpu) => {
  const fill = kernelFamily((value: number) => ({
    name: "test-fill", // the same label for every variant
    storage: [["o", "write"]] as const,
    uniforms: [["n", "u32"]] as const,
    workgroupSize: 64,
    main: `let i = flatIndex(gid, nwg); if (i < p.n) { o[i] = ${value}.0; }`,
  }));
  assert.equal(fill(2), fill(2), "a family makes each variant once");
  fill(7);
  assert.deepEqual(fill.made().map((k) => k.program.code.includes("7.0")), [false, true]);
  const a = Tensor.empty(gpu, [70]);
  const b = Tensor.empty(gpu, [70]);
  const before = gpu.stats.pipelinesCreated;
  fill(2).dispatch(gpu, [bind(a)], { n: 70 }, [2]);
  fill(7).dispatch(gpu, [bind(b)], { n: 70 }, [2]);
  fill(2).dispatch(gpu, [bind(a)], { n: 70 }, [2]);
  assert.equal(gpu.stats.pipelinesCreated - before, 2);
  assert.deepEqual([...await a.read(gpu)], new Array(70).fill(2));
  assert.deepEqual([...await b.read(gpu)], new Array(70).fill(7));
  a.release(gpu);
  b.release(gpu);
});
