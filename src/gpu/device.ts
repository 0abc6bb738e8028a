/**
 * Adapter and device acquisition.
 *
 * We always request the adapter's own limits: the WebGPU defaults (128 MiB per storage binding,
 * 256 invocations per workgroup) are far below what both llvmpipe and real GPUs offer.
 */

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

/** Options for {@linkcode acquireDevice}. */
export interface AcquireOptions {
  /** Adapter power preference; defaults to "high-performance". */
  powerPreference?: GPUPowerPreference;
}

/** A device together with the adapter it came from. */
export interface AcquiredDevice {
  /** The adapter the device was requested from. */
  adapter: GPUAdapter;
  /** The device, created with the adapter's own limits. */
  device: GPUDevice;
  /** The adapter's summary (see {@linkcode summarizeAdapter}). */
  summary: AdapterSummary;
}

/** Thrown when WebGPU is unavailable; the message says what to try. */
export class GpuUnavailableError extends Error {
  /** Always "GpuUnavailableError". */
  override name = "GpuUnavailableError";
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
 * Requests an adapter and a device with the adapter's own limits.
 * Throws {@linkcode GpuUnavailableError} naming what is missing and what to try.
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
  const requiredLimits: Record<string, number> = {};
  const wanted = [
    "maxStorageBufferBindingSize",
    "maxBufferSize",
    "maxComputeWorkgroupStorageSize",
    "maxComputeInvocationsPerWorkgroup",
    "maxComputeWorkgroupSizeX",
    "maxComputeWorkgroupSizeY",
    "maxComputeWorkgroupSizeZ",
    "maxComputeWorkgroupsPerDimension",
    "maxStorageBuffersPerShaderStage",
  ];
  const limits = adapter.limits as unknown as Record<string, number>;
  for (const key of wanted) {
    if (typeof limits[key] === "number") requiredLimits[key] = limits[key];
  }
  const requiredFeatures: GPUFeatureName[] = [];
  if (adapter.features.has("timestamp-query")) requiredFeatures.push("timestamp-query");
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  return { adapter, device, summary: summarizeAdapter(adapter) };
}
