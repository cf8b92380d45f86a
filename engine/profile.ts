/**
 * Per-kernel GPU time from timestamp queries, on when LOLA_PROFILE=1 (and the adapter has `timestamp-query`).
 * Each dispatch then gets its own compute pass with begin/end timestamps (which serialises the GPU a little:
 * profile to find hot kernels, benchmark without it). Results are collected after each submit without blocking
 * the caller; `profileReport()` waits for the outstanding ones and returns a table sorted by total time.
 */
import { gpu } from "./device.ts";

const CAPACITY = 2048; // dispatches per submit before the runtime must flush

interface Slot {
  querySet: GPUQuerySet;
  resolve: GPUBuffer;
  names: string[];
}

let enabled: boolean | null = null;
let slot: Slot | null = null;
const pending: Promise<void>[] = [];
/** Per kernel name: calls and GPU time after the first call, and the first call's time on its own. */
const totals = new Map<string, { calls: number; ns: number; firstNs: number }>();

export function profilingEnabled(): boolean {
  if (enabled === null) {
    enabled = Deno.env.get("LOLA_PROFILE") === "1" && gpu().features.has("timestamp-query");
  }
  return enabled;
}

/** Timestamp writes for the next dispatch's own pass, or null when the query set is full (caller flushes). */
export function nextTimestampWrites(name: string): GPUComputePassTimestampWrites | null {
  const device = gpu().device;
  if (!slot) {
    slot = {
      querySet: device.createQuerySet({ type: "timestamp", count: CAPACITY * 2 }),
      resolve: device.createBuffer({
        size: CAPACITY * 16,
        usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
      }),
      names: [],
    };
  }
  if (slot.names.length >= CAPACITY) return null;
  const i = slot.names.length;
  slot.names.push(name);
  return { querySet: slot.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 };
}

/** Called by the runtime just before finishing an encoder: resolve this submit's queries. */
export function resolveQueries(encoder: GPUCommandEncoder): (() => void) | null {
  if (!slot || slot.names.length === 0) return null;
  const s = slot;
  slot = null;
  const n = s.names.length;
  const read = gpu().device.createBuffer({
    size: n * 16,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  encoder.resolveQuerySet(s.querySet, 0, 2 * n, s.resolve, 0);
  encoder.copyBufferToBuffer(s.resolve, 0, read, 0, n * 16);
  return () => {
    pending.push(
      read.mapAsync(GPUMapMode.READ).then(() => {
        const t = new BigInt64Array(read.getMappedRange());
        for (let i = 0; i < n; i++) {
          const dt = Math.max(0, Number(t[2 * i + 1] - t[2 * i]));
          const e = totals.get(s.names[i]);
          if (!e) totals.set(s.names[i], { calls: 0, ns: 0, firstNs: dt });
          else {
            e.calls++;
            e.ns += dt;
          }
        }
        read.destroy();
        s.querySet.destroy();
        s.resolve.destroy();
      }),
    );
  };
}

/**
 * Wait for outstanding timings; return a text table of kernels by total GPU time. Each kernel's first call is
 * kept apart (`1st ms`): on a CPU adapter it includes the shader's compile, which would otherwise swamp short
 * runs; calls, total, mean and % are over the calls after it (a kernel run once shows only its first call).
 */
export async function profileReport(top = 30): Promise<string> {
  await Promise.all(pending.splice(0));
  const rows = [...totals.entries()].sort((a, b) => b[1].ns - a[1].ns || b[1].firstNs - a[1].firstNs);
  const all = rows.reduce((s, [, e]) => s + e.ns, 0);
  const lines = [
    "kernel (calls after the first)                           calls   total ms   mean µs     %   1st ms",
  ];
  for (const [name, e] of rows.slice(0, top)) {
    const mean = e.calls ? (e.ns / e.calls / 1e3).toFixed(1) : "-";
    lines.push(
      `${name.slice(0, 56).padEnd(56)} ${String(e.calls).padStart(6)} ${
        (e.ns / 1e6).toFixed(2).padStart(10)
      } ` +
        `${mean.padStart(9)} ${((100 * e.ns) / Math.max(all, 1)).toFixed(1).padStart(5)} ${
          (e.firstNs / 1e6).toFixed(1).padStart(8)
        }`,
    );
  }
  return lines.join("\n");
}
