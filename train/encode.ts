/**
 * Latent caching (method §9, lola's cache_latents.py): every trajectory of every split goes through the trained
 * encoder (eval mode: no dropout) and lands in one HDF5 per split, `state` (N, T, C_z, h, w[, d]) and `label`
 * (N, D_θ). The train split is repeated `repeat` times (default 4), each copy with its own random augmentation
 * (re-drawn when identical to an earlier copy); valid and test are encoded once, unaugmented.
 *
 * Invariant: all or nothing. Every split's inputs are opened and checked before the first cache is started, and
 * the caches are renamed into place only after every split is encoded.
 */
import { join } from "node:path";
import { initDevice, noGrad, scope, Tensor } from "../engine/index.ts";

import {
  applyAugmentation,
  augmentationsFor,
  augmentBoundaryConditions,
  type AxisAugmentation,
  drawAugmentation,
  identityAugmentation,
} from "../data/augment.ts";
import { DataError } from "../data/errors.ts";
import { LatentCacheWriter } from "../data/latent_cache.ts";
import { type NormalizedSplit, openNormalizedSplit } from "../data/open_split.ts";
import { deriveSeed, Rng } from "../data/rng.ts";
import { thetaVector } from "../data/transforms.ts";
import { type Split, SPLITS } from "../data/well_dataset.ts";
import { constantScalars } from "../data/well_file.ts";
import { Autoencoder } from "../models/autoencoder.ts";
import { type AutoencoderConfig, downFactor } from "../models/autoencoder_config.ts";
import { loadAutoencoder, readAutoencoderConfig } from "../eval/runs.ts";

export interface EncodeOptions {
  /** Run directory of a trained autoencoder (config.json + model.safetensors). */
  ae: string;
  data: string;
  /** Output folder (default <ae>/cache). */
  out?: string;
  repeat?: number;
  /** Frames encoded per GPU batch. */
  batch?: number;
  seed?: number;
  onProgress?: (split: string, done: number, total: number) => void;
}

export { loadAutoencoder, readAutoencoderConfig };

