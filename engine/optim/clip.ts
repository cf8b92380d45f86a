/**
 * Global gradient norm on the GPU (no sync), the input of clipping and of the non-finite step guard of the
 * optimizers, and the cosine learning-rate schedule.
 */
import { sumSqrtKernel, sumSquaresKernel, sumSquaresPartials } from "../../kernels/reduce.wgsl.ts";
import { bindingGroups, dispatch, grid1d } from "../runtime.ts";
import { Tensor } from "../tensor.ts";

/**
 * ‖(g_1, …, g_n)‖₂ over all parameters that have a gradient, as a [1] tensor (NaN/Inf propagate): one
 * sum-of-squares dispatch per group of gradients (kernels/reduce.wgsl.ts), one fold of their partials.
 */
export function gradNorm(params: Tensor[]): Tensor {
  const grads = params.flatMap((p) => (p.grad ? [p.grad] : []));
  if (!grads.length) throw new Error("gradNorm: no parameter has a gradient (did backward() run?)");
  const groups = bindingGroups(grads, 1, 1);
  const count = sumSquaresPartials(grads.map((g) => g.size));
  const partials = Tensor.empty([count]), out = Tensor.empty([1]);
  let base = 0;
  for (const group of groups) {
    const sizes = group.map((g) => g.size);
    const workgroups = sumSquaresPartials(sizes);
    dispatch(
      sumSquaresKernel({ sizes, base }),
      [...group.map((g) => g.buffer), partials.buffer],
      grid1d(workgroups, 1),
    );
    base += workgroups;
  }
  dispatch(sumSqrtKernel(count), [partials.buffer, out.buffer], [1]);
  partials.dispose();
  return out;
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
