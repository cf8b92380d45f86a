/**
 * The latent diffusion model of method §3: the log-logit noise schedule (and its exact rectified-flow form),
 * the EDM-style preconditioned denoiser around the emulator transformer, the masked (inpainting) wrapper of §4.1,
 * the training loss of §3.3 and the random context masks of §3.4.
 *
 * Schedule invariants: τ ∈ [0, 1] maps to s = t_min + τ(t_max − t_min) with t_min = σ_min/(1+σ_min),
 * t_max = σ_max/(1+σ_max); "ve" is α = 1, σ = s/(1−s) = exp(logit(s)) (the reference code), "rf" is α = 1 − s,
 * σ = s (rectified flow). Both give the same ρ = σ/α, and preconditioning, loss weight and sampler are invariant
 * to the rescaling, so either may be used (tests check the means agree).
 */
import {
  add,
  f32,
  type Generator,
  map,
  mean as meanAll,
  mul,
  reshape,
  square,
  sub,
  type Tensor,
  where,
} from "../engine/index.ts";

import { Transformer, type TransformerConfig } from "./transformer.ts";

export const SIGMA_MIN = 1e-3;
export const SIGMA_MAX = 1e3;
export type ScheduleKind = "ve" | "rf";

const T_MIN = SIGMA_MIN / (1 + SIGMA_MIN);
const T_MAX = SIGMA_MAX / (1 + SIGMA_MAX);

/** Rectified-flow time s of τ ∈ [0, 1] (float64). */
export function rfTime(tau: number): number {
  return T_MIN + tau * (T_MAX - T_MIN);
}

/** α(τ), σ(τ) on the host in float64. */
export function scheduleHost(tau: number, kind: ScheduleKind = "ve"): { alpha: number; sigma: number } {
  const s = rfTime(tau);
  return kind === "ve" ? { alpha: 1, sigma: s / (1 - s) } : { alpha: 1 - s, sigma: s };
}

/** α(t), σ(t) for a batch of times t (B) on the GPU (no gradient: the schedule has no parameters). */
export function schedule(t: Tensor, kind: ScheduleKind = "ve"): { alpha: Tensor; sigma: Tensor } {
  const s = `(${f32(T_MIN)} + in0 * ${f32(T_MAX - T_MIN)})`;
  if (kind === "ve") {
    return {
      alpha: map([t], "1.0 + 0.0 * in0", "schedule_alpha_ve"),
      sigma: map([t], `${s} / (1.0 - ${s})`, "schedule_sigma_ve"),
    };
  }
  return { alpha: map([t], `1.0 - ${s}`, "schedule_alpha_rf"), sigma: map([t], s, "schedule_sigma_rf") };
}

// ---------------------------------------------------------------------------------------------------------
// Preconditioned denoiser (method §3.2) and its masked wrapper (§4.1).

/** (B) → (B, 1, …, 1) so per-sample scalars broadcast over a window of rank `rank`. */
function perSample(t: Tensor, rank: number): Tensor {
  return reshape(t, [t.shape[0], ...Array(rank - 1).fill(1)]);
}

export interface Preconditioned {
  /** D(z_σ) (B, C, L, …). */
  mean: Tensor;
  /** σ²/(α²+σ²) per sample (B, 1, …, 1). */
  variance: Tensor;
  /** The network output F (B, C, L, …). */
  raw: Tensor;
}

/**
 * D(z) = c_skip·z + c_out·F(c_in·z, c_noise, θ, mask) with k = α²+σ², c_in = 1/√k, c_skip = α/k, c_out = σ/√k,
 * c_noise = 10·ln(σ/α) (the ×10 of lola's ElucidatedDenoiser). Latents are not standardised: σ_data = 1.
 * State-dict keys are the reference's `backbone.backbone.*`, `backbone.time_embedding.*`, `backbone.label_embedding.*`.
 */
export class Denoiser {
  readonly net: Transformer;

