/**
 * Guidance by observations: MMPS (method §8; azula's `MMPSDenoiser` and `gmres`) as a denoiser wrapper placed
 * as `masked(mmps(denoiser))`, each with the sampler's `Denoise` signature (z, α, σ) ↦ mean.
 *
 * At noise (α, σ), with γ = σ²/α and x_σ the (masked) sampler state:
 *   x̂ = D(x_σ) on a tape of its own (vjpFn w.r.t. x_σ), ŷ = A(x̂) on another (vjpFn w.r.t. x̂), r = y − ŷ;
 *   Cov(v) = γ·J_D(x_σ)ᵀ v (Tweedie covariance through the denoiser's VJP, assuming symmetry);
 *   M(v) = σ_y² v + J_A (Cov(J_Aᵀ v)) with J_A the JVP through A at x̂ (engine/jvp.ts) and J_Aᵀ its VJP;
 *   w = GMRES(M, r) with a fixed number of iterations (1 = the closed form w = r·⟨Mr, r⟩/⟨Mr, Mr⟩);
 *   g = J_Dᵀ J_Aᵀ w, and the mean x̂ + γ·g.
 * Cost per call: D forward + A forward, then per GMRES iteration one VJP through A, one through D and one JVP
 * through A (which recomputes A's forward), then one more VJP through A and D for g.
 *
 * The Krylov solve cannot read back (the sampler's callback is synchronous), so GMRES runs on the GPU: every
 * scalar is a per-sample (B, 1, …) tensor (each batch entry solves its own system, as azula's batched gmres),
 * Arnoldi with modified Gram–Schmidt and Givens rotations, in float32. The same code runs in float64 on the
 * host (`gmresHost`) for tests against a dense solve.
 */
import {
  add,
  jvp,
  map,
  mul,
  noGrad,
  permute,
  reshape,
  scope,
  slice,
  sub,
  sum,
  Tensor,
  vjpFn,
  where,
} from "../engine/index.ts";
import type { Denoise } from "./sampler.ts";
import type { Denoiser } from "./diffusion.ts";

// -------------------------------------------------------------------------------------------------------------
// GMRES, generic over the vector and scalar types.

/** Scalar arithmetic (host numbers, or per-sample GPU tensors). `div` gives 0 where the divisor is 0. */
export interface Krylov<V, S> {
  dot(a: V, b: V): S;
  /** s·v. */
  scale(v: V, s: S): V;
  /** a + s·b. */
  axpy(a: V, s: S, b: V): V;
  add(a: S, b: S): S;
  sub(a: S, b: S): S;
  mul(a: S, b: S): S;
  div(a: S, b: S): S;
  sqrt(a: S): S;
  neg(a: S): S;
  /** 1/a, 0 where a is 0 (a breakdown: the Krylov space is exhausted). */
  recip(a: S): S;
}

/**
 * `iterations` steps of GMRES for M w = b from w₀ = 0 (Arnoldi with modified Gram–Schmidt, the least-squares
 * problem by Givens rotations). With 1 iteration: w = b·⟨Mb, b⟩/⟨Mb, Mb⟩.
 */
export function gmres<V, S>(k: Krylov<V, S>, M: (v: V) => V, b: V, iterations: number): V {
  if (!Number.isInteger(iterations) || iterations < 1) {
    throw new Error(`gmres: iterations must be a positive integer, got ${iterations}`);
  }
  const beta = k.sqrt(k.dot(b, b));
  const basis: V[] = [k.scale(b, k.recip(beta))];
  const R: S[][] = []; // columns of the triangular factor
  const cs: S[] = [], sn: S[] = [];
  let g: S[] = [beta];
  for (let j = 0; j < iterations; j++) {
    let w = M(basis[j]);
    const h: S[] = [];
    for (let i = 0; i <= j; i++) {
      h.push(k.dot(w, basis[i]));
      w = k.axpy(w, k.neg(h[i]), basis[i]);
    }
    const hNext = k.sqrt(k.dot(w, w));
    if (j + 1 < iterations) basis.push(k.scale(w, k.recip(hNext)));
    for (let i = 0; i < j; i++) {
      const t = k.add(k.mul(cs[i], h[i]), k.mul(sn[i], h[i + 1]));
      h[i + 1] = k.sub(k.mul(cs[i], h[i + 1]), k.mul(sn[i], h[i]));
      h[i] = t;
    }
    const r = k.sqrt(k.add(k.mul(h[j], h[j]), k.mul(hNext, hNext)));
    cs.push(k.div(h[j], r));
    sn.push(k.div(hNext, r));
    h[j] = r;
    g = [...g.slice(0, j), k.mul(cs[j], g[j]), k.neg(k.mul(sn[j], g[j]))];
    R.push(h.slice(0, j + 1));
  }
  // Back substitution R y = g[0..n), then w = Σ y_i v_i.
  const n = iterations, y: S[] = new Array(n);
  for (let i = n - 1; i >= 0; i--) {
    let acc = g[i];
    for (let c = i + 1; c < n; c++) acc = k.sub(acc, k.mul(R[c][i], y[c]));
    y[i] = k.div(acc, R[i][i]);
  }
  let out = k.scale(basis[0], y[0]);
  for (let i = 1; i < n; i++) out = k.axpy(out, y[i], basis[i]);
  return out;
}

