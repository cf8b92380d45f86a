/**
 * Autoregressive emulation (method §5): windows of L frames, the first c of which are context, generated one
 * after the other with temporal bundling. Window 0 holds the c true context frames and is kept whole; every
 * later window takes the last c frames of the previous one as its context and contributes its L − c new frames.
 * The rollout stops once it holds ≥ T frames and is truncated to T. Frame t sits (t − c + 1)·Δ raw steps after
 * the last true context frame (its lead time), so context frames have leads ≤ 0.
 *
 * The window model is either the diffusion denoiser sampled with the PF-ODE sampler through the masked wrapper
 * of §4.1 (ensemble members are batch entries with their own noise), optionally guided by observations of the
 * generated frames (masked(MMPS(D)), §8), or a deterministic solver (latent or pixel, §6) whose whole window,
 * context frames included, is its output. Tensors only: no file I/O, no readback.
 *
 * Shapes: context (B, C, c, …spatial), label (B, D_θ) or null, windows (N, C, L, …) with N = B·K and member k of
 * trajectory b at entry b·K + k (the layout `eval compare` expects of ensembles).
 */
import { concat, map, noGrad, permute, reshape, scope, slice, Tensor, zeros } from "../engine/index.ts";
import { Generator } from "../engine/random.ts";
import type { Autoencoder } from "./autoencoder.ts";
import type { Denoiser } from "./diffusion.ts";
import { guidedDenoiser, observeFrames } from "./guidance.ts";
import { type Denoise, sample, type SampleOptions } from "./sampler.ts";

/** Window geometry of a rollout. */
export interface RolloutGeometry {
  /** Frames per window L. */
  window: number;
  /** Context frames c (1 ≤ c < L), also the overlap between consecutive windows. */
  context: number;
  /** Raw steps between consecutive frames Δ. */
  stride: number;
  /** Frames T of the output, the c context frames included (T > c). */
  horizon: number;
}

export interface RolloutPlan extends RolloutGeometry {
  /** Windows to generate: 1 + ⌈(T − L)/(L − c)⌉ (1 when T ≤ L). */
  windows: number;
  /** Lead time of every output frame t in raw steps, (t − c + 1)·Δ. */
  leadTimes: number[];
}

/** Checks the geometry and lays the rollout out; throws one line naming the bad value. */
export function rolloutPlan(g: RolloutGeometry): RolloutPlan {
  const { window: L, context: c, stride, horizon: T } = g;
  if (!Number.isInteger(L) || L < 2) throw new Error(`rollout: the window must hold ≥ 2 frames, got ${L}`);
  if (!Number.isInteger(c) || c < 1 || c >= L) {
    throw new Error(`rollout: context c must be an integer with 1 ≤ c < L = ${L}, got ${c}`);
  }
  if (!Number.isInteger(stride) || stride < 1) throw new Error(`rollout: stride must be ≥ 1, got ${stride}`);
  if (!Number.isInteger(T) || T <= c) {
    throw new Error(`rollout: the horizon must exceed the ${c} context frame(s), got ${T}`);
  }
  const windows = 1 + Math.max(0, Math.ceil((T - L) / (L - c)));
  const leadTimes = Array.from({ length: T }, (_, t) => (t - c + 1) * stride);
  return { ...g, windows, leadTimes };
}

/**
 * One window: x (N, C, L, …) holds the context in its first c frames (zeros elsewhere), mask (N, 1, L, 1, …)
 * is 1 on them; returns the full window (N, C, L, …). `index` counts windows from 0.
 */
export type WindowModel = (x: Tensor, mask: Tensor, label: Tensor | null, index: number) => Tensor;

export interface DiffusionWindowOptions extends Pick<SampleOptions, "steps" | "order" | "method"> {
  /** Seed of the rollout's noise stream (one draw per window). */
  seed?: number;
}

/**
 * A window sampled by the PF-ODE sampler with the denoiser `make` builds for it. One Generator per model: window
 * k draws the k-th noise of the stream, so a seed fixes the rollout (guided or not: the same draws).
 * `constant(v, n)` gives a cached persistent (n) tensor filled with v; `dispose` frees them.
 */
