/**
 * Whole training steps (forward, loss, backward, optimizer; what one iteration of `deno task train <stage>`
 * encodes, without the data loading): the autoencoder `default` (Adam and PSGD-Kron), the diffusion denoiser and
 * the latent solver at `default` on the built-in dataset's latent shape (B 8, 16 × 5 × 8×8 = 320 tokens) and at
 * `large` on the Euler latent shape (B 1, 64 × 5 × 16×16 = 1,280 tokens), and the pixel solver at `default`
 * (5 × 5 × 64×64 frames, patch 8); and forward + backward of 4 `large` blocks with and without activation
 * checkpointing (`step_blocks`, for its memory). `deno task bench --filter step`.
 *
 * FLOPs of a transformer step: 3× the forward's matmuls and attention (backward ≈ 2× forward); the AE rows report
 * time and memory only.
 */
import { Adam, backward, gradNorm, Tensor, zeroGrad } from "../../engine/index.ts";
import { PSGDKron } from "../../engine/optim/psgd.ts";
import type { Optimizer } from "../../engine/optim/optimizer.ts";
import { attentionFlops } from "../../engine/ops/attention.ts";
import { Autoencoder } from "../../models/autoencoder.ts";
import { AE_PRESETS } from "../../models/autoencoder_config.ts";
import { reconstructionLoss } from "../../models/losses.ts";
import { Denoiser, denoiserLoss } from "../../models/diffusion.ts";
import { PixelSolver, Solver, solverLoss } from "../../models/solver.ts";
import { type TransformerConfig, transformerPreset } from "../../models/transformer.ts";
import type { Bench } from "../types.ts";
import { input } from "../inputs.ts";

const constant = (data: number[] | Float32Array, shape: number[]) =>
  Tensor.fromData(data, shape, { persistent: true });

/** Forward FLOPs of the transformer on B windows of N tokens (matmuls, attention, projections). */
export function transformerForwardFlops(cfg: TransformerConfig, B: number, N: number): number {
  const D = cfg.width, H = cfg.heads;
  const block = 2 * B * N * D * D * (3 + 1 + 2 * cfg.ffnFactor) + attentionFlops(B, N, H, D / H).fwd;
  const proj = 2 * B * N * (2 * cfg.channels * D + D * cfg.channels) + 2 * N * (cfg.spatial + 1) * D * D;
  return cfg.blocks * block + proj;
}

function optimizerStep(opt: Optimizer, params: Tensor[]) {
  opt.step({ gradNorm: gradNorm(params), maxNorm: 1 });
  zeroGrad(params);
}

/**
 * `psgd` updates every Kronecker factor each step (what the schedule p(n) = max(1/64, 0.999ⁿ) does for the first
 * ~100 steps); `psgd_apply` never does (what it does on all but 1 step in 64 after ~4,200 steps), so a run's mean
 * step is `psgd_apply` + p(n)·(`psgd` − `psgd_apply`).
 */
function aeBench(optimizer: "adam" | "psgd" | "psgd_apply"): Bench {
  const B = 8, C = 5, S = 64;
  return {
    kernel: "step_ae",
    shape: `default ${optimizer} B${B} ${C}x${S}x${S}`,
    flops: 0,
    bytes: 0,
    setup: () => {
      const model = new Autoencoder(AE_PRESETS.default(C, 16), 1);
      const params = model.parameters();
      const opt: Optimizer = optimizer === "adam"
        ? new Adam(params, { lr: 1e-3, betas: [0.9, 0.99] })
        : new PSGDKron(params, {
          lr: 3e-4,
          seed: 1,
          schedule: optimizer === "psgd_apply" ? () => ({ update: false, balance: false }) : undefined,
        });
      const x = input([B, C, S, S], 3);
      return {
        run: () => {
          backward(reconstructionLoss("vrmse", model.forward(x, { training: true }).xhat, x), undefined, {
            freeActivations: true,
          });
          optimizerStep(opt, params);
        },
        dispose: () => {
          x.dispose();
          opt.dispose();
          model.dispose();
        },
      };
    },
  };
}

type EmuKind = "dm" | "solver" | "pixel";

