/** The GPU runtime: device errors, pooling, caches, ordering of writes and dispatches. */
import assert from "node:assert/strict";
import {
  acquireDevice,
  AdapterLimitError,
  deviceRequest,
  ENGINE_LIMITS,
  GpuUnavailableError,
} from "../src/gpu/device.ts";
import { Gpu, grid1d } from "../src/gpu/runtime.ts";
import { Tensor } from "../src/tensor.ts";
import { runMap } from "../src/ops/elementwise.ts";
import { reportError, UserError } from "../src/errors.ts";
import { tinyArgs, writeSyntheticIdx } from "./train_fixtures.ts";

const gpu = await Gpu.create();

Deno.test("a missing navigator.gpu gives an error that says what to do", async () => {
  const original = Object.getOwnPropertyDescriptor(navigator, "gpu");
  Object.defineProperty(navigator, "gpu", { value: undefined, configurable: true });
  try {
    await assert.rejects(acquireDevice(), (e: Error) => {
      assert.ok(e instanceof GpuUnavailableError);
      assert.match(e.message, /navigator\.gpu is undefined/);
      assert.match(e.message, /Deno/);
      return true;
    });
  } finally {
    if (original) Object.defineProperty(navigator, "gpu", original);
    else delete (navigator as unknown as Record<string, unknown>).gpu;
  }
});

Deno.test("no adapter gives an error naming the Vulkan software adapter", async () => {
  const realGpu = navigator.gpu;
  const fake = { requestAdapter: () => Promise.resolve(null) };
  Object.defineProperty(navigator, "gpu", { value: fake, configurable: true });
  try {
    await assert.rejects(acquireDevice(), (e: Error) => {
      assert.ok(e instanceof GpuUnavailableError);
      assert.match(e.message, /no adapter/);
      assert.match(e.message, /mesa-vulkan-drivers/);
      return true;
    });
  } finally {
    Object.defineProperty(navigator, "gpu", { value: realGpu, configurable: true });
    delete (navigator as unknown as Record<string, unknown>).gpu;
  }
  assert.ok(navigator.gpu, "navigator.gpu restored");
});

Deno.test("adapter summary carries the adapter's name and its own limits", () => {
  assert.ok(gpu.adapter.description.length > 0);
  assert.ok(gpu.adapter.limits.maxStorageBufferBindingSize >= 128 * 1024 * 1024);
  assert.equal(
    gpu.device.limits.maxStorageBufferBindingSize,
    gpu.adapter.limits.maxStorageBufferBindingSize,
    "device requested with the adapter's limit",
  );
});

/** An adapter-shaped object: the real adapter's limits with some overridden, given features. */
function fakeAdapter(overrides: Record<string, number>, features: string[]) {
  const limits = { ...gpu.adapter.limits, ...overrides };
  return {
    limits: limits as unknown as GPUSupportedLimits,
    features: new Set(features) as unknown as GPUSupportedFeatures,
    info: { description: "fake adapter", vendor: "", architecture: "", device: "" },
    requestDevice: () => Promise.reject(new Error("requestDevice must not be reached")),
  };
}

Deno.test("the device request asks for every engine limit at the adapter's value", () => {
  const adapter = fakeAdapter({ maxComputeWorkgroupStorageSize: 65536 }, [
    "timestamp-query",
    "subgroups",
    "texture-compression-bc",
  ]);
  const req = deviceRequest(adapter);
  for (const key of Object.keys(ENGINE_LIMITS)) {
    assert.equal(
      req.requiredLimits[key],
      (adapter.limits as unknown as Record<string, number>)[key],
    );
  }
  assert.equal(req.requiredLimits.maxComputeWorkgroupStorageSize, 65536);
  // the optional features offered, and nothing the engine does not use
  assert.deepEqual(req.requiredFeatures, ["timestamp-query", "subgroups"]);
  assert.deepEqual(deviceRequest(fakeAdapter({}, [])).requiredFeatures, []);
});

Deno.test("an adapter below an engine limit is refused with the limit named", async () => {
  const small = fakeAdapter(
    { maxComputeWorkgroupStorageSize: 8192, maxStorageBuffersPerShaderStage: 8 },
    [],
  );
  assert.throws(() => deviceRequest(small, "tiny GPU"), (e: Error) => {
    assert.ok(e instanceof AdapterLimitError);
    assert.match(e.message, /"tiny GPU"/);
    assert.match(
      e.message,
      /maxComputeWorkgroupStorageSize is 8192, the engine needs at least 16384/,
    );
    assert.match(e.message, /maxStorageBuffersPerShaderStage is 8, the engine needs at least 12/);
    return true;
  });
  // acquireDevice refuses it before asking for a device
  const realGpu = navigator.gpu;
  const fake = { requestAdapter: () => Promise.resolve(small) };
  Object.defineProperty(navigator, "gpu", { value: fake, configurable: true });
  try {
    await assert.rejects(acquireDevice(), (e: Error) => {
      assert.ok(e instanceof AdapterLimitError, `${e}`);
      assert.match(e.message, /"fake adapter" is too small/);
      return true;
    });
  } finally {
    Object.defineProperty(navigator, "gpu", { value: realGpu, configurable: true });
    delete (navigator as unknown as Record<string, unknown>).gpu;
  }
  assert.ok(navigator.gpu, "navigator.gpu restored");
});

