/**
 * Attention with the scores materialised a chunk of heads at a time (engine/ops/attention_dense.ts): the row
 * kernels around the matmuls S = Q̃·K̂ᵀ, O = P·V (forward) and dV = Pᵀ·dO, dP = dO·Vᵀ, dQ' = dS·K̂, dK' = dSᵀ·Q̃
 * (backward). Same conventions as the flash kernels (attention.wgsl.ts): Q̃ carries log2(e)/√d, so S is in
 * log2 units, and the softmax shift is the fixed QK-norm bound M = log2(e)·√d (no running max); LSE in log2
 * units, Δ = rowsum(dO∘O).
 *
 * Invariants: S, dP are (G, N, N) row-major for G (batch·head) slices; `lse` and `delta` are the whole
 * (B·H, N) arrays and `row0` is the chunk's first row in them. Grids beyond 65535 workgroups spill into y.
 */
import { cachedKernel, f32, type Kernel } from "./common.ts";
import { LOG2E } from "./attention.wgsl.ts";

/** Uniform block: row length n, rows in the chunk, first row of the chunk in lse/delta. */
export const DENSE_PARAMS = `struct Params { n: u32, rows: u32, row0: u32, pad: u32 }`;

export const DENSE_WG = 64;

/** vec4 units when the row length allows, else scalars (the same code with a different element type). */
function unit(n: number) {
  const v = n % 4 === 0;
  return {
    v,
    ty: v ? "vec4<f32>" : "f32",
    per: v ? "P.n / 4u" : "P.n",
    sum: (x: string) => (v ? `dot(${x}, vec4<f32>(1.0))` : x),
  };
}

/**
 * Forward softmax in place: P = exp2(S − M) / l per row, LSE = M + log2(l). One invocation per row, which reads
 * it twice (sum, then write): no barriers and no cross-invocation reduction, which on a CPU adapter cost more
 * than the second read.
 */
function buildDenseSoftmaxKernel(d: number, n: number): Kernel {
  const M = f32(LOG2E * Math.sqrt(d));
  const u = unit(n), W = DENSE_WG;
  const code = `${DENSE_PARAMS}
@group(0) @binding(0) var<storage, read_write> s: array<${u.ty}>;
@group(0) @binding(1) var<storage, read_write> lse: array<f32>;
@group(0) @binding(2) var<uniform> P: Params;
@compute @workgroup_size(${W})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let row = gid.x + gid.y * nwg.x * ${W}u;
  if (row >= P.rows) { return; }
  let len = ${u.per};
  let base = row * len;
  var acc = ${u.ty}(0.0);
  for (var j = 0u; j < len; j++) { acc += exp2(s[base + j] - ${M}); }
  let tot = ${u.sum("acc")};
  let inv = 1.0 / tot;
  for (var j = 0u; j < len; j++) { s[base + j] = exp2(s[base + j] - ${M}) * inv; }
  lse[P.row0 + row] = ${M} + log2(tot);
}`;
  return { name: `attn_dense_softmax_d${d}_${u.v ? "v4" : "s"}_w${W}`, code };
}

/**
 * Backward scores in place: P = exp2(S − LSE) overwrites S, dS = P∘(dP − Δ) overwrites dP; with `saved`, S
 * already holds the forward's P (no LSE binding). Elementwise with per-row scalars, one invocation per element
 * (vec4 when the row length allows).
 */
function buildDenseScoresBwdKernel(n: number, saved = false): Kernel {
  const u = unit(n), W = DENSE_WG;
  const code = `${DENSE_PARAMS}
@group(0) @binding(0) var<storage, read_write> s: array<${u.ty}>;
@group(0) @binding(1) var<storage, read_write> dp: array<${u.ty}>;
${saved ? "" : "@group(0) @binding(2) var<storage, read> lse: array<f32>;"}
@group(0) @binding(${saved ? 2 : 3}) var<storage, read> delta: array<f32>;
@group(0) @binding(${saved ? 3 : 4}) var<uniform> P: Params;
@compute @workgroup_size(${W})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let e = gid.x + gid.y * nwg.x * ${W}u;
  let len = ${u.per};
  if (e >= P.rows * len) { return; }
  let row = P.row0 + e / len;
  ${saved ? "let p = s[e];" : "let p = exp2(s[e] - lse[row]);\n  s[e] = p;"}
  dp[e] = p * (dp[e] - delta[row]);
}`;
  return { name: `attn_dense_scores_bwd_${u.v ? "v4" : "s"}${saved ? "_saved" : ""}_w${W}`, code };
}

export function denseParams(n: number, rows: number, row0: number): Uint32Array {
  return new Uint32Array([n, rows, row0, 0]);
}

// One Kernel object per arguments (kernels/common.ts cachedKernel).
export const denseSoftmaxKernel = cachedKernel(buildDenseSoftmaxKernel);
export const denseScoresBwdKernel = cachedKernel(buildDenseScoresBwdKernel);
