/**
 * Global gradient norm on the GPU (no sync), the input of clipping and of the non-finite step guard of the
 * optimizers, and the cosine learning-rate schedule.
 */
import { add, map, sqrt, sum } from "../ops/index.ts";
import { noGrad } from "../autograd.ts";
import type { Tensor } from "../tensor.ts";

/** ‖(g_1, …, g_n)‖₂ over all parameters that have a gradient, as a [1] tensor (NaN/Inf propagate). */
export function gradNorm(params: Tensor[]): Tensor {
  return noGrad(() => {
    let total: Tensor | null = null;
    for (const p of params) {
      if (!p.grad) continue;
      const s = sum(map([p.grad], "in0 * in0", "sq"));
      total = total ? add(total, s) : s;
    }
    if (!total) throw new Error("gradNorm: no parameter has a gradient (did backward() run?)");
    return sqrt(total).view([1]);
  });
}

/**
 * Cosine decay from `lr` to `minLr` over `total` steps after a linear warmup of `warmup` steps
 * (step counts from 0).
 */
export function cosineLr(
  step: number,
  total: number,
  lr: number,
  opts: { warmup?: number; minLr?: number } = {},
) {
  const warmup = opts.warmup ?? 0, minLr = opts.minLr ?? 0;
  if (step < warmup) return (lr * (step + 1)) / warmup;
  const t = Math.min(1, (step - warmup) / Math.max(1, total - warmup));
  return minLr + 0.5 * (lr - minLr) * (1 + Math.cos(Math.PI * t));
}
