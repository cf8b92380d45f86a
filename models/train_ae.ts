/**
 * Autoencoder training (method §9): single frames, seeded shuffle + augmentation, PSGD-Kron (or Adam), a
 * cosine learning rate stepped per epoch, global-norm clipping at 1.0 and non-finite steps skipped on the GPU,
 * validation VRMSE per field and a reconstruction figure each epoch, safetensors checkpoints every epoch and on
 * Ctrl-C. A run directory holds config.json, metrics.jsonl, checkpoint.safetensors (model + optimizer + loop
 * state, for --resume), model.safetensors (the reference state dict only) and figures/.
 *
 * Resume is exact: batches are a pure function of (seed, epoch, step), dropout draws come from a Generator whose
 * counter is checkpointed, and the optimizer state is restored bit for bit.
 */
import { join } from "node:path";
import {
  abs,
  backward,
  gradNorm,
  mapInPlace,
  mean,
  noGrad,
  pool,
  reshape,
  scope,
  sub,
  sum,
  Tensor,
  zeroGrad,
} from "../engine/index.ts";
import { loadInto, loadSafetensors, saveSafetensors, writeTextAtomic } from "../engine/checkpoint.ts";
import { Adam } from "../engine/optim/adam.ts";
import { type Batch, batchToTensor, WindowLoader } from "../data/batches.ts";
import { augmentationsFor, channelKinds } from "../data/augment.ts";
import { readStats } from "../data/stats.ts";
import { Normalizer } from "../data/transforms.ts";
import { WellDataset } from "../data/well_dataset.ts";
import { writeReconstructionFigure } from "../eval/figures.ts";
import { Autoencoder } from "./autoencoder.ts";
import { AE_PRESETS, type AutoencoderConfig, countParams } from "./autoencoder_config.ts";
import { type LossName, reconstructionLoss, vrmsePerField } from "./losses.ts";
import type { Optimizer } from "./optimizer.ts";

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
}

