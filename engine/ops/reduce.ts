/**
 * Reductions over axes: sum, mean, max (amax), var (biased or unbiased), with keepdim like PyTorch.
 * Forward: one or two passes of the (outer, R, inner) kernel; non-adjacent axes are first permuted to the end.
 * Backward: broadcast of the upstream gradient (mean scales, max routes to the arg-max positions, ties share).
 * JVP: the same reduction of the tangent (max: the tangent averaged over the tied arg-max positions); mean and
 * variance are compositions, so their rules come from sum, mul, sub and square.
 */
import { reduceChunks, reduceKernel, reduceLaunch, type ReduceOp } from "../../kernels/reduce.wgsl.ts";
import { record } from "../autograd.ts";
import { dispatch, grid1d } from "../runtime.ts";
import { type Shape, Tensor } from "../tensor.ts";
import { div, eq, map, mul, square, sub } from "./elementwise.ts";
import { permute } from "./shape.ts";

export function normAxes(axes: number | number[] | undefined, ndim: number): number[] {
  const list = axes === undefined ? [...Array(ndim).keys()] : Array.isArray(axes) ? axes : [axes];
  const out = [...new Set(list.map((a) => (a < 0 ? a + ndim : a)))].sort((a, b) => a - b);
  for (const a of out) if (a < 0 || a >= ndim) throw new Error(`axis ${a} out of range for ${ndim}-d tensor`);
  return out;
}

function keptShape(shape: Shape, axes: number[]): number[] {
  return shape.map((d, i) => (axes.includes(i) ? 1 : d));
}

function outShape(shape: Shape, axes: number[], keepdim: boolean): number[] {
  return keepdim ? keptShape(shape, axes) : shape.filter((_, i) => !axes.includes(i));
}

/** Raw reduction (no autodiff) of a contiguous (outer, r, inner) layout into (outer, inner). */
function reduceRaw(x: Tensor, op: ReduceOp, outer: number, r: number, inner: number): Tensor {
  let cur = x;
  let rr = r;
  for (;;) {
    const chunks = reduceChunks({ op, outer, r: rr, inner });
    const chunk = Math.ceil(rr / chunks);
    const cfg = { op, outer, r: rr, inner, chunk };
    const out = Tensor.empty([outer * Math.ceil(rr / chunk) * inner]);
    const { invocations, wg } = reduceLaunch(cfg);
    dispatch(reduceKernel(cfg), [cur.buffer, out.buffer], grid1d(invocations, wg));
    if (cur !== x) cur.dispose();
    cur = out;
    rr = Math.ceil(rr / chunk);
    if (rr === 1) return cur;
  }
}

/** Reduce `axes` of x with op, returning the keepdim shape (no autodiff). */
function reduceAxes(x: Tensor, op: ReduceOp, axes: number[]): Tensor {
  const kshape = keptShape(x.shape, axes);
  if (axes.length === 0) return x.view(kshape);
  const contiguous = axes[axes.length - 1] - axes[0] === axes.length - 1;
  let src = x;
  let lo = axes[0], hi = axes[axes.length - 1] + 1;
  if (!contiguous) {
    const rest = [...x.shape.keys()].filter((i) => !axes.includes(i));
    src = permute(x, [...rest, ...axes], false);
    lo = rest.length;
    hi = x.ndim;
  }
  const sh = src.shape;
  const outer = sh.slice(0, lo).reduce((a, b) => a * b, 1);
  const r = sh.slice(lo, hi).reduce((a, b) => a * b, 1);
  const inner = sh.slice(hi).reduce((a, b) => a * b, 1);
  const flat = reduceRaw(src, op, outer, r, inner);
  if (src !== x) src.dispose();
  const out = flat.view(kshape);
  flat.dispose();
  return out;
}

/** Broadcast g (keepdim shape) back to `shape`. */
function expand(g: Tensor, shape: Shape): Tensor {
  return map([g], "in0", "expand", shape);
}

