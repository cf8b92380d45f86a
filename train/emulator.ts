/**
 * The emulator stages on the shared loop (train/loop.ts): the latent diffusion denoiser ("dm", method §3), the
 * latent neural solver ("solver", §6) and the pixel-space solver ("pixel", §6's vit_pixel), trained with AdamW
 * (β = (0.9, 0.99), eps 1e-8, no weight decay) on windows of L frames spaced by the stride Δ at every start.
 *
 * Data: the latent stages read the autoencoder run's latent cache (`<ae>/cache/<dataset>/{train,valid}.hdf5`,
 * written first when missing); the pixel stage reads standardised, augmented pixel windows of the Well dataset.
 * Masks are drawn on the host from deriveSeed(seed, epoch, step) and the noise from the model's generator, so a
 * resumed run repeats every draw. Validation uses fixed draws (its own generator and mask stream), so the
 * validation loss of two epochs compares the model, not the noise.
 */
import { join } from "node:path";
import { mapInPlace, noGrad, permute, scope, Tensor } from "../engine/index.ts";
import { Adam } from "../engine/optim/adam.ts";
import { Generator } from "../engine/random.ts";
import { type Batch, batchToTensor, WindowLoader, type WindowSource } from "../data/batches.ts";
import { augmentationsFor } from "../data/augment.ts";
import { LatentCache } from "../data/latent_cache.ts";
import { openNormalizedSplit } from "../data/open_split.ts";
import { deriveSeed, Rng } from "../data/rng.ts";
import {
  contextMasks,
  Denoiser,
  denoiserLoss,
  type MaskPrior,
  type ScheduleKind,
} from "../models/diffusion.ts";
import { PixelSolver, type Solver, solverLoss } from "../models/solver.ts";
import { countParams } from "../models/transformer.ts";
import { encodeDataset } from "./encode.ts";
import { type LoopEvents, runTraining, type TrainTask, type Validation } from "./loop.ts";

import {
  type EmulatorModel,
  emulatorModelConfig,
  type EmulatorStage,
  makeEmulator,
  type TransformerPreset,
} from "../eval/runs.ts";

export type { EmulatorStage, TransformerPreset };

export interface TrainEmulatorConfig {
  stage: EmulatorStage;
  /** Autoencoder run folder (latent stages). */
  ae?: string;
  /** Well dataset (pixel stage; for the latent stages, overrides the autoencoder's when writing the cache). */
  data?: string;
  preset: TransformerPreset;
  epochs: number;
  stepsPerEpoch: number;
  batch: number;
  lr: number;
  seed: number;
  out: string;
  /** Frames per window L and raw steps between them Δ. */
  window: number;
  stride: number;
  maskPrior: MaskPrior;
  /** Pixel stage: spatial patch size p. */
  patch: number;
  schedule: ScheduleKind;
  validBatches: number;
  logEvery: number;
  maxNorm: number;
  resume: boolean;
  override?: boolean;
  /** Fit the run into this many minutes: epochs (at most `epochs`) from the measured step time. */
  budgetMinutes?: number;
  /**
   * Recompute each transformer block in the backward instead of keeping its activations (less memory, ~1/3
   * more compute, the same results to the bit): for the `large` preset on a GPU. Not a setting of the results.
   */
  checkpointBlocks?: boolean;
}

export interface EmulatorResult {
  stopped: boolean;
  epochsDone: number;
  validLoss: number | null;
  bestLoss: number | null;
  seconds: number;
  params: number;
}

/** The latent cache files of an autoencoder run: `<ae>/cache/<dataset>/<split>.hdf5`. */
export function findLatentCache(ae: string): { train: string; valid: string | null } | null {
  const root = join(ae, "cache");
  let dirs: string[] = [];
  try {
    dirs = [...Deno.readDirSync(root)].filter((e) => e.isDirectory).map((e) => e.name).sort();
  } catch {
    return null;
  }
  for (const d of dirs) {
    const has = (s: string) => {
      try {
        return Deno.statSync(join(root, d, `${s}.hdf5`)).isFile;
      } catch {
        return false;
      }
    };
    if (has("train")) {
      return { train: join(root, d, "train.hdf5"), valid: has("valid") ? join(root, d, "valid.hdf5") : null };
    }
  }
  return null;
}

