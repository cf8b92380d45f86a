/**
 * softmax, layer_norm and rms_norm over the last axis: hand-fused forward and backward row kernels
 * (kernels/rownorm.wgsl.ts) and float64 references. layer_norm uses the biased variance like
 * torch.nn.functional.layer_norm; weight/bias gradients are column sums of g·x̂ and g.
 * JVPs (composed from elementwise ops and row sums): softmax ẏ = y ⊙ (ẋ − Σ y ẋ); layer_norm
 * d x̂ = r (ẋ − mean ẋ − x̂ · mean(x̂ ẋ)) with r = 1/√(var + eps), rms_norm d x̂ = r (ẋ − x̂ · mean(x̂ ẋ)); then
 * ẏ = d x̂ ⊙ w + x̂ ⊙ ẇ + ḃ.
 */
import { type RowConfig, rowKernel, type RowOp, rowsPerGroup } from "../../kernels/rownorm.wgsl.ts";
import { f32 } from "../../kernels/common.ts";
import { needsGrad, record } from "../autograd.ts";
import { dispatch, grid1d } from "../runtime.ts";
import { type Shape, Tensor } from "../tensor.ts";
import { add, map, mul, sub } from "./elementwise.ts";
import { sum } from "./reduce.ts";

function runRow(op: RowOp, x: Tensor, eps: number, affine: boolean, bufs: Tensor[]): void {
  const d = x.shape[x.ndim - 1];
  const rows = x.size / d, per = rowsPerGroup(op, rows, affine);
  const cfg: RowConfig = { op, rows, d, eps, affine, rowsPerGroup: per };
  dispatch(rowKernel(cfg), bufs.map((t) => t.buffer), grid1d(Math.ceil(rows / per), 1));
}

/** softmax over the last axis (dim=-1). */
export function softmax(x: Tensor): Tensor {
  const y = Tensor.empty(x.shape);
  runRow("softmax", x, 0, false, [x, y]);
  return record(y, "softmax", [x], (g) => {
    const dx = Tensor.empty(x.shape);
    runRow("softmax_bwd", x, 0, false, [y, g, dx]);
    return [dx];
  }, ([t]) => mul(y, sub(t!, sum(mul(y, t!), -1, true))));
}

function normOp(
  kind: "layer_norm" | "rms_norm",
  x: Tensor,
  weight?: Tensor,
  bias?: Tensor,
  eps = 1e-5,
): Tensor {
  const d = x.shape[x.ndim - 1];
  for (const p of [weight, bias]) {
    if (p && (p.ndim !== 1 || p.shape[0] !== d)) {
      throw new Error(`${kind}: parameter (${p.shape}) must be (${d})`);
    }
  }
  if (bias && !weight) throw new Error(`${kind}: a bias needs a weight`);
  const ln = kind === "layer_norm";
  const rows = x.size / d;
  const affine = !!weight;
  const y = Tensor.empty(x.shape);
  const mu = ln ? Tensor.empty([rows, 1]) : null;
  const rs = Tensor.empty([rows, 1]);
  const params = [weight, ln ? bias : undefined].filter((p): p is Tensor => !!p);
  const stats = mu ? [mu, rs] : [rs];
  runRow(kind, x, eps, affine, [x, ...params, y, ...stats]);
  return record(y, kind, [x, ...params], (g) => {
    const dx = Tensor.empty(x.shape);
    runRow(`${kind}_bwd`, x, eps, affine, [x, ...(weight ? [weight] : []), g, ...stats, dx]);
    const grads: (Tensor | null)[] = [dx];
    if (weight) {
      const x2 = x.view([rows, d]), g2 = g.view([rows, d]);
      const gxhat = mu
        ? map([x2, mu, rs, g2], "(in0 - in1) * in2 * in3", "ln_dw", [rows, d])
        : map([x2, rs, g2], "in0 * in1 * in2", "rms_dw", [rows, d]);
      grads.push(needsGrad(weight) ? sum(gxhat, 0) : null);
      if (ln && bias) grads.push(needsGrad(bias) ? sum(g2, 0) : null);
      for (const t of [x2, g2, gxhat]) t.dispose();
    }
    return grads;
  }, ([tx, tw, tb]) => {
    const x2 = x.view([rows, d]);
    const xhat = mu
      ? map([x2, mu, rs], "(in0 - in1) * in2", "ln_xhat", [rows, d])
      : map([x2, rs], "in0 * in1", "rms_xhat", [rows, d]);
    const terms: Tensor[] = [];
    if (tx) {
      const t2 = tx.view([rows, d]);
      const proj = sum(mul(xhat, t2), 1, true); // (rows, 1): Σ x̂ ẋ
      const centred = mu ? sub(t2, mul(sum(t2, 1, true), 1 / d)) : t2;
      const dxhat = map([centred, xhat, proj, rs], `in3 * (in0 - in1 * in2 * ${f32(1 / d)})`, `${kind}_jvp`);
      terms.push(weight ? mul(dxhat, weight) : dxhat);
    }
    if (tw) terms.push(mul(xhat, tw));
    if (tb) terms.push(map([tb], "in0", "norm_jvp_bias", [rows, d]));
    if (!terms.length) return null;
    return terms.slice(1).reduce((acc, t) => add(acc, t), terms[0]).view(x.shape);
  });
}

/** torch.nn.functional.layer_norm over the last axis (biased variance). */
export function layer_norm(x: Tensor, weight?: Tensor, bias?: Tensor, eps = 1e-5): Tensor {
  return normOp("layer_norm", x, weight, bias, eps);
}

/** torch.nn.functional.rms_norm over the last axis. */
export function rms_norm(x: Tensor, weight?: Tensor, eps = 1e-5): Tensor {
  return normOp("rms_norm", x, weight, undefined, eps);
}

function rowsOf(x: Float64Array, shape: Shape, f: (row: Float64Array) => Float64Array): Float64Array {
  const d = shape[shape.length - 1];
  const out = new Float64Array(x.length);
  for (let r = 0; r < x.length / d; r++) out.set(f(x.subarray(r * d, r * d + d)), r * d);
  return out;
}

/** Float64 references. */
export const reference = {
  softmax: (x: Float64Array, shape: Shape) =>
    rowsOf(x, shape, (row) => {
      const m = Math.max(...row);
      const e = row.map((v) => Math.exp(v - m));
      const s = e.reduce((a, b) => a + b, 0);
      return e.map((v) => v / s);
    }),
  layer_norm: (x: Float64Array, shape: Shape, w?: Float64Array, b?: Float64Array, eps = 1e-5) =>
    rowsOf(x, shape, (row) => {
      const mean = row.reduce((a, v) => a + v, 0) / row.length;
      const v = row.reduce((a, t) => a + (t - mean) ** 2, 0) / row.length;
      return row.map((t, i) => ((t - mean) / Math.sqrt(v + eps)) * (w ? w[i] : 1) + (b ? b[i] : 0));
    }),
  rms_norm: (x: Float64Array, shape: Shape, w?: Float64Array, eps = 1e-5) =>
    rowsOf(x, shape, (row) => {
      const ms = row.reduce((a, t) => a + t * t, 0) / row.length;
      return row.map((t, i) => (t / Math.sqrt(ms + eps)) * (w ? w[i] : 1));
    }),
};