export interface TrainAeEvents {
  onStep?: (done: number, total: number, info: string) => void;
  onLog?: (line: string) => void;
  /** Polled between steps: true → save a checkpoint and stop (Ctrl-C). */
  shouldStop?: () => boolean;
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

async function makeOptimizer(cfg: TrainAeConfig, params: Tensor[], seed: number): Promise<Optimizer> {
  if (cfg.optimizer === "adam") return new Adam(params, { lr: cfg.lr, betas: [0.9, 0.99], eps: 1e-8 });
  const { PSGDKron } = await import("../engine/optim/psgd.ts");
  return new PSGDKron(params, { lr: cfg.lr, seed });
}

/** lr·(1 + cos(π e/E))/2, constant within epoch e (method §9). */
export function epochLr(lr: number, epoch: number, epochs: number): number {
  return (lr * (1 + Math.cos((Math.PI * epoch) / epochs))) / 2;
}

interface LoopState {
  epoch: number;
  stepInEpoch: number;
  globalStep: number;
  genCalls: number;
}

export async function trainAutoencoder(cfg: TrainAeConfig, ev: TrainAeEvents = {}): Promise<TrainAeResult> {
  const train = await WellDataset.open(cfg.data, { split: "train", nSteps: 1 });
  const valid = await WellDataset.open(cfg.data, { split: "valid", nSteps: 1 }).catch(() => null);
  const root = train.layout.root ?? cfg.data;
  const statsPath = join(root, "stats.yaml");
  let stats = null;
  try {
    stats = readStats(statsPath, root);
  } catch { /* only needed when the dataset has no method preset; forDataset says so */ }
  const fields = train.files[0].fields;
  const normalizer = Normalizer.forDataset(
    { datasetName: train.datasetName, channels: train.channels, fields },
    stats,
    { statsPath, datasetRoot: root },
  );
  const D = train.nSpatialDims;
  const mcfg = aeModelConfig(cfg, train.channels.length, D);
  const model = new Autoencoder(mcfg, cfg.seed);
  const params = model.parameters();
  const opt = await makeOptimizer(cfg, params, cfg.seed);
  const skipped = Tensor.fromData([0], [1], { persistent: true });
  const loader = new WindowLoader(train, {
    batchSize: cfg.batch,
    seed: cfg.seed,
    normalizer,
    augment: augmentationsFor(train.datasetName, train.spatialShape),
    channelKinds: channelKinds(fields, D),
  });
  if (loader.batchesPerEpoch === 0) {
    throw new Error(
      `the train split has ${train.length} frames, fewer than one batch of ${cfg.batch}: lower --batch`,
    );
  }
  await Deno.mkdir(join(cfg.out, "figures"), { recursive: true });
  const ckptPath = join(cfg.out, "checkpoint.safetensors");
  const state: LoopState = { epoch: 0, stepInEpoch: 0, globalStep: 0, genCalls: 0 };
  /** Optimizer tensors (saved as `optim.*`) and host numbers (saved in the metadata). */
  const optState = () => {
    const tensors: Record<string, Tensor> = { "loop.skipped": skipped };
    const scalars: Record<string, number> = {};
    for (const [k, v] of Object.entries(opt.stateDict())) {
      if (typeof v === "number") scalars[k] = v;
      else tensors[k] = v;
    }
    return { tensors, scalars };
  };
  const resolved = { ...cfg, model: mcfg, dataset: train.datasetName, channels: train.channels };

  const resumed = await tryResume(ckptPath, cfg, model, opt, skipped, state);
  if (resumed) ev.onLog?.(`resumed ${ckptPath} at epoch ${state.epoch}, step ${state.stepInEpoch}`);
  else {
    await writeTextAtomic(join(cfg.out, "config.json"), JSON.stringify(resolved, null, 2) + "\n");
    await Deno.writeTextFile(join(cfg.out, "metrics.jsonl"), "");
  }
  model.gen.state = { seed: model.gen.seed, calls: state.genCalls };

  const metricsPath = join(cfg.out, "metrics.jsonl");
  const appendMetrics = (o: Record<string, unknown>) =>
    Deno.writeTextFileSync(metricsPath, JSON.stringify(o) + "\n", { append: true });
  const save = async () => {
    state.genCalls = model.gen.state.calls;
    const os = optState();
    const meta = {
      config: JSON.stringify(resolved),
      loop: JSON.stringify(state),
      optim_scalars: JSON.stringify(os.scalars),
      format: "lola-webgpu/ae/1",
    };
    await saveSafetensors(ckptPath, { ...model.stateDict(), ...prefixed("optim.", os.tensors) }, meta);
    const eps = normEpsBuffers(model);
    try {
      const sd = { ...model.stateDict(), ...eps };
      await saveSafetensors(join(cfg.out, "model.safetensors"), sd, { config: JSON.stringify(mcfg) });
    } finally {
      for (const t of Object.values(eps)) t.dispose();
    }
  };

  const total = cfg.epochs * cfg.stepsPerEpoch;
  const t0 = performance.now();
  let lastValidation: Record<string, number> | null = null;
  let stopped = false;
  ev.onLog?.(
    `autoencoder '${cfg.preset}': ${countParams(mcfg).toLocaleString("en-US")} parameters, ` +
      `${train.length} training frames ${train.channels.length}×${train.spatialShape.join("×")}`,
  );

  try {
    while (state.epoch < cfg.epochs) {
      const lr = epochLr(cfg.lr, state.epoch, cfg.epochs);
      const epochStart = state.globalStep;
      let lossSum = 0, lossCount = 0;
      for (; state.stepInEpoch < cfg.stepsPerEpoch; state.stepInEpoch++) {
        if (ev.shouldStop?.()) {
          stopped = true;
          break;
        }
        const k = state.stepInEpoch;
        const bpe = loader.batchesPerEpoch;
        // Steps per epoch may exceed one pass over the data: continue into the next data epoch deterministically.
        const dataEpoch = state.epoch * Math.ceil(cfg.stepsPerEpoch / bpe) + Math.floor(k / bpe);
        const batch: Batch = loader.assemble(dataEpoch, k % bpe);
        const log = state.globalStep % cfg.logEvery === 0 || k === cfg.stepsPerEpoch - 1;
        const loss = scope(() => {
          const { x } = batchToTensor(batch);
          const { xhat } = model.forward(x, { training: true });
          const l = reconstructionLoss(cfg.loss, xhat, x);
          backward(l);
          const gn = gradNorm(params);
          mapInPlace(skipped, [gn], "in0 + select(1.0, 0.0, isfinite_(in1))", "count_skipped");
          opt.step({ lr, gradNorm: gn, maxNorm: cfg.maxNorm });
          zeroGrad(params);
          return log ? l.keep() : null;
        });
        state.globalStep++;
        let info = `epoch ${state.epoch + 1}/${cfg.epochs}`;
        if (loss) {
          const v = await loss.item();
          loss.dispose();
          if (Number.isFinite(v)) {
            lossSum += v;
            lossCount++;
          }
          appendMetrics({
            step: state.globalStep,
            epoch: state.epoch,
            lr,
            train_loss: v,
            time_s: (performance.now() - t0) / 1000,
          });
          info += ` loss ${v.toFixed(4)}`;
        }
        ev.onStep?.(state.globalStep, total, info);
      }
      if (stopped) break;
      const nSkipped = (await skipped.read())[0];
      const stepsThisEpoch = state.globalStep - epochStart;
      lastValidation = valid ? await validate(model, valid, normalizer, cfg, state.epoch) : null;
      appendMetrics({
        step: state.globalStep,
        epoch: state.epoch,
        lr,
        train_loss_mean: lossCount ? lossSum / lossCount : null,
        skipped_steps_total: nSkipped,
        valid_vrmse: lastValidation,
        bytes_in_use: pool.stats.bytesInUse,
        time_s: (performance.now() - t0) / 1000,
      });
      if (lastValidation) {
        const mean = lastValidation.mean;
        ev.onLog?.(
          `epoch ${state.epoch + 1}: valid VRMSE ${mean.toFixed(4)} (${
            Object.entries(lastValidation).filter(([k]) => k !== "mean" && k !== "mae").map(([k, v]) =>
              `${k} ${v.toFixed(3)}`
            ).join(", ")
          })`,
        );
      }
      if (nSkipped > 0.5 * state.globalStep && stepsThisEpoch > 0) {
        throw new Error(
          `training diverged: ${nSkipped} of ${state.globalStep} steps had non-finite gradients; lower --lr`,
        );
      }
      state.epoch++;
      state.stepInEpoch = 0;
      await save();
    }
    if (stopped) await save();
  } finally {
    model.dispose();
    opt.dispose();
    skipped.dispose();
    train.close();
    valid?.close();
  }
  return {
    stopped,
    epochsDone: state.epoch,
    lastValidation,
    seconds: (performance.now() - t0) / 1000,
    params: countParams(mcfg),
  };
}

function prefixed(p: string, o: Record<string, Tensor>): Record<string, Tensor> {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [p + k, v]));
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

