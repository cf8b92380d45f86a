/**
 * Evaluation metrics on the GPU, per row (a row is one field at one lead time of one trajectory), in physical
 * units (the caller applies the inverse transforms):
 * - The Well's validation suite (`shared/spec/well-format.md` §4), keyed by its names: MSE, RMSE, MAE, NMSE,
 *   NRMSE, VMSE, VRMSE (ε = 1e-7 on the Bessel-corrected variance), LInfinity, PearsonR (1/N covariance over
 *   N−1 standard deviations, as the library mixes them) and binned spectral MSE/NMSE over its 3 log-spaced bands.
 * - The paper's (`shared/spec/method.md` §7, lola `experiments/eval.py`, `lola/fourier.py`): skill RMSE of the
 *   ensemble mean, NRMSE (mean u² + 1e-6), VRMSE (unbiased variance + 1e-6), spread with the (K+1)/(K−1)
 *   correction, spread/skill (spread + 1e-3)/(RMSE + 1e-3) (0 for K = 1), and the relative errors of the
 *   isotropic power spectrum and of the cross-correlation in the low/mid/high bands plus the "sub" corner band.
 *
 * Invariants and choices:
 * - Every reduction over pixels and every DFT runs on the GPU through engine ops (float32, like torch); each
 *   metric call reads back one tensor. The last scalar steps (√, ratios, band means) run on the host in
 *   float64 on those float32 reductions: ≤ 1 ulp of float32 away from doing them in float32.
 * - The isotropic radial average is a segment mean over precomputed bin indices on the host, after the GPU has
 *   already averaged the members' spectra: a dense one-hot matmul would need S × B floats (380 MB at 512²).
 *   The Well's 3 bands are a (S, 3) mask matmul on the GPU.
 * - Binning constants (edges, |k|) emulate torch's float32 arithmetic with Math.fround, so points that sit
 *   on an edge fall on the same side as in the references (checked by the band-count table of §4).
 * - `MetricValues` maps a name to a Float64Array of one value per row, rows in the caller's leading order.
 */
import {
  abs,
  concat,
  matmul,
  max,
  mean,
  mul,
  noGrad,
  numel,
  scope,
  slice,
  sqrt,
  square,
  sub,
  Tensor,
  variance,
} from "../engine/index.ts";
import { powerSpectrum } from "./fft.ts";

export type MetricValues = Record<string, Float64Array>;

export const WELL_METRICS = [
  "MSE",
  "RMSE",
  "MAE",
  "NMSE",
  "NRMSE",
  "VMSE",
  "VRMSE",
  "LInfinity",
  "PearsonR",
  "spectral_error_mse_per_bin_0",
  "spectral_error_mse_per_bin_1",
  "spectral_error_mse_per_bin_2",
  "spectral_error_nmse_per_bin_0",
  "spectral_error_nmse_per_bin_1",
  "spectral_error_nmse_per_bin_2",
] as const;

export const PAPER_BANDS = ["low", "mid", "high", "sub"] as const;

export const PAPER_METRICS = [
  "RMSE",
  "NRMSE",
  "VRMSE",
  "spread",
  "spread_skill",
  ...PAPER_BANDS.map((b) => `spectrum_error_${b}`),
  ...PAPER_BANDS.map((b) => `cross_error_${b}`),
] as const;

const WELL_EPS = 1e-7, PAPER_EPS = 1e-6;
const f = Math.fround;

// ---------------------------------------------------------------- binning constants (host, float32-emulated)

/** Per-axis frequencies in cycles per sample, as torch.fft.fftfreq in float32. */
function fftfreq(n: number): number[] {
  return Array.from({ length: n }, (_, i) => f((i < Math.ceil(n / 2) ? i : i - n) / n));
}

/** |k| per point of the grid (row-major), from per-axis frequencies scaled by `scale`, in float32. */
function radialK(spatial: readonly number[], scale: number): Float32Array {
  const ks = spatial.map((n) => fftfreq(n).map((v) => f(v * scale)));
  const S = numel(spatial);
  const out = new Float32Array(S);
  for (let s = 0; s < S; s++) {
    let rem = s, k2 = 0;
    for (let d = spatial.length - 1; d >= 0; d--) {
      const v = ks[d][rem % spatial[d]];
      rem = Math.floor(rem / spatial[d]);
      k2 = f(k2 + f(v * v));
    }
    out[s] = Math.sqrt(k2);
  }
  return out;
}

