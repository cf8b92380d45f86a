/**
 * `deno task eval compare PRED TRUTH [--json] [--fields a,b]`: The Well's and the paper's metrics between two
 * files in The Well's layout (the computing is eval/compare.ts and eval/metrics.ts; this file parses and prints).
 *
 * Invariants: `--json` prints exactly one JSON object on stdout, `{fields, times, well, paper}` with
 * `well[metric][field]` and `paper[metric][field]` one value per time (NaN, e.g. a spectral band with no bins on
 * a tiny grid, prints as null); progress goes to stderr; bad input is one thrown line (cli/main.ts prints it).
 */
import { compareWellFiles, type Comparison } from "../eval/compare.ts";
import { initDevice } from "../engine/index.ts";
import { nonNegativeInt, oneOf, parseFlags, positiveInt, positiveNumber, UsageError } from "./args.ts";
import { Progress } from "./progress.ts";
import { runEvaluation } from "../eval/evaluate.ts";
import { isDiffusion } from "../eval/report.ts";
import { parseObservation } from "../models/observe.ts";

const USAGE = `usage: deno task eval --ae RUN [--dm RUN] [--solver RUN] [--pixel-solver RUN] [options]
       deno task eval compare PRED TRUTH [--json] [--fields a,b]

The first form rolls the emulators out on test trajectories and writes metrics.jsonl, summary.json,
report.md and figures (see \`deno task eval --ae RUN --help\`); the second compares two Well-format files
(\`deno task eval compare --help\`).`;

const RUN_HELP = `usage: deno task eval --ae RUN [--dm RUN] [--solver RUN] [--pixel-solver RUN] [options]

Rolls each emulator out autoregressively on the first N test trajectories (diffusion with K members), compares
every frame with the truth in physical units (the paper's metrics: VRMSE, spread/skill, power-spectrum band
errors; and The Well's), adds persistence and the autoencoder's reconstruction as references, and writes to
--out: metrics.jsonl (one row per method × trajectory × context × field × lead time), summary.json, report.md
(tables per lead-time window, the paper's findings checked, figures), figures/*.png and rollouts/.

options:
  --ae RUN                 autoencoder run folder (required)
  --dm RUN                 latent diffusion run
  --solver RUN             latent solver run
  --pixel-solver RUN       pixel-space solver run
  --data PATH              Well dataset (default: the autoencoder's)
  --split NAME             test | valid | train (default test)
  --trajectories N         first N trajectories of the split (default 4)
  --members K              diffusion ensemble size (default 8)
  --context LIST           context frames, comma-separated (default 1; the paper: 1,2,3)
  --steps N                sampler steps (default 16)
  --guided LIST            also roll the diffusion emulator out guided by observations of the truth, one
                           method per operator: subsample:S and/or pool:S, comma-separated (e.g.
                           subsample:8,pool:8; needs --dm; method §8)
  --obs-noise X            σ_y of those observations (default 0.1)
  --gmres N                GMRES iterations of the guidance (default 1)
  --seed S                 (default 0)
  --out DIR                (default runs/eval)`;

const COMPARE_HELP = `usage: deno task eval compare PRED TRUTH [--json] [--fields a,b]

Metrics of the predictions in PRED against the ground truth in TRUTH, both HDF5 files in The Well's layout
(same fields, grid and number of steps), per field and per lead time (step index), averaged over trajectories.

Ensembles: if PRED holds K times as many trajectories as TRUTH, the members of truth trajectory b are PRED
trajectories b·K … b·K+K−1 (K = 1: one prediction per trajectory).

Metrics, in physical units as stored:
  The Well's (ensemble mean as the prediction): MSE RMSE MAE NMSE NRMSE VMSE VRMSE LInfinity PearsonR
    spectral_error_mse_per_bin_{0,1,2} spectral_error_nmse_per_bin_{0,1,2}
  the paper's: RMSE NRMSE VRMSE spread spread_skill spectrum_error_{low,mid,high,sub} cross_error_{…}

options:
  --json          print one JSON object {fields, times, well: {metric: {field: [per time]}}, paper: {…}}
  --fields LIST   comma-separated channel names (momentum_x) or field names (momentum); default all
  --help          this text`;

export async function evalCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (!sub || sub === "--help" || sub === "-h") {
    console.log(USAGE);
    return sub ? 0 : 2;
  }
  if (sub.startsWith("-")) return await runCommand(args);
  if (sub !== "compare") throw new UsageError(`unknown eval command '${sub}' (try --help)`);
  const { values, positionals } = parseFlags(
    rest,
    { json: { type: "boolean" }, fields: { type: "string" }, help: { type: "boolean", short: "h" } },
    { allowPositionals: true, command: "eval compare" },
  );
  if (values.help) {
    console.log(COMPARE_HELP);
    return 0;
  }
  if (positionals.length !== 2) {
    throw new UsageError("eval compare takes two paths, PRED and TRUTH (see --help)");
  }
  const fields = values.fields?.split(",").map((s) => s.trim()).filter(Boolean);
  if (values.fields !== undefined && !fields?.length) {
    throw new UsageError("--fields needs at least one name");
  }
  Deno.env.set("LOLA_QUIET", Deno.env.get("LOLA_QUIET") ?? (values.json ? "1" : ""));
  const r = await compareWellFiles(positionals[0], positionals[1], {
    fields,
    // Bad files fail before the (slow) device start.
    beforeCompute: async () => void (await initDevice()),
    onTrajectory: (done, total) => console.error(`eval compare: trajectory ${done}/${total}`),
  });
  if (values.json) {
    const clean = (x: unknown) => (typeof x === "number" && !Number.isFinite(x) ? null : x);
    console.log(JSON.stringify(
      { fields: r.fields, times: r.times, well: r.well, paper: r.paper },
      (_, v) => clean(v),
    ));
  } else printTables(r);
  return 0;
}