/** Float64 host vectors (one system). */
export const hostKrylov: Krylov<Float64Array, number> = {
  dot: (a, b) => a.reduce((acc, v, i) => acc + v * b[i], 0),
  scale: (v, s) => v.map((x) => x * s),
  axpy: (a, s, b) => a.map((x, i) => x + s * b[i]),
  add: (a, b) => a + b,
  sub: (a, b) => a - b,
  mul: (a, b) => a * b,
  div: (a, b) => (b === 0 ? 0 : a / b),
  sqrt: Math.sqrt,
  neg: (a) => -a,
  recip: (a) => (a === 0 ? 0 : 1 / a),
};

/** GMRES in float64 on the host. */
export function gmresHost(
  M: (v: Float64Array) => Float64Array,
  b: Float64Array,
  iterations: number,
): Float64Array {
  return gmres(hostKrylov, M, b, iterations);
}

/**
 * GPU vectors (B, …): one system per batch entry; scalars are (B, 1, …, 1) tensors, so nothing is read back.
 * Raw maps (no autodiff): the solve is not differentiated.
 */
export const gpuKrylov: Krylov<Tensor, Tensor> = {
  dot: (a, b) => noGrad(() => sum(mul(a, b), [...a.shape.keys()].slice(1), true)),
  scale: (v, s) => map([v, s], "in0 * in1", "gmres_scale"),
  axpy: (a, s, b) => map([a, s, b], "in0 + in1 * in2", "gmres_axpy"),
  add: (a, b) => map([a, b], "in0 + in1", "gmres_add"),
  sub: (a, b) => map([a, b], "in0 - in1", "gmres_sub"),
  mul: (a, b) => map([a, b], "in0 * in1", "gmres_mul"),
  div: (a, b) => map([a, b], "select(in0 / in1, 0.0, in1 == 0.0)", "gmres_div"),
  sqrt: (a) => map([a], "sqrt(in0)", "gmres_sqrt"),
  neg: (a) => map([a], "-in0", "gmres_neg"),
  recip: (a) => map([a], "select(1.0 / in0, 0.0, in0 == 0.0)", "gmres_recip"),
};

/** GMRES on the GPU for a batch of systems (B, …); M maps (B, …) to (B, …) entry by entry. */
export function gmresGpu(M: (v: Tensor) => Tensor, b: Tensor, iterations: number): Tensor {
  return gmres(gpuKrylov, M, b, iterations);
}

// -------------------------------------------------------------------------------------------------------------
// MMPS and the masked wrapper.

export interface MmpsOptions {
  /** A_i: the latent window x̂ (B, C, L, …) ↦ observations (B, …); built from engine ops with JVP rules. */
  observe: (xhat: Tensor) => Tensor;
  /** y_i, with the shape of `observe`'s output. */
  y: Tensor;
  /** σ_y (Σ_y = σ_y² I). */
  noise: number;
  /** GMRES iterations (default 1: the closed form of §8). */
  iterations?: number;
}

/**
 * MMPS(denoise): the guided mean x̂ + γ·g of method §8 at (α, σ), γ = σ²/α. The result is a temporary of the
 * caller's scope; the tapes, the Krylov basis and every intermediate are freed before it returns.
 */
