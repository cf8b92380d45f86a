/**
 * `deno task train [ae|dm|solver|mlp]`: with no stage, the whole method (train/pipeline.ts) on the built-in
 * dataset; with a stage, that stage alone. The CLI parses and validates; train/ computes.
 */
import { initDevice, profileReport } from "../engine/index.ts";
import { profilingEnabled } from "../engine/profile.ts";
import { ensureDefaultDataset } from "../data/default_dataset.ts";
import { runMlpDemo } from "../train/mlp.ts";
import { type TrainAeConfig, trainAutoencoder } from "../train/ae.ts";
import { trainEmulator, type TrainEmulatorConfig, type TransformerPreset } from "../train/emulator.ts";
import type { LoopEvents } from "../train/loop.ts";
import { AE_PRESETS } from "../models/autoencoder_config.ts";
import {
  listOf,
  nonNegativeInt,
  oneOf,
  parseFlags,
  positiveInt,
  positiveNumber,
  UsageError,
} from "./args.ts";
import { runPipeline, STAGES } from "../train/pipeline.ts";
import { Progress } from "./progress.ts";
import { listenForStop } from "./signals.ts";
import { guidedFlag } from "./eval.ts";

const AE_HELP = `usage: deno task train ae [options]

Trains the convolutional autoencoder (method §1) with PSGD-Kron: cosine learning rate per epoch, gradient
clipping at 1.0, non-finite steps skipped, validation VRMSE per field and a figure each epoch, a checkpoint each
epoch and on Ctrl-C or SIGTERM. Without --data it uses the built-in Euler dataset (generated on first use).

options:
  --preset NAME            ${Object.keys(AE_PRESETS).join(" | ")} (default: default)
  --data PATH              a Well dataset root (holding stats.yaml and data/{train,valid,test})
  --latent-channels N      C_z (default 16)
  --epochs N               (default 10)
  --steps-per-epoch N      (default 32)
  --steps N                total steps instead of --epochs (rounded up to whole epochs)
  --batch N                (default 8)
  --lr X                   (default 3e-4 for psgd, 1e-3 for adam)
  --optimizer psgd|adam    (default psgd)
  --loss vrmse|vmse|l1     (default vrmse)
  --no-identity-init       default PyTorch init for the shuffle convs (for the Table 4 ablation)
  --seed S                 (default 0)
  --out DIR                run directory (default runs/ae)
  --resume                 continue the run in --out exactly where its checkpoint left it
  --override               with --resume: accept changed settings (recorded in config.json)
  --log-every N            read the loss back every N steps (default 8)
  --budget MINUTES         fit the run into this time (epochs from the measured step time, at most --epochs)`;

const EMU_HELP = `usage: deno task train dm --ae RUN [options]
       deno task train solver --ae RUN [options]
       deno task train solver --pixel [--data PATH] [options]

Trains an emulator (method §3, §6) with AdamW (β 0.9/0.99, eps 1e-8, no weight decay), a cosine learning rate
per epoch, clipping at 1.0 and non-finite steps skipped, on windows of --window frames spaced by --stride raw
steps with random context masks. dm: the latent diffusion denoiser; solver: the deterministic latent solver;
solver --pixel: the pixel-space solver on standardised frames cut into --patch × --patch patches. The latent
stages read the autoencoder run's latent cache (<RUN>/cache, written first when missing). Each epoch: the
validation loss (fixed noise and masks); checkpoint.safetensors (last), best.safetensors (lowest validation
loss), model.safetensors (reference state-dict names), config.json, metrics.jsonl.

options:
  --ae RUN                 autoencoder run folder (latent stages)
  --pixel                  (solver) train the pixel-space solver instead
  --data PATH              Well dataset (pixel solver; default: the built-in dataset)
  --preset NAME            tiny | default | small | large (default: default)
  --epochs N               (default 10)
  --steps-per-epoch N      (default 32)
  --steps N                total steps instead of --epochs (rounded up to whole epochs)
  --batch N                (default 8)
  --lr X                   (default 1e-3 for the default preset, 1e-4 otherwise, the paper's)
  --window L               frames per window (default 5)
  --stride S               raw steps between frames (default 4)
  --patch P                (pixel) patch size (default 8)
  --mask-prior code|paper  context masks: lola's code (default) or the paper's text (Poisson(2), forward)
  --schedule ve|rf         noise schedule parameterisation (default ve, the reference's; same model)
  --seed S                 (default 0)
  --out DIR                run directory (default runs/dm, runs/solver or runs/pixel)
  --resume                 continue the run in --out exactly where its checkpoint left it
  --override               with --resume: accept changed settings (recorded in config.json)
  --log-every N            read the loss back every N steps (default 8)
  --budget MINUTES         fit the run into this time (epochs from the measured step time, at most --epochs)
  --checkpoint-blocks      recompute each transformer block in the backward instead of storing its
                           activations: less memory for ~1/3 more compute, same results (large preset, GPU)`;

