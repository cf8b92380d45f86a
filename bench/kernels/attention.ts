/**
 * Attention benchmarks: the fused op (engine/ops/attention.ts: QK-RMS-norm + RoPE + attention) with its flash
 * kernels ("fused") and with its dense path (scores through the matmul a chunk of heads at a time, "dense")
 * against the unfused path (matmul → scale → softmax → matmul through the engine's ops, N×N scores in memory
 * and autodiff, no norm or RoPE) in the same run, forward and forward + backward, at the paper's token counts (RB 320, Euler 1,280, TGC 2,560 tokens; 8 heads
 * × 128) and at the `default` preset (8 windows × 320 tokens, 4 heads × 32); then one transformer block forward +
 * backward at the `default` and `large` sizes.
 *
 * FLOPs: attention forward 4·B·H·N²·d (Q·Kᵀ and P·V), backward 2.5× that (the usual convention; the flash
 * backward recomputes P twice, so it executes 14/10 of the counted work, the dense one exactly it); every row
 * uses the same counts.
 * A block counts its matmuls (qkv, y, FFN: 24·B·N·D² forward) plus its attention; backward = 2× forward.
 * The model step (a neural-solver training step: forward, MSE, backward, Adam) counts its blocks only.
 */
import {
  Adam,
  backward,
  Generator,
  matmul,
  mean,
  mul,
  softmax,
  square,
  sub,
  Tensor,
  zeroGrad,
} from "../../engine/index.ts";
import { attention, attentionFlops, type AttentionImpl } from "../../engine/ops/attention.ts";
import {
  blockForward,
  type BlockParams,
  tokenCoords,
  Transformer,
  transformerParams,
  transformerPreset,
} from "../../models/transformer.ts";
import type { Bench } from "../types.ts";
import { hostRand, initValues } from "../../models/params.ts";
import { caseOf, input } from "../inputs.ts";

/** Clear the gradients a backward left on the case's leaves (the runner repeats `run`). */
function clearGrads(ts: Tensor[]) {
  for (const t of ts) {
    t.grad?.dispose();
    t.grad = null;
  }
}

/** A persistent leaf that requires grad, filled with the deterministic bench pattern times `scale`. */
function leaf(shape: number[], seed: number, scale = 1): Tensor {
  const t = input(shape, seed);
  if (scale !== 1) {
    const v = mul(t, scale).keep();
    t.dispose();
    v.requiresGrad = true;
    return v;
  }
  t.requiresGrad = true;
  return t;
}

const constant = (data: Float32Array, shape: number[]) => Tensor.fromData(data, shape, { persistent: true });

function gridOf(n: number): number[] {
  if (n === 2560) return [5, 8, 8, 8];
  if (n === 1280) return [5, 16, 16];
  if (n === 320) return [5, 16, 4];
  return [n];
}

function attentionBench(
  label: string,
  B: number,
  N: number,
  H: number,
  d: number,
  mode: AttentionImpl | "unfused",
  bwd: boolean,
): Bench {
  const D = H * d, fl = attentionFlops(B, N, H, d);
  const fused = mode !== "unfused";
  const kernel = `attention_${bwd ? "fwd+bwd" : "fwd"}_${mode === "flash" ? "fused" : mode}`;
  return {
    kernel,
    shape: `${label} B${B} N${N} H${H}x${d}`,
    flops: bwd ? fl.fwd + fl.bwd : fl.fwd,
    // Flash: qkv read, y written (and their gradients); the others add the N×N scores written and read twice.
    bytes: 4 * (mode === "flash" ? 4 * B * N * D : 4 * B * N * D + 3 * B * H * N * N) * (bwd ? 2 : 1),
    setup: () => {
      if (fused) {
        const grid = gridOf(N), A = grid.length;
        const qkv = leaf([B, N, 3 * D], 1);
        const theta = leaf([A, D / 2], 2, 0.1);
        const coords = constant(tokenCoords(grid), [N, A]);
        const gy = input([B, N, D], 4);
        return caseOf([qkv, theta, coords, gy], () => {
          const y = attention(qkv, theta, coords, { heads: H, impl: mode });
          if (bwd) {
            backward(y, gy);
            clearGrads([qkv, theta]);
          }
        });
      }
      const q = leaf([B * H, N, d], 1), k = leaf([B * H, N, d], 2), v = leaf([B * H, N, d], 3);
      const gy = input([B * H, N, d], 4);
      return caseOf([q, k, v, gy], () => {
        const y = matmul(softmax(mul(matmul(q, k, false, true), 1 / Math.sqrt(d))), v);
        if (bwd) {
          backward(y, gy);
          clearGrads([q, k, v]);
        }
      });
    },
  };
}

