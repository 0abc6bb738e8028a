/**
 * Adapter and device acquisition.
 *
 * The engine names the limits it depends on ({@linkcode ENGINE_LIMITS}) and requests each at the
 * adapter's own value: the WebGPU defaults (128 MiB per storage binding, 8 storage buffers per
 * stage) are far below what both llvmpipe and real GPUs offer. An adapter below the engine's
 * minimum is refused up front with a message naming the limit ({@linkcode AdapterLimitError}),
 * instead of a validation error at the first kernel that needs it. Optional features it can use
 * ({@linkcode OPTIONAL_FEATURES}) are requested when offered.
 */

import { UserError } from "../errors.ts";

/** What the adapter says about itself, for logs, benchmarks and reports. */
export interface AdapterSummary {
  /** Human-readable device name, e.g. "llvmpipe (LLVM 15.0.6, 256 bits)". */
  description: string;
  /** Vendor name as reported by the adapter (may be empty). */
  vendor: string;
  /** Architecture name as reported by the adapter (may be empty). */
  architecture: string;
  /** Device name as reported by the adapter (may be empty). */
  device: string;
  /** True for software adapters such as Mesa's llvmpipe/lavapipe. */
  isFallbackAdapter: boolean;
  /** Supported feature names, sorted. */
  features: string[];
  /** The adapter's numeric limits, keyed by WebGPU limit name. */
  limits: Record<string, number>;
}

/**
 * Thrown when WebGPU is unavailable; the message says what to try. A {@linkcode UserError}
 * (exit status 1): the scripts print it as one `error:` line, without a stack trace.
 */
export class GpuUnavailableError extends UserError {
  /** Always "GpuUnavailableError". */
  override name = "GpuUnavailableError";
}

/**
 * The limits the engine depends on, with the least value it can work with, and why. Each is
 * requested at the adapter's own (larger) value.
 */
export const ENGINE_LIMITS: Readonly<Record<string, { min: number; why: string }>> = {
  maxStorageBufferBindingSize: {
    min: 128 * 1024 * 1024,
    why: "activations, split-K partial sums and data batches are bound whole",
  },
  maxBufferSize: { min: 256 * 1024 * 1024, why: "pooled buffers and flat parameter buffers" },
  maxComputeWorkgroupStorageSize: {
    min: 16384,
    why: "the GEMM workgroup family stages 64x16 + 16x64 floats; batchnorm reduces 3 x 256",
  },
  maxComputeInvocationsPerWorkgroup: { min: 256, why: "reductions run 256 threads" },
  maxComputeWorkgroupSizeX: { min: 256, why: "reductions and maps run 256 threads along x" },
  maxComputeWorkgroupSizeY: { min: 16, why: "GEMM tiles are up to 16 threads along m" },
  maxComputeWorkgroupsPerDimension: { min: 65535, why: "large maps split their grid at 65535" },
  maxStorageBuffersPerShaderStage: {
    min: 12,
    why: "the batchnorm JVP binds 11 storage buffers (input, statistics, tangents, outputs)",
  },
};

/** Optional features the engine uses when the adapter offers them. */
export const OPTIONAL_FEATURES: readonly GPUFeatureName[] = [
  "timestamp-query", // per-kernel GPU times in the benchmark profile
  "shader-f16", // half-precision kernels (reported; no kernel needs it yet)
  "subgroups" as GPUFeatureName, // subgroup reductions (reported; no kernel needs it yet)
];

/**
 * The device descriptor for an adapter: every engine limit at the adapter's value, every
 * optional feature it offers. Throws {@linkcode AdapterLimitError} naming each limit below the
 * engine's minimum.
 */
