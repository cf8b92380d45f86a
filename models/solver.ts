/**
 * The deterministic neural solver of method §6 (lola's surrogate): the emulator transformer without time
 * embedding, Ẑ = F([Z⊙m ; m], θ), trained with the MSE over every entry of the window (context included) under the
 * same context masks as the denoiser. At inference the whole window is the output; the next context comes from it.
 *
 * `PixelSolver` is the paper's `vit_pixel` baseline: the same solver on standardised pixel windows, patchified
 * (p_t = 1, p × p spatial) before the input projection and unpatchified after the output projection, so a 64×64
 * frame with patch 8 is 8×8 tokens. Patch channel order is space_to_depth's (c·p^N + row-major sub-position).
 *
 * Shapes: x, output (B, C, L, h, w[, d]); mask broadcastable to x (1 = context); label (B, D_θ) or null.
 */
import {
  depth_to_space,
  type Generator,
  mean,
  mul,
  permute,
  reshape,
  space_to_depth,
  square,
  sub,
  type Tensor,
} from "../engine/index.ts";
import { Transformer, type TransformerConfig } from "./transformer.ts";

export class Solver {
  readonly net: Transformer;

  constructor(readonly cfg: TransformerConfig, seed = 0) {
    if (cfg.kind !== "solver" || cfg.timeEmbedding) {
      throw new Error(`Solver needs a transformer config of kind "solver" without time embedding`);
    }
    this.net = new Transformer(cfg, seed);
  }

  get gen(): Generator {
    return this.net.gen;
  }
  parameters(): Tensor[] {
    return this.net.parameters();
  }
  stateDict(): Record<string, Tensor> {
    return this.net.stateDict();
  }
  dispose(): void {
    this.net.dispose();
  }

  forward(
    x: Tensor,
    mask: Tensor,
    label: Tensor | null,
    o: { training: boolean } = { training: false },
  ): Tensor {
    return this.net.forward(mul(x, mask), mask, { label: label ?? undefined }, o); // (B, C, L, …)
  }
}

/** MSE over all entries of the window, context included (method §6, §11.10). */
export function solverLoss(
  solver: { forward: Solver["forward"] },
  x: Tensor,
  mask: Tensor,
  label: Tensor | null,
  o: { training: boolean } = { training: true },
): Tensor {
  return mean(square(sub(solver.forward(x, mask, label, o), x)));
}

/** (B, C, L, H, W[, D]) → (B, C·p^N, L, H/p, W/p[, D/p]). */
export function patchify(x: Tensor, p: number): Tensor {
  if (p === 1) return x;
  const [B, C, L, ...sp] = x.shape;
  const n = sp.length;
  const y = space_to_depth(reshape(x, [B, C * L, ...sp]), p); // (B, C·L·p^N, h, w[, d])
  const small = sp.map((s) => s / p);
  const perm = [0, 1, 3, 2, ...small.map((_, i) => 4 + i)];
  return reshape(permute(reshape(y, [B, C, L, p ** n, ...small]), perm), [B, C * p ** n, L, ...small]);
}

/** Exact inverse of patchify. */
export function unpatchify(y: Tensor, p: number): Tensor {
  if (p === 1) return y;
  const [B, CP, L, ...small] = y.shape;
  const n = small.length, C = CP / p ** n;
  const perm = [0, 1, 3, 2, ...small.map((_, i) => 4 + i)];
  const x = reshape(permute(reshape(y, [B, C, p ** n, L, ...small]), perm), [B, C * L * p ** n, ...small]);
  return reshape(depth_to_space(x, p), [B, C, L, ...small.map((s) => s * p)]);
}

/** The pixel-space solver: a Solver over patch tokens; state-dict keys as the latent solver's (`backbone.*`). */
export class PixelSolver {
  readonly solver: Solver;

  /** cfg.channels must be C_pixel·patch^N. */
  constructor(readonly cfg: TransformerConfig, readonly patch: number, seed = 0) {
    this.solver = new Solver(cfg, seed);
  }

  get gen(): Generator {
    return this.solver.gen;
  }
  parameters(): Tensor[] {
    return this.solver.parameters();
  }
  stateDict(): Record<string, Tensor> {
    return this.solver.stateDict();
  }
  dispose(): void {
    this.solver.dispose();
  }

  forward(
    x: Tensor,
    mask: Tensor,
    label: Tensor | null,
    o: { training: boolean } = { training: false },
  ): Tensor {
    const sp = x.shape.slice(3);
    if (sp.some((s) => s % this.patch !== 0)) {
      throw new Error(
        `pixel solver: spatial size ${sp.join("×")} is not divisible by the patch ${this.patch}`,
      );
    }
    return unpatchify(this.solver.forward(patchify(x, this.patch), mask, label, o), this.patch);
  }
}
