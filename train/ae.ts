/**
 * The autoencoder stage (method §1, §9) as a task of the shared loop (train/loop.ts): single frames, seeded
 * shuffle + augmentation, PSGD-Kron (or Adam), the reconstruction loss, and per epoch the validation VRMSE per
 * field (normalised space), the MAE and a reconstruction figure. Run folder: config.json, metrics.jsonl,
 * checkpoint.safetensors (model + optimizer + loop state), model.safetensors (the reference state dict with its
 * `norm.eps` buffers) and figures/.
 */
import { join } from "node:path";
import { abs, mapInPlace, mean, noGrad, reshape, scope, sub, sum, Tensor } from "../engine/index.ts";
import { Adam } from "../engine/optim/adam.ts";
import { PSGDKron } from "../engine/optim/psgd.ts";
import type { Optimizer } from "../engine/optim/optimizer.ts";
import { type Batch, batchToTensor, WindowLoader } from "../data/batches.ts";
import { augmentationsFor } from "../data/augment.ts";
import { openNormalizedSplit } from "../data/open_split.ts";
import type { Normalizer } from "../data/transforms.ts";
import type { WellDataset } from "../data/well_dataset.ts";
import { writeReconstructionFigure } from "../eval/figures.ts";
import { Autoencoder } from "../models/autoencoder.ts";
import { AE_PRESETS, type AutoencoderConfig, countParams } from "../models/autoencoder_config.ts";
import { type LossName, reconstructionLoss, vrmsePerField } from "../models/losses.ts";
import { type LoopEvents, runTraining, type TrainTask, type Validation } from "./loop.ts";

export interface TrainAeConfig {
  preset: string;
  /** Dataset root (or split folder / file). */
  data: string;
  latentChannels: number;
  epochs: number;
  stepsPerEpoch: number;
  batch: number;
  lr: number;
  optimizer: "psgd" | "adam";
  loss: LossName;
  seed: number;
  out: string;
  identityInit: boolean;
  /** Validation batches per epoch. */
  validBatches: number;
  /** Read the loss back every this many steps (each readback stalls ≥10 ms). */
  logEvery: number;
  maxNorm: number;
  /** Continue the run in `out` from its checkpoint. */
  resume: boolean;
  /** With resume: accept changed settings (recorded in config.json). */
  override?: boolean;
  /** Fit the run into this many minutes: epochs (at most `epochs`) from the measured step time. */
  budgetMinutes?: number;
}

export interface TrainAeResult {
  stopped: boolean;
  epochsDone: number;
  lastValidation: Record<string, number> | null;
  seconds: number;
  params: number;
}

export function aeModelConfig(cfg: TrainAeConfig, pixelChannels: number, spatial: number): AutoencoderConfig {
  const make = AE_PRESETS[cfg.preset];
  if (!make) {
    throw new Error(
      `unknown autoencoder preset '${cfg.preset}' (available: ${Object.keys(AE_PRESETS).join(", ")})`,
    );
  }
  const m = { ...make(pixelChannels, cfg.latentChannels), identityInit: cfg.identityInit };
  if (m.spatial !== spatial) {
    throw new Error(`preset '${cfg.preset}' is ${m.spatial}-D but the data are ${spatial}-D`);
  }
  return m;
}

function makeOptimizer(cfg: TrainAeConfig, params: Tensor[]): Optimizer {
  if (cfg.optimizer === "adam") return new Adam(params, { lr: cfg.lr, betas: [0.9, 0.99], eps: 1e-8 });
  return new PSGDKron(params, { lr: cfg.lr, seed: cfg.seed });
}

export async function trainAutoencoder(cfg: TrainAeConfig, ev: LoopEvents = {}): Promise<TrainAeResult> {
  const train = await openNormalizedSplit(cfg.data, "train", { nSteps: 1 });
  if (!train) throw new Error(`${cfg.data} has no train split (expected data/train/*.hdf5)`);
  let valid = null;
  try {
    valid = await openNormalizedSplit(cfg.data, "valid", { nSteps: 1 });
    if (!valid) ev.onLog?.(`${cfg.data} has no valid split: training without validation`);
  } catch (e) {
    train.ds.close();
    throw e;
  }
  const { ds, normalizer, fields, kinds } = train;
  let model: Autoencoder | null = null, opt: Optimizer | null = null;
  try {
    const mcfg = aeModelConfig(cfg, ds.channels.length, ds.nSpatialDims);
    model = new Autoencoder(mcfg, cfg.seed);
    opt = makeOptimizer(cfg, model.parameters());
    const loader = new WindowLoader(ds, {
      batchSize: cfg.batch,
      seed: cfg.seed,
      normalizer,
      augment: augmentationsFor(ds.datasetName, ds.spatialShape),
      channelKinds: kinds,
    });
    if (loader.batchesPerEpoch === 0) {
      throw new Error(
        `the train split has ${ds.length} frames, fewer than one batch of ${cfg.batch}: lower --batch`,
      );
    }
    const { out: _o, resume: _r, logEvery: _l, override: _v, ...settings } = cfg;
    const m = model;
    const v = valid;
    const task: TrainTask = {
      name: "ae",
      model: m,
      optimizer: opt,
      config: {
        ...settings,
        model: mcfg,
        dataset: ds.datasetName,
        channels: ds.channels,
        fields: fields.length,
      },
      batchesPerEpoch: loader.batchesPerEpoch,
      describe: () =>
        `autoencoder '${cfg.preset}': ${countParams(mcfg).toLocaleString("en-US")} parameters, ` +
        `${ds.length} training frames ${ds.channels.length}×${ds.spatialShape.join("×")}`,
      loss: (epoch, k) => {
        const bpe = loader.batchesPerEpoch;
        // Steps per epoch may exceed one pass over the data: continue into the next data epoch deterministically.
        const dataEpoch = epoch * Math.ceil(cfg.stepsPerEpoch / bpe) + Math.floor(k / bpe);
        const { x } = batchToTensor(loader.assemble(dataEpoch, k % bpe));
        return reconstructionLoss(cfg.loss, m.forward(x, { training: true }).xhat, x);
      },
      validate: v ? (epoch) => validate(m, v.ds, v.normalizer, cfg, epoch) : undefined,
      exportExtras: () => normEpsBuffers(m),
      modelMetadata: () => ({ config: JSON.stringify(mcfg) }),
    };
    await Deno.mkdir(join(cfg.out, "figures"), { recursive: true });
    const res = await runTraining(task, cfg.out, {
      epochs: cfg.epochs,
      stepsPerEpoch: cfg.stepsPerEpoch,
      lr: cfg.lr,
      maxNorm: cfg.maxNorm,
      logEvery: cfg.logEvery,
      resume: cfg.resume,
      override: cfg.override,
      budgetSeconds: cfg.budgetMinutes ? cfg.budgetMinutes * 60 : undefined,
      keepBest: false,
    }, ev);
    return {
      stopped: res.stopped,
      epochsDone: res.epochsDone,
      lastValidation: (res.lastValidation?.metrics.valid_vrmse as Record<string, number>) ?? null,
      seconds: res.seconds,
      params: countParams(mcfg),
    };
  } finally {
    model?.dispose();
    opt?.dispose();
    ds.close();
    valid?.ds.close();
  }
}

