/**
 * Evaluation metrics: the DFT as matmuls (eval/fft.ts, `metrics_dft`) and as WGSL FFT kernels
 * (engine/ops/fft.ts, `metrics_fft`) at the paper's grids 64², 128×512 and 64³ (eval/fft.ts's per-adapter
 * route follows them), and the GPU part of the metric suites per state (one state = C = 5 fields at one lead
 * time, K = 1) at 64×64×5 and 512×512×5; states per second = 1000 / ms. Only encoded GPU work is timed (the
 * host-side radial binning and the readback of `evaluate` are not: they are one pass over the spectra).
 *
 * FLOPs count the DFT matmuls only (2·rows·k·n per axis: real first axis k = N, complex k = 2N).
 */
import { abs, concat, fftn, matmul, max, mean, square, sub, variance } from "../../engine/index.ts";
import { dftn, powerSpectrum } from "../../eval/fft.ts";
import type { Bench } from "../types.ts";
import { caseOf, input } from "../inputs.ts";

function dftFlops(batch: number, sp: number[]): number {
  const S = sp.reduce((a, b) => a * b, 1);
  return sp.reduce((f, n, i) => f + 2 * batch * (S / n) * (i === sp.length - 1 ? n : 2 * n) * 2 * n, 0);
}

/**
 * The DFT of `batch` real states by one route: "matmul" (eval/fft.ts's matmul route), "fft" (the FFT kernels
 * as this adapter's table picks them per axis) or "fft_wg" (the workgroup-memory kernel on every axis). FLOPs
 * are the matmul route's for all three, so the GFLOP/s column compares times.
 */
function dft(route: "matmul" | "fft" | "fft_wg", batch: number, sp: number[]): Bench {
  const S = sp.reduce((a, b) => a * b, 1);
  return {
    kernel: route === "matmul" ? "metrics_dft" : `metrics_${route}`,
    shape: `${batch}x${sp.join("x")}`,
    flops: dftFlops(batch, sp),
    bytes: 4 * batch * S * 3,
    setup: () => {
      const x = input([batch, ...sp], 3);
      const d = sp.length;
      const run = route === "matmul"
        ? () => dftn(x, d, "ortho", "matmul")
        : route === "fft"
        ? () => fftn(x, d, "ortho")
        : () => fftn(x, d, "ortho", 0);
      return caseOf([x], run);
    },
  };
}

/** The GPU work of wellMetrics + paperMetrics for one state (C fields) with a one-member ensemble. */
function metricsState(C: number, sp: number[]): Bench {
  const S = sp.reduce((a, b) => a * b, 1);
  return {
    kernel: "metrics_state",
    shape: `${sp.join("x")}x${C}`,
    flops: 3 * dftFlops(C, sp),
    bytes: 4 * C * S * 2,
    setup: () => {
      const u = input([C, ...sp], 5), v = input([C, ...sp], 6), mask = input([S, 3], 7);
      return caseOf([u, v, mask], () => {
        const x = v.view([C, S]), y = u.view([C, S]);
        const d = sub(x, y);
        const stats = [mean(square(d), 1), mean(abs(d), 1), max(abs(d), 1), variance(y, 1), variance(x, 1)];
        const spec = powerSpectrum(concat([d, y, x], 0).view([3 * C, ...sp]), sp.length);
        const bands = matmul(spec.view([3 * C, S]), mask);
        return [stats, bands];
      });
    },
  };
}

export const benches: Bench[] = [
  ...[[64, 64], [128, 512], [64, 64, 64]].flatMap((
    sp,
  ) => [dft("matmul", 5, sp), dft("fft", 5, sp), dft("fft_wg", 5, sp)]),
  metricsState(5, [64, 64]),
  metricsState(5, [512, 512]),
];
