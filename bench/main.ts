/**
 * `deno task bench`: measures the adapter's ceilings (FMA GFLOP/s, copy GB/s), then every kernel benchmark of
 * bench/kernels/*.ts (the `benches: Bench[]` contract of bench/types.ts), prints one table with each kernel's
 * share of the ceilings measured in the same run, and appends JSON lines to bench/results/<date>.jsonl.
 *
 * The machine may be shared: the `cpu%` column is the process CPU time over wall time × cores, so a row
 * measured while other work ran shows it. `MiB` is the peak of GPU memory one run holds beyond what was in
 * use before it (temporaries, outputs, gradients), from the pool's counters.
 */
import { parseArgs } from "node:util";
import { gpu, initDevice } from "../engine/index.ts";
import { copyBenches, fmaBenches } from "./ceilings.ts";
import { timeRuns, type Timing } from "./timing.ts";
import type { Bench } from "./types.ts";
import * as attention from "./kernels/attention.ts";
import * as conv from "./kernels/conv.ts";
import * as elementwise from "./kernels/elementwise.ts";
import * as emulate from "./kernels/emulate.ts";
import * as layerNorm from "./kernels/layer_norm.ts";
import * as matmul from "./kernels/matmul.ts";
import * as metrics from "./kernels/metrics.ts";
import * as reduce from "./kernels/reduce.ts";
import * as softmax from "./kernels/softmax.ts";
import * as step from "./kernels/step.ts";

const HELP = `deno task bench [--filter TEXT] [--quick] [--cpu-time] [--no-save]

Measures the adapter's FMA and copy ceilings, then every benchmark in bench/kernels/*.ts, and prints
ms, GFLOP/s, GB/s, the share of each ceiling and the peak GPU memory of one run (MiB). Results are appended to bench/results/<date>.jsonl.

  --filter TEXT  only benchmarks whose "kernel shape" contains TEXT (e.g. matmul, softmax, 4096x256)
  --quick        one ceiling variant, one short measurement per benchmark (a smoke test, not numbers to keep)
  --cpu-time     CPU adapters only: rates from the process CPU time spread over all cores instead of the wall
                 clock, i.e. what each kernel does per CPU it actually got (for a machine shared with other work)
  --no-save      do not append to bench/results/
  --help         this text`;

export interface Row {
  kernel: string;
  shape: string;
  timing: Timing;
  gflops: number;
  gbps: number;
}

/** Every kernel benchmark, imported statically: a broken benchmark file fails the run instead of leaving the table. */
export function allBenches(): Bench[] {
  return [matmul, elementwise, softmax, layerNorm, reduce, attention, conv, metrics, emulate, step].flatMap((
    m,
  ) => m.benches);
}

interface Mode {
  quick: boolean;
  /** Rates from CPU time / cores (see --cpu-time). */
  cpuTime: boolean;
}

async function measure(b: Bench, mode: Mode): Promise<Row> {
  const c = b.setup();
  try {
    const timing = await timeRuns(c.run, {
      minSeconds: mode.quick ? 0.1 : 0.3,
      repeats: mode.quick ? 1 : 3,
      bytesPerRun: b.bytes,
    });
    const ms = mode.cpuTime ? timing.cpuMs / navigator.hardwareConcurrency : timing.ms;
    return { kernel: b.kernel, shape: b.shape, timing, gflops: b.flops / ms / 1e6, gbps: b.bytes / ms / 1e6 };
  } finally {
    c.dispose();
  }
}

/** The best of several variants of one ceiling kernel. */
async function ceiling(benches: Bench[], mode: Mode, pick: (r: Row) => number): Promise<Row> {
  let best: Row | null = null;
  for (const b of benches) {
    const r = await measure(b, mode);
    if (!best || pick(r) > pick(best)) best = r;
  }
  return best!;
}

const pct = (x: number, peak: number) => (x > 0 && peak > 0 ? (100 * x) / peak : NaN);
const fmt = (x: number, d = 1) => (Number.isFinite(x) && x > 0 ? x.toFixed(d) : "-");