  constructor(readonly cfg: TransformerConfig, seed = 0, readonly kind: ScheduleKind = "ve") {
    if (cfg.kind !== "denoiser" || !cfg.timeEmbedding) {
      throw new Error(`Denoiser needs a transformer config of kind "denoiser" with a time embedding`);
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

  /** xt (B, C, L, …), alpha/sigma (B), mask broadcastable to xt (1 = context), label (B, D_θ) or null. */
  precondition(
    xt: Tensor,
    alpha: Tensor,
    sigma: Tensor,
    mask: Tensor,
    label: Tensor | null,
    o: { training: boolean } = { training: false },
  ): Preconditioned {
    const a = perSample(alpha, xt.ndim), s = perSample(sigma, xt.ndim); // (B, 1, …)
    const cIn = map([a, s], "inverseSqrt(in0 * in0 + in1 * in1)", "c_in");
    const cSkip = map([a, s], "in0 / (in0 * in0 + in1 * in1)", "c_skip");
    const cOut = map([a, s], "in1 * inverseSqrt(in0 * in0 + in1 * in1)", "c_out");
    const cNoise = map([alpha, sigma], "10.0 * log(in1 / in0)", "c_noise"); // (B)
    const raw = this.net.forward(mul(xt, cIn), mask, { label: label ?? undefined, time: cNoise }, o);
    const mean = add(mul(xt, cSkip), mul(raw, cOut)); // (B, C, L, …)
    const variance = map([a, s], "in1 * in1 / (in0 * in0 + in1 * in1)", "dm_variance");
    return { mean, variance, raw };
  }

  /** The denoiser mean at times t ∈ [0, 1] (B). */
  forward(
    xt: Tensor,
    t: Tensor,
    mask: Tensor,
    label: Tensor | null,
    o: { training: boolean } = { training: false },
  ): Tensor {
    const { alpha, sigma } = schedule(t, this.kind);
    return this.precondition(xt, alpha, sigma, mask, label, o).mean;
  }

  /**
   * Sampling-time inpainting (lola's MaskedDenoiser): context entries of the network input are √(α²+σ²)·y, so
   * after c_in the network sees the clean context; the returned mean is y there. The sampler state is untouched.
   */
  withContext(
    xt: Tensor,
    alpha: Tensor,
    sigma: Tensor,
    mask: Tensor,
    y: Tensor,
    label: Tensor | null,
  ): Tensor {
    const a = perSample(alpha, xt.ndim), s = perSample(sigma, xt.ndim);
    const yIn = mul(y, map([a, s], "sqrt(in0 * in0 + in1 * in1)", "sqrt_k"));
    const m = map([mask], "in0", "expand_mask", xt.shape);
    const { mean } = this.precondition(where(m, yIn, xt), alpha, sigma, mask, label);
    return where(m, y, mean);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Training objective (method §3.3).

export interface LossDraws {
  /** τ (B) in [0, 1]; drawn U(0, 1) from the denoiser's generator when absent. */
  tau?: Tensor;
  /** ε with the shape of Z; drawn N(0, I) when absent. */
  eps?: Tensor;
}

/**
 * mean over every entry (context included) of (D(z) − Z)²·(α²+σ²)/σ², with z = αZ + σε and the context entries
 * of z overwritten by √(α²+σ²)·Z. Z (B, C, L, …), mask broadcastable to Z.
 */
export function denoiserLoss(
  den: Denoiser,
  z0: Tensor,
  mask: Tensor,
  label: Tensor | null,
  o: { training: boolean } & LossDraws = { training: true },
): Tensor {
  const B = z0.shape[0];
  const tau = o.tau ?? den.gen.uniform([B]);
  const eps = o.eps ?? den.gen.normal(z0.shape);
  const { alpha, sigma } = schedule(tau, den.kind);
  const a = perSample(alpha, z0.ndim), s = perSample(sigma, z0.ndim);
  const zt = map(
    [z0, eps, a, s, mask],
    "select(in2 * in0 + in3 * in1, sqrt(in2 * in2 + in3 * in3) * in0, in4 > 0.5)",
    "dm_noise",
    z0.shape,
  ); // (B, C, L, …)
  const { mean } = den.precondition(zt, alpha, sigma, mask, label, o);
  const w = map([a, s], "(in0 * in0 + in1 * in1) / (in1 * in1)", "dm_weight"); // (B, 1, …)
  return meanAll(mul(square(sub(mean, z0)), w));
}

// ---------------------------------------------------------------------------------------------------------
// Context masks (method §3.4).

export type MaskPrior = "code" | "paper";

/** A uniform [0, 1) stream (data/rng.ts's Rng fits; models/ does not import data/). */
export interface Uniform {
  random(): number;
}

function poisson(lambda: number, rng: Uniform): number {
  const l = Math.exp(-lambda);
  let k = 0, p = 1;
  for (;;) {
    p *= rng.random();
    if (p <= l) return k;
    k++;
  }
}

/**
 * Whole-frame context masks (B·L values, frame-major per sample). "code" (lola's random_context_mask, the
 * default): c = (Poisson(1) mod (L−1)) + 1, the first c frames with probability 0.66, else the last c.
 * "paper" (the paper's text): c ~ Poisson(2) redrawn until 1 ≤ c ≤ L−1, always the first c frames.
 */
export function contextMasks(
  batch: number,
  length: number,
  rng: Uniform,
  prior: MaskPrior = "code",
): Float32Array {
  if (length < 2) throw new Error(`context masks need windows of ≥ 2 frames, got ${length}`);
  const out = new Float32Array(batch * length);
  for (let b = 0; b < batch; b++) {
    let c: number, forward = true;
    if (prior === "code") {
      c = (poisson(1, rng) % (length - 1)) + 1;
      forward = rng.random() < 0.66;
    } else {
      do c = poisson(2, rng); while (c < 1 || c > length - 1);
    }
    for (let l = 0; l < c; l++) out[b * length + (forward ? l : length - 1 - l)] = 1;
  }
  return out;
}