const MLP_HELP = `usage: deno task train mlp [--steps N] [--lr X] [--hidden N] [--seed S] [--out runs/NAME]

Trains a 2-layer MLP regression with Adam on the GPU (a smoke test of the engine on this machine) and writes
metrics.jsonl (one JSON object per logged step) and config.json under --out.`;

const PIPELINE_HELP = `usage: deno task train [options]            (the whole method)
       deno task train ae|dm|solver|mlp [options]   (one stage: deno task train ae --help)

Runs every stage on the built-in 2-D Euler dataset (or --data): the autoencoder (PSGD-Kron), the latent cache,
the latent diffusion denoiser, the latent solver, the pixel-space solver, then the evaluation on test
trajectories and a report, into RUNS/NAME/{ae,dm,solver,pixel,eval}. A complete stage is skipped, so a rerun
(or Ctrl-C, then a rerun) continues where it stopped; a stage whose inputs changed is redone. Each training
stage measures its step time and fits its epochs into its share of --budget.

options:
  --name NAME              run name (default default)
  --root DIR               parent folder of runs (default runs)
  --stages LIST            comma-separated subset of ${STAGES.join(",")} (default all)
  --data PATH              a Well dataset root instead of the built-in dataset
  --preset P               autoencoder preset (default default; ${Object.keys(AE_PRESETS).join(", ")})
  --emulator-preset P      transformer preset (default: default with the tiny/default autoencoders, else large)
  --budget MINUTES         time for training and evaluation (default 30)
  --compressions LIST      latent widths C_z, e.g. 4,16,64: one autoencoder and latent emulators each
                           (default 16)
  --trajectories N         test trajectories evaluated (default 4)
  --members K              diffusion ensemble members in the evaluation (default 8)
  --guided LIST            also evaluate the diffusion emulator guided by observations, e.g. subsample:8,pool:8
                           (see deno task eval --help; ~7× the cost of its unguided rollouts)
  --seed S                 (default 0)`;

export async function trainCommand(args: string[]): Promise<number> {
  if (!args[0] || args[0].startsWith("-")) return await trainPipeline(args);
  const stage = args.shift()!;
  if (stage === "mlp") return await trainMlp(args);
  if (stage === "ae") return await trainAe(args);
  if (stage === "dm" || stage === "solver") return await trainEmu(stage, args);
  throw new UsageError(`unknown training stage '${stage}' (available: ae, dm, solver, mlp)`);
}

/** Epochs from --epochs or --steps; with --budget alone, as many as the budget fits (at most 1000). */
function epochsFrom(v: { steps?: string; epochs?: string; budget?: string }, spe: number): number {
  if (v.steps && v.epochs) throw new UsageError(`give --epochs or --steps, not both`);
  if (v.steps) return Math.ceil(positiveInt("steps", v.steps) / spe);
  return positiveInt("epochs", v.epochs, v.budget === undefined ? 10 : 1000);
}

async function defaultData(): Promise<string> {
  let bar: Progress | null = null;
  return await ensureDefaultDataset({
    onStart: (p) => console.error(`generating the built-in Euler dataset in ${p} (first use only)`),
    onProgress: (p) => (bar ??= new Progress("simulate", p.total, "traj")).update(p.done),
  });
}

