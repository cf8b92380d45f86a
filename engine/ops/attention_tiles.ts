/**
 * How attention (engine/ops/attention.ts) runs on this adapter: which implementation (flash kernels or dense
 * scores through the matmul) and which flash tiles, from the per-adapter table (engine/adapter.ts) filled by
 * bench/kernels/attention.ts sweeps; `adapt` then fits a tile to any head dim and the workgroup-memory limit.
 */
import { type AttnTile, fwdSharedBytes, tileLayout } from "../../kernels/attention.wgsl.ts";
import { bwdSharedBytes } from "../../kernels/attention_bwd.wgsl.ts";
import { type AdapterKind, type AdapterTable, adapterTable } from "../adapter.ts";
import { gpu } from "../device.ts";
import { denseFits } from "./attention_dense.ts";

export type AttentionImpl = "flash" | "dense";

/** One adapter's attention choice: flash tiles per head dim for each pass, and the default implementation. */
export interface AttentionRule {
  fwd: (d: number) => AttnTile;
  bwd: (d: number) => AttnTile;
  impl: AttentionImpl;
  note: string;
}

/** Measured on lavapipe; SwiftShader shares its cost model (every load is a per-lane loop). */
const CPU_RULE: AttentionRule = {
  // Bigger per-invocation tiles pay on lavapipe (every load is a per-lane loop), but JIT time grows with
  // them: rn 16 gave +15 % forward for +8 s of first-use compile, +4 % backward for +28 s.
  fwd: (d) => ({ bq: d >= 64 ? 128 : 64, rm: 16, bk: 64, rn: 8, dc: 16, vc: 16 }),
  bwd: (d) =>
    d >= 64
      ? { bq: 128, rm: 16, bk: 64, rn: 8, dc: 16, vc: 16 }
      : { bq: 64, rm: 8, bk: 64, rn: 8, dc: 16, vc: 16 },
  // Loads are per-lane loops here, so no flash tile beats the matmul's 32×32 register tile: dense measured
  // 2.2× faster forward + backward at 1,280 tokens × 8 heads × 128 and 1.4× at the default preset.
  impl: "dense",
  note: "sweep at 1,280 tokens × 8 heads × 128: 15 (fwd) / 10 (bwd) GFLOP/s per CPU-second of both cores",
};

/** A GPU shape: 128 invocations of 4 rows × 4 columns, 64 query rows × 32-key tiles staged in workgroup memory. */
const GPU_TILE: AttnTile = { bq: 64, rm: 4, bk: 32, rn: 4, dc: 16, vc: 16 };
const GPU_RULE: AttentionRule = {
  fwd: () => GPU_TILE,
  bwd: () => GPU_TILE,
  impl: "flash",
  note: "not yet tuned on hardware",
};

export const ATTENTION_TILES: AdapterTable<AttentionRule> = adapterTable({
  cpu: CPU_RULE,
  default: GPU_RULE,
});

/**
 * The implementation `attention` uses on this adapter (or `kind`) when the caller does not choose one:
 * LOLA_ATTENTION (`flash` or `dense`) if set, else the table's (dense on software adapters, flash on GPUs);
 * flash wherever one head's N×N scores (given `tokens`) would not fit a dense chunk, unless LOLA_ATTENTION asks
 * for dense (which then errors, saying so).
 */
export function attentionImpl(tokens?: number, kind: AdapterKind = gpu().adapterKind): AttentionImpl {
  const env = Deno.env.get("LOLA_ATTENTION");
  if (env) {
    if (env !== "flash" && env !== "dense") {
      throw new Error(`LOLA_ATTENTION must be flash or dense, got '${env}'`);
    }
    return env;
  }
  const impl = ATTENTION_TILES.for(kind).impl;
  return impl === "dense" && tokens !== undefined && !denseFits(tokens) ? "flash" : impl;
}

/** This adapter's flash tile for head dim d, fitted to its workgroup-memory limit. */
export function attentionTile(d: number, kind: "fwd" | "bwd" = "fwd"): AttnTile {
  const g = gpu();
  return adapt(ATTENTION_TILES.for(g.adapterKind)[kind](d), d, kind, g.limits.maxComputeWorkgroupStorageSize);
}

/**
 * Fit a tile to the head dim (d/4 must split evenly over the bk/rn column invocations, dc must divide d) and
 * shrink it until its workgroup memory fits the adapter's limit (16 KiB on minimal WebGPU adapters).
 */
export function adapt(t: AttnTile, d: number, kind: "fwd" | "bwd", limit: number): AttnTile {
  let cur = { ...t, dc: Math.min(t.dc, d) };
  while ((d / 4) % (cur.bk / cur.rn) && cur.rn < cur.bk) cur.rn *= 2;
  while (d % cur.dc) cur.dc /= 2;
  const tx = cur.bk / cur.rn;
  cur.vc = Math.max(cur.vc, tx);
  const bytes = (x: AttnTile) => (kind === "fwd" ? fwdSharedBytes(x, d) : bwdSharedBytes(x, d));
  while (bytes(cur) > limit) {
    if (cur.vc / 2 >= tx && (cur.vc / 2) % tx === 0) cur = { ...cur, vc: cur.vc / 2 };
    else if (cur.bq > 2 * cur.rm) cur = { ...cur, bq: cur.bq / 2 };
    else if (cur.dc > 4) cur = { ...cur, dc: cur.dc / 2 };
    else throw new Error(`attention: no ${kind} tile fits ${limit} B of workgroup memory at head dim ${d}`);
  }
  tileLayout(cur, d);
  return cur;
}

/** The override (validated against the adapter's workgroup-memory limit) or the adapter's tile. */
export function checkedTile(t: AttnTile | undefined, d: number, kind: "fwd" | "bwd"): AttnTile {
  if (!t) return attentionTile(d, kind);
  const limit = gpu().limits.maxComputeWorkgroupStorageSize;
  const bytes = kind === "fwd" ? fwdSharedBytes(t, d) : bwdSharedBytes(t, d);
  if (bytes > limit) {
    throw new Error(`attention ${kind} tile ${JSON.stringify(t)}: ${bytes} B of workgroup memory > ${limit}`);
  }
  tileLayout(t, d);
  return t;
}
