/**
 * Timing of encoded GPU work: warm up (pipeline compile, pool fill), calibrate one run, then time batches of
 * runs between `await sync()` calls, several runs per submit, until a measurement lasts ≥ `minSeconds`.
 * Reports the best and the median of `repeats` measurements (other processes share this machine's CPUs, so
 * the best is the closest to the adapter's real speed) and the process CPU time, which on a CPU adapter shows
 * how much of the machine the measurement actually got.
 */
import process from "node:process";
import { flush, pool, scope, sync } from "../engine/index.ts";

export interface TimingOptions {
  /** Minimum seconds per measurement (default 0.3). */
  minSeconds?: number;
  /** Measurements to take (default 3). */
  repeats?: number;
  /** Bytes one run allocates and frees (bounds runs per submit: the pool recycles only after a submit). */
  bytesPerRun?: number;
}

export interface Timing {
  /** Best wall-clock milliseconds per run. */
  ms: number;
  medianMs: number;
  /** Process CPU milliseconds per run in the best measurement (all threads: lavapipe's workers included). */
  cpuMs: number;
  /** Runs per measurement and runs encoded per submit. */
  runs: number;
  perSubmit: number;
  /** Peak GPU bytes one run holds beyond what was in use before it (its temporaries, outputs, gradients). */
  peakBytes: number;
}

/** Encode `run` once inside a scope (its temporaries go back to the pool). */
function once(run: () => void): void {
  scope(() => {
    run();
  });
}

export async function timeRuns(run: () => void, opts: TimingOptions = {}): Promise<Timing> {
  const minSeconds = opts.minSeconds ?? 0.3, repeats = opts.repeats ?? 3;
  await sync();
  const before = pool.stats.bytesInUse;
  pool.stats.peakBytesInUse = before;
  once(run);
  await sync();
  const peakBytes = pool.stats.peakBytesInUse - before;
  let t0 = performance.now();
  once(run);
  await sync();
  const single = Math.max(performance.now() - t0, 0.01);
  // ~50 ms of work per submit, never more than 1 GiB of temporaries waiting for it.
  const memCap = Math.max(1, Math.floor(2 ** 30 / Math.max(1, opts.bytesPerRun ?? 0)));
  const perSubmit = Math.max(1, Math.min(64, memCap, Math.floor(50 / single)));
  const runs = Math.max(perSubmit, Math.ceil((minSeconds * 1000) / single / perSubmit) * perSubmit);
  const samples: { ms: number; cpuMs: number }[] = [];
  for (let r = 0; r < repeats; r++) {
    await sync();
    const c0 = process.cpuUsage();
    t0 = performance.now();
    for (let i = 0; i < runs; i += perSubmit) {
      for (let j = 0; j < perSubmit; j++) once(run);
      flush();
    }
    await sync();
    const ms = (performance.now() - t0) / runs;
    const cpu = process.cpuUsage(c0);
    samples.push({ ms, cpuMs: (cpu.user + cpu.system) / 1000 / runs });
  }
  samples.sort((a, b) => a.ms - b.ms);
  return {
    ms: samples[0].ms,
    medianMs: samples[Math.floor(samples.length / 2)].ms,
    cpuMs: samples[0].cpuMs,
    runs,
    perSubmit,
    peakBytes,
  };
}
