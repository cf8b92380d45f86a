/**
 * `deno task train [ae|mlp]`: training entry points. With no stage it trains the autoencoder on the built-in
 * dataset with the `default` preset (the first stage of the pipeline). `train mlp` is the engine's smallest real
 * training demo. The CLI parses and validates; models/train_ae.ts and models/mlp_demo.ts compute.
 */
import { parseArgs } from "node:util";
import { initDevice, profileReport } from "../engine/index.ts";
import { profilingEnabled } from "../engine/profile.ts";
import { ensureDefaultDataset } from "../data/default_dataset.ts";
import { runMlpDemo } from "../models/mlp_demo.ts";
import { type TrainAeConfig, trainAutoencoder } from "../models/train_ae.ts";
import { AE_PRESETS } from "../models/autoencoder_config.ts";
import { Progress } from "./progress.ts";

const AE_HELP = `usage: deno task train [ae] [options]

Trains the convolutional autoencoder (method §1) with PSGD-Kron: cosine learning rate per epoch, gradient
clipping at 1.0, non-finite steps skipped, validation VRMSE per field and a figure each epoch, a checkpoint each
epoch and on Ctrl-C. Without --data it uses the built-in Euler dataset (generated on first use, ~1 min).

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
  --log-every N            read the loss back every N steps (default 8)`;

const MLP_HELP = `usage: deno task train mlp [--steps N] [--lr X] [--hidden N] [--seed S] [--out runs/NAME]

Trains a 2-layer MLP regression with Adam on the GPU (a smoke test of the engine on this machine) and writes
metrics.jsonl (one JSON object per logged step) and config.json under --out.`;

function positive(name: string, v: string | undefined, integer = true): number {
  const n = Number(v);
  if (v === undefined || !Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
    throw new Error(`--${name} must be a positive ${integer ? "integer" : "number"}, got '${v}'`);
  }
  return n;
}

export async function trainCommand(args: string[]): Promise<number> {
  const stage = args[0] && !args[0].startsWith("-") ? args.shift()! : "ae";
  if (stage === "mlp") return await trainMlp(args);
  if (stage === "ae") return await trainAe(args);
  throw new Error(`unknown training stage '${stage}' (available: ae, mlp)`);
}

async function trainAe(args: string[]): Promise<number> {
  const { values: v } = parseArgs({
    args,
    options: {
      preset: { type: "string", default: "default" },
      data: { type: "string" },
      "latent-channels": { type: "string", default: "16" },
      epochs: { type: "string" },
      "steps-per-epoch": { type: "string", default: "32" },
      steps: { type: "string" },
      batch: { type: "string", default: "8" },
      lr: { type: "string" },
      optimizer: { type: "string", default: "psgd" },
      loss: { type: "string", default: "vrmse" },
      "no-identity-init": { type: "boolean", default: false },
      seed: { type: "string", default: "0" },
      out: { type: "string", default: "runs/ae" },
      resume: { type: "boolean", default: false },
      "log-every": { type: "string", default: "8" },
      help: { type: "boolean", default: false },
    },
  });
  if (v.help) {
    console.log(AE_HELP);
    return 0;
  }
  if (!AE_PRESETS[v.preset]) throw new Error(`--preset must be one of ${Object.keys(AE_PRESETS).join(", ")}`);
  if (v.optimizer !== "psgd" && v.optimizer !== "adam") throw new Error(`--optimizer must be psgd or adam`);
  if (!["vrmse", "vmse", "l1"].includes(v.loss)) throw new Error(`--loss must be vrmse, vmse or l1`);
  if (v.steps && v.epochs) throw new Error(`give --epochs or --steps, not both`);
  const spe = positive("steps-per-epoch", v["steps-per-epoch"]);
  const epochs = v.steps
    ? Math.ceil(positive("steps", v.steps) / spe)
    : v.epochs
    ? positive("epochs", v.epochs)
    : 10;
  const seed = Number(v.seed);
  if (!Number.isInteger(seed) || seed < 0) {
    throw new Error(`--seed must be a non-negative integer, got '${v.seed}'`);
  }
  await initDevice();
  let data = v.data;
  if (!data) {
    let bar: Progress | null = null;
    data = await ensureDefaultDataset({
      onStart: (p) => console.error(`generating the built-in Euler dataset in ${p} (first use only)`),
      onProgress: (p) => (bar ??= new Progress("simulate", p.total, "traj")).update(p.done),
    });
  }
  const cfg: TrainAeConfig = {
    preset: v.preset,
    data,
    latentChannels: positive("latent-channels", v["latent-channels"]),
    epochs,
    stepsPerEpoch: spe,
    batch: positive("batch", v.batch),
    lr: v.lr ? positive("lr", v.lr, false) : v.optimizer === "psgd" ? 3e-4 : 1e-3,
    optimizer: v.optimizer,
    loss: v.loss as TrainAeConfig["loss"],
    seed,
    out: v.out,
    identityInit: !v["no-identity-init"],
    validBatches: 4,
    logEvery: positive("log-every", v["log-every"]),
    maxNorm: 1,
    resume: v.resume,
  };
  let stop = false;
  const onSigint = () => {
    if (stop) Deno.exit(130);
    stop = true;
    console.error("\ninterrupt: saving a checkpoint after this step (Ctrl-C again to quit at once)");
  };
  Deno.addSignalListener("SIGINT", onSigint);
  const bar = new Progress("train ae", cfg.epochs * cfg.stepsPerEpoch, "step");
  try {
    const res = await trainAutoencoder(cfg, {
      onStep: (done, _total, info) => bar.update(done, info),
      onLog: (line) => console.error(line),
      shouldStop: () => stop,
    });
    const val = res.lastValidation ? ` · valid VRMSE ${res.lastValidation.mean.toFixed(4)}` : "";
    console.log(
      `${res.stopped ? "stopped" : "trained"} ${res.epochsDone} epochs in ${res.seconds.toFixed(0)} s${val}`,
    );
    console.log(
      `wrote ${cfg.out}/{config.json, metrics.jsonl, checkpoint.safetensors, model.safetensors, figures/}`,
    );
    if (res.stopped) {
      console.log(`continue with: deno task train ae --out ${cfg.out} --resume (same options)`);
    }
    if (profilingEnabled()) console.log(`\nGPU time per kernel (LOLA_PROFILE=1):\n${await profileReport()}`);
    return res.stopped ? 130 : 0;
  } finally {
    Deno.removeSignalListener("SIGINT", onSigint);
  }
}

async function trainMlp(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      steps: { type: "string", default: "2000" },
      lr: { type: "string", default: "0.02" },
      hidden: { type: "string", default: "64" },
      seed: { type: "string", default: "0" },
      out: { type: "string", default: "runs/mlp" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(MLP_HELP);
    return 0;
  }
  const cfg = {
    steps: positive("steps", values.steps),
    lr: positive("lr", values.lr, false),
    hidden: positive("hidden", values.hidden),
    seed: Number(values.seed),
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
