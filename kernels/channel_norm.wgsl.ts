/**
 * Channel LayerNorm (method §1.4, `LN_c`): for every pixel of a (B, C, ...S) map, normalise over the C channels
 * with the mean and the UNBIASED variance (÷ (C − 1), as torch.var_mean's default), eps inside the root, no affine.
 *
 * One invocation per (batch, group of `vw` pixels) walks the channels, which sit P = prod(S) apart, so
 * neighbouring invocations read neighbouring pixels (coalesced on GPUs, vec4 on CPU adapters when P % 4 == 0).
 * Forward: a Welford pass (stable for large means) gives mean and rstd, a second pass writes y; both statistics
 * are saved. Backward (fused, one dispatch): with x̂ = (x − μ)·rstd,
 *   dx = rstd · (g − mean_c(g) − x̂ · Σ_c(g·x̂) / (C − 1)),
 * the (C − 1) coming from d var / dx = 2 (x − μ) / (C − 1).
 */
import { cachedKernel, f32, type Kernel } from "./common.ts";

export interface ChannelNormConfig {
  batch: number;
  channels: number;
  /** Pixels per channel map. */
  pixels: number;
  eps: number;
  pass: "forward" | "backward";
}

export const CHANNEL_NORM_WG = 64;

/** Pixels per invocation. */
export function channelNormVector(c: ChannelNormConfig): 1 | 4 {
  return c.pixels % 4 === 0 ? 4 : 1;
}

/** Invocations to launch (one per batch × pixel group). */
export function channelNormInvocations(c: ChannelNormConfig): number {
  return (c.batch * c.pixels) / channelNormVector(c);
}

/**
 * Bindings — forward: x, y, mean, rstd (each (B, P)); backward: x, g, mean, rstd, dx.
 */
function buildChannelNormKernel(c: ChannelNormConfig): Kernel {
  const vw = channelNormVector(c);
  const T = vw === 4 ? "vec4<f32>" : "f32";
  const groups = c.pixels / vw, n = channelNormInvocations(c);
  const fwd = c.pass === "forward";
  const names = fwd ? ["x", "y", "mean", "rstd"] : ["x", "g", "mean", "rstd", "dx"];
  const written = fwd ? new Set(["y", "mean", "rstd"]) : new Set(["dx"]);
  const decls = names.map((nm, i) =>
    `@group(0) @binding(${i}) var<storage, ${written.has(nm) ? "read_write" : "read"}> ${nm}: array<${T}>;`
  );
  const head = `let i = gid.x + gid.y * nwg.x * ${CHANNEL_NORM_WG}u;
  if (i >= ${n}u) { return; }
  let base = (i / ${groups}u) * ${c.channels * groups}u + i % ${groups}u;`;
  const body = fwd
    ? `var mu = ${T}(0.0);
  var m2 = ${T}(0.0);
  for (var ch = 0u; ch < ${c.channels}u; ch++) {
    let v = x[base + ch * ${groups}u];
    let delta = v - mu;
    mu += delta / f32(ch + 1u);
    m2 += delta * (v - mu);
  }
  let rs = inverseSqrt(m2 * ${f32(1 / (c.channels - 1))} + ${f32(c.eps)});
  for (var ch = 0u; ch < ${c.channels}u; ch++) {
    let j = base + ch * ${groups}u;
    y[j] = (x[j] - mu) * rs;
  }
  mean[i] = mu;
  rstd[i] = rs;`
    : `let mu = mean[i];
  let rs = rstd[i];
  var sg = ${T}(0.0);
  var sgx = ${T}(0.0);
  for (var ch = 0u; ch < ${c.channels}u; ch++) {
    let j = base + ch * ${groups}u;
    let gv = g[j];
    sg += gv;
    sgx += gv * (x[j] - mu) * rs;
  }
  sg *= ${f32(1 / c.channels)};
  sgx *= ${f32(1 / (c.channels - 1))};
  for (var ch = 0u; ch < ${c.channels}u; ch++) {
    let j = base + ch * ${groups}u;
    dx[j] = rs * (g[j] - sg - (x[j] - mu) * rs * sgx);
  }`;
  const code = `${decls.join("\n")}
@compute @workgroup_size(${CHANNEL_NORM_WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  ${head}
  ${body}
}`;
  return { name: `channel_norm_${c.pass}_${c.batch}x${c.channels}x${c.pixels}_v${vw}`, code };
}

// One Kernel object per arguments (kernels/common.ts cachedKernel).
export const channelNormKernel = cachedKernel(buildChannelNormKernel);
