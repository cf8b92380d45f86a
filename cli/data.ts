/**
 * `deno task data <sub>`: thin commands over `data/`: `info PATH [--json]`, `stats PATH [--force]`,
 * `euler --out PATH [...]`, `default`. Parses flags, calls the library, prints; the library computes.
 *
 * Invariants: a bad input prints one line `error: <message>` on stderr and returns 1; progress goes to stderr
 * (a rewritten line on a terminal, a line every few seconds otherwise) so stdout stays clean for `--json`.
 */
import { parseArgs } from "node:util";
import { DataError } from "../data/errors.ts";
import { describeDataset, formatSummary } from "../data/info.ts";
import { writeStats } from "../data/stats.ts";
import { type Boundary, EULER_DEFAULTS, generateEulerDataset } from "../data/euler_dataset.ts";
import { ensureDefaultDataset } from "../data/default_dataset.ts";

const USAGE = `usage: deno task data <command> [options]

commands:
  info PATH [--json]      describe a Well file, split folder or dataset root
  stats PATH [--force]    compute PATH/stats.yaml from the train split (streaming)
  euler --out PATH [...]  generate a multi-quadrant Euler dataset in The Well layout
  default                 print the default dataset's path, generating it first if needed

run \`deno task data <command> --help\` for a command's options.`;

const HELP: Record<string, string> = {
  info: `usage: deno task data info PATH [--json]

Describe a Well .hdf5 file, a split folder (…/data/train) or a dataset root (holding stats.yaml and data/).
Reads metadata only. --json prints the summary as JSON on stdout.`,
  stats: `usage: deno task data stats PATH [--force]

Compute PATH/stats.yaml (mean, std, rms and their *_delta, per field) from PATH/data/train, streaming, in
The Well's format. Refuses to overwrite an existing stats.yaml unless --force.`,
  euler: `usage: deno task data euler --out PATH [options]

Simulate 2-D compressible Euler trajectories from multi-quadrant Riemann initial conditions (like The Well's
euler_multi_quadrants) and write them with stats.yaml in The Well layout at PATH (which must not exist).

options:
  --out PATH           dataset folder to create (required)
  --resolution N       grid N×N (default ${EULER_DEFAULTS.resolution})
  --trajectories N     total trajectories over all splits and parameter sets (default ${EULER_DEFAULTS.trajectories})
  --steps T            stored frames per trajectory, over [0, t-end] (default ${EULER_DEFAULTS.steps})
  --t-end X            simulated time (default ${EULER_DEFAULTS.tEnd})
  --seed S             seed (default ${EULER_DEFAULTS.seed}); same seed and options → same file contents
  --gammas K           number of heat-capacity ratios γ drawn in [1.13, 1.76] (default ${EULER_DEFAULTS.gammas})
  --boundaries LIST    comma-separated, of periodic,open (default ${EULER_DEFAULTS.boundaries.join(",")})
  --workers N          simulation workers (default: number of cores)`,
  default: `usage: deno task data default

Print the path of the default dataset (the one \`deno task train\` uses without --data), generating it first
if it is missing (about a minute on 2 cores; cached under \${XDG_CACHE_HOME:-~/.cache}/lola-webgpu/).`,
};

/** A progress line with ETA on stderr. */
export function progressLine(label: string): { update(done: number, total: number): void; end(): void } {
  const tty = Deno.stderr.isTerminal();
  const enc = new TextEncoder();
  const t0 = performance.now();
  let last = 0;
  return {
    update(done, total) {
      const now = performance.now(), el = (now - t0) / 1000;
      if (!tty && now - last < 5000 && done < total) return;
      last = now;
      const eta = done > 0 ? (el / done) * (total - done) : NaN;
      const pct = total > 0 ? Math.floor((100 * done) / total) : 100;
      const line = `${label} ${done}/${total} (${pct}%)  ${fmtTime(el)} elapsed` +
        (done < total && Number.isFinite(eta) ? `, ETA ${fmtTime(eta)}` : "");
      Deno.stderr.writeSync(enc.encode(tty ? `\r\x1b[K${line}` : `${line}\n`));
    },
    end() {
      if (tty) Deno.stderr.writeSync(enc.encode("\n"));
    },
  };
}

function fmtTime(s: number): string {
  return s < 60
    ? `${s.toFixed(0)}s`
    : `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, "0")}s`;
}

function int(name: string, v: string | undefined, fallback: number, min = 0): number {
  if (v === undefined) return fallback;
  if (!/^\d+$/.test(v) || Number(v) < min) {
    throw new DataError(`--${name} must be an integer ≥ ${min}, got '${v}'`);
  }
  return Number(v);
}

