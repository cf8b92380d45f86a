/**
 * channel_norm: the autoencoder's LayerNorm over the channel axis of (B, C, H, W[, D]) maps (method §1.4,
 * lola's `LayerNorm` applied per pixel): mean and UNBIASED variance (÷ (C − 1)), eps 1e-5, no affine — unlike
 * `layer_norm` (last axis, biased variance), as the spec asks to keep them different.
 * Forward and backward are one fused dispatch each (kernels/channel_norm.wgsl.ts); the forward saves mean and
 * rstd per pixel for the backward. Float64 reference below.
 *
 * JVP (derived per pixel, over the C channels, with r = 1/√(v + eps), v = Σ (x − μ)²/(C − 1), y = (x − μ)·r):
 * μ̇ = mean ẋ; v̇ = 2 Σ (x − μ)(ẋ − μ̇)/(C − 1) = 2 Σ (x − μ) ẋ/(C − 1) (as Σ (x − μ) = 0); ṙ = −½ r³ v̇; so
 *   ẏ = r·(ẋ − μ̇) + (x − μ)·ṙ = r·[ẋ − mean_c ẋ − y · Σ_c (y ẋ)/(C − 1)],
 * composed from a channel mean, a channel sum and one map, with the saved rstd.
 */
import {
  CHANNEL_NORM_WG,
  type ChannelNormConfig,
  channelNormInvocations,
  channelNormKernel,
} from "../../kernels/channel_norm.wgsl.ts";
import { f32 } from "../../kernels/common.ts";
import { record } from "../autograd.ts";
import { map, mul } from "./elementwise.ts";
import { mean as meanOver, sum } from "./reduce.ts";
import { dispatch, grid1d } from "../runtime.ts";
import { type Shape, shapeStr, Tensor } from "../tensor.ts";

function config(x: Tensor, eps: number, pass: ChannelNormConfig["pass"]): ChannelNormConfig {
  const [batch, channels] = x.shape;
  return { batch, channels, pixels: x.size / (batch * channels), eps, pass };
}

/** Normalise every pixel of x (B, C, ...S) over its C channels: (x − mean_c) / sqrt(var_c,unbiased + eps). */
export function channel_norm(x: Tensor, eps = 1e-5): Tensor {
  if (x.ndim < 3 || x.shape[1] < 2) {
    throw new Error(
      `channel_norm: expected (B, C, ...spatial) with C ≥ 2 (unbiased variance), got ${shapeStr(x.shape)}`,
    );
  }
  const cfg = config(x, eps, "forward");
  const stats = [cfg.batch, cfg.pixels];
  const y = Tensor.empty(x.shape), mean = Tensor.empty(stats), rstd = Tensor.empty(stats);
  const grid = grid1d(channelNormInvocations(cfg), CHANNEL_NORM_WG);
  dispatch(channelNormKernel(cfg), [x.buffer, y.buffer, mean.buffer, rstd.buffer], grid);
  record(y, "channel_norm", [x], (g) => {
    const dx = Tensor.empty(x.shape);
    dispatch(
      channelNormKernel({ ...cfg, pass: "backward" }),
      [x, g, mean, rstd, dx].map((t) => t.buffer),
      grid,
    );
    return [dx];
  }, ([t]) => {
    const [b, c] = x.shape, p = cfg.pixels;
    const t3 = t!.view([b, c, p]), y3 = y.view([b, c, p]); // (B, C, P)
    const mt = meanOver(t3, 1, true), proj = sum(mul(y3, t3), 1, true); // (B, 1, P)
    const r = rstd.view([b, 1, p]);
    const expr = `in4 * (in0 - in1 - in2 * in3 * ${f32(1 / (c - 1))})`;
    return map([t3, mt, y3, proj, r], expr, "channel_norm_jvp", [b, c, p]).view(x.shape);
  });
  if (!y.node) [mean, rstd].forEach((t) => t.dispose()); // no tape: the statistics are not needed
  return y;
}

/** Float64 reference. */
function referenceChannelNorm(x: Float64Array, shape: Shape, eps = 1e-5): Float64Array {
  const [b, c] = shape;
  const p = x.length / (b * c);
  const out = new Float64Array(x.length);
  for (let bi = 0; bi < b; bi++) {
    for (let q = 0; q < p; q++) {
      const at = (ch: number) => (bi * c + ch) * p + q;
      let mean = 0;
      for (let ch = 0; ch < c; ch++) mean += x[at(ch)] / c;
      let v = 0;
      for (let ch = 0; ch < c; ch++) v += (x[at(ch)] - mean) ** 2;
      const rs = 1 / Math.sqrt(v / (c - 1) + eps);
      for (let ch = 0; ch < c; ch++) out[at(ch)] = (x[at(ch)] - mean) * rs;
    }
  }
  return out;
}

export const reference = { channel_norm: referenceChannelNorm };
