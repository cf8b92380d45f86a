/**
 * `deno task emulate`: parses and validates the flags, calls eval/emulate_run.ts, shows a progress bar over
 * windows and prints where the outputs went. Bad input is one thrown line (cli/main.ts prints it).
 */
import { join } from "node:path";
import { emulate } from "../eval/emulate_run.ts";
import type { Split } from "../data/well_dataset.ts";
import { nonNegativeInt, oneOf, parseFlags, positiveInt, UsageError } from "./args.ts";
import { Progress } from "./progress.ts";

const HELP = `usage: deno task emulate --ae RUN (--dm RUN | --solver RUN | --pixel-solver RUN) [options]

Rolls a trained emulator out autoregressively from the first frames of real trajectories (method §5): each
window of L frames (the run's) takes c context frames and generates L − c; the next context is the last c
generated frames. Diffusion draws K ensemble members with the 16-step Adams–Bashforth sampler; solvers are
deterministic. Lead time of frame t: (t − c + 1)·Δ raw steps (Δ = the run's stride).

Guided emulation (--observe, diffusion only, method §8): every generated frame is observed from the true
trajectory at the same raw step, y = A(x) + σ_y·η in standardized pixel space, and each window is sampled with
MMPS guidance towards its observations (costs ≈ 7× an unguided denoiser call with 1 GMRES iteration).

options:
  --ae RUN             autoencoder run (not needed for --pixel-solver)
  --dm RUN             latent diffusion run          (exactly one of --dm, --solver, --pixel-solver)
  --solver RUN         latent neural solver run
  --pixel-solver RUN   pixel-space solver run
  --data PATH          Well dataset (default: the one the AE / pixel run was trained on, from config.json)
  --split NAME         train, valid or test (default test)
  --trajectories N     the first N trajectories of the split (default all)
  --trajectory I       only trajectory I of the split (0-based, files in order)
  --start S            raw step of the last context frame, lead time 0 (default (c − 1)·Δ)
  --members K          ensemble members (diffusion; default 4; solvers: 1)
  --context c          context frames, 1 ≤ c < L (default 1)
  --steps N            sampler steps (default 16)
  --horizon T          frames per output trajectory, context included (default: all the trajectory allows)
  --seed S             seed of the sampler noise (default 0; also seeds the observation noise)
  --observe OP         guide by observations of the truth (--dm only): subsample:S (every S-th pixel) or
                       pool:S (means of S×S blocks); S must divide the grid
  --obs-noise σ        observation noise σ_y, standardized units (default 0.1)
  --gmres N            GMRES iterations of MMPS (default 1; 0: observe and score only, no guidance)
  --out DIR            output folder (default <emulator run>/emulate)
  --no-figures         skip the PNG strip and GIF animation
  --help               this text

outputs, per trajectory (<base> = <source file stem>_traj<i>):
  <base>.hdf5          the K members as trajectories of a file in The Well's layout (physical units), with root
                       attributes source_file, source_trajectory, member, lead_steps, source_steps, …
                       (guided: observe, observation_noise, gmres_iterations, observation_residual per member
                       = ‖A(x̂) − y‖/√n over the generated frames, observation_truth_residual)
  <base>_truth.hdf5    the true frames at the same steps (compare: deno task eval compare <base>.hdf5 <base>_truth.hdf5)
  <base>.png           truth / ensemble mean / member 0 / spread per field at chosen lead times (guided: the
                       observed pixels as dots, or the pooled blocks as a grid, on the truth)
  <base>.gif           truth beside the emulation, frame by frame
and emulate.json (settings and file list).`;

export async function emulateCommand(args: string[]): Promise<number> {
  const { values: v } = parseFlags(args, {
    ae: { type: "string" },
    dm: { type: "string" },
    solver: { type: "string" },
    "pixel-solver": { type: "string" },
    data: { type: "string" },
    split: { type: "string" },
    trajectories: { type: "string" },
    trajectory: { type: "string" },
    start: { type: "string" },
    members: { type: "string" },
    context: { type: "string" },
    steps: { type: "string" },
    horizon: { type: "string" },
    seed: { type: "string" },
    observe: { type: "string" },
    "obs-noise": { type: "string" },
    gmres: { type: "string" },
    out: { type: "string" },
    "no-figures": { type: "boolean" },
    help: { type: "boolean", short: "h" },
  }, { command: "emulate" });
  if (v.help) {
    console.log(HELP);
    return 0;
  }
  if (v.trajectories !== undefined && v.trajectory !== undefined) {
    throw new UsageError("give --trajectories N or --trajectory I, not both");
  }
  if (v.observe !== undefined && !/^(subsample|pool):[1-9]\d*$/.test(v.observe)) {
    throw new UsageError(`--observe must be subsample:S or pool:S with S ≥ 1, got '${v.observe}'`);
  }
  if (v.observe !== undefined && v.dm === undefined) {
    throw new UsageError(`--observe needs --dm: a deterministic solver cannot be guided by observations`);
  }
  const opt = (name: string, s: string | undefined, f: (n: string, s: string) => number) =>
    s === undefined ? undefined : f(name, s);
  const progress = new Progress("emulate", 0, "windows");
  try {
    const r = await emulate({
      ae: v.ae,
      dm: v.dm,
      solver: v.solver,
      pixelSolver: v["pixel-solver"],
      data: v.data,
      split: oneOf("split", v.split, ["train", "valid", "test"] as const, "test") as Split,
      trajectories: opt("trajectories", v.trajectories, positiveInt),
      trajectory: opt("trajectory", v.trajectory, nonNegativeInt),
      start: opt("start", v.start, nonNegativeInt),
      members: opt("members", v.members, positiveInt),
      context: opt("context", v.context, positiveInt),
      steps: opt("steps", v.steps, positiveInt),
      horizon: opt("horizon", v.horizon, positiveInt),
      seed: opt("seed", v.seed, nonNegativeInt),
      observe: v.observe,
      obsNoise: opt("obs-noise", v["obs-noise"], nonNegativeNumber),
      gmres: opt("gmres", v.gmres, nonNegativeInt),
      out: v.out,
      figures: !v["no-figures"],
      onLog: (line) => console.error(line),
      onProgress: (done, total, info) => progress.update(done, info, total),
    });
    progress.end();
    console.log(
      `emulated ${r.files.length} trajector${r.files.length === 1 ? "y" : "ies"} × ${r.members} member(s), ` +
        `${r.horizon} frames (lead ${r.leadTimes[0]} … ${r.leadTimes[r.leadTimes.length - 1]} steps) in ` +
        `${r.seconds.toFixed(1)} s → ${r.out}`,
    );
    for (const f of r.files) {
      console.log(
        `  ${f.prediction}${
          f.figures.length ? ` (+ ${f.figures.map((p) => p.slice(p.lastIndexOf(".") + 1)).join(", ")})` : ""
        }`,
      );
    }
    console.log(`settings: ${join(r.out, "emulate.json")}`);
    return 0;
  } finally {
    progress.end();
  }
}

/** A finite number ≥ 0 (σ_y may be 0). */
function nonNegativeNumber(name: string, value: string): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || n < 0) {
    throw new UsageError(`--${name} must be a finite number ≥ 0, got '${value}'`);
  }
  return n;
}