function samplingWindow(
  den: Denoiser,
  o: DiffusionWindowOptions,
  make: (
    x: Tensor,
    mask: Tensor,
    label: Tensor | null,
    index: number,
    constant: (v: number, n: number) => Tensor,
  ) => Denoise,
): WindowModel & { dispose(): void } {
  const gen = new Generator(o.seed ?? 0);
  const cache = new Map<string, Tensor>();
  const constant = (v: number, n: number) => {
    const key = `${n}:${v}`;
    let t = cache.get(key);
    if (!t) cache.set(key, t = Tensor.fromData(new Float32Array(n).fill(v), [n], { persistent: true }));
    return t;
  };
  const fn = (x: Tensor, mask: Tensor, label: Tensor | null, index: number) =>
    sample(make(x, mask, label, index, constant), x.shape, {
      steps: o.steps,
      order: o.order,
      method: o.method,
      kind: den.kind,
      generator: gen,
    });
  return Object.assign(fn, { dispose: () => cache.forEach((t) => t.dispose()) });
}

/** The unguided denoiser of a window: `withContext` (§4.1) with α, σ as (N) tensors and the context frames as y. */
function contextDenoiser(
  den: Denoiser,
  x: Tensor,
  mask: Tensor,
  label: Tensor | null,
  constant: (v: number, n: number) => Tensor,
): Denoise {
  const N = x.shape[0];
  return (z, alpha, sigma) => den.withContext(z, constant(alpha, N), constant(sigma, N), mask, x, label);
}

/**
 * The denoiser sampled with the masked wrapper (§4.1): α, σ go to `withContext` as (N) tensors, the context
 * frames as y. One Generator per model: window k draws the k-th noise of the stream, so a seed fixes the rollout.
 * `dispose` frees the cached (N) schedule tensors.
 */
export function diffusionWindow(
  den: Denoiser,
  o: DiffusionWindowOptions = {},
): WindowModel & { dispose(): void } {
  return samplingWindow(
    den,
    o,
    (x, mask, label, _index, constant) => contextDenoiser(den, x, mask, label, constant),
  );
}

/**
 * The rollout frames [start, end) that window `index` generates (its frames c … L − 1), cut at the horizon T:
 * window k's frame j is rollout frame k·(L − c) + j. Over k = 0 … windows − 1 these ranges tile [c, T) exactly.
 */
export function generatedFrames(
  g: Pick<RolloutGeometry, "window" | "context" | "horizon">,
  index: number,
): { start: number; end: number } {
  const { window: L, context: c, horizon: T } = g;
  const start = Math.min(index * (L - c) + c, T);
  return { start, end: Math.min(start + L - c, T) };
}

export interface GuidedWindowOptions extends DiffusionWindowOptions {
  /** The rollout's window L, context c and horizon T (which frames each window generates, see generatedFrames). */
  geometry: Pick<RolloutGeometry, "window" | "context" | "horizon">;
  /** The autoencoder's decoder in eval mode: latent frames (M, C_z, h, w[, d]) → standardized fields (M, C_p, …). */
  decode: (z: Tensor) => Tensor;
  /** The observation operator A on standardized fields (M, C_p, H, W[, D]) → (M, …) (models/observe.ts). */
  observe: (x: Tensor) => Tensor;
  /**
   * y of window `index`: the noisy observations of the true rollout frames [start, end) (generatedFrames), shape
   * (B, (end − start)·m) with every frame's m observations in turn, B trajectories (repeated here to the N = B·K
   * members); owned by the caller (not disposed here). null: the window is sampled unguided.
   */
  observations: (index: number, start: number, end: number) => Tensor | null;
  /** σ_y (Σ_y = σ_y² I). */
  noise: number;
  /** GMRES iterations (default 1, the closed form of §8). */
  iterations?: number;
}