Deno.test("the device has every engine limit and the offered optional features", () => {
  const limits = gpu.device.limits as unknown as Record<string, number>;
  for (const [key, { min }] of Object.entries(ENGINE_LIMITS)) {
    assert.ok(limits[key] >= min, `${key}: ${limits[key]} < ${min}`);
    assert.equal(limits[key], gpu.adapter.limits[key], `${key} at the adapter's value`);
  }
  for (const f of ["timestamp-query", "shader-f16", "subgroups"] as GPUFeatureName[]) {
    assert.equal(gpu.device.features.has(f), gpu.adapter.features.includes(f), f);
  }
});

Deno.test("the pool hands back released buffers of the same size class", () => {
  const before = gpu.stats.buffersCreated;
  const a = gpu.alloc(1000);
  gpu.release(a);
  const b = gpu.alloc(1020);
  assert.equal(a, b);
  gpu.release(b);
  assert.equal(gpu.stats.buffersCreated - before, 1);
  const live = gpu.liveBuffers;
  gpu.trim();
  assert.ok(gpu.liveBuffers < live, "trim destroys free buffers");
});

Deno.test("pool memory: bytes in use and held, high-water marks, reset, trim", () => {
  gpu.trim();
  const m = gpu.memory;
  const [use0, held0] = [m.inUseBytes, m.heldBytes];
  gpu.resetMemoryPeak();
  const a = gpu.alloc(5000); // size class 8192 (steps of 4096)
  const b = gpu.alloc(100_000); // size class 106496 (steps of 8192)
  assert.equal(m.inUseBytes - use0, 8192 + 106496);
  assert.equal(m.heldBytes - held0, 8192 + 106496);
  gpu.release(b);
  assert.equal(m.inUseBytes - use0, 8192, "released bytes leave the in-use count");
  assert.equal(m.heldBytes - held0, 8192 + 106496, "but stay held by the pool");
  assert.equal(m.peakInUseBytes - use0, 8192 + 106496, "the high-water mark stays");
  assert.throws(() => gpu.release(b), /released twice/);
  const c = gpu.alloc(100_000);
  assert.equal(c, b, "reused: nothing new held");
  assert.equal(m.peakHeldBytes - held0, 8192 + 106496);
  gpu.release(a);
  gpu.release(c);
  gpu.resetMemoryPeak();
  assert.equal(m.peakInUseBytes, m.inUseBytes);
  gpu.trim();
  assert.equal(m.heldBytes, m.inUseBytes, "trim destroys every free buffer");
});

Deno.test("bind groups, uniforms and pipelines are cached across identical dispatches", async () => {
  const x = Tensor.from(gpu, [1, 2, 3], [3]);
  const y = Tensor.empty(gpu, [3]);
  runMap(gpu, "scale-test", "p.s0 * a[i]", [x], y, 2);
  await gpu.sync();
  const s0 = { ...gpu.stats };
  for (let i = 0; i < 5; i++) runMap(gpu, "scale-test", "p.s0 * a[i]", [x], y, 2);
  assert.deepEqual(Array.from(await y.read(gpu)), [2, 4, 6]);
  assert.equal(gpu.stats.bindGroupsCreated, s0.bindGroupsCreated);
  assert.equal(gpu.stats.uniformsCreated, s0.uniformsCreated);
  assert.equal(gpu.stats.pipelinesCreated, s0.pipelinesCreated);
  assert.equal(gpu.stats.dispatches, s0.dispatches + 5);
  x.release(gpu);
  y.release(gpu);
});

Deno.test("a host write never overtakes recorded work that reads the buffer", async () => {
  const x = Tensor.from(gpu, [1, 1, 1, 1], [4]);
  const y = Tensor.empty(gpu, [4]);
  runMap(gpu, "scale-test", "p.s0 * a[i]", [x], y, 3);
  x.upload(gpu, [5, 5, 5, 5]); // must not be seen by the dispatch recorded above
  assert.deepEqual(Array.from(await y.read(gpu)), [3, 3, 3, 3]);
  assert.deepEqual(Array.from(await x.read(gpu)), [5, 5, 5, 5]);
  x.release(gpu);
  y.release(gpu);
});

Deno.test("grid1d splits large dispatches under the per-dimension limit", () => {
  assert.deepEqual(grid1d(10), [10, 1]);
  const [x, y] = grid1d(200000);
  assert.ok(x <= 65535 && x * y >= 200000);
});

