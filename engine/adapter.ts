/**
 * The one adapter classification every per-adapter kernel table keys on (DESIGN.md "Per-adapter kernel
 * configs"). Tile shapes follow the adapter's cost model, not its exact name: on the software rasterisers
 * (lavapipe/llvmpipe, SwiftShader) every storage or workgroup-memory load is a per-lane loop, so
 * register-only kernels with big per-invocation tiles win; on GPUs workgroup-memory tiling wins.
 *
 * Tables (`adapterTable`) hold entries under an exact kind, under `cpu` (any software adapter) or under
 * `default`, and are looked up most specific first: a table measured on lavapipe serves SwiftShader through
 * `cpu` until someone sweeps SwiftShader and adds its own row.
 */

/** lavapipe/llvmpipe (Mesa), SwiftShader (Chrome/Dawn's), another software/fallback adapter, or a GPU. */
export type AdapterKind = "lavapipe" | "swiftshader" | "cpu-other" | "gpu";

/** The `adapter.info` fields we read (`isFallbackAdapter` is newer than some typings). */
export interface AdapterInfoLike {
  vendor?: string;
  architecture?: string;
  device?: string;
  description?: string;
  isFallbackAdapter?: boolean;
}

/** Classify `adapter.info`: names are matched case-insensitively across vendor, architecture, device, description. */
export function classifyAdapter(info: AdapterInfoLike): AdapterKind {
  const text = [info.vendor, info.architecture, info.device, info.description].join(" ").toLowerCase();
  if (/llvmpipe|lavapipe/.test(text)) return "lavapipe";
  if (/swiftshader/.test(text)) return "swiftshader";
  if (info.isFallbackAdapter === true || /software/.test(text)) return "cpu-other";
  return "gpu";
}

export function isCpuKind(kind: AdapterKind): boolean {
  return kind !== "gpu";
}

/** Entries of a per-adapter table: an exact kind, `cpu` for every software adapter, and a required default. */
export type AdapterEntries<T> = Partial<Record<AdapterKind | "cpu", T>> & { default: T };

export interface AdapterTable<T> {
  /** The entry for this kind: the exact kind's, else `cpu`'s for a software adapter, else `default`. */
  for(kind: AdapterKind): T;
  /** Every distinct entry (tests run each one whatever adapter runs them). */
  values(): T[];
}

/** A per-adapter table (kernel tiles, strategies), keyed by `classifyAdapter`. */
export function adapterTable<T>(entries: AdapterEntries<T>): AdapterTable<T> {
  return {
    for(kind) {
      return entries[kind] ?? (isCpuKind(kind) ? entries.cpu : undefined) ?? entries.default;
    },
    values() {
      return [...new Set(Object.values(entries) as T[])];
    },
  };
}
