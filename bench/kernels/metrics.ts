/**
 * Evaluation metrics: the DFT-as-matmul (eval/fft.ts) at the paper's grids 64², 128×512 and 64³, and the GPU
 * part of the metric suites per state (one state = C = 5 fields at one lead time, K = 1) at 64×64×5 and
 * 512×512×5; states per second = 1000 / ms. Only encoded GPU work is timed (the host-side radial binning and the
 * readback of `evaluate` are not: they are one pass over the spectra).
 *
 * FLOPs count the DFT matmuls only (2·rows·k·n per axis: real first axis k = N, complex k = 2N).
 */
import { abs, concat, matmul, max, mean, square, sub, variance } from "../../engine/index.ts";
import { dftn, powerSpectrum } from "../../eval/fft.ts";
import type { Bench } from "../types.ts";
import { caseOf, input } from "../inputs.ts";

function dftFlops(batch: number, sp: number[]): number {
  const S = sp.reduce((a, b) => a * b, 1);
  return sp.reduce((f, n, i) => f + 2 * batch * (S / n) * (i === sp.length - 1 ? n : 2 * n) * 2 * n, 0);
}

function dft(batch: number, sp: number[]): Bench {
  const S = sp.reduce((a, b) => a * b, 1);
  return {
    kernel: "metrics_dft",
    shape: `${batch}x${sp.join("x")}`,
    flops: dftFlops(batch, sp),
    bytes: 4 * batch * S * 3,
    setup: () => {
      const x = input([batch, ...sp], 3);
      return caseOf([x], () => dftn(x, sp.length, "ortho"));
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
  dft(5, [64, 64]),
  dft(5, [128, 512]),
  dft(5, [64, 64, 64]),
  metricsState(5, [64, 64]),
  metricsState(5, [512, 512]),
];