/** torch.linspace in float32 (the kernel fills the second half backwards from `end`). */
function linspace32(start: number, end: number, steps: number): number[] {
  const a = f(start), b = f(end);
  const step = f((b - a) / (steps - 1));
  const half = Math.floor(steps / 2);
  return Array.from(
    { length: steps },
    (_, i) => (i < half ? f(a + f(step * i)) : f(b - f(step * (steps - i - 1)))),
  );
}

export interface WellBands {
  /** The 4 band edges in radians per cell (edge 0 set to 0). */
  edges: number[];
  /** Band (0..2) of each grid point, −1 where |k| ≥ the last edge (discarded, as in the library). */
  band: Int8Array;
  counts: [number, number, number];
}

/** The Well's binned-spectral band edges and membership: e_i ≤ |k| < e_{i+1}, |k| = |2π·fftfreq|. */
export function wellBands(spatial: readonly number[]): WellBands {
  const D = spatial.length, maxN = Math.max(...spatial);
  const lin = linspace32(Math.log10((2 * Math.PI) / maxN), Math.log10(Math.PI * Math.sqrt(D) + 1e-6), 4);
  const edges = lin.map((v) => f(Math.pow(10, v)));
  edges[0] = 0;
  const k = radialK(spatial, f(2 * Math.PI));
  const band = new Int8Array(k.length).fill(-1);
  const counts: [number, number, number] = [0, 0, 0];
  for (let s = 0; s < k.length; s++) {
    for (let i = 0; i < 3; i++) {
      if (edges[i] <= k[s] && k[s] < edges[i + 1]) {
        band[s] = i;
        counts[i]++;
        break;
      }
    }
  }
  return { edges, band, counts };
}

export interface IsotropicBinning {
  /** B + 1 edges, linspace(0, max|k|, B + 1) in float32; bin i holds edges[i−1] < |k| ≤ edges[i]. */
  edges: number[];
  /** Bin (0..B) of each grid point; bin 0 is the DC point alone. */
  index: Int32Array;
  counts: Int32Array;
}

/** lola's `isotropic_binning`: B = ⌊√D · min(shape) / 2⌋ bins of |k| in cycles per sample. */
export function isotropicBinning(spatial: readonly number[]): IsotropicBinning {
  const k = radialK(spatial, 1);
  const B = Math.floor((Math.sqrt(spatial.length) * Math.min(...spatial)) / 2);
  const edges = linspace32(0, k.reduce((a, b) => Math.max(a, b), 0), B + 1);
  const index = new Int32Array(k.length), counts = new Int32Array(B + 1);
  for (let s = 0; s < k.length; s++) {
    // torch.bucketize(right=False): the number of edges strictly below |k|.
    let lo = 0, hi = B + 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (edges[mid] < k[s]) lo = mid + 1;
      else hi = mid;
    }
    index[s] = Math.min(lo, B);
    counts[index[s]]++;
  }
  return { edges, index, counts };
}

/**
 * The paper's bands over bin frequencies (the bins' upper edges, DC dropped): b = 2^linspace(log2 k₁, −1, 4),
 * low [b0, b1], mid [b1, b2], high [b2, b3] (closed), sub k ≥ 0.5. A relative slack of 1e-6 keeps k₁ and 0.5
 * inside despite the rounding of 2^log2.
 */
export function paperBandMasks(freq: ArrayLike<number>): Record<(typeof PAPER_BANDS)[number], boolean[]> {
  const l0 = Math.log2(freq[0]);
  const b = [0, 1, 2, 3].map((i) => 2 ** (l0 + ((-1 - l0) * i) / 3));
  const inside = (k: number, lo: number, hi: number) => k >= lo * (1 - 1e-6) && k <= hi * (1 + 1e-6);
  const fs = Array.from(freq);
  return {
    low: fs.map((k) => inside(k, b[0], b[1])),
    mid: fs.map((k) => inside(k, b[1], b[2])),
    high: fs.map((k) => inside(k, b[2], b[3])),
    sub: fs.map((k) => k >= 0.5 * (1 - 1e-6)),
  };
}

