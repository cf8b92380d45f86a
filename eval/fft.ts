/**
 * The discrete Fourier transform over the trailing spatial axes of a real tensor by one of two routes, plus
 * the float64 reference the tests compare against:
 * - "fft": the engine's WGSL kernels (engine/ops/fft.ts: radix-2 Stockham for powers of two, a direct DFT
 *   for other lengths; one invocation per line for short axes on software adapters, a workgroup per line
 *   otherwise), one dispatch per axis;
 * - "matmul": dense matmuls with per-axis cos/sin matrices (the engine's tuned matmul), O(N) work per point
 *   per axis but the fastest kernel the engine has.
 * Which is faster depends on the adapter, so the route is a per-adapter table (`DFT_ROUTE`) like the tile
 * tables, set from `deno task bench --filter metrics_` (metrics_dft against metrics_fft at 64², 128×512 and
 * 64³); an axis the FFT kernels cannot hold (`fftFits`) takes the matmul route whatever the table says.
 *
 * Layout and invariants:
 * - `dftn(x, d)` takes real x (…, N1, …, Nd) and returns (…, 2, N1, …, Nd): index 0 of the `2` axis is the
 *   real part, 1 the imaginary part, frequencies in natural (numpy `fft.fftn`) order, sign convention
 *   e^{−2πi kn/N}.
 * - Each axis is one batched matmul: a row of [Re | Im] (2N) times W = [[C, −S], [S, C]] (2N × 2N), so the
 *   complex product needs no separate real/imaginary kernels; the first axis has real input and uses
 *   [C | −S]. Between axes the layout is rotated so the next axis is last (one gather per axis).
 * - The twiddles are computed in float64 from (j·k mod N) and rounded once, so their error does not grow with
 *   N.
 * - `norm = "ortho"` folds 1/√N_d into each axis' matrix (torch/numpy `norm="ortho"`).
 * - No autodiff: metrics never need gradients.
 */
import { adapterTable } from "../engine/adapter.ts";
import {
  clearFftCache,
  fftFits,
  fftn,
  gpu,
  matmul,
  noGrad,
  numel,
  permute,
  scope,
  sqrt,
  square,
  sum,
  Tensor,
} from "../engine/index.ts";

export type FftNorm = "backward" | "ortho";
export type DftRoute = "fft" | "matmul";

/**
 * The faster route per adapter, measured by bench/kernels/metrics.ts. lavapipe (2026-12-04, 2-core EPYC):
 * 5 states at 64², 128×512, 64³ take 2.5 / 182 / 69 ms by FFT against 15.5 / 279 / 713 ms by matmul. GPUs:
 * not measured here (no GPU was lent); the FFT's O(N log N) loads and one dispatch per axis make it the
 * default until a GPU run says otherwise.
 */
export const DFT_ROUTE = adapterTable<DftRoute>({ lavapipe: "fft", default: "fft" });

const matrices = new Map<string, Tensor>();

/** (N, 2N) [C | −S] for real input, (2N, 2N) [[C, −S], [S, C]] for complex input; cached per device lifetime. */
function dftMatrix(n: number, complexIn: boolean, scale: number): Tensor {
  const key = `${n}:${complexIn}:${scale}`;
  const hit = matrices.get(key);
  if (hit && !hit.isDisposed) return hit;
  const rows = complexIn ? 2 * n : n, w = 2 * n;
  const a = new Float32Array(rows * w);
  for (let j = 0; j < n; j++) {
    for (let k = 0; k < n; k++) {
      const ang = (2 * Math.PI * ((j * k) % n)) / n;
      const c = Math.cos(ang) * scale, s = Math.sin(ang) * scale;
      a[j * w + k] = c;
      a[j * w + n + k] = -s;
      if (complexIn) {
        a[(n + j) * w + k] = s;
        a[(n + j) * w + n + k] = c;
      }
    }
  }
  const t = Tensor.fromData(a, [rows, w], { persistent: true });
  matrices.set(key, t);
  return t;
}

/** Frees the cached DFT matrices (tests that check for leaks; the next call rebuilds them). */
export function clearDftCache(): void {
  for (const t of matrices.values()) t.dispose();
  matrices.clear();
  clearFftCache();
}

/**
 * Complex DFT over the last `d` axes of real x (…, N1..Nd) → (…, 2, N1..Nd) [re, im], by `route` (default:
 * this adapter's entry of DFT_ROUTE; the matmul route when an axis does not fit the FFT kernels).
 */