/**
 * The denoiser sampled with masked(MMPS(D)) (method §8, models/guidance.ts): each window's generated frames that
 * lie within the horizon are decoded, observed with A and pulled towards their observations y; frames of the last
 * window beyond the horizon (cut from the output) are not observed. Same noise stream as `diffusionWindow` with
 * the same seed, so guided and unguided rollouts differ by the guidance only.
 */
export function guidedDiffusionWindow(
  den: Denoiser,
  o: GuidedWindowOptions,
): WindowModel & { dispose(): void } {
  const { window: L, context: c } = o.geometry;
  return samplingWindow(den, o, (x, mask, label, index, constant) => {
    if (x.shape[2] !== L) {
      throw new Error(`guided window: a window of ${x.shape[2]} frames, the geometry says ${L}`);
    }
    const { start, end } = generatedFrames(o.geometry, index);
    const y = end > start ? o.observations(index, start, end) : null;
    if (!y) return contextDenoiser(den, x, mask, label, constant);
    const N = x.shape[0], B = y.shape[0];
    if (y.ndim !== 2 || N % B !== 0) {
      throw new Error(
        `guided window: observations (${y.shape}) for ${N} window(s): want (B, n·m) with B | N`,
      );
    }
    const to = c + (end - start), frames = observeFrames(o.decode, o.observe, c);
    return guidedDenoiser(den, {
      observe: (xhat) => frames(to === L ? xhat : slice(xhat, 2, 0, to)),
      y: B === N ? y : repeatMembers(y, N / B),
      noise: o.noise,
      iterations: o.iterations ?? 1,
      mask,
      context: x,
      label,
    });
  });
}

/** A deterministic solver (latent `Solver` or pixel `PixelSolver`): the whole window is its output. */
export function solverWindow(
  solver: { forward(x: Tensor, mask: Tensor, label: Tensor | null, o: { training: boolean }): Tensor },
): WindowModel {
  return (x, mask, label) => noGrad(() => solver.forward(x, mask, label, { training: false }));
}

/** (B, …) → (B·K, …), entry b·K + k = entry b (members as batch entries); always a new tensor. */
export function repeatMembers(t: Tensor, K: number): Tensor {
  const [B, ...rest] = t.shape, n = t.size / B;
  return reshape(map([t.view([B, 1, n])], "in0", "repeat_members", [B, K, n]), [B * K, ...rest]);
}

/** The new frames of one window. */
export interface RolloutChunk {
  /** (N, C, n, …) frames `first` … `first + n − 1` of the rollout; the caller owns (disposes) it. */
  frames: Tensor;
  first: number;
  /** Lead times of these frames (raw steps). */
  leadTimes: number[];
  /** Window index, 0 … windows − 1. */
  index: number;
}

/**
 * A rollout encoded one window at a time (`next()`), so a caller can read back, decode or report progress
 * between windows. Holds the current context (N, C, c, …) and the expanded label.
 */
export class Rollout {
  readonly plan: RolloutPlan;
  readonly members: number;
  private ctx: Tensor;
  private label: Tensor | null;
  private mask: Tensor;
  private produced = 0;
  private index = 0;

  constructor(
    private readonly model: WindowModel,
    context: Tensor,
    label: Tensor | null,
    g: RolloutGeometry & { members?: number },
  ) {
    this.plan = rolloutPlan(g);
    const K = this.members = g.members ?? 1;
    if (!Number.isInteger(K) || K < 1) throw new Error(`rollout: members must be ≥ 1, got ${K}`);
    const { window: L, context: c } = this.plan;
    if (context.ndim < 4 || context.shape[2] !== c) {
      throw new Error(`rollout: the context must be (B, C, ${c}, …spatial), got (${context.shape})`);
    }
    if (label && label.shape[0] !== context.shape[0]) {
      throw new Error(`rollout: ${label.shape[0]} labels for ${context.shape[0]} trajectories`);
    }
    const N = context.shape[0] * K, sp = context.shape.slice(3);
    const m = new Float32Array(N * L);
    for (let b = 0; b < N; b++) for (let l = 0; l < c; l++) m[b * L + l] = 1;
    this.mask = Tensor.fromData(m, [N, 1, L, ...sp.map(() => 1)], { persistent: true });
    this.ctx = scope(() => repeatMembers(context, K).keep());
    this.label = label ? scope(() => repeatMembers(label, K).keep()) : null;
  }