/** Runs one stage with a progress bar and stop signals; returns the exit code. */
async function withLoop<R extends { stopped: boolean }>(
  label: string,
  total: number,
  run: (ev: LoopEvents) => Promise<R>,
  done: (res: R) => void,
): Promise<number> {
  const stop = listenForStop();
  const bar = new Progress(label, total, "step");
  try {
    const res = await run({
      onStep: (n, _t, info) => bar.update(n, info),
      onLog: (line) => console.error(line),
      shouldStop: stop.shouldStop,
    });
    done(res);
    if (profilingEnabled()) console.log(`\nGPU time per kernel (LOLA_PROFILE=1):\n${await profileReport()}`);
    return res.stopped ? stop.exitCode() || 130 : 0;
  } finally {
    stop.dispose();
  }
}

async function trainPipeline(args: string[]): Promise<number> {
  const { values: v } = parseFlags(args, {
    name: { type: "string", default: "default" },
    root: { type: "string", default: "runs" },
    stages: { type: "string" },
    data: { type: "string" },
    preset: { type: "string", default: "default" },
    "emulator-preset": { type: "string" },
    budget: { type: "string" },
    compressions: { type: "string" },
    trajectories: { type: "string" },
    members: { type: "string" },
    guided: { type: "string" },
    seed: { type: "string" },
    help: { type: "boolean", default: false },
  }, { command: "train" });
  if (v.help) {
    console.log(PIPELINE_HELP);
    return 0;
  }
  const aePreset = oneOf("preset", v.preset, Object.keys(AE_PRESETS));
  const small = aePreset === "tiny" || aePreset === "default";
  const emulatorPreset = oneOf(
    "emulator-preset",
    v["emulator-preset"],
    ["tiny", "default", "small", "large"] as const,
    small ? (aePreset === "tiny" ? "tiny" : "default") : "large",
  );
  const stages = listOf("stages", v.stages, STAGES, STAGES);
  const compressions = (v.compressions ?? "16").split(",").map((c) => positiveInt("compressions", c.trim()));
  if (!/^[\w.-]+$/.test(v.name)) {
    throw new UsageError(`--name must be letters, digits, '.', '-' or '_', got '${v.name}'`);
  }
  await initDevice();
  const stop = listenForStop("stopping after this step, with a checkpoint");
  let bar: Progress | null = null;
  try {
    const res = await runPipeline({
      name: v.name,
      root: v.root,
      data: v.data,
      aePreset,
      emulatorPreset,
      stages,
      budgetMinutes: positiveNumber("budget", v.budget, 30),
      compressions,
      seed: nonNegativeInt("seed", v.seed, 0),
      evaluation: {
        trajectories: positiveInt("trajectories", v.trajectories, 4),
        members: positiveInt("members", v.members, 8),
        ...(v.guided ? { guided: guidedFlag(v.guided) } : {}),
      },
      onLog: (l) => console.error(l),
      onStage: (label, i, n) => {
        bar?.end();
        bar = null;
        console.error(`\n[${i + 1}/${n}] ${label}`);
      },
      onStep: (done, total, info) => (bar ??= new Progress("train", total, "step")).update(done, info, total),
      shouldStop: stop.shouldStop,
    });
    (bar as Progress | null)?.end();
    console.log(
      `\n${res.stopped ? "stopped" : "finished"} in ${(res.seconds / 60).toFixed(1)} min: ${res.folder}`,
    );
    for (const r of res.stages) {
      console.log(
        `  ${r.stage.padEnd(28)} ${r.status.padEnd(8)} ${
          r.status === "skipped" ? "" : `${(r.seconds / 60).toFixed(1)} min`
        }`,
      );
    }
    if (res.evaluation) {
      console.log(`report: ${res.report}`);
      for (const [m, w] of Object.entries(res.evaluation.table)) {
        console.log(
          `  ${m.padEnd(14)} VRMSE ${w.all.VRMSE.toFixed(3)}${
            m === "diffusion" ? `  spread/skill ${w.all.spread_skill.toFixed(3)}` : ""
          }`,
        );
      }
    }
    if (res.stopped) {
      console.log(`continue with the same command: complete stages are skipped, the stopped one resumes`);
    }
    return res.stopped ? stop.exitCode() || 130 : 0;
  } finally {
    stop.dispose();
  }
}

