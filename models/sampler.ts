/**
 * The probability-flow ODE sampler of method §4: Adams–Bashforth of order 1–3 (azula `ABSampler`, the paper's
 * 16-step AB3), plus Euler (= AB1) and Heun (trapezoid) on the same grid. The denoiser is any function
 * (z, α, σ) ↦ E[x | z]; the masked (inpainting) wrapper of §4.1 lives in models/diffusion.ts.
 *
 * The ODE, written in y = z/α and ρ = σ/α, is dy/dρ = g = (z − α·μ)/σ, so a multistep method integrates the
 * slopes g over [ρ_i, ρ_{i+1}] exactly for the polynomial through the last n slopes (§4):
 *   z_{i+1} = (α_{i+1}/α_i)·z_i + α_{i+1}·Σ_j b_j g_j.
 *
 * Invariants:
 * - The grid (τ_i = 1 − i/steps) and the coefficients are float64 on the host, computed once per
 *   (steps, order, kind) and cached; the GPU only ever sees float32 roundings of the final per-step weights.
 * - One loop (`drive`) serves the GPU and the float64 host version, so tests of the host path test the GPU
 *   path's arithmetic too; only the vector backend differs.
 * - The GPU loop never reads back and never awaits. Each step runs in a `scope`: only the state z (updated in
 *   place) and the last order−1 slopes survive it; the slopes are disposed as they fall out of the window.
 * - Per step the bookkeeping is at most two fused map kernels (the slope, then the in-place update), with the
 *   step's weights passed as one-element tensors rather than baked literals, so a whole run compiles a handful
 *   of pipelines per shape instead of two per step. The update is expanded in z and μ directly (no slope
 *   kernel on the step that does not need it: the last step, and every step of Euler).
 * - No final denoising call: the output is z at τ = 0 (σ = 1e-3 in VE), as in the reference.
 * - Heun corrects on every step including the last (σ_steps = 1e-3 > 0, so the denoiser is defined there,
 *   unlike EDM's σ = 0 end point): 2·steps denoiser calls.
 */
import { map, mapInPlace, noGrad, scope, Tensor, zeros } from "../engine/index.ts";
import { flush, sync } from "../engine/runtime.ts";
import { Generator } from "../engine/random.ts";
import { scheduleHost, type ScheduleKind } from "./diffusion.ts";

export type SamplerMethod = "ab" | "euler" | "heun";

/** The time grid of §4 (float64), i = 0..steps. */
export interface SamplerGrid {
  steps: number;
  kind: ScheduleKind;
  tau: Float64Array;
  alpha: Float64Array;
  sigma: Float64Array;
  /** ρ_i = σ_i/α_i (the VE σ). */
  rho: Float64Array;
}

/** The grid plus the AB coefficients b of each step i, oldest → newest slope (length min(order, i+1)). */
export interface AbTable extends SamplerGrid {
  order: number;
  coefficients: readonly Float64Array[];
}

export function samplerGrid(steps = 16, kind: ScheduleKind = "ve"): SamplerGrid {
  if (!Number.isInteger(steps) || steps < 1) {
    throw new Error(`sampler: steps must be a positive integer, got ${steps}`);
  }
  const tau = new Float64Array(steps + 1), alpha = new Float64Array(steps + 1);
  const sigma = new Float64Array(steps + 1), rho = new Float64Array(steps + 1);
  for (let i = 0; i <= steps; i++) {
    tau[i] = 1 - i / steps;
    const { alpha: a, sigma: s } = scheduleHost(tau[i], kind);
    alpha[i] = a;
    sigma[i] = s;
    rho[i] = s / a;
  }
  return { steps, kind, tau, alpha, sigma, rho };
}

/**
 * Weights b_j (nodes ρ_{i−n+1..i}) with Σ_j b_j p(ρ_j) = ∫_{ρ_i}^{ρ_{i+1}} p for every polynomial p of degree < n:
 * the Vandermonde system of §4. It is solved in the shifted, scaled variable t = (ρ − ρ_i)/h, where it reads
 * Σ_j w_j t_j^q = 1/(q+1), b = h·w: the same solution, but with nodes of order 1 instead of ρ_0^q = 1e9, so
 * elimination loses nothing to conditioning.
 */
export function adamsBashforthWeights(rho: ArrayLike<number>, i: number, n: number): Float64Array {
  if (n < 1 || i - n + 1 < 0) throw new Error(`adamsBashforthWeights: need ${n} nodes ending at ${i}`);
  const h = rho[i + 1] - rho[i];
  const t = Array.from({ length: n }, (_, j) => (rho[i - n + 1 + j] - rho[i]) / h);
  // Augmented rows [t_0^q … t_{n−1}^q | 1/(q+1)], Gaussian elimination with partial pivoting.
  const m = Array.from({ length: n }, (_, q) => [...t.map((tj) => tj ** q), 1 / (q + 1)]);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(m[r][c]) > Math.abs(m[p][c])) p = r;
    [m[c], m[p]] = [m[p], m[c]];
    for (let r = c + 1; r < n; r++) {
      const f = m[r][c] / m[c][c];
      for (let k = c; k <= n; k++) m[r][k] -= f * m[c][k];
    }
  }
  const w = new Float64Array(n);
  for (let r = n - 1; r >= 0; r--) {
    let acc = m[r][n];
    for (let k = r + 1; k < n; k++) acc -= m[r][k] * w[k];
    w[r] = acc / m[r][r];
  }
  return w.map((x) => x * h);
}

