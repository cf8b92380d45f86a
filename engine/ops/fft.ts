/**
 * fftn: the complex DFT over the last d axes of a real tensor through the WGSL FFT kernels
 * (kernels/fft.wgsl.ts), one dispatch per axis and no permutes: (…, N1..Nd) → (…, 2, N1..Nd) planar [re, im],
 * natural (numpy `fft.fftn`) order, e^{−2πi kn/N}; norm "ortho" scales each axis by 1/√N_d. No autodiff (the
 * metrics never need gradients). The float64 reference the tests compare against is eval/fft.ts's.
 *
 * Lengths: powers of two run the radix-2 Stockham kernel, others the direct DFT kernel; an axis whose line
 * does not fit the adapter's workgroup memory (`fftFits`) is refused, and eval/fft.ts then takes the matmul
 * route.
 */
import {
  FFT_LINE_WG,
  type FftAxisConfig,
  fftAxisKernel,
  fftGroups,
  fftLayout,
  fftLineKernel,
  fftSharedBytes,
} from "../../kernels/fft.wgsl.ts";
import { adapterTable } from "../adapter.ts";
import { gpu } from "../device.ts";
import { dispatch, grid1d } from "../runtime.ts";
import { numel, scope, Tensor } from "../tensor.ts";

const twiddles = new Map<number, Tensor>();

/** (cos, −sin)(2πk/n) for k < n, in float64 then rounded once; cached per device lifetime. */
function twiddleTable(n: number): Tensor {
  const hit = twiddles.get(n);
  if (hit && !hit.isDisposed) return hit;
  const a = new Float32Array(2 * n);
  for (let k = 0; k < n; k++) {
    const ang = (2 * Math.PI * k) / n;
    a[2 * k] = Math.cos(ang);
    a[2 * k + 1] = -Math.sin(ang);
  }
  const t = Tensor.fromData(a, [n, 2], { persistent: true });
  twiddles.set(n, t);
  return t;
}

/** Frees the cached twiddle tables (tests that check for leaks; the next call rebuilds them). */
export function clearFftCache(): void {
  for (const t of twiddles.values()) t.dispose();
  twiddles.clear();
}

/** Whether the FFT kernels can transform an axis of length n on this adapter (the line fits workgroup memory). */
export function fftFits(n: number): boolean {
  return n >= 1 && fftSharedBytes(n) <= gpu().limits.maxComputeWorkgroupStorageSize &&
    fftLayout(n).threads <= gpu().limits.maxComputeInvocationsPerWorkgroup;
}

/**
 * Axes up to this length use the one-invocation-per-line kernel (`fftLineKernel`), longer ones the workgroup
 * kernel. lavapipe (2026-12-04): at 64 the line kernel takes 2.5 ms for 5×64² and 69 ms for 5×64³ against
 * 11.2 and 938 ms in workgroup memory (every workgroup-memory access and barrier is a per-lane loop there);
 * lines of 128 or 256 run ~10× faster than in workgroup memory too, but their unrolled shaders compile in 2 s
 * and 7.5 s (30 s at 512) for each new shape, so 64 is the limit. GPUs: unmeasured (no GPU lent), so the
 * workgroup kernel throughout.
 */
export const FFT_LINE_MAX = adapterTable<number>({ lavapipe: 64, default: 0 });

function fftAxis(x: Tensor, c: FftAxisConfig, lineMax: number): Tensor {
  const out = Tensor.empty([c.batch, 2, c.plane]);
  if (c.n <= lineMax) {
    const lines = (c.batch * c.plane) / c.n;
    dispatch(fftLineKernel(c), [x.buffer, out.buffer], grid1d(lines, FFT_LINE_WG));
    return out;
  }
  const wg = fftLayout(c.n);
  dispatch(
    fftAxisKernel(c),
    [x.buffer, out.buffer, twiddleTable(c.n).buffer],
    grid1d(fftGroups(c) * wg.threads * wg.linesPerGroup, wg.threads * wg.linesPerGroup),
  );
  return out;
}

/** Complex DFT over the last d axes of real x: (…, N1..Nd) → (…, 2, N1..Nd) [re, im]. */
export function fftn(
  x: Tensor,
  d: number,
  norm: "backward" | "ortho" = "backward",
  lineMax = FFT_LINE_MAX.for(gpu().adapterKind),
): Tensor {
  if (d < 1 || d > x.ndim) throw new Error(`fftn: cannot transform ${d} axes of a ${x.ndim}-d tensor`);
  const lead = x.shape.slice(0, x.ndim - d), sp = x.shape.slice(x.ndim - d);
  const bad = sp.find((n) => !fftFits(n));
  if (bad !== undefined) {
    throw new Error(`fftn: an axis of length ${bad} does not fit this adapter's workgroup memory`);
  }
  const batch = numel(lead), plane = numel(sp);
  return scope(() => {
    let z = x;
    // Last axis first, reading the real input; each later axis reads the previous planar output.
    for (let a = d - 1; a >= 0; a--) {
      const n = sp[a], stride = numel(sp.slice(a + 1));
      const scale = norm === "ortho" ? 1 / Math.sqrt(n) : 1;
      z = fftAxis(z, { batch, plane, n, stride, realInput: a === d - 1, scale }, lineMax);
    }
    return z.view([...lead, 2, ...sp]);
  });
}
