/**
 * matmul benchmarks: a square 1024³ and the two transformer projections (tokens × width → 3·width-ish and
 * back), named M×K×N; plus the layouts the model actually runs (linear = x·Wᵀ + b, and its two backward
 * products). Uses the engine's own op, so the per-adapter tile table is what gets measured.
 */
import { matmulRaw } from "../../engine/ops/matmul.ts";
import type { Bench } from "../types.ts";
import { caseOf, input } from "../inputs.ts";

function mm(m: number, k: number, n: number, transA = false, transB = false, bias = false): Bench {
  const layout = `${transA ? "T" : "N"}${transB ? "T" : "N"}`;
  const suffix = layout === "NN" && !bias ? "" : ` ${layout}${bias ? "+bias" : ""}`;
  return {
    kernel: "matmul",
    shape: `M${m}xK${k}xN${n}${suffix}`,
    flops: 2 * m * n * k,
    bytes: 4 * (m * k + k * n + m * n + (bias ? n : 0)),
    setup: () => {
      const a = input(transA ? [k, m] : [m, k], 1);
      const b = input(transB ? [n, k] : [k, n], 2);
      const c = bias ? input([n], 3) : undefined;
      return caseOf(c ? [a, b, c] : [a, b], () => matmulRaw(a, b, transA, transB, c));
    },
  };
}

export const benches: Bench[] = [
  mm(1024, 1024, 1024),
  mm(4096, 256, 768),
  mm(4096, 768, 256),
  mm(4096, 256, 768, false, true, true), // linear forward, W (768, 256)
  mm(4096, 768, 256, false, false), // linear backward dx = g · W
  mm(256, 4096, 768, true, false), // linear backward dW = gᵀ · x
];