const tables = new Map<string, AbTable>();

/** The grid and AB coefficients for (steps, order, kind), cached (callers must not mutate them). */
export function abTable(steps = 16, order = 3, kind: ScheduleKind = "ve"): AbTable {
  if (!Number.isInteger(order) || order < 1 || order > 3) {
    throw new Error(`sampler: order must be 1, 2 or 3, got ${order}`);
  }
  const key = `${steps}:${order}:${kind}`;
  let t = tables.get(key);
  if (!t) {
    const grid = samplerGrid(steps, kind);
    const coefficients = Array.from(
      { length: steps },
      (_, i) => adamsBashforthWeights(grid.rho, i, Math.min(order, i + 1)),
    );
    tables.set(key, t = { ...grid, order, coefficients });
  }
  return t;
}

export interface SampleOptions {
  /** Grid size (default 16, the paper's). */
  steps?: number;
  /** AB order 1–3 (default 3); ignored by "euler" (1) and "heun". */
  order?: number;
  method?: SamplerMethod;
  kind?: ScheduleKind;
  /** Seed of a fresh Generator for the initial noise (default 0) … */
  seed?: number;
  /** … or a Generator to draw it from (advanced by one draw) … */
  generator?: Generator;
  /** … or the unit Gaussian ε itself (shape = `shape`; not modified): z_0 = √(α_0² + σ_0²)·ε. */
  noise?: Tensor;
}

/** Denoiser mean E[x | z] at (α, σ), same shape as z; all batch entries share the time. */
export type Denoise = (z: Tensor, alpha: number, sigma: number) => Tensor;

/** A weighted term w·v of a linear combination. */
type Term<V> = [number, V];

/** What the one sampler loop needs from a vector type: GPU tensors or float64 host arrays. */
interface Backend<V> {
  denoise(z: V, alpha: number, sigma: number): V;
  /** A new vector Σ w_k v_k. */
  lincomb(terms: Term<V>[]): V;
  /** z ← wz·z + Σ w_k v_k, in place. */
  update(z: V, wz: number, terms: Term<V>[]): void;
  /** Run one step; temporaries die with it, the returned vector survives. */
  step<T extends V | null>(fn: () => T): T;
  release(v: V): void;
}

function resolve(opts: SampleOptions): { table: AbTable; method: SamplerMethod } {
  const method = opts.method ?? "ab";
  if (!["ab", "euler", "heun"].includes(method)) throw new Error(`sampler: unknown method "${method}"`);
  const order = method === "ab" ? opts.order ?? 3 : 1;
  return { table: abTable(opts.steps ?? 16, order, opts.kind ?? "ve"), method };
}

/** The sampler loop, shared by the GPU and host versions. `z` is the initial state, updated in place. */
function drive<V>(be: Backend<V>, z: V, table: AbTable, method: SamplerMethod): V {
  const { alpha: a, sigma: s, rho, steps, order } = table;
  const slopes: V[] = []; // oldest → newest, at most order − 1: the ones later steps still use
  try {
    for (let i = 0; i < steps; i++) {
      const r = a[i + 1] / a[i];
      if (method === "heun") {
        be.step(() => {
          const h = rho[i + 1] - rho[i], c = a[i + 1] * h / 2;
          const mu = be.denoise(z, a[i], s[i]);
          // Euler predictor to ρ_{i+1}, then the trapezoid of the two slopes, both expanded in z and μ.
          const zp = be.lincomb([[r + a[i + 1] * h / s[i], z], [-a[i + 1] * h * a[i] / s[i], mu]]);
          const mu2 = be.denoise(zp, a[i + 1], s[i + 1]);
          const wMu = -c * a[i] / s[i], wZp = c / s[i + 1], wMu2 = -c * a[i + 1] / s[i + 1];
          be.update(z, r + c / s[i], [[wMu, mu], [wZp, zp], [wMu2, mu2]]);
          return null;
        });
        continue;
      }
      const b = table.coefficients[i], n = b.length, bNew = b[n - 1];
      const older = slopes.slice(slopes.length - (n - 1));
      const keepSlope = order > 1 && i < steps - 1;
      const g = be.step(() => {
        const mu = be.denoise(z, a[i], s[i]);
        // g_i = (z − α_i μ)/σ_i, stored before z is overwritten; the update uses z and μ directly.
        const g = keepSlope ? be.lincomb([[1 / s[i], z], [-a[i] / s[i], mu]]) : null;
        const terms: Term<V>[] = older.map((gj, j) => [a[i + 1] * b[j], gj]);
        terms.push([-a[i + 1] * bNew * a[i] / s[i], mu]);
        be.update(z, r + a[i + 1] * bNew / s[i], terms);
        return g;
      });
      if (g !== null) {
        slopes.push(g);
        if (slopes.length > order - 1) be.release(slopes.shift()!);
      }
    }
  } finally {
    for (const g of slopes) be.release(g);
  }
  return z;
}

