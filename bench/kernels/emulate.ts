/**
 * Emulation inference at the `default` preset (transformer "default", autoencoder "default" on 64×64×5 frames,
 * 16×8×8 latents, windows of L = 5 frames with c = 1 context frame, so one window generates 4 states per member),
 * with randomly initialised models (timing needs no training):
 *   emulate_dm       one window of latent diffusion: 16-step AB3 through the masked wrapper + decoding 4 frames
 *   emulate_solver   one window of the latent solver + decoding 4 frames
 *   emulate_pixel    one window of the pixel solver (patch 8: 8×8 tokens per frame), nothing to decode
 *   emulate_decode   decoding alone (4 frames × K)
 *   emulate_ab3_bookkeeping  the sampler with a free denoiser (returns a fixed tensor): its own overhead, to set
 *                    against the 16 denoiser calls of emulate_dm (method §4's budget: ≤ 5%)
 * for K = 1 and K = 16 members (batch entries). ms per generated state = ms / (4·K). `emulateBench(kind, K,
 * "large")` builds the paper's size (a GPU-only case: minutes per window on a CPU adapter, so not in `benches`).
 */
import { slice, Tensor, zeros } from "../../engine/index.ts";
import { Autoencoder } from "../../models/autoencoder.ts";
import { AE_PRESETS } from "../../models/autoencoder_config.ts";
import { Denoiser } from "../../models/diffusion.ts";
import { decodeWindow, diffusionWindow, solverWindow, type WindowModel } from "../../models/emulate.ts";
import { sample } from "../../models/sampler.ts";
import { PixelSolver, Solver } from "../../models/solver.ts";
import { transformerPreset } from "../../models/transformer.ts";
import type { Bench } from "../types.ts";
import { input } from "../inputs.ts";

const L = 5, C_P = 5, C_Z = 16, PIX = 64, LAT = 8, PATCH = 8, THETA = 5;

type Kind = "dm" | "solver" | "pixel" | "decode" | "ab3_bookkeeping";

/** One window of K members: x (K, C, L, …) with the context in frame 0, mask (K, 1, L, 1, 1), label (K, D_θ). */
function emulateBench(kind: Kind, K: number, preset: "default" | "large" = "default"): Bench {
  const pixel = kind === "pixel";
  const C = pixel ? C_P : C_Z, S = pixel ? PIX : LAT;
  const tag = preset === "large" ? "emulate_large_" : "emulate_";
  return {
    kernel: `${tag}${kind}`,
    shape: `K${K}x${C}x${L}x${S}x${S}`,
    flops: 0,
    bytes: 4 * K * C * L * S * S * 2,
    setup: () => {
      const x = input([K, C, L, S, S], 3);
      const m = new Float32Array(K * L);
      for (let k = 0; k < K; k++) m[k * L] = 1;
      const mask = Tensor.fromData(m, [K, 1, L, 1, 1], { persistent: true });
      const label = input([K, THETA], 4);
      const ae = kind === "pixel" || kind === "ab3_bookkeeping"
        ? null
        : new Autoencoder(AE_PRESETS.default(C_P, C_Z), 1);
      const cfg = (k: "denoiser" | "solver") =>
        transformerPreset(preset, {
          channels: pixel ? C_P * PATCH * PATCH : C,
          spatial: 2,
          labelDim: THETA,
          kind: k,
        });
      let model: { dispose(): void } | null = null,
        window: (WindowModel & { dispose?(): void }) | null = null;
      let fixed: Tensor | null = null;
      if (kind === "dm") {
        const den = new Denoiser(cfg("denoiser"), 2);
        model = den;
        window = diffusionWindow(den, { seed: 1, steps: 16 });
      } else if (kind === "solver") {
        const s = new Solver(cfg("solver"), 2);
        model = s;
        window = solverWindow(s);
      } else if (kind === "pixel") {
        const s = new PixelSolver(cfg("solver"), PATCH, 2);
        model = s;
        window = solverWindow(s);
      } else if (kind === "ab3_bookkeeping") {
        fixed = zeros([K, C, L, S, S]).keep();
      }
      let calls = 0;
      const run = () => {
        if (kind === "ab3_bookkeeping") {
          sample(() => fixed!, [K, C, L, S, S], { steps: 16, order: 3, seed: 1 });
          return;
        }
        const out = kind === "decode" ? x : window!(x, mask, label, calls++); // (K, C, L, …)
        if (ae) decodeWindow(ae, out.shape[2] === L ? sliceNew(out) : out);
      };
      return {
        run,
        dispose: () => {
          for (const t of [x, mask, label, fixed]) t?.dispose();
          window?.dispose?.();
          model?.dispose();
          ae?.dispose();
        },
      };
    },
  };
}

/** The L − 1 generated frames of a window. */
function sliceNew(w: Tensor): Tensor {
  return slice(w, 2, 1, L);
}

export { emulateBench };

export const benches: Bench[] = [
  ...[1, 16].flatMap((K) =>
    (["dm", "solver", "pixel", "decode", "ab3_bookkeeping"] as Kind[]).map((kind) => emulateBench(kind, K))
  ),
];