const bandMatrices = new Map<string, Tensor>();

function wellBandMatrix(spatial: readonly number[]): Tensor {
  const key = spatial.join("x");
  const hit = bandMatrices.get(key);
  if (hit && !hit.isDisposed) return hit;
  const { band } = wellBands(spatial);
  const m = new Float32Array(band.length * 3);
  band.forEach((b, s) => b >= 0 && (m[s * 3 + b] = 1));
  const t = Tensor.fromData(m, [band.length, 3], { persistent: true });
  bandMatrices.set(key, t);
  return t;
}

// ---------------------------------------------------------------- The Well's metrics

const col = (t: Tensor) => t.view([t.size, 1]);

/**
 * The Well's metrics of one prediction x against the truth y, both (…, N1..Nd) with d = `spatialDims`;
 * one value per leading index. The spectral terms use an orthonormal DFT: Σ|F_ortho|²/N = Σ|F|²/N².
 */
export async function wellMetrics(pred: Tensor, truth: Tensor, spatialDims: number): Promise<MetricValues> {
  if (pred.shape.join() !== truth.shape.join()) {
    throw new Error(`wellMetrics: prediction ${pred.shape} and truth ${truth.shape} differ`);
  }
  const sp = truth.shape.slice(truth.ndim - spatialDims), S = numel(sp), R = truth.size / S;
  const stats = noGrad(() =>
    scope(() => {
      const x = pred.view([R, S]), y = truth.view([R, S]); // (R, S)
      const diff = sub(x, y);
      const ad = abs(diff);
      const cov = mean(mul(sub(x, mean(x, 1, true)), sub(y, mean(y, 1, true))), 1); // (R)
      const spec = powerSpectrum(concat([diff, y], 0).view([2 * R, ...sp]), spatialDims, "ortho");
      const bands = matmul(spec.view([2 * R, S]), wellBandMatrix(sp)); // (2R, 3)
      const b = bands.view([2, R, 3]);
      return concat([
        col(mean(square(diff), 1)),
        col(mean(ad, 1)),
        col(max(ad, 1)),
        col(mean(square(y), 1)),
        col(variance(y, 1)),
        col(variance(x, 1)),
        col(cov),
        slice(b, 0, 0, 1).view([R, 3]), // band sums of |F(x − y)|²
        slice(b, 0, 1, 2).view([R, 3]), // band sums of |F(y)|²
      ], 1).keep(); // (R, 13)
    })
  );
  const a = await stats.read();
  stats.dispose();
  const out: MetricValues = Object.fromEntries(WELL_METRICS.map((n) => [n, new Float64Array(R)]));
  for (let r = 0; r < R; r++) {
    const [mse, mae, linf, msq, varY, varX, cov, ...bands] = a.subarray(r * 13, r * 13 + 13);
    out.MSE[r] = mse;
    out.RMSE[r] = Math.sqrt(mse);
    out.MAE[r] = mae;
    out.NMSE[r] = mse / (msq + WELL_EPS);
    out.NRMSE[r] = Math.sqrt(out.NMSE[r]);
    out.VMSE[r] = mse / (varY + WELL_EPS);
    out.VRMSE[r] = Math.sqrt(out.VMSE[r]);
    out.LInfinity[r] = linf;
    out.PearsonR[r] = cov / (Math.sqrt(varX) * Math.sqrt(varY) + WELL_EPS);
    for (let i = 0; i < 3; i++) {
      const mseBin = bands[i] / S, yBin = bands[3 + i] / S;
      out[`spectral_error_mse_per_bin_${i}`][r] = mseBin;
      out[`spectral_error_nmse_per_bin_${i}`][r] = mseBin / (yBin + WELL_EPS);
    }
  }
  return out;
}

// ---------------------------------------------------------------- the paper's metrics

const binnings = new Map<string, IsotropicBinning>();