export function mmps(denoise: Denoise, o: MmpsOptions): Denoise {
  const iterations = o.iterations ?? 1;
  const noiseVar = o.noise * o.noise;
  return (z, alpha, sigma) => {
    const gamma = (sigma * sigma) / alpha;
    return scope(() => {
      const D = vjpFn(([x]) => denoise(x, alpha, sigma), [z]); // x̂ (B, C, L, …)
      const xhat = D.out;
      const A = vjpFn(([x]) => o.observe(x), [xhat]); // ŷ
      if (A.out.shape.join() !== o.y.shape.join()) {
        throw new Error(`mmps: observe gives (${A.out.shape}), observations are (${o.y.shape})`);
      }
      return noGrad(() => {
        const r = sub(o.y, A.out);
        const cov = (v: Tensor) => mul(D.pullback(v)[0], gamma);
        const M = (v: Tensor) =>
          add(mul(v, noiseVar), jvp(([x]) => o.observe(x), [xhat], [cov(A.pullback(v)[0])]).tangentOut);
        const w = gmresGpu(M, r, iterations);
        const g = D.pullback(A.pullback(w)[0])[0];
        return add(xhat, mul(g, gamma));
      });
    });
  };
}

/**
 * lola's MaskedDenoiser around any denoiser (method §4.1): context entries (mask ≠ 0, broadcast to z) of the
 * input become √(α²+σ²)·context, and of the output the context itself.
 */
export function masked(inner: Denoise, mask: Tensor, context: Tensor): Denoise {
  return (z, alpha, sigma) =>
    noGrad(() => {
      const m = map([mask], "in0", "expand_mask", z.shape);
      const mean = inner(where(m, mul(context, Math.hypot(alpha, sigma)), z), alpha, sigma);
      return where(m, context, mean);
    });
}

/**
 * The bare preconditioned denoiser D(x, α, σ) of `den` (no inpainting: `mask` only tells the network which
 * frames are context), for wrapping as masked(mmps(…)). α and σ become (B) tensors per call.
 */
export function denoiserMean(den: Denoiser, mask: Tensor, label: Tensor | null): Denoise {
  return (x, alpha, sigma) => {
    const n = x.shape[0];
    const a = Tensor.fromData(new Float32Array(n).fill(alpha), [n]);
    const s = Tensor.fromData(new Float32Array(n).fill(sigma), [n]);
    return den.precondition(x, a, s, mask, label).mean;
  };
}

/**
 * A_i for a latent window: decode the frames [from, L) of x̂ (B, C_z, L, h, w[, d]) one by one and observe them
 * with `op` (models/observe.ts), flattened per sample: (B, (L − from)·m).
 */
export function observeFrames(
  decode: (z: Tensor) => Tensor,
  op: (x: Tensor) => Tensor,
  from: number,
): (xhat: Tensor) => Tensor {
  return (xhat) => {
    const [b, c, l, ...sp] = xhat.shape;
    const n = l - from;
    const frames = permuteFrames(sliceFrames(xhat, from, l), sp.length); // (B, n, C_z, h, w[, d])
    const x = decode(reshape(frames, [b * n, c, ...sp])); // (B·n, C_p, H, W[, D])
    return reshape(op(x), [b, -1]); // (B, n·m)
  };
}

function sliceFrames(x: Tensor, from: number, to: number): Tensor {
  return from === 0 && to === x.shape[2] ? x : slice(x, 2, from, to);
}

function permuteFrames(x: Tensor, spatial: number): Tensor {
  return permute(x, [0, 2, 1, ...Array.from({ length: spatial }, (_, i) => 3 + i)]);
}

export interface GuidedOptions extends Omit<MmpsOptions, "observe"> {
  /** A_i (e.g. observeFrames(decoder, operator.apply, c)). */
  observe: (xhat: Tensor) => Tensor;
  /** Context mask broadcastable to the window (1 = context) and the context latents (the window's shape). */
  mask: Tensor;
  context: Tensor;
  label: Tensor | null;
}

/** masked(mmps(D)) for `den`: the guided denoiser of one window, for models/sampler.ts's `sample`. */
export function guidedDenoiser(den: Denoiser, o: GuidedOptions): Denoise {
  return masked(mmps(denoiserMean(den, o.mask, o.label), o), o.mask, o.context);
}
