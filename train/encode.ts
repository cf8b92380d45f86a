/**
 * Latent caching (method §9, lola's cache_latents.py): every trajectory of every split goes through the trained
 * encoder (eval mode: no dropout) and lands in one HDF5 per split, `state` (N, T, C_z, h, w[, d]) and `label`
 * (N, D_θ). The train split is repeated `repeat` times (default 4), each copy with its own random augmentation
 * (re-drawn when identical to an earlier copy); valid and test are encoded once, unaugmented.
 */
import { join } from "node:path";
import { initDevice, noGrad, scope, Tensor } from "../engine/index.ts";
import { loadInto, loadSafetensors } from "../engine/checkpoint.ts";
import {
  applyAugmentation,
  augmentationsFor,
  augmentBoundaryConditions,
  type AxisAugmentation,
  channelKinds,
  drawAugmentation,
  identityAugmentation,
} from "../data/augment.ts";
import { LatentCacheWriter } from "../data/latent_cache.ts";
import { deriveSeed, Rng } from "../data/rng.ts";
import { readStats } from "../data/stats.ts";
import { Normalizer, thetaVector } from "../data/transforms.ts";
import { type Split, WellDataset } from "../data/well_dataset.ts";
import { constantScalars } from "../data/well_file.ts";
import { Autoencoder } from "./autoencoder.ts";
import { type AutoencoderConfig, downFactor } from "./autoencoder_config.ts";

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

/** Load a trained autoencoder from its run directory. */
export async function loadAutoencoder(run: string): Promise<Autoencoder> {
  let cfg: { model?: AutoencoderConfig };
  try {
    cfg = JSON.parse(await Deno.readTextFile(join(run, "config.json")));
  } catch {
    throw new Error(
      `${run} is not an autoencoder run: no readable config.json (train one with \`deno task train ae\`)`,
    );
  }
  if (!cfg.model) throw new Error(`${run}/config.json has no model configuration`);
  const model = new Autoencoder(cfg.model, 0);
  const { tensors } = await loadSafetensors(join(run, "model.safetensors"));
  loadInto(model.stateDict(), tensors, join(run, "model.safetensors"));
  return model;
}

function sameAug(a: AxisAugmentation, b: AxisAugmentation) {
  return JSON.stringify(a) === JSON.stringify(b);
}

export async function encodeDataset(
  o: EncodeOptions,
): Promise<Record<string, { path: string; trajectories: number }>> {
  await initDevice();
  const model = await loadAutoencoder(o.ae);
  const out = o.out ?? join(o.ae, "cache");
  const repeat = o.repeat ?? 4, batch = o.batch ?? 8, seed = o.seed ?? 0;
  const result: Record<string, { path: string; trajectories: number }> = {};
  try {
    for (const split of ["train", "valid", "test"] as Split[]) {
      const ds = await WellDataset.open(o.data, { split, nSteps: 1 }).catch(() => null);
      if (!ds) continue;
      const root = ds.layout.root ?? o.data;
      let stats = null;
      try {
        stats = readStats(join(root, "stats.yaml"), root);
      } catch { /* method presets need none */ }
      const fields = ds.files[0].fields;
      const norm = Normalizer.forDataset(
        { datasetName: ds.datasetName, channels: ds.channels, fields },
        stats,
        {
          statsPath: join(root, "stats.yaml"),
          datasetRoot: root,
        },
      );
      const D = ds.nSpatialDims, C = ds.channels.length, f = downFactor(model.cfg);
      const kinds = channelKinds(fields, D);
      const augCfg = augmentationsFor(ds.datasetName, ds.spatialShape);
      const copies = split === "train" ? repeat : 1;
      const trajs = ds.trajectories();
      const T = trajs[0].nSteps;
      const S = ds.spatialShape.reduce((a, b) => a * b, 1);
      const path = join(out, ds.datasetName, `${split}.hdf5`);
      const info = ds.files[0];
      const writer = await LatentCacheWriter.create(path, {
        frames: T,
        latentShape: [model.cfg.latentChannels, ...ds.spatialShape.map((n) => n / f)],
        thetaDim: thetaVector(constantScalars(info, 0), info.boundaryConditions).length,
        attributes: { source: o.data, autoencoder: o.ae, split, repeat: copies },
      });
      try {
        let done = 0;
        for (const [ti, t] of trajs.entries()) {
          if (t.nSteps !== T) {
            throw new Error(`trajectories of ${split} differ in length (${t.nSteps} vs ${T})`);
          }
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
        result[split] = { path: writer.close(), trajectories: writer.count };
      } catch (e) {
        writer.abort();
        throw e;
      } finally {
        ds.close();
      }
    }
  } finally {
    model.dispose();
  }
  if (!result.train) throw new Error(`${o.data} has no train split to encode`);
  return result;
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