export function dftn(x: Tensor, d: number, norm: FftNorm = "backward", route?: DftRoute): Tensor {
  if (d < 1 || d > x.ndim) throw new Error(`dftn: cannot transform ${d} axes of a ${x.ndim}-d tensor`);
  const chosen = route ?? DFT_ROUTE.for(gpu().adapterKind);
  const fits = x.shape.slice(x.ndim - d).every(fftFits);
  if (chosen === "fft" && fits) return noGrad(() => fftn(x, d, norm));
  if (route === "fft") {
    throw new Error(`dftn: the FFT kernels cannot hold an axis of ${x.shape.slice(x.ndim - d)}`);
  }
  const lead = x.shape.slice(0, x.ndim - d), sp = x.shape.slice(x.ndim - d);
  const M = numel(lead);
  const scaleOf = (n: number) => (norm === "ortho" ? 1 / Math.sqrt(n) : 1);
  return noGrad(() =>
    scope(() => {
      // (M, a1..a_{d−1}, N_d) → (M, A, 2 N_d), i.e. (M, a1..a_{d−1}, 2, a_d).
      const last = sp[d - 1];
      const A = x.size / (M * last);
      let z = matmul(x.view([M, A, last]), dftMatrix(last, false, scaleOf(last)));
      let others = sp.slice(0, d - 1); // current order of the untransformed-last spatial axes
      let cur = last;
      for (let step = 1; step < d; step++) {
        // Rotate (M, o1..o_{d−1}, 2, cur) → (M, cur, o1..o_{d−2}, 2, o_{d−1}) so o_{d−1} is last.
        const full = z.view([M, ...others, 2, cur]);
        const perm = [0, d + 1, ...Array.from({ length: d - 2 }, (_, i) => i + 1), d, d - 1];
        const rot = permute(full, perm, false);
        const next = others[d - 2];
        others = [cur, ...others.slice(0, d - 2)];
        cur = next;
        z = matmul(rot.view([M, rot.size / (M * 2 * cur), 2 * cur]), dftMatrix(cur, true, scaleOf(cur)));
      }
      // Now (M, a2..a_d, 2, a1) → natural (M, 2, a1..a_d).
      let out = z.view([M, ...others, 2, cur]);
      if (d > 1) out = permute(out, [0, d, d + 1, ...Array.from({ length: d - 1 }, (_, i) => i + 1)], false);
      return out.view([...lead, 2, ...sp]);
    })
  );
}

/** |F|² of the DFT over the last d axes: (…, N1..Nd) → (…, N1..Nd). */
export function powerSpectrum(x: Tensor, d: number, norm: FftNorm = "ortho", route?: DftRoute): Tensor {
  return noGrad(() =>
    scope(() => {
      const lead = x.shape.slice(0, x.ndim - d), sp = x.shape.slice(x.ndim - d);
      const z = dftn(x, d, norm, route).view([numel(lead), 2, numel(sp)]);
      return sum(square(z), 1).view([...lead, ...sp]);
    })
  );
}

/** |F| of the DFT over the last d axes. */
export function magnitudeSpectrum(x: Tensor, d: number, norm: FftNorm = "ortho", route?: DftRoute): Tensor {
  return noGrad(() => scope(() => sqrt(powerSpectrum(x, d, norm, route))));
}

/** Float64 references (naive separable DFT, natural order, e^{−2πi kn/N}). */
export const reference = {
  dftn(x: Float64Array, shape: readonly number[], d: number, norm: FftNorm = "backward"): Float64Array {
    const lead = numel(shape.slice(0, shape.length - d)), sp = shape.slice(shape.length - d);
    const S = numel(sp);
    let re = Float64Array.from(x), im = new Float64Array(x.length);
    let stride = 1;
    for (let a = d - 1; a >= 0; a--) {
      const n = sp[a];
      const nre = new Float64Array(re.length), nim = new Float64Array(im.length);
      const outerCount = re.length / (n * stride);
      for (let o = 0; o < outerCount; o++) {
        for (let s = 0; s < stride; s++) {
          const base = o * n * stride + s;
          for (let k = 0; k < n; k++) {
            let sr = 0, si = 0;
            for (let j = 0; j < n; j++) {
              const ang = (-2 * Math.PI * ((j * k) % n)) / n;
              const c = Math.cos(ang), sn = Math.sin(ang);
              const xr = re[base + j * stride], xi = im[base + j * stride];
              sr += xr * c - xi * sn;
              si += xr * sn + xi * c;
            }
            nre[base + k * stride] = sr;
            nim[base + k * stride] = si;
          }
        }
      }
      re = nre;
      im = nim;
      stride *= n;
    }
    const scale = norm === "ortho" ? 1 / Math.sqrt(S) : 1;
    const out = new Float64Array(2 * x.length);
    for (let m = 0; m < lead; m++) {
      for (let s = 0; s < S; s++) {
        out[(2 * m) * S + s] = re[m * S + s] * scale;
        out[(2 * m + 1) * S + s] = im[m * S + s] * scale;
      }
    }
    return out;
  },
};