/** The latent cache of `ae`, encoded first when the run has none. */
export async function ensureLatentCache(
  ae: string,
  data: string | undefined,
  log: (line: string) => void,
): Promise<{ train: string; valid: string | null }> {
  const found = findLatentCache(ae);
  if (found) return found;
  let source = data;
  if (!source) {
    try {
      source = JSON.parse(Deno.readTextFileSync(join(ae, "config.json"))).data;
    } catch {
      throw new Error(
        `${ae} is not an autoencoder run: no readable config.json (train one with \`deno task train ae\`)`,
      );
    }
    if (!source) throw new Error(`${ae}/config.json names no dataset: pass --data`);
  }
  log(`${ae} has no latent cache: encoding ${source} first`);
  const step = new Map<string, number>();
  await encodeDataset({
    ae,
    data: source,
    // Minutes on a CPU adapter: a line per tenth of each split, so a long encoding is visibly moving.
    onProgress: (split, done, total) => {
      const every = step.get(split) ?? Math.max(1, Math.ceil(total / 10));
      step.set(split, every);
      if (done % every === 0 || done === total) log(`encoding ${split}: ${done}/${total} trajectories`);
    },
  });
  const made = findLatentCache(ae);
  if (!made) throw new Error(`encoding ${source} with ${ae} wrote no train cache`);
  return made;
}

interface Sources {
  train: WindowSource;
  valid: WindowSource | null;
  /** Latent or pixel channels C, spatial shape of the windows, θ width. */
  channels: number;
  spatial: number[];
  labelDim: number;
  dataset: string;
  loaderExtras: Partial<ConstructorParameters<typeof WindowLoader>[1]>;
  validExtras: Partial<ConstructorParameters<typeof WindowLoader>[1]>;
  describe: string;
  close(): void;
}

async function openSources(cfg: TrainEmulatorConfig, log: (line: string) => void): Promise<Sources> {
  const geometry = { length: cfg.window, stride: cfg.stride };
  if (cfg.stage !== "pixel") {
    if (!cfg.ae) throw new Error(`train ${cfg.stage} needs --ae RUN (a trained autoencoder run folder)`);
    const files = await ensureLatentCache(cfg.ae, cfg.data, log);
    const train = await LatentCache.open(files.train, geometry);
    const valid = files.valid
      ? await LatentCache.open(files.valid, geometry).catch((e) => {
        train.close();
        throw e;
      })
      : null;
    if (!valid) log(`${cfg.ae} has no valid latent cache: training without validation`);
    return {
      train,
      valid,
      channels: train.latentShape[0],
      spatial: train.spatialShape,
      labelDim: train.thetaDim,
      dataset: files.train,
      loaderExtras: {},
      validExtras: {},
      describe:
        `${train.length} latent windows ${train.latentShape[0]}×${cfg.window}×${
          train.spatialShape.join("×")
        }` +
        ` (stride ${cfg.stride}) from ${files.train}`,
      close: () => {
        train.close();
        valid?.close();
      },
    };
  }
  if (!cfg.data) throw new Error(`train solver --pixel needs --data PATH (a Well dataset)`);
  const nSteps = cfg.window, stride = cfg.stride;
  const train = await openNormalizedSplit(cfg.data, "train", { nSteps, stride });
  if (!train) throw new Error(`${cfg.data} has no train split (expected data/train/*.hdf5)`);
  const valid = await openNormalizedSplit(cfg.data, "valid", { nSteps, stride }).catch((e) => {
    train.ds.close();
    throw e;
  });
  if (!valid) log(`${cfg.data} has no valid split: training without validation`);
  const ds = train.ds;
  const theta = ds.length > 0
    ? new WindowLoader(ds, { batchSize: 1, shuffle: false }).assemble(0, 0).thetaDim
    : 0;
  return {
    train: ds,
    valid: valid?.ds ?? null,
    channels: ds.channels.length,
    spatial: ds.spatialShape,
    labelDim: theta,
    dataset: cfg.data,
    loaderExtras: {
      normalizer: train.normalizer,
      augment: augmentationsFor(ds.datasetName, ds.spatialShape),
      channelKinds: train.kinds,
    },
    validExtras: { normalizer: valid?.normalizer ?? train.normalizer },
    describe: `${ds.length} pixel windows ${ds.channels.length}×${cfg.window}×${ds.spatialShape.join("×")} ` +
      `(stride ${cfg.stride}, patch ${cfg.patch}) from ${cfg.data}`,
    close: () => {
      ds.close();
      valid?.ds.close();
    },
  };
}