const COLUMNS: [string, "well" | "paper", string][] = [
  ["RMSE", "well", "RMSE"],
  ["VRMSE", "well", "VRMSE"],
  ["LInf", "well", "LInfinity"],
  ["PearsonR", "well", "PearsonR"],
  ["spread", "paper", "spread"],
  ["spr/skill", "paper", "spread_skill"],
  ["spec low", "paper", "spectrum_error_low"],
  ["spec mid", "paper", "spectrum_error_mid"],
  ["spec high", "paper", "spectrum_error_high"],
];

/** One table per field: a row per lead time, a few key columns (all metrics are in --json). */
function printTables(r: Comparison): void {
  console.log(
    `${r.trajectories} trajectories × ${r.members} member(s), ${r.times.length} steps; all metrics: --json`,
  );
  const num = (x: number) => (Number.isFinite(x) ? x.toPrecision(4) : "-");
  for (const field of r.fields) {
    const head = ["t", "time", ...COLUMNS.map((c) => c[0])];
    const rows = r.times.map((time, t) => [
      String(t),
      num(time),
      ...COLUMNS.map(([, suite, name]) => num(r[suite][name][field][t])),
    ]);
    const w = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
    const line = (cells: string[]) => cells.map((c, i) => c.padStart(w[i])).join("  ");
    console.log(`\n${field}`);
    console.log(line(head));
    for (const row of rows) console.log(line(row));
  }
}

/** `--guided subsample:8,pool:8` → its operators, each checked (models/observe.ts); undefined when absent. */
export function guidedFlag(value: string | undefined): string[] | undefined {
  const specs = value?.split(",").map((s) => s.trim()).filter((s) => s.length);
  for (const s of specs ?? []) {
    try {
      parseObservation(s);
    } catch (e) {
      throw new UsageError(`--guided: ${(e as Error).message}`);
    }
  }
  return specs;
}

async function runCommand(args: string[]): Promise<number> {
  const { values: v } = parseFlags(args, {
    ae: { type: "string" },
    dm: { type: "string" },
    solver: { type: "string" },
    "pixel-solver": { type: "string" },
    data: { type: "string" },
    split: { type: "string" },
    trajectories: { type: "string" },
    members: { type: "string" },
    context: { type: "string" },
    steps: { type: "string" },
    guided: { type: "string" },
    "obs-noise": { type: "string" },
    gmres: { type: "string" },
    seed: { type: "string" },
    out: { type: "string", default: "runs/eval" },
    help: { type: "boolean", short: "h" },
  }, { command: "eval" });
  if (v.help) {
    console.log(RUN_HELP);
    return 0;
  }
  if (!v.ae) throw new UsageError("eval needs --ae RUN, the autoencoder run folder (see --help)");
  if (!v.dm && !v.solver && !v["pixel-solver"]) {
    throw new UsageError("eval needs at least one emulator: --dm, --solver or --pixel-solver (see --help)");
  }
  const contexts = (v.context ?? "1").split(",").map((c) => positiveInt("context", c.trim()));
  const guided = guidedFlag(v.guided);
  if (guided?.length && !v.dm) {
    throw new UsageError("--guided steers the diffusion emulator: it needs --dm RUN");
  }
  if (!guided?.length && (v["obs-noise"] !== undefined || v.gmres !== undefined)) {
    throw new UsageError("--obs-noise and --gmres set up guidance: they need --guided subsample:S|pool:S");
  }
  const bar = new Progress("eval", 1, "rollout");
  const res = await runEvaluation({
    ae: v.ae,
    dm: v.dm,
    solver: v.solver,
    pixelSolver: v["pixel-solver"],
    data: v.data,
    split: oneOf("split", v.split, ["train", "valid", "test"] as const, "test"),
    trajectories: positiveInt("trajectories", v.trajectories, 4),
    members: positiveInt("members", v.members, 8),
    contexts,
    steps: positiveInt("steps", v.steps, 16),
    guided,
    obsNoise: positiveNumber("obs-noise", v["obs-noise"], 0.1),
    gmres: positiveInt("gmres", v.gmres, 1),
    seed: nonNegativeInt("seed", v.seed, 0),
    out: v.out,
    title: v.out,
    onLog: (l) => console.error(l),
    onProgress: (done, total, info) => bar.update(done, info, total),
  });
  bar.end();
  console.log(
    `wrote ${res.report} (${res.rows} metric rows, figures in ${res.out}/figures) in ${
      res.seconds.toFixed(0)
    } s`,
  );
  for (const [m, w] of Object.entries(res.table)) {
    console.log(
      `  ${m.padEnd(14)} VRMSE ${w.all.VRMSE.toFixed(3)}${
        isDiffusion(m) ? `  spread/skill ${w.all.spread_skill.toFixed(3)}` : ""
      }`,
    );
  }
  return 0;
}