async function trainAe(args: string[]): Promise<number> {
  const { values: v } = parseFlags(args, {
    preset: { type: "string", default: "default" },
    data: { type: "string" },
    "latent-channels": { type: "string" },
    epochs: { type: "string" },
    "steps-per-epoch": { type: "string" },
    steps: { type: "string" },
    batch: { type: "string" },
    lr: { type: "string" },
    optimizer: { type: "string", default: "psgd" },
    loss: { type: "string", default: "vrmse" },
    "no-identity-init": { type: "boolean", default: false },
    seed: { type: "string" },
    out: { type: "string", default: "runs/ae" },
    resume: { type: "boolean", default: false },
    override: { type: "boolean", default: false },
    "log-every": { type: "string" },
    budget: { type: "string" },
    help: { type: "boolean", default: false },
  }, { command: "train ae" });
  if (v.help) {
    console.log(AE_HELP);
    return 0;
  }
  oneOf("preset", v.preset, Object.keys(AE_PRESETS));
  const optimizer = oneOf("optimizer", v.optimizer, ["psgd", "adam"] as const);
  const loss = oneOf("loss", v.loss, ["vrmse", "vmse", "l1"] as const);
  const spe = positiveInt("steps-per-epoch", v["steps-per-epoch"], 32);
  const cfg: TrainAeConfig = {
    preset: v.preset,
    data: "",
    latentChannels: positiveInt("latent-channels", v["latent-channels"], 16),
    epochs: epochsFrom(v, spe),
    stepsPerEpoch: spe,
    batch: positiveInt("batch", v.batch, 8),
    lr: positiveNumber("lr", v.lr, optimizer === "psgd" ? 3e-4 : 1e-3),
    optimizer,
    loss,
    seed: nonNegativeInt("seed", v.seed, 0),
    out: v.out,
    identityInit: !v["no-identity-init"],
    validBatches: 4,
    logEvery: positiveInt("log-every", v["log-every"], 8),
    maxNorm: 1,
    resume: v.resume,
    override: v.override,
    budgetMinutes: v.budget === undefined ? undefined : positiveNumber("budget", v.budget),
  };
  await initDevice();
  cfg.data = v.data ?? await defaultData();
  return await withLoop(
    "train ae",
    cfg.epochs * cfg.stepsPerEpoch,
    (ev) => trainAutoencoder(cfg, ev),
    (res) => {
      const val = res.lastValidation ? ` · valid VRMSE ${res.lastValidation.mean.toFixed(4)}` : "";
      console.log(
        `${res.stopped ? "stopped" : "trained"} ${res.epochsDone} epochs in ${
          res.seconds.toFixed(0)
        } s${val}`,
      );
      console.log(
        `wrote ${cfg.out}/{config.json, metrics.jsonl, checkpoint.safetensors, model.safetensors, figures/}`,
      );
      if (res.stopped) {
        console.log(
          `continue with: deno task train ae --out ${cfg.out} --resume (same options)`,
        );
      }
    },
  );
}