function binningOf(spatial: readonly number[]): IsotropicBinning {
  const key = spatial.join("x");
  let b = binnings.get(key);
  if (!b) binnings.set(key, b = isotropicBinning(spatial));
  return b;
}

/** Radial means of one row of S values into bins 1..B (empty bins give 0, as lola's `clip(counts, min=1)`). */
function binRow(a: Float32Array, off: number, bins: IsotropicBinning): Float64Array {
  const B = bins.counts.length - 1;
  const acc = new Float64Array(B + 1);
  for (let s = 0; s < bins.index.length; s++) acc[bins.index[s]] += a[off + s];
  const out = new Float64Array(B);
  for (let i = 1; i <= B; i++) out[i - 1] = acc[i] / Math.max(bins.counts[i], 1);
  return out;
}

/**
 * lola's isotropic power spectrum of x (…, N1..Nd) with an orthonormal DFT: `freq` are the bins' upper edges
 * (B values, DC dropped), `power` is (R, B) row-major.
 */
export async function isotropicPowerSpectrum(
  x: Tensor,
  spatialDims: number,
): Promise<{ freq: Float64Array; power: Float64Array }> {
  const sp = x.shape.slice(x.ndim - spatialDims), S = numel(sp), R = x.size / S;
  const bins = binningOf(sp), B = bins.counts.length - 1;
  const p = noGrad(() => scope(() => powerSpectrum(x, spatialDims, "ortho").keep()));
  const a = await p.read();
  p.dispose();
  const power = new Float64Array(R * B);
  for (let r = 0; r < R; r++) power.set(binRow(a, r * S, bins), r * B);
  return { freq: Float64Array.from(bins.edges.slice(1)), power };
}

/** sqrt of the mean of e over the bins of each band (NaN for a band without bins, e.g. on tiny grids). */
function bandValues(
  e: Float64Array,
  masks: Record<string, boolean[]>,
  prefix: string,
  r: number,
  out: MetricValues,
) {
  for (const band of PAPER_BANDS) {
    let s = 0, n = 0;
    masks[band].forEach((m, i) => {
      if (m) {
        s += e[i];
        n++;
      }
    });
    out[`${prefix}_${band}`][r] = n ? Math.sqrt(s / n) : NaN;
  }
}

/**
 * The paper's metrics of an ensemble (K, …, N1..Nd) against the truth (…, N1..Nd), one value per leading
 * index of the truth. Skill uses the ensemble mean; the ensemble spectrum is the mean of the members' spectra;
 * the cross-correlation mean_k |F_u·conj(F_vk)| is computed as |F_u|·mean_k |F_vk| (the same number).
 */
export async function paperMetrics(
  ensemble: Tensor,
  truth: Tensor,
  spatialDims: number,
): Promise<MetricValues> {
  const K = ensemble.shape[0];
  if (ensemble.shape.slice(1).join() !== truth.shape.join()) {
    throw new Error(`paperMetrics: ensemble ${ensemble.shape} is not (K, ${truth.shape})`);
  }
  const sp = truth.shape.slice(truth.ndim - spatialDims), S = numel(sp), R = truth.size / S;
  const bins = binningOf(sp), B = bins.counts.length - 1;
  const masks = paperBandMasks(bins.edges.slice(1));
  const all = noGrad(() =>
    scope(() => {
      const v = ensemble.view([K, R, S]), u = truth.view([R, S]);
      const vbar = mean(v, 0); // (R, S)
      const pu = powerSpectrum(u.view([R, ...sp]), spatialDims, "ortho").view([R, S]);
      const pvk = powerSpectrum(v.view([K * R, ...sp]), spatialDims, "ortho").view([K, R, S]);
      return concat([
        col(mean(square(sub(u, vbar)), 1)),
        col(mean(square(u), 1)),
        col(variance(u, 1)),
        col(mean(square(sub(v, vbar)), [0, 2])),
        pu,
        mean(pvk, 0), // ensemble power spectrum (R, S)
        mul(sqrt(pu), mean(sqrt(pvk), 0)), // cross-correlation (R, S)
      ], 1).keep(); // (R, 4 + 3S)
    })
  );
  const a = await all.read();
  all.dispose();
  const out: MetricValues = Object.fromEntries(PAPER_METRICS.map((n) => [n, new Float64Array(R)]));
  const W = 4 + 3 * S;
  const e = new Float64Array(B), ec = new Float64Array(B);
  for (let r = 0; r < R; r++) {
    const [mse, msq, varU, spreadMs] = a.subarray(r * W, r * W + 4);
    const rmse = Math.sqrt(mse);
    out.RMSE[r] = rmse;
    out.NRMSE[r] = Math.sqrt(mse / (msq + PAPER_EPS));
    out.VRMSE[r] = Math.sqrt(mse / (varU + PAPER_EPS));
    out.spread[r] = K > 1 ? Math.sqrt(((K + 1) / (K - 1)) * spreadMs) : 0;
    out.spread_skill[r] = K > 1 ? (out.spread[r] + 1e-3) / (rmse + 1e-3) : 0;
    const pu = binRow(a, r * W + 4, bins), pv = binRow(a, r * W + 4 + S, bins);
    const c = binRow(a, r * W + 4 + 2 * S, bins);
    for (let i = 0; i < B; i++) {
      e[i] = (1 - (pv[i] + PAPER_EPS) / (pu[i] + PAPER_EPS)) ** 2;
      ec[i] = (1 - (c[i] + PAPER_EPS) / Math.sqrt(pu[i] * pv[i] + 1e-12)) ** 2;
    }
    bandValues(e, masks, "spectrum_error", r, out);
    bandValues(ec, masks, "cross_error", r, out);
  }
  return out;
}