/** One block (method §2.3) forward + backward with the preset's parameter shapes and init. */
function blockBench(preset: "default" | "large", B: number, grid: number[]): Bench {
  const cfg = transformerPreset(preset, {
    channels: 8,
    spatial: grid.length === 4 ? 3 : 2,
    labelDim: 5,
    kind: "solver",
  });
  const D = cfg.width, N = grid.reduce((a, b) => a * b, 1);
  const att = attentionFlops(B, N, cfg.heads, D / cfg.heads).fwd;
  const fwd = 2 * B * N * D * D * (3 + 1 + 2 * cfg.ffnFactor) + att;
  return {
    kernel: "transformer_block_fwd+bwd",
    shape: `${preset} B${B} N${N} D${D} H${cfg.heads}`,
    flops: 3 * fwd,
    bytes: 0,
    setup: () => {
      const specs = transformerParams(cfg).filter((p) => p.name.includes("blocks.0."));
      const r = hostRand(7);
      const t = new Map(
        specs.map((p) => [p.name.replace(/.*blocks\.0\./, ""), Tensor.parameter(initValues(p, r), p.shape)]),
      );
      const lin = (n: string) => ({ weight: t.get(`${n}.weight`)!, bias: t.get(`${n}.bias`)! });
      const p: BlockParams = {
        theta: t.get("theta")!,
        mod0: lin("ada_zero.0"),
        mod2: lin("ada_zero.2"),
        qkv: t.get("msa.qkv_proj.weight")!,
        yProj: lin("msa.y_proj"),
        ffn0: lin("ffn.0"),
        ffn3: lin("ffn.3"),
      };
      const h = leaf([B, N, D], 11), s = leaf([B, N, D], 12), m = leaf([B, cfg.modFeatures], 13);
      const coords = constant(tokenCoords(grid), [N, grid.length]);
      const gen = new Generator(0);
      const leaves = [h, s, m, ...t.values()];
      return caseOf([...leaves, coords], () => {
        const out =
          blockForward(p, h, s, m, { heads: cfg.heads, coords, dropout: cfg.dropout, training: true, gen }).h;
        backward(out, out);
        clearGrads(leaves);
      });
    },
  };
}

/**
 * One training step of the whole `default` solver (forward, MSE, backward, Adam) on a latent window of the
 * built-in dataset's shape: 16 channels × 5 frames × 8×8 (the default AE's latents), 320 tokens.
 */
function modelStepBench(B: number, C: number, grid: [number, number, number]): Bench {
  const cfg = transformerPreset("default", { channels: C, spatial: 2, labelDim: 0, kind: "solver" });
  const D = cfg.width, N = grid[0] * grid[1] * grid[2];
  const att = attentionFlops(B, N, cfg.heads, D / cfg.heads).fwd;
  const block = 2 * B * N * D * D * (3 + 1 + 2 * cfg.ffnFactor) + att;
  return {
    kernel: "transformer_step",
    shape: `default B${B} C${C} ${grid.join("x")}`,
    flops: 3 * cfg.blocks * block,
    bytes: 0,
    setup: () => {
      const model = new Transformer(cfg, 3);
      const x = input([B, C, ...grid], 21), y = input([B, C, ...grid], 22);
      const mask = constant(new Float32Array(B * grid[0]).fill(1), [B, 1, grid[0], 1, 1]);
      const opt = new Adam(model.parameters(), { lr: 1e-4 });
      const c = caseOf([x, y, mask], () => {
        backward(mean(square(sub(model.forward(x, mask, {}, { training: true }), y))));
        opt.step();
        zeroGrad(model.parameters());
      });
      return {
        run: c.run,
        dispose: () => {
          c.dispose();
          for (const t of [...opt.m, ...opt.v, opt.counters]) t.dispose();
          model.dispose();
        },
      };
    },
  };
}

const PAPER: [string, number, number, number, number][] = [
  ["RB", 1, 320, 8, 128],
  ["Euler", 1, 1280, 8, 128],
  ["TGC", 1, 2560, 8, 128],
  ["default", 8, 320, 4, 32],
];
const MODES = ["flash", "dense", "unfused"] as const;

export const benches: Bench[] = [
  ...PAPER.flatMap(([name, b, n, h, d]) =>
    [false, true].flatMap((bwd) => MODES.map((m) => attentionBench(name, b, n, h, d, m, bwd)))
  ),
  blockBench("default", 8, [5, 8, 8]),
  blockBench("large", 1, [5, 16, 16]),
  modelStepBench(8, 16, [5, 8, 8]),
];