Deno.test("a wrong number of bindings is a clear error", () => {
  const prog = { key: "bad", code: "", bindings: ["read" as const, "uniform" as const] };
  assert.throws(() => gpu.dispatch(prog, [], [1]), /expected 2 bindings, got 0/);
});

Deno.test("a dispatch observer sees each dispatch with its phase and can time it alone", async () => {
  const x = Tensor.from(gpu, [1, 2, 3, 4], [4]);
  const y = Tensor.empty(gpu, [4]);
  const timed = gpu.device.features.has("timestamp-query");
  const querySet = timed ? gpu.device.createQuerySet({ type: "timestamp", count: 4 }) : null;
  const seen: string[] = [];
  gpu.observer = {
    dispatch: (program, _views, _workgroups, phase) => {
      seen.push(`${program.key}@${phase}`);
      const q = 2 * (seen.length - 1);
      return querySet
        ? { querySet, beginningOfPassWriteIndex: q, endOfPassWriteIndex: q + 1 }
        : undefined;
    },
  };
  try {
    const value = gpu.inPhase("outer", () => {
      runMap(gpu, "observed", "p.s0 * a[i]", [x], y, 2);
      return gpu.inPhase("inner", () => gpu.phase);
    });
    runMap(gpu, "observed", "out[i] + a[i]", [x], y);
    assert.equal(value, "inner");
    assert.equal(gpu.phase, "");
    assert.deepEqual(seen, ["map:observed@outer", "map:observed@"]);
    assert.deepEqual(Array.from(await y.read(gpu)), [3, 6, 9, 12]);
    if (querySet) {
      const resolve = gpu.device.createBuffer({
        size: 32,
        usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
      });
      gpu.encoder().resolveQuerySet(querySet, 0, 4, resolve, 0);
      const t = new BigUint64Array(await gpu.read({ buffer: resolve, offset: 0, size: 32 }));
      assert.ok(t[1] >= t[0] && t[3] >= t[2] && t[2] >= t[1], `timestamps ${t}`);
      resolve.destroy();
    }
  } finally {
    gpu.observer = null;
    querySet?.destroy();
    x.release(gpu);
    y.release(gpu);
  }
});

Deno.test("no GPU is a user's mistake: one error line and exit status 1, from the CLIs too", async () => {
  const realGpu = navigator.gpu;
  const fake = { requestAdapter: () => Promise.resolve(null) };
  Object.defineProperty(navigator, "gpu", { value: fake, configurable: true });
  let error: unknown;
  try {
    error = await acquireDevice().then(() => null, (e) => e);
  } finally {
    Object.defineProperty(navigator, "gpu", { value: realGpu, configurable: true });
    delete (navigator as unknown as Record<string, unknown>).gpu;
  }
  assert.ok(error instanceof GpuUnavailableError && error instanceof UserError, String(error));
  assert.equal(error.exitCode, 1);
  assert.equal(error.problem, error.message, "no hint line: the message says what to try");
  const printed: unknown[][] = [];
  const consoleError = console.error;
  console.error = (...args: unknown[]) => void printed.push(args);
  try {
    assert.equal(reportError(error), 1);
  } finally {
    console.error = consoleError;
  }
  assert.deepEqual(printed, [[`error: ${error.message}`]], "the message alone, no stack trace");
  // the train CLI's ordinary user-error path prints it so (WebGPU removed before it starts)
  const root = await Deno.makeTempDir({ prefix: "tg-no-gpu-" });
  try {
    await writeSyntheticIdx(root);
    const preload = `${root}/no_gpu.ts`;
    await Deno.writeTextFile(
      preload,
      'Object.defineProperty(navigator, "gpu", { value: undefined, configurable: true });\n',
    );
    // the train CLI, gpu-check and the bench, each started with WebGPU removed
    const runs = [
      ["train.ts", `--allow-write=${root}`, ...tinyArgs(root, `${root}/run`)],
      ["gpu_check.ts", `--allow-write=${root}`, "--quick", "--out", `${root}/check.json`],
      ["bench.ts", `--allow-write=${root}`, "--out", root],
    ];
    for (const [name, write, ...args] of runs) {
      const script = new URL(`../scripts/${name}`, import.meta.url).pathname;
      const r = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--quiet",
          "--no-lock",
          "--allow-read",
          write,
          "--allow-env=DENO_WEBGPU_BACKEND,TAILGRAD_DATA,TAILGRAD_DEBUG", // gpu-check's task list
          "--allow-sys=loadavg",
          `--preload=${preload}`,
          script,
          ...args,
        ],
        env: { DENO_WEBGPU_BACKEND: "vulkan", NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(r.stderr);
      assert.equal(r.code, 1, `${name}: ${stderr}`);
      assert.equal(
        stderr,
        "error: WebGPU is not available: navigator.gpu is undefined. Run with Deno 2 or later " +
          "(WebGPU is built in), not Node.js.\n",
        name,
      );
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