async function trainEmu(stage: "dm" | "solver", args: string[]): Promise<number> {
  const { values: v } = parseFlags(args, {
    ae: { type: "string" },
    pixel: { type: "boolean", default: false },
    data: { type: "string" },
    preset: { type: "string", default: "default" },
    epochs: { type: "string" },
    "steps-per-epoch": { type: "string" },
    steps: { type: "string" },
    batch: { type: "string" },
    lr: { type: "string" },
    window: { type: "string" },
    stride: { type: "string" },
    patch: { type: "string" },
    "mask-prior": { type: "string", default: "code" },
    schedule: { type: "string", default: "ve" },
    seed: { type: "string" },
    out: { type: "string" },
    resume: { type: "boolean", default: false },
    override: { type: "boolean", default: false },
    "log-every": { type: "string" },
    budget: { type: "string" },
    "checkpoint-blocks": { type: "boolean", default: false },
    help: { type: "boolean", default: false },
  }, { command: `train ${stage}` });
  if (v.help) {
    console.log(EMU_HELP);
    return 0;
  }
  if (v.pixel && stage !== "solver") throw new UsageError(`--pixel applies to \`train solver\` only`);
  const kind = v.pixel ? "pixel" : stage;
  if (kind !== "pixel" && !v.ae) {
    throw new UsageError(`train ${stage} needs --ae RUN, the folder of a trained autoencoder (see --help)`);
  }
  const preset = oneOf(
    "preset",
    v.preset,
    ["tiny", "default", "small", "large"] as const,
  ) as TransformerPreset;
  const spe = positiveInt("steps-per-epoch", v["steps-per-epoch"], 32);
  const cfg: TrainEmulatorConfig = {
    stage: kind,
    ae: v.ae,
    data: v.data,
    preset,
    epochs: epochsFrom(v, spe),
    stepsPerEpoch: spe,
    batch: positiveInt("batch", v.batch, 8),
    lr: positiveNumber("lr", v.lr, DEFAULT_EMULATOR_LR[preset]),
    seed: nonNegativeInt("seed", v.seed, 0),
    out: v.out ?? `runs/${kind}`,
    window: positiveInt("window", v.window, 5),
    stride: positiveInt("stride", v.stride, 4),
    maskPrior: oneOf("mask-prior", v["mask-prior"], ["code", "paper"] as const),
    patch: positiveInt("patch", v.patch, 8),
    schedule: oneOf("schedule", v.schedule, ["ve", "rf"] as const),
    validBatches: 4,
    logEvery: positiveInt("log-every", v["log-every"], 8),
    maxNorm: 1,
    resume: v.resume,
    override: v.override,
    budgetMinutes: v.budget === undefined ? undefined : positiveNumber("budget", v.budget),
    checkpointBlocks: v["checkpoint-blocks"],
  };
  await initDevice();
  if (kind === "pixel" && !cfg.data) cfg.data = await defaultData();
  return await withLoop(
    `train ${kind}`,
    cfg.epochs * cfg.stepsPerEpoch,
    (ev) => trainEmulator(cfg, ev),
    (res) => {
      const val = res.validLoss !== null ? ` · valid loss ${res.validLoss.toPrecision(4)}` : "";
      console.log(
        `${res.stopped ? "stopped" : "trained"} ${res.epochsDone} epochs in ${
          res.seconds.toFixed(0)
        } s${val}`,
      );
      console.log(
        `wrote ${cfg.out}/{config.json, metrics.jsonl, checkpoint.safetensors, best.safetensors, model.safetensors}`,
      );
      if (res.stopped) {
        console.log(
          `continue with: deno task train ${stage} --out ${cfg.out} --resume (same options)`,
        );
      }
    },
  );
}

/** Learning rates by preset: the paper's 1e-4 at its sizes; `default`/`tiny` from the sweep in the README. */
export const DEFAULT_EMULATOR_LR: Record<TransformerPreset, number> = {
  tiny: 1e-3,
  default: 1e-3,
  small: 1e-4,
  large: 1e-4,
};

async function trainMlp(args: string[]): Promise<number> {
  const { values } = parseFlags(args, {
    steps: { type: "string" },
    lr: { type: "string" },
    hidden: { type: "string" },
    seed: { type: "string" },
    out: { type: "string", default: "runs/mlp" },
    help: { type: "boolean", default: false },
  }, { command: "train mlp" });
  if (values.help) {
    console.log(MLP_HELP);
    return 0;
  }
  const cfg = {
    steps: positiveInt("steps", values.steps, 2000),
    lr: positiveNumber("lr", values.lr, 0.02),
    hidden: positiveInt("hidden", values.hidden, 64),
    seed: nonNegativeInt("seed", values.seed, 0),
    out: values.out,
  };
  const bar = new Progress("train mlp", cfg.steps, "step");
  const res = await runMlpDemo(
    cfg,
    (step, loss) => bar.update(step, loss === undefined ? "" : `loss ${loss.toExponential(3)}`),
  );
  console.log(
    `loss ${res.firstLoss.toExponential(3)} → ${res.finalLoss.toExponential(3)} in ${
      res.seconds.toFixed(1)
    } s`,
  );
  console.log(`wrote ${cfg.out}/metrics.jsonl and ${cfg.out}/config.json`);
  return 0;
}
