/**
 * A small synthetic latent cache for emulator tests: N trajectories of T frames, C channels on an h×w grid,
 * each a travelling wave whose phase speed and pattern are set by its θ (2 numbers), with an amplitude like the
 * autoencoder's latents (bounded by 5). Deterministic given (θ, context frame), so an emulator can fit it closely.
 */
import { join } from "node:path";
import { LatentCacheWriter } from "../../data/latent_cache.ts";
import { hostRng } from "../../engine/random.ts";

export async function writeSyntheticCache(
  dir: string,
  o: {
    trajectories: number;
    frames: number;
    channels: number;
    size: number;
    seed: number;
    amplitude?: number;
    speed?: number;
  },
): Promise<string> {
  const { trajectories: N, frames: T, channels: C, size: S } = o;
  const r = hostRng(o.seed);
  const paths: string[] = [];
  for (const split of ["train", "valid"]) {
    const path = join(dir, "cache", "synthetic", `${split}.hdf5`);
    const w = await LatentCacheWriter.create(path, { frames: T, latentShape: [C, S, S], thetaDim: 2 });
    const n = split === "train" ? N : Math.max(2, N >> 2);
    for (let k = 0; k < n; k++) {
      const theta = [r() * 2 - 1, r() * 2 - 1];
      const phase = r() * 6.28;
      const state = new Float32Array(T * C * S * S);
      for (let t = 0; t < T; t++) {
        for (let c = 0; c < C; c++) {
          for (let y = 0; y < S; y++) {
            for (let x = 0; x < S; x++) {
              const arg = phase + (o.speed ?? 1) * (0.3 + 0.2 * theta[0]) * t + 0.9 * (x + c) +
                0.6 * theta[1] * y;
              state[((t * C + c) * S + y) * S + x] = (o.amplitude ?? 3) * Math.sin(arg);
            }
          }
        }
      }
      w.append(state, theta);
    }
    paths.push(w.close());
  }
  return paths[0];
}