function scalar(w: number): Tensor {
  return Tensor.fromData([w], [1]);
}

/** Σ w_k v_k as one map: vectors in0…in{m−1}, weights in{m}…in{2m−1} (the expression depends only on m). */
function lincombExpr(m: number): string {
  return Array.from({ length: m }, (_, k) => `in${m + k} * in${k}`).join(" + ");
}

const gpuBackend = (denoise: Denoise): Backend<Tensor> => ({
  denoise(z, alpha, sigma) {
    const mu = denoise(z, alpha, sigma);
    if (mu.shape.join() !== z.shape.join()) {
      throw new Error(`sampler: denoiser returned shape (${mu.shape}) for a state of shape (${z.shape})`);
    }
    // The in-place update cannot bind one buffer twice (e.g. an identity denoiser returning z).
    return mu.buffer === z.buffer ? map([mu], "in0", "sampler_copy") : mu;
  },
  lincomb(terms) {
    return map(
      [...terms.map((t) => t[1]), ...terms.map((t) => scalar(t[0]))],
      lincombExpr(terms.length),
      "sampler_lincomb",
    );
  },
  update(z, wz, terms) {
    const vecs = terms.map((t) => t[1]), ws = [wz, ...terms.map((t) => t[0])];
    mapInPlace(z, [...vecs, ...ws.map(scalar)], lincombExpr(ws.length), "sampler_update");
  },
  step: (fn) => scope(fn),
  release: (v) => v.dispose(),
});

/**
 * Draw samples of `shape` by integrating the PF-ODE from τ = 1 to τ = 0 (method §4). Returns z at τ = 0 (a new
 * tensor in the caller's scope). Encodes work only: no readback, no await.
 */
export function sample(denoise: Denoise, shape: readonly number[], opts: SampleOptions = {}): Tensor {
  const { table, method } = resolve(opts);
  const k0 = Math.hypot(table.alpha[0], table.sigma[0]);
  return noGrad(() => {
    let eps = opts.noise;
    if (eps && eps.shape.join() !== shape.join()) {
      throw new Error(`sampler: noise of shape (${eps.shape}) for samples of shape (${shape})`);
    }
    eps ??= (opts.generator ?? new Generator(opts.seed ?? 0)).normal(shape);
    const wk = scalar(k0);
    const z = map([eps, wk], lincombExpr(1), "sampler_lincomb"); // (shape)
    wk.dispose();
    if (eps !== opts.noise) eps.dispose();
    try {
      return drive(gpuBackend(denoise), z, table, method);
    } catch (e) {
      z.dispose();
      throw e;
    }
  });
}

/** Float64 denoiser on the host: E[x | z] for the flat state z. */
export type DenoiseHost = (z: Float64Array, alpha: number, sigma: number) => Float64Array;

/**
 * The same sampler in float64 on the host, from the unit noise ε (flat): for references and convergence
 * studies. `seed`, `generator` and `noise` of `opts` are ignored.
 */
export function sampleHost(
  denoise: DenoiseHost,
  eps: ArrayLike<number>,
  opts: SampleOptions = {},
): Float64Array {
  const { table, method } = resolve(opts);
  const k0 = Math.hypot(table.alpha[0], table.sigma[0]);
  const z = Float64Array.from(eps, (e) => k0 * e);
  const be: Backend<Float64Array> = {
    denoise,
    lincomb(terms) {
      const out = new Float64Array(z.length);
      for (const [w, v] of terms) for (let k = 0; k < out.length; k++) out[k] += w * v[k];
      return out;
    },
    update(dst, wz, terms) {
      for (let k = 0; k < dst.length; k++) {
        let acc = wz * dst[k];
        for (const [w, v] of terms) acc += w * v[k];
        dst[k] = acc;
      }
    },
    step: (fn) => fn(),
    release: () => {},
  };
  return drive(be, z, table, method);
}

/**
 * Wall time (ms) of one sample() whose denoiser costs nothing (it returns a fixed tensor), i.e. the sampler's
 * own bookkeeping: init, slopes, updates, weight uploads. Compare with `steps` calls of the real denoiser
 * (the §4 budget: AB3 bookkeeping ≤ 5% of its 16 denoiser calls). The first run warms the pipelines.
 */
export async function timeBookkeeping(
  shape: readonly number[],
  opts: SampleOptions = {},
  repeats = 3,
): Promise<number> {
  const mu = scope(() => zeros(shape).keep());
  try {
    const once = () => scope(() => void sample(() => mu, shape, opts));
    once();
    await sync();
    const t0 = performance.now();
    for (let r = 0; r < repeats; r++) once();
    flush();
    await sync();
    return (performance.now() - t0) / repeats;
  } finally {
    mu.dispose();
  }
}