async function tryResume(
  path: string,
  cfg: TrainAeConfig,
  model: Autoencoder,
  opt: Optimizer,
  skipped: Tensor,
  state: LoopState,
): Promise<boolean> {
  let exists = true;
  try {
    await Deno.stat(path);
  } catch {
    exists = false;
  }
  if (!cfg.resume) {
    if (exists) {
      throw new Error(`${path} exists: pass --resume to continue that run, or choose another --out`);
    }
    return false;
  }
  if (!exists) throw new Error(`--resume: no checkpoint at ${path}`);
  const { tensors, metadata } = await loadSafetensors(path);
  const saved = JSON.parse(metadata.config ?? "{}");
  for (
    const k of ["preset", "latentChannels", "optimizer", "batch", "seed", "epochs", "stepsPerEpoch"] as const
  ) {
    if (saved[k] !== cfg[k]) {
      throw new Error(`--resume: the checkpoint was trained with ${k}=${saved[k]}, not ${cfg[k]}`);
    }
  }
  loadInto({ ...model.stateDict(), "optim.loop.skipped": skipped }, tensors, path);
  const scalars: Record<string, number> = JSON.parse(metadata.optim_scalars ?? "{}");
  const sd: Record<string, ArrayLike<number> | number> = {};
  for (const [k, v] of Object.entries(opt.stateDict())) {
    const saved = typeof v === "number" ? scalars[k] : tensors.get(`optim.${k}`)?.data;
    if (saved === undefined) throw new Error(`--resume: ${path} lacks optimizer state ${k}`);
    sd[k] = saved;
  }
  opt.loadStateDict(sd);
  Object.assign(state, JSON.parse(metadata.loop));
  return true;
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
): Promise<Record<string, number>> {
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
    const batch = loader.assemble(0, k);
    const xhat = scope(() =>
      noGrad(() => {
        const { x } = batchToTensor(batch);
        const { xhat } = model.forward(x, { training: false });
        mapInPlace(acc, [sum(vrmsePerField(xhat, x), 0)], "in0 + in1", "acc"); // (C)
        const [b, c] = x.shape;
        const mae = mean(
          abs(sub(reshape(xhat, [b, c, x.size / (b * c)]), reshape(x, [b, c, x.size / (b * c)]))),
          2,
        );
        mapInPlace(accMae, [sum(mae, 0)], "in0 + in1", "acc"); // (C)
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
    // 3-D data: the middle slice along the last axis.
    const [H, W] = [sp[0], sp[1]];
    const plane = (a: Float32Array) => sp.length === 2 ? a : middleSlice(a, C, sp);
    await writeReconstructionFigure(
      join(cfg.out, "figures", `valid_epoch${String(epoch + 1).padStart(3, "0")}.png`),
      plane(figure.truth),
      plane(sample),
      [C, H, W],
    );
  }
  return out;
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