export function sum(x: Tensor, axes?: number | number[], keepdim = false): Tensor {
  const ax = normAxes(axes, x.ndim);
  const k = reduceAxes(x, "sum", ax);
  const out = keepdim ? k : reshapeNoGrad(k, outShape(x.shape, ax, false));
  return record(
    out,
    "sum",
    [x],
    (g) => {
      const gk = g.view(keptShape(x.shape, ax));
      const gx = expand(gk, x.shape);
      gk.dispose();
      return [gx];
    },
    ([t]) => sum(t!, ax, keepdim),
  );
}

export function mean(x: Tensor, axes?: number | number[], keepdim = false): Tensor {
  const ax = normAxes(axes, x.ndim);
  const n = ax.reduce((a, i) => a * x.shape[i], 1);
  return mul(sum(x, ax, keepdim), 1 / n);
}

/** Maximum over axes (torch.amax): gradient split evenly between tied maxima. */
export function max(x: Tensor, axes?: number | number[], keepdim = false): Tensor {
  const ax = normAxes(axes, x.ndim);
  const k = reduceAxes(x, "max", ax);
  const out = keepdim ? k : reshapeNoGrad(k, outShape(x.shape, ax, false));
  return record(out, "max", [x], (g) => {
    const ok = out.view(keptShape(x.shape, ax)), gk = g.view(keptShape(x.shape, ax));
    const mask = eq(x, ok);
    const count = reduceAxes(mask, "sum", ax);
    const gx = map([mask, gk, count], "in0 * in1 / in2", "max_dx", x.shape);
    for (const t of [ok, gk, mask, count]) t.dispose();
    return [gx];
  }, ([t]) => {
    const mask = eq(x, out.view(keptShape(x.shape, ax)));
    const count = reduceAxes(mask, "sum", ax);
    const picked = reduceAxes(map([mask, t!], "in0 * in1", "max_pick"), "sum", ax);
    return map([picked, count], "in0 / in1", "max_jvp").view(out.shape);
  });
}

/** Variance over axes; correction=1 is the unbiased estimator (torch.var default). */
export function variance(x: Tensor, axes?: number | number[], keepdim = false, correction = 1): Tensor {
  const ax = normAxes(axes, x.ndim);
  const n = ax.reduce((a, i) => a * x.shape[i], 1);
  const centered = sub(x, mean(x, ax, true));
  return div(sum(square(centered), ax, keepdim), Math.max(n - correction, 1e-30));
}

function reshapeNoGrad(t: Tensor, shape: Shape): Tensor {
  const v = t.view(shape);
  t.dispose();
  return v;
}

/** Float64 references. */
export const reference = {
  reduce(x: Float64Array, shape: Shape, axes: number[], op: "sum" | "max" | "mean" | "var", correction = 1) {
    const ax = normAxes(axes, shape.length);
    const oshape = keptShape(shape, ax);
    const on = oshape.reduce((a, b) => a * b, 1);
    const acc = new Float64Array(on).fill(op === "max" ? -Infinity : 0);
    const cnt = ax.reduce((a, i) => a * shape[i], 1);
    const idxOut = (i: number) => {
      let rem = i, o = 0, stride = 1;
      const coords: number[] = [];
      for (let d = shape.length - 1; d >= 0; d--) {
        coords[d] = rem % shape[d];
        rem = Math.floor(rem / shape[d]);
      }
      for (let d = shape.length - 1; d >= 0; d--) {
        o += (oshape[d] === 1 ? 0 : coords[d]) * stride;
        stride *= oshape[d];
      }
      return o;
    };
    const means = new Float64Array(on);
    for (let i = 0; i < x.length; i++) means[idxOut(i)] += x[i] / cnt;
    for (let i = 0; i < x.length; i++) {
      const o = idxOut(i);
      if (op === "max") acc[o] = Math.max(acc[o], x[i]);
      else if (op === "var") acc[o] += (x[i] - means[o]) ** 2;
      else acc[o] += x[i];
    }
    if (op === "mean") { for (let o = 0; o < on; o++) acc[o] /= cnt; }
    if (op === "var") { for (let o = 0; o < on; o++) acc[o] /= cnt - correction; }
    return acc;
  },
};