export function deviceRequest(
  adapter: Pick<GPUAdapter, "limits" | "features">,
  description = "the adapter",
): { requiredLimits: Record<string, number>; requiredFeatures: GPUFeatureName[] } {
  const limits = adapter.limits as unknown as Record<string, number>;
  const requiredLimits: Record<string, number> = {};
  const short: string[] = [];
  for (const [key, { min, why }] of Object.entries(ENGINE_LIMITS)) {
    const have = limits[key];
    if (typeof have !== "number") continue; // a limit this WebGPU does not know: its default
    if (have < min) short.push(`${key} is ${have}, the engine needs at least ${min} (${why})`);
    requiredLimits[key] = have;
  }
  if (short.length > 0) {
    throw new AdapterLimitError(
      `WebGPU adapter "${description}" is too small for tailgrad: ${short.join("; ")}. ` +
        "Use another adapter (a discrete GPU, or Mesa's llvmpipe with DENO_WEBGPU_BACKEND=vulkan).",
    );
  }
  const requiredFeatures = OPTIONAL_FEATURES.filter((f) => adapter.features.has(f));
  return { requiredLimits, requiredFeatures };
}

/**
 * Thrown when the adapter offers less than the engine needs; the message names the limit. A
 * kind of {@linkcode GpuUnavailableError}, so callers that report that one report this too.
 */
export class AdapterLimitError extends GpuUnavailableError {
  /** Always "AdapterLimitError". */
  override name = "AdapterLimitError";
}

/** Options for {@linkcode acquireDevice}. */
export interface AcquireOptions {
  /** Adapter power preference; defaults to "high-performance". */
  powerPreference?: GPUPowerPreference;
}

/** A device together with the adapter it came from. */
export interface AcquiredDevice {
  /** The adapter the device was requested from. */
  adapter: GPUAdapter;
  /** The device, created with the adapter's own limits and the optional features offered. */
  device: GPUDevice;
  /** The adapter's summary (see {@linkcode summarizeAdapter}). */
  summary: AdapterSummary;
}

/** Reads the adapter's name, features and limits into a plain object. */
export function summarizeAdapter(adapter: GPUAdapter): AdapterSummary {
  const limits: Record<string, number> = {};
  const raw = adapter.limits as unknown as Record<string, number>;
  for (const key in raw) {
    if (typeof raw[key] === "number") limits[key] = raw[key];
  }
  const info = adapter.info;
  // deno-lint-ignore no-explicit-any
  const fallback = (adapter as any).isFallbackAdapter ?? (info as any).isFallbackAdapter ?? false;
  return {
    description: info.description || info.device || "unknown adapter",
    vendor: info.vendor,
    architecture: info.architecture,
    device: info.device,
    isFallbackAdapter: Boolean(fallback),
    features: [...adapter.features].sort(),
    limits,
  };
}

/**
 * Requests an adapter and a device with the adapter's own limits (see {@linkcode deviceRequest}).
 * Throws {@linkcode GpuUnavailableError} naming what is missing and what to try, or
 * {@linkcode AdapterLimitError} naming the limit that is too small.
 */
export async function acquireDevice(options: AcquireOptions = {}): Promise<AcquiredDevice> {
  if (typeof navigator === "undefined" || !("gpu" in navigator) || !navigator.gpu) {
    throw new GpuUnavailableError(
      "WebGPU is not available: navigator.gpu is undefined. Run with Deno 2 or later " +
        "(WebGPU is built in), not Node.js.",
    );
  }
  const adapter = await navigator.gpu.requestAdapter({
    powerPreference: options.powerPreference ?? "high-performance",
  });
  if (!adapter) {
    throw new GpuUnavailableError(
      "WebGPU found no adapter. On a machine without a GPU install Mesa's Vulkan software " +
        "adapter (apt-get install -y mesa-vulkan-drivers) and set DENO_WEBGPU_BACKEND=vulkan; " +
        "on an NVIDIA machine make sure the Vulkan loader (libvulkan1) and the NVIDIA ICD are present.",
    );
  }
  const summary = summarizeAdapter(adapter);
  const device = await adapter.requestDevice(deviceRequest(adapter, summary.description));
  return { adapter, device, summary };
}