/** The 0-d `norm.eps` buffers of every ResBlock, which the reference state dict also holds. */
function normEpsBuffers(model: Autoencoder): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const name of model.params.keys()) {
    const m = name.match(/^(.*)\.ffn\.0\.weight$/);
    if (m) out[`${m[1]}.norm.eps`] = Tensor.fromData([1e-5], [], { persistent: true });
  }
  return out;
}

/**
 * Mean per-field VRMSE over the validation batches (normalised space; `mean` averages the fields, `mae` is the
 * mean absolute error over all fields) and one reconstruction figure.
 */
async function validate(
  model: Autoencoder,
  valid: WellDataset,
  normalizer: Normalizer,
  cfg: TrainAeConfig,
  epoch: number,
): Promise<Validation> {
  const loader = new WindowLoader(valid, {
    batchSize: Math.min(cfg.batch, valid.length),
    seed: 0,
    shuffle: false,
    normalizer,
  });
  const n = Math.min(cfg.validBatches, loader.batchesPerEpoch);
  const C = valid.channels.length;
  const acc = Tensor.fromData(new Float32Array(C), [C], { persistent: true });
  const accMae = Tensor.fromData(new Float32Array(C), [C], { persistent: true });
  let figure: { truth: Float32Array; recon: Tensor } | null = null;
  for (let k = 0; k < n; k++) {
    const batch: Batch = loader.assemble(0, k);
    const xhat = scope(() =>
      noGrad(() => {
        const { x } = batchToTensor(batch);
        const { xhat } = model.forward(x, { training: false });
        mapInPlace(acc, [sum(vrmsePerField(xhat, x), 0)], "in0 + in1", "acc"); // (C)
        const [b, c] = x.shape;
        const flat = (t: Tensor) => reshape(t, [b, c, x.size / (b * c)]);
        mapInPlace(accMae, [sum(mean(abs(sub(flat(xhat), flat(x))), 2), 0)], "in0 + in1", "acc"); // (C)
        return k === 0 ? xhat.keep() : null;
      })
    );
    if (xhat) figure = { truth: batch.x.slice(0, batch.x.length / batch.shape[0]), recon: xhat };
  }
  const sums = await acc.read(), maeSums = await accMae.read();
  acc.dispose();
  accMae.dispose();
  const count = n * Math.min(cfg.batch, valid.length);
  const out: Record<string, number> = {};
  valid.channels.forEach((c, i) => (out[c] = sums[i] / count));
  out.mean = valid.channels.reduce((s, c) => s + out[c], 0) / C;
  out.mae = maeSums.reduce((s, v) => s + v, 0) / (count * C);
  if (figure) {
    const recon = await figure.recon.read();
    figure.recon.dispose();
    const sample = recon.slice(0, figure.truth.length);
    const sp = valid.spatialShape;
    const [H, W] = [sp[0], sp[1]];
    // 3-D data: the middle slice along the last axis.
    const plane = (a: Float32Array) => sp.length === 2 ? a : middleSlice(a, C, sp);
    await writeReconstructionFigure(
      join(cfg.out, "figures", `valid_epoch${String(epoch + 1).padStart(3, "0")}.png`),
      plane(figure.truth),
      plane(sample),
      [C, H, W],
    );
  }
  const fieldText = valid.channels.map((c) => `${c} ${out[c].toFixed(3)}`).join(", ");
  return {
    loss: out.mean,
    metrics: { valid_vrmse: out },
    summary: `valid VRMSE ${out.mean.toFixed(4)} (${fieldText})`,
  };
}

function middleSlice(a: Float32Array, C: number, sp: number[]): Float32Array {
  const [H, W, Dd] = sp;
  const out = new Float32Array(C * H * W);
  const z = Math.floor(Dd / 2);
  for (let c = 0; c < C; c++) {
    for (let i = 0; i < H * W; i++) out[c * H * W + i] = a[(c * H * W + i) * Dd + z];
  }
  return out;
}
