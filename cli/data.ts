/**
 * `deno task data <sub>`: thin commands over `data/`: `info PATH [--json]`, `stats PATH [--force]`,
 * `euler --out PATH [...]`, `default`. Parses flags, calls the library, prints; the library computes.
 *
 * Invariants: a bad input prints one line `error: <message>` on stderr and returns 1; progress goes to stderr
 * (a rewritten line on a terminal, a line every few seconds otherwise) so stdout stays clean for `--json`.
 */
import { DataError } from "../data/errors.ts";
import { describeDataset, formatSummary } from "../data/info.ts";
import { writeStats } from "../data/stats.ts";
import { type Boundary, EULER_DEFAULTS, generateEulerDataset } from "../data/euler_dataset.ts";
import { ensureDefaultDataset } from "../data/default_dataset.ts";
import {
  intAtLeast,
  listOf,
  nonNegativeInt,
  parseFlags,
  positiveInt,
  positiveNumber,
  UsageError,
} from "./args.ts";
import { Progress } from "./progress.ts";

const USAGE = `usage: deno task data <command> [options]

commands:
  info PATH [--json] [--check]  describe a Well file, split folder or dataset root
  stats PATH [--force]          compute PATH/stats.yaml from the train split (streaming)
  euler --out PATH [...]        generate a multi-quadrant Euler dataset in The Well layout
  default                       print the default dataset's path, generating it first if needed

run \`deno task data <command> --help\` for a command's options.`;

const HELP: Record<string, string> = {
  info: `usage: deno task data info PATH [--json] [--check]

Describe a Well .hdf5 file, a split folder (…/data/train) or a dataset root (holding stats.yaml and data/).
Reads metadata only. --json prints the summary as JSON on stdout. --check also reads every value and counts
the non-finite ones (NaN, ±Inf) per split and field, and exits 1 when there are any.`,
  stats: `usage: deno task data stats PATH [--force]

Compute PATH/stats.yaml (mean, std, rms and their *_delta, per field) from PATH/data/train, streaming, in
The Well's format. Refuses to overwrite an existing stats.yaml unless --force (use it to replace an invalid
one), and refuses data holding NaN or ±Inf (find them with \`data info PATH --check\`).`,
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

async function info(args: string[]): Promise<number> {
  const { values, positionals } = parseFlags(
    args,
    { json: { type: "boolean" }, check: { type: "boolean" }, help: { type: "boolean", short: "h" } },
    { allowPositionals: true, command: "data info" },
  );
  if (values.help) return help("info");
  if (positionals.length !== 1) throw new UsageError(`data info takes one PATH (see --help)`);
  const bar = values.check ? new Progress("check", 0, "traj") : null;
  const s = await describeDataset(positionals[0], {
    check: values.check,
    onProgress: (p) => bar?.update(p.done, "", p.total),
  });
  bar?.end();
  console.log(values.json ? JSON.stringify(s, null, 2) : formatSummary(s));
  const bad = s.non_finite ? Object.values(s.non_finite).flatMap((f) => Object.values(f)) : [];
  if (bad.some((n) => n > 0)) {
    console.error(`error: ${positionals[0]} holds non-finite values (counts per split and field above)`);
    return 1;
  }
  return 0;
}

async function stats(args: string[]): Promise<number> {
  const { values, positionals } = parseFlags(
    args,
    { force: { type: "boolean" }, help: { type: "boolean", short: "h" } },
    { allowPositionals: true, command: "data stats" },
  );
  if (values.help) return help("stats");
  if (positionals.length !== 1) {
    throw new UsageError(`data stats takes one PATH, the dataset root (see --help)`);
  }
  const bar = new Progress("stats", 0, "traj");
  const r = await writeStats(positionals[0], {
    force: values.force,
    onProgress: (p) => bar.update(p.done, "", p.total),
  });
  bar.end();
  for (const w of r.warnings) console.error(`warning: ${w}`);
  console.log(`wrote ${r.path}`);
  return 0;
}

async function euler(args: string[]): Promise<number> {
  const { values, positionals } = parseFlags(
    args,
    {
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
    { allowPositionals: true, command: "data euler" },
  );
  if (values.help) return help("euler");
  if (positionals.length) throw new UsageError(`unexpected argument '${positionals[0]}' (see --help)`);
  if (!values.out) throw new UsageError(`data euler needs --out PATH (see --help)`);
  const opts = {
    out: values.out,
    resolution: intAtLeast("resolution", values.resolution, 8, EULER_DEFAULTS.resolution),
    trajectories: positiveInt("trajectories", values.trajectories, EULER_DEFAULTS.trajectories),
    steps: intAtLeast("steps", values.steps, 2, EULER_DEFAULTS.steps),
    tEnd: positiveNumber("t-end", values["t-end"], EULER_DEFAULTS.tEnd),
    seed: nonNegativeInt("seed", values.seed, EULER_DEFAULTS.seed),
    gammas: positiveInt("gammas", values.gammas, EULER_DEFAULTS.gammas),
    boundaries: listOf<Boundary>(
      "boundaries",
      values.boundaries,
      ["periodic", "open"],
      EULER_DEFAULTS.boundaries,
    ),
    workers: values.workers === undefined ? undefined : nonNegativeInt("workers", values.workers),
  };
  const bar = new Progress("simulate", 0, "traj");
  const r = await generateEulerDataset({ ...opts, onProgress: (p) => bar.update(p.done, "", p.total) });
  bar.end();
  console.log(`wrote ${r.root} in ${r.seconds.toFixed(1)} s`);
  return 0;
}

async function defaultDataset(args: string[]): Promise<number> {
  const { values } = parseFlags(args, { help: { type: "boolean", short: "h" } }, { command: "data default" });
  if (values.help) return help("default");
  const bar = new Progress("generate", 0, "traj");
  const t0 = performance.now();
  let generated = false;
  const path = await ensureDefaultDataset({
    onStart: (p) => {
      generated = true;
      console.error(`generating the default dataset at ${p} (first use)`);
    },
    onProgress: (p) => bar.update(p.done, "", p.total),
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
        throw new UsageError(`unknown data command '${sub}': expected info, stats, euler or default`);
    }
  } catch (e) {
    if (e instanceof DataError || e instanceof UsageError) {
      console.error(`error: ${e.message}`);
      return 1;
    }
    throw e;
  }
}

if (import.meta.main) Deno.exit(await dataCommand(Deno.args));