/** (B, L, C, …) host batch → (B, C, L, …) window tensor, (B, 1, L, 1, …) mask, (B, D_θ) label. */
function windowTensors(
  batch: Batch,
  mask: Float32Array,
) {
  const [B, L, ...rest] = batch.shape;
  const { x, theta } = batchToTensor(batch);
  const win = permute(x, [0, 2, 1, ...rest.slice(1).map((_, i) => 3 + i)], false); // (B, C, L, …)
  const m = Tensor.fromData(mask, [B, 1, L, ...rest.slice(1).map(() => 1)]); // (B, 1, L, 1, …)
  return { x: win, mask: m, label: theta };
}

function stageLoss(
  stage: EmulatorStage,
  model: EmulatorModel,
  w: ReturnType<typeof windowTensors>,
  o: { training: boolean; tau?: Tensor; eps?: Tensor },
): Tensor {
  if (stage === "dm") return denoiserLoss(model as Denoiser, w.x, w.mask, w.label, o);
  return solverLoss(model as Solver | PixelSolver, w.x, w.mask, w.label, o);
}

export async function trainEmulator(cfg: TrainEmulatorConfig, ev: LoopEvents = {}): Promise<EmulatorResult> {
  const log = ev.onLog ?? (() => {});
  if (cfg.window < 2) throw new Error(`--window must be ≥ 2 (context + generated frames), got ${cfg.window}`);
  const src = await openSources(cfg, log);
  let model: EmulatorModel | null = null, opt: Adam | null = null;
  try {
    const spatial = src.spatial.length as 2 | 3;
    if (cfg.stage === "pixel" && src.spatial.some((s) => s % cfg.patch !== 0)) {
      throw new Error(`--patch ${cfg.patch} does not divide the frames (${src.spatial.join("×")})`);
    }
    const channels = cfg.stage === "pixel" ? src.channels * cfg.patch ** spatial : src.channels;
    const mcfg = emulatorModelConfig(cfg.stage, cfg.preset, { channels, spatial, labelDim: src.labelDim });
    model = makeEmulator(cfg.stage, mcfg, cfg);
    (model instanceof PixelSolver ? model.solver.net : model.net).checkpointBlocks = cfg.checkpointBlocks ??
      false;
    opt = new Adam(model.parameters(), { lr: cfg.lr, betas: [0.9, 0.99], eps: 1e-8, weightDecay: 0 });
    const loader = new WindowLoader(src.train, { batchSize: cfg.batch, seed: cfg.seed, ...src.loaderExtras });
    if (loader.batchesPerEpoch === 0) {
      throw new Error(
        `the train split has ${src.train.length} windows, fewer than one batch of ${cfg.batch}: lower --batch`,
      );
    }
    const m = model;
    const { out: _o, resume: _r, logEvery: _l, override: _v, checkpointBlocks: _c, ...settings } = cfg;
    const task: TrainTask = {
      name: cfg.stage,
      model: m,
      optimizer: opt,
      config: { ...settings, model: mcfg, source: src.dataset, channels: src.channels, grid: src.spatial },
      batchesPerEpoch: loader.batchesPerEpoch,
      describe: () =>
        `${STAGE_NAMES[cfg.stage]} '${cfg.preset}': ${
          countParams(mcfg).toLocaleString("en-US")
        } parameters, ` +
        src.describe,
      loss: (epoch, k) => {
        const bpe = loader.batchesPerEpoch;
        const dataEpoch = epoch * Math.ceil(cfg.stepsPerEpoch / bpe) + Math.floor(k / bpe);
        const batch = loader.assemble(dataEpoch, k % bpe);
        const mask = contextMasks(
          batch.shape[0],
          cfg.window,
          new Rng(deriveSeed(cfg.seed, 0x3a5c, epoch, k)),
          cfg.maskPrior,
        );
        return stageLoss(cfg.stage, m, windowTensors(batch, mask), { training: true });
      },
      validate: src.valid ? () => validateEmulator(cfg, m, src.valid!, src.validExtras) : undefined,
      modelMetadata: () => ({ config: JSON.stringify(mcfg), stage: cfg.stage }),
    };
    const res = await runTraining(task, cfg.out, {
      epochs: cfg.epochs,
      stepsPerEpoch: cfg.stepsPerEpoch,
      lr: cfg.lr,
      maxNorm: cfg.maxNorm,
      logEvery: cfg.logEvery,
      resume: cfg.resume,
      override: cfg.override,
      budgetSeconds: cfg.budgetMinutes ? cfg.budgetMinutes * 60 : undefined,
      keepBest: true,
    }, ev);
    return {
      stopped: res.stopped,
      epochsDone: res.epochsDone,
      validLoss: res.lastValidation?.loss ?? null,
      bestLoss: res.bestLoss,
      seconds: res.seconds,
      params: countParams(mcfg),
    };
  } finally {
    model?.dispose();
    opt?.dispose();
    src.close();
  }
}