// ---------------------------------------------------------------- both suites over host arrays

export interface EvalShape {
  /** Ensemble members (1 for a deterministic prediction). */
  K: number;
  T: number;
  C: number;
  spatial: number[];
}

export interface Evaluation {
  /** The Well's metrics of the ensemble mean, rows (T, C) row-major. */
  well: MetricValues;
  /** The paper's metrics, rows (T, C). */
  paper: MetricValues;
}

/**
 * Both suites for truth (T, C, *spatial) and an ensemble (K, T, C, *spatial) given as host arrays, uploaded a
 * few lead times at a time so that K·C·S·(lead times) stays under `maxElements` (GPU memory is then bounded
 * by a small multiple of it: the DFT holds real and imaginary parts plus one rotated copy).
 */
export async function evaluate(
  truth: Float32Array,
  ensemble: Float32Array,
  shape: EvalShape,
  maxElements = 2 ** 23,
): Promise<Evaluation> {
  const { K, T, C, spatial } = shape, S = numel(spatial), TCS = T * C * S;
  if (truth.length !== TCS || ensemble.length !== K * TCS) {
    throw new Error(
      `evaluate: arrays of ${truth.length} and ${ensemble.length} values do not match ${
        JSON.stringify(shape)
      }`,
    );
  }
  const well: MetricValues = Object.fromEntries(WELL_METRICS.map((n) => [n, new Float64Array(T * C)]));
  const paper: MetricValues = Object.fromEntries(PAPER_METRICS.map((n) => [n, new Float64Array(T * C)]));
  const step = Math.max(1, Math.min(T, Math.floor(maxElements / (K * C * S))));
  for (let t0 = 0; t0 < T; t0 += step) {
    const tc = Math.min(step, T - t0), n = tc * C * S;
    const vHost = new Float32Array(K * n);
    for (let k = 0; k < K; k++) {
      vHost.set(ensemble.subarray(k * TCS + t0 * C * S, k * TCS + t0 * C * S + n), k * n);
    }
    const u = Tensor.fromData(truth.subarray(t0 * C * S, t0 * C * S + n), [tc, C, ...spatial]);
    const v = Tensor.fromData(vHost, [K, tc, C, ...spatial]);
    const vbar = noGrad(() => scope(() => mean(v, 0).keep()));
    try {
      const w = await wellMetrics(vbar, u, spatial.length);
      const p = await paperMetrics(v, u, spatial.length);
      for (const k in w) well[k].set(w[k], t0 * C);
      for (const k in p) paper[k].set(p[k], t0 * C);
    } finally {
      for (const t of [u, v, vbar]) t.dispose();
    }
  }
  return { well, paper };
}
