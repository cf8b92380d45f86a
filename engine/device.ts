/**
 * The one place that talks to `navigator.gpu`: picks the adapter, requests the adapter's own limits and the
 * features we can use, logs `adapter.info` once, and turns GPU errors into exceptions at the next sync point.
 *
 * Invariants: `initDevice()` is idempotent; after it resolves, `gpu()` is synchronous. Any uncaptured WebGPU
 * error or device loss is remembered and rethrown by `checkGpuErrors()` (called by every readback), so a bad
 * kernel fails loudly instead of producing zeros.
 */
import { type AdapterKind, classifyAdapter, isCpuKind } from "./adapter.ts";

export class GpuError extends Error {
  override name = "GpuError";
}

export interface Gpu {
  device: GPUDevice;
  adapterInfo: GPUAdapterInfo;
  limits: GPUSupportedLimits;
  features: ReadonlySet<string>;
  /** The classification every per-adapter kernel table keys on (engine/adapter.ts). */
  adapterKind: AdapterKind;
  /** True for a software adapter (lavapipe/llvmpipe/SwiftShader, another fallback): `adapterKind !== "gpu"`. */
  isCpu: boolean;
  /** The adapter's description, for logs and benchmark rows (kernel tables key on `adapterKind`). */
  adapterName: string;
}

let current: Gpu | null = null;
let pending: Promise<Gpu> | null = null;
let firstError: string | null = null;

/** Environment switch: refuse a CPU/fallback adapter (for GPU servers, where silently running on CPU is a bug). */
export const REQUIRE_GPU_ENV = "LOLA_REQUIRE_GPU";

const WANTED_FEATURES: GPUFeatureName[] = ["shader-f16", "timestamp-query", "subgroups" as GPUFeatureName];

const WANTED_LIMITS = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxStorageBuffersPerShaderStage",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupSizeZ",
  "maxComputeWorkgroupsPerDimension",
  "maxBindGroups",
  "maxUniformBufferBindingSize",
  "maxTextureDimension2D",
  "maxTextureArrayLayers",
] as const;

/** Initialise (once) and return the GPU. Throws GpuError with an actionable one-line message. */
export function initDevice(): Promise<Gpu> {
  if (current) return Promise.resolve(current);
  if (!pending) pending = create();
  return pending;
}

/** The initialised GPU; throws if `initDevice()` has not resolved yet. */
export function gpu(): Gpu {
  if (!current) throw new GpuError("GPU not initialised: call `await initDevice()` first");
  return current;
}

async function create(): Promise<Gpu> {
  if (!("gpu" in navigator) || !navigator.gpu) {
    throw new GpuError(
      "WebGPU is not available in this Deno build: use Deno 2.9.x (`npm install -g deno@2.9.6`)",
    );
  }
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) {
    throw new GpuError(
      "no WebGPU adapter found: install your GPU's Vulkan driver, or on a CPU-only machine " +
        "`apt-get install -y mesa-vulkan-drivers` (lavapipe)",
    );
  }
  const info = adapter.info;
  const adapterKind = classifyAdapter(info);
  const isCpu = isCpuKind(adapterKind);
  const requireGpu = ["1", "true", "yes"].includes((Deno.env.get(REQUIRE_GPU_ENV) ?? "").toLowerCase());
  if (isCpu && requireGpu) {
    throw new GpuError(
      `only a CPU/fallback adapter is available (${
        info.description || info.vendor
      }) but ${REQUIRE_GPU_ENV}=1: ` +
        "check the GPU's Vulkan driver (`vulkaninfo --summary`) or unset the variable",
    );
  }
  const features = WANTED_FEATURES.filter((f) => adapter.features.has(f));
  const requiredLimits: Record<string, number> = {};
  for (const k of WANTED_LIMITS) {
    const v = (adapter.limits as unknown as Record<string, number>)[k];
    if (typeof v === "number") requiredLimits[k] = v;
  }
  const device = await adapter.requestDevice({ requiredFeatures: features, requiredLimits });
  device.addEventListener("uncapturederror", (e) => {
    const msg = (e as GPUUncapturedErrorEvent).error.message;
    if (!firstError) firstError = msg;
  });
  device.lost.then((l) => {
    if (l.reason !== "destroyed" && !firstError) firstError = `GPU device lost: ${l.message}`;
  });
  const adapterName = (info.description || `${info.vendor} ${info.device}`).trim();
  current = {
    device,
    adapterInfo: info,
    limits: device.limits,
    features: new Set(features),
    adapterKind,
    isCpu,
    adapterName,
  };
  if (!Deno.env.get("LOLA_QUIET")) {
    console.error(
      `gpu: ${adapterName}${
        isCpu ? ` (CPU adapter: ${adapterKind})` : ""
      } · vendor ${info.vendor} · features [${features.join(", ")}]`,
    );
  }
  return current;
}

/** Throw the first uncaptured GPU error (validation, out-of-memory, device loss) seen so far. */
export function checkGpuErrors(): void {
  if (firstError) {
    const msg = firstError;
    firstError = null;
    throw new GpuError(`WebGPU error: ${msg.split("\n").slice(0, 6).join(" | ")}`);
  }
}