function sameAug(a: AxisAugmentation, b: AxisAugmentation) {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * Checks what encoding needs of every split before anything is written: a train split, readable files, one
 * trajectory length per split, the autoencoder's channels, and spatial sizes divisible by its down factor.
 */
function checkSplits(splits: [Split, NormalizedSplit][], cfg: AutoencoderConfig, o: EncodeOptions): void {
  if (!splits.some(([s]) => s === "train")) {
    throw new DataError(
      `${o.data} has no train split to encode: expected ${join(o.data, "data", "train")}/*.hdf5`,
    );
  }
  const f = downFactor(cfg);
  for (const [split, { ds }] of splits) {
    const where = `the ${split} split of ${o.data}`;
    if (ds.channels.length !== cfg.pixelChannels) {
      throw new DataError(
        `${where} has ${ds.channels.length} channels, the autoencoder in ${o.ae} takes ` +
          `${cfg.pixelChannels}: encode the data it was trained on`,
      );
    }
    if (ds.spatialShape.some((n) => n % f !== 0)) {
      throw new DataError(
        `${where} is ${ds.spatialShape.join("×")}, not divisible by the autoencoder's down factor ${f} ` +
          `(${o.ae}): use data whose sizes are multiples of ${f}`,
      );
    }
    const T = ds.files[0].nSteps, other = ds.files.find((fi) => fi.nSteps !== T);
    if (other) {
      throw new DataError(
        `trajectories of ${where} differ in length (${T} steps in ${ds.files[0].path}, ${other.nSteps} in ` +
          `${other.path}): the latent cache holds one length per split`,
      );
    }
  }
}

/**
 * Encodes every split into `<out>/<dataset>/<split>.hdf5`. Every split is opened and checked first, and every
 * cache is written under a temp name and renamed only once all splits are encoded: bad input writes nothing, and
 * a failure midway leaves earlier caches as they were.
 */
export async function encodeDataset(
  o: EncodeOptions,
): Promise<Record<string, { path: string; trajectories: number }>> {
  const splits: [Split, NormalizedSplit][] = [];
  try {
    for (const split of SPLITS) {
      const s = await openNormalizedSplit(o.data, split, { nSteps: 1 });
      if (s) splits.push([split, s]);
    }
    checkSplits(splits, await readAutoencoderConfig(o.ae), o);
    await initDevice();
    const model = await loadAutoencoder(o.ae);
    const writers: LatentCacheWriter[] = [];
    try {
      const result: Record<string, { path: string; trajectories: number }> = {};
      for (const [split, s] of splits) {
        const w = await encodeSplit(model, split, s, o);
        writers.push(w);
        result[split] = { path: w.path, trajectories: w.count };
      }
      for (const w of writers) w.close();
      return result;
    } catch (e) {
      for (const w of writers) w.abort();
      throw e;
    } finally {
      model.dispose();
    }
  } finally {
    for (const [, { ds }] of splits) ds.close();
  }
}

/** Encodes one split into a latent cache writer left open (its temp file): the caller closes or aborts it. */
async function encodeSplit(
  model: Autoencoder,
  split: Split,
  { ds, normalizer: norm, kinds }: NormalizedSplit,
  o: EncodeOptions,
): Promise<LatentCacheWriter> {
  const out = o.out ?? join(o.ae, "cache");
  const repeat = o.repeat ?? 4, batch = o.batch ?? 8, seed = o.seed ?? 0;
  const D = ds.nSpatialDims, C = ds.channels.length, f = downFactor(model.cfg);
  const augCfg = augmentationsFor(ds.datasetName, ds.spatialShape);
  const copies = split === "train" ? repeat : 1;
  const trajs = ds.trajectories();
  const T = trajs[0].nSteps;
  const S = ds.spatialShape.reduce((a, b) => a * b, 1);
  const info = ds.files[0];
  const writer = await LatentCacheWriter.create(join(out, ds.datasetName, `${split}.hdf5`), {
    frames: T,
    latentShape: [model.cfg.latentChannels, ...ds.spatialShape.map((n) => n / f)],
    thetaDim: thetaVector(constantScalars(info, 0), info.boundaryConditions).length,
    attributes: { source: o.data, autoencoder: o.ae, split, repeat: copies },
  });
  try {
    let done = 0;
    for (const [ti, t] of trajs.entries()) {
      const frames = ds.readFrames(t.fileIndex, t.trajectory, 0, T);
      const fi = ds.files[t.fileIndex];
      const drawn: AxisAugmentation[] = [];
      for (let r = 0; r < copies; r++) {
        let a = identityAugmentation(D);
        if (split === "train") {
          const rng = new Rng(deriveSeed(seed, ti, r));
          for (let tries = 0; tries < 16; tries++) {
            a = drawAugmentation(rng, augCfg, ds.spatialShape, fi.boundaryConditions);
            if (!drawn.some((b) => sameAug(a, b))) break;
          }
          drawn.push(a);
        }
        const x = norm.normalize(applyAugmentation(frames, ds.spatialShape, kinds, a), S);
        const shape = a.permutation.map((p) => ds.spatialShape[p]);
        const z = await encodeFrames(model, x, [T, C, ...shape], batch);
        const bc = augmentBoundaryConditions(fi.boundaryConditions, a);
        writer.append(z, thetaVector(constantScalars(fi, t.trajectory), bc));
        o.onProgress?.(split, ++done, trajs.length * copies);
      }
    }
    return writer;
  } catch (e) {
    writer.abort();
    throw e;
  }
}

/** Encode (T, C, ...) frames in GPU batches; returns (T, C_z, ...) on the host. */
async function encodeFrames(
  model: Autoencoder,
  x: Float32Array,
  shape: number[],
  batch: number,
): Promise<Float32Array> {
  const [T] = shape;
  const per = x.length / T;
  const parts: Float32Array[] = [];
  for (let t0 = 0; t0 < T; t0 += batch) {
    const n = Math.min(batch, T - t0);
    const z = scope(() =>
      noGrad(() =>
        model.encode(Tensor.fromData(x.subarray(t0 * per, (t0 + n) * per), [n, ...shape.slice(1)]), {
          training: false,
        })
          .keep()
      )
    );
    parts.push(await z.read());
    z.dispose();
  }
  const zPer = parts[0].length / Math.min(batch, T);
  const out = new Float32Array(T * zPer);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