async function info(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { json: { type: "boolean" }, help: { type: "boolean", short: "h" } },
    allowPositionals: true,
  });
  if (values.help) return help("info");
  if (positionals.length !== 1) throw new DataError(`data info takes one PATH (see --help)`);
  const s = await describeDataset(positionals[0]);
  console.log(values.json ? JSON.stringify(s, null, 2) : formatSummary(s));
  return 0;
}

async function stats(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { force: { type: "boolean" }, help: { type: "boolean", short: "h" } },
    allowPositionals: true,
  });
  if (values.help) return help("stats");
  if (positionals.length !== 1) {
    throw new DataError(`data stats takes one PATH, the dataset root (see --help)`);
  }
  const bar = progressLine("stats");
  const r = await writeStats(positionals[0], {
    force: values.force,
    onProgress: (p) => bar.update(p.done, p.total),
  });
  bar.end();
  for (const w of r.warnings) console.error(`warning: ${w}`);
  console.log(`wrote ${r.path}`);
  return 0;
}

async function euler(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      out: { type: "string" },
      resolution: { type: "string" },
      trajectories: { type: "string" },
      steps: { type: "string" },
      "t-end": { type: "string" },
      seed: { type: "string" },
      gammas: { type: "string" },
      boundaries: { type: "string" },
      workers: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    allowPositionals: true,
  });
  if (values.help) return help("euler");
  if (positionals.length) throw new DataError(`unexpected argument '${positionals[0]}' (see --help)`);
  if (!values.out) throw new DataError(`data euler needs --out PATH (see --help)`);
  const boundaries = (values.boundaries ?? EULER_DEFAULTS.boundaries.join(",")).split(",").map((b) =>
    b.trim()
  );
  for (const b of boundaries) {
    if (b !== "periodic" && b !== "open") {
      throw new DataError(`--boundaries takes periodic and/or open, got '${b}'`);
    }
  }
  const tEnd = values["t-end"] === undefined ? EULER_DEFAULTS.tEnd : Number(values["t-end"]);
  if (!(tEnd > 0)) throw new DataError(`--t-end must be a positive number, got '${values["t-end"]}'`);
  const bar = progressLine("simulating trajectories");
  const r = await generateEulerDataset({
    out: values.out,
    resolution: int("resolution", values.resolution, EULER_DEFAULTS.resolution, 8),
    trajectories: int("trajectories", values.trajectories, EULER_DEFAULTS.trajectories, 1),
    steps: int("steps", values.steps, EULER_DEFAULTS.steps, 2),
    tEnd,
    seed: int("seed", values.seed, EULER_DEFAULTS.seed),
    gammas: int("gammas", values.gammas, EULER_DEFAULTS.gammas, 1),
    boundaries: boundaries as Boundary[],
    workers: values.workers === undefined ? undefined : int("workers", values.workers, 0),
    onProgress: (p) => bar.update(p.done, p.total),
  });
  bar.end();
  console.log(`wrote ${r.root} in ${r.seconds.toFixed(1)} s`);
  return 0;
}

async function defaultDataset(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { help: { type: "boolean", short: "h" } } });
  if (values.help) return help("default");
  const bar = progressLine("generating the default dataset");
  const t0 = performance.now();
  let generated = false;
  const path = await ensureDefaultDataset({
    onStart: (p) => {
      generated = true;
      console.error(`generating the default dataset at ${p} (first use)`);
    },
    onProgress: (p) => bar.update(p.done, p.total),
  });
  if (generated) {
    bar.end();
    console.error(`done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  console.log(path);
  return 0;
}

function help(cmd?: string): number {
  console.log(cmd ? HELP[cmd] : USAGE);
  return 0;
}

/** Runs `data <sub> ...`; returns the process exit code. */
export async function dataCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  try {
    switch (sub) {
      case "info":
        return await info(rest);
      case "stats":
        return await stats(rest);
      case "euler":
        return await euler(rest);
      case "default":
        return await defaultDataset(rest);
      case undefined:
      case "help":
      case "--help":
      case "-h":
        return help();
      default:
        throw new DataError(`unknown data command '${sub}': expected info, stats, euler or default`);
    }
  } catch (e) {
    if (e instanceof DataError) {
      console.error(`error: ${e.message}`);
      return 1;
    }
    if (e instanceof TypeError && "code" in e && String(e.code).startsWith("ERR_PARSE_ARGS")) {
      console.error(`error: ${e.message} (see \`deno task data ${sub} --help\`)`);
      return 1;
    }
    throw e;
  }
}

if (import.meta.main) Deno.exit(await dataCommand(Deno.args));