  get done(): boolean {
    return this.produced >= this.plan.horizon;
  }

  /** Encodes the next window; null once T frames were produced. */
  next(): RolloutChunk | null {
    if (this.done) return null;
    const { window: L, context: c, horizon: T, leadTimes } = this.plan;
    const first = this.produced, index = this.index;
    const { frames, ctx } = scope(() =>
      noGrad(() => {
        const [N, C, , ...sp] = this.ctx.shape;
        const x = concat([this.ctx, zeros([N, C, L - c, ...sp])], 2); // (N, C, L, …)
        const out = this.model(x, this.mask, this.label, index); // (N, C, L, …)
        if (out.shape.join() !== x.shape.join()) {
          throw new Error(`rollout: the window model returned (${out.shape}) for a window (${x.shape})`);
        }
        const from = index === 0 ? 0 : c, n = Math.min(L - from, T - first);
        return {
          frames: slice(out, 2, from, from + n).keep(), // (N, C, n, …)
          ctx: slice(out, 2, L - c, L).keep(), // (N, C, c, …)
        };
      })
    );
    this.ctx.dispose();
    this.ctx = ctx;
    const n = frames.shape[2];
    this.produced += n;
    this.index++;
    return { frames, first, leadTimes: leadTimes.slice(first, first + n), index };
  }

  dispose(): void {
    this.ctx.dispose();
    this.label?.dispose();
    this.mask.dispose();
  }
}

/** The whole rollout as one tensor (N, C, T, …) plus the lead times: for tests, benchmarks and scripts. */
export function rollout(
  model: WindowModel,
  context: Tensor,
  label: Tensor | null,
  g: RolloutGeometry & { members?: number },
): { frames: Tensor; leadTimes: number[] } {
  const r = new Rollout(model, context, label, g);
  const parts: Tensor[] = [];
  try {
    for (let ch = r.next(); ch; ch = r.next()) parts.push(ch.frames);
    const frames = parts.length === 1 ? parts[0] : scope(() => concat(parts, 2).keep());
    return { frames, leadTimes: r.plan.leadTimes };
  } finally {
    if (parts.length > 1) parts.forEach((p) => p.dispose());
    r.dispose();
  }
}

/** (B, C_p, L, H, W[, D]) pixel windows → (B, C_z, L, h, w[, d]) latents, every frame encoded alone (eval mode). */
export function encodeWindow(ae: Autoencoder, x: Tensor): Tensor {
  return noGrad(() => {
    const [B, C, L, ...sp] = x.shape;
    const frames = reshape(perm(x, 1, 2), [B * L, C, ...sp]); // (B·L, C_p, H, W)
    const z = ae.encode(frames, { training: false }); // (B·L, C_z, h, w)
    const [, Cz, ...zs] = z.shape;
    return perm(reshape(z, [B, L, Cz, ...zs]), 1, 2); // (B, C_z, L, h, w)
  });
}

/** (N, C_z, n, h, w[, d]) latents → (N, C_p, n, H, W[, D]) fields, decoded frame by frame in eval mode. */
export function decodeWindow(ae: Autoencoder, z: Tensor): Tensor {
  return noGrad(() => {
    const [N, Cz, n, ...zs] = z.shape;
    const frames: Tensor[] = [];
    for (let t = 0; t < n; t++) {
      const x = ae.decode(reshape(slice(z, 2, t, t + 1), [N, Cz, ...zs]), { training: false }); // (N, C_p, H, W)
      frames.push(reshape(x, [x.shape[0], x.shape[1], 1, ...x.shape.slice(2)]));
    }
    return frames.length === 1 ? frames[0] : concat(frames, 2); // (N, C_p, n, H, W)
  });
}

/** Swap axes a and b (no gradient). */
function perm(x: Tensor, a: number, b: number): Tensor {
  return permute(x, x.shape.map((_, i) => (i === a ? b : i === b ? a : i)), false);
}