const STAGE_NAMES: Record<EmulatorStage, string> = {
  dm: "diffusion denoiser",
  solver: "latent solver",
  pixel: "pixel solver",
};

/**
 * Mean loss over the first `validBatches` batches of `valid` with fixed masks and noise (the same draws for every
 * call with the same seed), so two evaluations compare the models, not the draws.
 */
export async function validateEmulator(
  cfg: Pick<TrainEmulatorConfig, "stage" | "batch" | "validBatches" | "seed" | "window" | "maskPrior">,
  model: EmulatorModel,
  valid: WindowSource,
  extras: Partial<ConstructorParameters<typeof WindowLoader>[1]>,
): Promise<Validation | null> {
  const batch = Math.min(cfg.batch, valid.length);
  if (batch === 0) return null;
  const loader = new WindowLoader(valid, { batchSize: batch, seed: 0, shuffle: true, ...extras });
  const n = Math.min(cfg.validBatches, loader.batchesPerEpoch);
  const acc = Tensor.fromData([0], [1], { persistent: true });
  const gen = new Generator(deriveSeed(cfg.seed, 0x7a11d));
  try {
    for (let k = 0; k < n; k++) {
      const b = loader.assemble(0, k);
      const mask = contextMasks(
        b.shape[0],
        cfg.window,
        new Rng(deriveSeed(cfg.seed, 0x7a11d, k)),
        cfg.maskPrior,
      );
      scope(() =>
        noGrad(() => {
          const w = windowTensors(b, mask);
          const draws = cfg.stage === "dm"
            ? { tau: gen.uniform([b.shape[0]]), eps: gen.normal(w.x.shape) }
            : {};
          const l = stageLoss(cfg.stage, model, w, { training: false, ...draws });
          mapInPlace(acc, [l.view([1])], "in0 + in1", "acc");
        })
      );
    }
    const loss = (await acc.read())[0] / n;
    return { loss, metrics: {}, summary: `valid loss ${loss.toPrecision(4)} (${n} batches of ${batch})` };
  } finally {
    acc.dispose();
  }
}