function emulatorBench(
  kind: EmuKind,
  preset: "default" | "large",
  B: number,
  C: number,
  grid: number[],
): Bench {
  const patch = kind === "pixel" ? 8 : 1;
  const tokensGrid = [grid[0], ...grid.slice(1).map((s) => s / patch)];
  const N = tokensGrid.reduce((a, b) => a * b, 1);
  const cfg = transformerPreset(preset, {
    channels: C * patch * patch,
    spatial: 2,
    labelDim: 5,
    kind: kind === "dm" ? "denoiser" : "solver",
  });
  return {
    kernel: `step_${kind}`,
    shape: `${preset} B${B} C${C} ${grid.join("x")}${patch > 1 ? ` p${patch}` : ""} (${N} tokens)`,
    flops: 3 * transformerForwardFlops(cfg, B, N),
    bytes: 0,
    setup: () => {
      const model = kind === "dm"
        ? new Denoiser(cfg, 1)
        : kind === "solver"
        ? new Solver(cfg, 1)
        : new PixelSolver(cfg, patch, 1);
      const params = model.parameters();
      const opt = new Adam(params, { lr: 1e-4, betas: [0.9, 0.99] });
      const x = input([B, C, ...grid], 5), label = input([B, 5], 6);
      const mask = constant(Array.from({ length: B * grid[0] }, (_, i) => (i % grid[0] === 0 ? 1 : 0)), [
        B,
        1,
        grid[0],
        1,
        1,
      ]);
      return {
        run: () => {
          const l = kind === "dm"
            ? denoiserLoss(model as Denoiser, x, mask, label, { training: true })
            : solverLoss(model as Solver | PixelSolver, x, mask, label, { training: true });
          backward(l, undefined, { freeActivations: true });
          optimizerStep(opt, params);
        },
        dispose: () => {
          for (const t of [x, label, mask]) t.dispose();
          opt.dispose();
          model.dispose();
        },
      };
    },
  };
}

/**
 * Forward + backward of `blocks` blocks of the `large` solver on the Euler latent shape, with and without
 * activation checkpointing (no optimizer: the rows compare the activation memory the backward needs).
 */
function blocksBench(blocks: number, checkpoint: boolean): Bench {
  const B = 1, C = 64, grid = [5, 16, 16], N = 5 * 16 * 16;
  const cfg = {
    ...transformerPreset("large", { channels: C, spatial: 2, labelDim: 5, kind: "solver" }),
    blocks,
  };
  return {
    kernel: "step_blocks",
    shape: `large ${blocks} blocks B${B} (${N} tokens) fwd+bwd${checkpoint ? " checkpointed" : ""}`,
    flops: (checkpoint ? 4 : 3) * transformerForwardFlops(cfg, B, N),
    bytes: 0,
    setup: () => {
      const model = new Solver(cfg, 1);
      model.net.checkpointBlocks = checkpoint;
      const params = model.parameters();
      const x = input([B, C, ...grid], 5), label = input([B, 5], 6);
      const mask = constant(Array.from({ length: B * grid[0] }, (_, i) => (i === 0 ? 1 : 0)), [
        B,
        1,
        grid[0],
        1,
        1,
      ]);
      return {
        run: () => {
          backward(solverLoss(model, x, mask, label, { training: true }), undefined, {
            freeActivations: true,
          });
          zeroGrad(params);
        },
        dispose: () => {
          for (const t of [x, label, mask]) t.dispose();
          model.dispose();
        },
      };
    },
  };
}

export const benches: Bench[] = [
  aeBench("adam"),
  aeBench("psgd"),
  aeBench("psgd_apply"),
  emulatorBench("dm", "default", 8, 16, [5, 8, 8]),
  emulatorBench("solver", "default", 8, 16, [5, 8, 8]),
  emulatorBench("pixel", "default", 8, 5, [5, 64, 64]),
  emulatorBench("dm", "large", 1, 64, [5, 16, 16]),
  emulatorBench("solver", "large", 1, 64, [5, 16, 16]),
  blocksBench(4, false),
  blocksBench(4, true),
];