function printTable(rows: Row[], fmaPeak: number, copyBw: number): void {
  const cores = navigator.hardwareConcurrency;
  const head = ["kernel", "shape", "ms", "GFLOP/s", "GB/s", "% FMA peak", "% copy BW", "MiB", "cpu%"];
  const body = rows.map((r) => [
    r.kernel,
    r.shape,
    r.timing.ms.toFixed(3),
    fmt(r.gflops, 2),
    fmt(r.gbps, 2),
    fmt(pct(r.gflops, fmaPeak)),
    fmt(pct(r.gbps, copyBw)),
    fmt(r.timing.peakBytes / 2 ** 20),
    fmt((100 * r.timing.cpuMs) / (r.timing.ms * cores), 0),
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...body.map((row) => row[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i < 2 ? c.padEnd(w[i]) : c.padStart(w[i]))).join("  ");
  console.log(line(head));
  console.log(w.map((n) => "-".repeat(n)).join("  "));
  for (const row of body) console.log(line(row));
}

/**
 * The host CPU as /proc/cpuinfo names it (model name, family/model), or "unknown": a software adapter's numbers
 * depend on it, and a VM's CPU can change between days under the same adapter name.
 */
function hostCpu(): string {
  try {
    const info = Deno.readTextFileSync("/proc/cpuinfo");
    const field = (k: string) => info.match(new RegExp(`^${k}\\s*:\\s*(.*)$`, "m"))?.[1]?.trim();
    const name = field("model name");
    return name ? `${name} (family ${field("cpu family")}, model ${field("model")})` : "unknown";
  } catch {
    return "unknown";
  }
}

async function save(rows: Row[], fmaPeak: number, copyBw: number, mode: Mode): Promise<string> {
  const date = new Date().toISOString();
  const dir = new URL("./results/", import.meta.url);
  await Deno.mkdir(dir, { recursive: true });
  const file = new URL(`${date.slice(0, 10)}.jsonl`, dir);
  const common = {
    adapter: gpu().adapterName,
    host_cpu: hostCpu(),
    deno_version: Deno.version.deno,
    date,
    quick: mode.quick,
    rates_from: mode.cpuTime ? "cpu_time" : "wall",
    load_avg: Deno.loadavg()[0],
  };
  const lines = rows.map((r) =>
    JSON.stringify({
      kernel: r.kernel,
      shape: r.shape,
      ms: r.timing.ms,
      median_ms: r.timing.medianMs,
      cpu_ms: r.timing.cpuMs,
      runs: r.timing.runs,
      gflops: r.gflops,
      gbps: r.gbps,
      pct_fma_peak: Number.isNaN(pct(r.gflops, fmaPeak)) ? null : pct(r.gflops, fmaPeak),
      pct_copy_bw: Number.isNaN(pct(r.gbps, copyBw)) ? null : pct(r.gbps, copyBw),
      peak_mib: r.timing.peakBytes / 2 ** 20,
      ...common,
    })
  );
  await Deno.writeTextFile(file, lines.join("\n") + "\n", { append: true });
  return file.pathname;
}

/**
 * `deno task bench` and `deno run -A cli/main.ts bench`: returns 0 once every benchmark ran; throws (after
 * printing the table of the others) if any failed.
 */
export async function benchCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      filter: { type: "string" },
      quick: { type: "boolean", default: false },
      "cpu-time": { type: "boolean", default: false },
      "no-save": { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const quick = values.quick!;
  await initDevice();
  const load = Deno.loadavg()[0], cores = navigator.hardwareConcurrency;
  console.log(
    `adapter: ${gpu().adapterName} · host CPU ${hostCpu()} · deno ${Deno.version.deno} · load average ${
      load.toFixed(2)
    } on ${cores} cores`,
  );
  if (gpu().isCpu && load > cores / 2) {
    console.log("warning: the machine is busy; CPU-adapter timings will be low");
  }
  const mode: Mode = { quick, cpuTime: values["cpu-time"]! && gpu().isCpu };
  if (mode.cpuTime) console.log("rates from process CPU time / cores (--cpu-time), ms column is wall-clock");
  const fma = await ceiling(fmaBenches(quick), mode, (r) => r.gflops);
  const copy = await ceiling(copyBenches(quick), mode, (r) => r.gbps);
  const rows: Row[] = [fma, copy];
  const benches = allBenches().filter((b) =>
    !values.filter || `${b.kernel} ${b.shape}`.includes(values.filter)
  );
  const failed: string[] = [];
  for (const b of benches) {
    try {
      rows.push(await measure(b, mode));
    } catch (e) {
      console.error(`bench: ${b.kernel} ${b.shape} failed: ${(e as Error).message.split("\n")[0]}`);
      failed.push(`${b.kernel} ${b.shape}`);
    }
  }
  console.log();
  printTable(rows, fma.gflops, copy.gbps);
  if (!values["no-save"]) {
    console.log(`\nappended ${rows.length} rows to ${await save(rows, fma.gflops, copy.gbps, mode)}`);
  }
  if (failed.length) throw new Error(`${failed.length} benchmark(s) failed: ${failed.join(", ")}`);
  return 0;
}

if (import.meta.main) {
  try {
    Deno.exit(await benchCommand(Deno.args));
  } catch (e) {
    console.error(`bench: ${(e instanceof Error ? e.message : String(e)).split("\n")[0]}`);
    if (Deno.env.get("LOLA_DEBUG")) console.error(e);
    Deno.exit(1);
  }
}
