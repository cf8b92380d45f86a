/**
 * Fused attention, backward kernels (forward and the shared tiling helpers: attention.wgsl.ts).
 *
 * FlashAttention-2 style recomputation without atomics: `dq` walks key tiles for a block of queries, `dkv`
 * walks query tiles for a block of keys; both rebuild P = exp2(Q̃·K̂ᵀ − LSE) and dP = dO·Vᵀ tile by tile and
 * form dS = P∘(dP − Δ), Δ = rowsum(dO∘O) (`delta`). They write the raw sums dQ' = dS·K̂, dK' = dSᵀ·Q̃ and
 * dV = Pᵀ·dO in (B·H, N, d); `post` applies the scales, undoes the rotation and the RMS norm, writes d(qkv)
 * (B, N, 3, H, d) and the per-token angle gradients dφ (B, N, D/2); `dtheta` reduces dφ with the coordinates.
 *
 * Gradient algebra (s = q_r·k_r/√d, q_r = R(φ) q_n, q_n = q·r_q, r_q = 1/rms(q)):
 *   ∂L/∂q_r = dQ'/√d,  ∂L/∂k_r = dK'/log2(e)   (Q̃ carries log2(e)/√d)
 *   ∂L/∂q = r_q·R(−φ)(g − q_r·⟨g, q_r⟩/d)      (R orthogonal, so ⟨R(−φ)g, q_n⟩ = ⟨g, q_r⟩)
 *   ∂L/∂φ_i = g_{2i+1}·q_r,2i − g_2i·q_r,2i+1   (summed over q and k)
 */
import { cachedKernel, f32, type Kernel } from "./common.ts";
import {
  accDecl,
  type AttnDims,
  type AttnTile,
  FLASH_BUILTINS,
  LOG2E,
  PARAMS_WGSL,
  rep,
  scoreProduct,
  smemDecl,
  tileLayout,
  tileTag,
  valueProduct,
  valueRegion,
} from "./attention.wgsl.ts";

const ZERO4 = "vec4<f32>(0.0)";

/** Workgroup-memory bytes of the larger (dK/dV) backward kernel. */
export function bwdSharedBytes(t: AttnTile, d: number): number {
  const l = tileLayout(t, d);
  return 16 * Math.max(2 * (t.bq + t.bk) * l.qs, valueRegion(t, l, 2));
}

/**
 * Δ[bh, n] = Σ_i dO[b, n, h, i]·O[b, n, h, i]; one invocation per row. With `heads`, also dO as (B·H, N, d)
 * (the dense path's matmul operand, instead of a separate gather).
 */
function buildAttnDeltaKernel(dims: AttnDims, wg = 64, heads = false): Kernel {
  const { heads: H, headDim: d } = dims;
  const d4 = d / 4;
  const code = `${PARAMS_WGSL}
@group(0) @binding(0) var<storage, read> go: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> o: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> delta: array<f32>;
@group(0) @binding(3) var<uniform> P: Params;${
    heads ? "\n@group(0) @binding(4) var<storage, read_write> gh: array<vec4<f32>>;" : ""
  }
@compute @workgroup_size(${wg})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let r = gid.x + gid.y * nwg.x * ${wg}u;
  if (r >= P.rows) { return; }
  let n = r % P.n;
  let bh = r / P.n;
  let base = ((bh / ${H}u * P.n + n) * ${H}u + bh % ${H}u) * ${d4}u;
  var acc = 0.0;
  ${
    heads
      ? `for (var i = 0u; i < P.d4; i++) {
    let g = go[base + i];
    acc += dot(g, o[base + i]);
    gh[r * P.d4 + i] = g;
  }`
      : "for (var i = 0u; i < P.d4; i++) { acc += dot(go[base + i], o[base + i]); }"
  }
  delta[r] = acc;
}`;
  return { name: `attn_delta_h${H}_d${d}_w${wg}${heads ? "_g" : ""}`, code };
}

/** Bindings shared by the two flash backward kernels (the outputs follow). */
const BWD_INPUTS = `@group(0) @binding(0) var<storage, read> qt: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> kt: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> go: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> lse: array<f32>;
@group(0) @binding(5) var<storage, read> delta: array<f32>;`;

/** WGSL loaders of one row chunk, zero outside [0, n): Q̃/K̂ (B·H, N, d), V inside qkv, dO (B, N, H, d). */
function loaders(H: number, d4: number) {
  const guard = (row: string, e: string) => `select(${ZERO4}, ${e}, ${row} < n)`;
  const cl = (row: string) => `min(${row}, n - 1u)`;
  return {
    qt: (row: string, c4: string) => guard(row, `qt[qkb + ${cl(row)} * ${d4}u + ${c4}]`),
    kt: (row: string, c4: string) => guard(row, `kt[qkb + ${cl(row)} * ${d4}u + ${c4}]`),
    v: (row: string, c4: string) =>
      guard(row, `qkv[((b * n + ${cl(row)}) * 3u + 2u) * ${H * d4}u + h * ${d4}u + ${c4}]`),
    go: (row: string, c4: string) => guard(row, `go[((b * n + ${cl(row)}) * ${H}u + h) * ${d4}u + ${c4}]`),
  };
}

/** Store the invocation's rm × rd4 accumulators `${p}i_jj` as rows `row0 + ty·rm + i` of a (B·H, N, d) tensor. */
function storeRows(
  RM: number,
  p: string,
  dst: string,
  row0: string,
  rd4: number,
  tx: number,
  d4: number,
): string {
  return rep(RM, (i) =>
    `if (${row0} + ty * ${RM}u + ${i}u < n) {
    let ob = (qkb / ${d4}u + ${row0} + ty * ${RM}u + ${i}u) * ${d4}u;
    ${rep(rd4, (jj) => `${dst}[ob + tx + ${jj * tx}u] = ${p}${i}_${jj};`, " ")}
  }`, "\n  ");
}

const header = (tx: number, ty: number, H: number, d4: number) =>
  `@compute @workgroup_size(${tx}, ${ty})
fn main(${FLASH_BUILTINS}) {
  let n = P.n;
  let tx = lid.x; let ty = lid.y;
  let bh = wid.y; let b = bh / ${H}u; let h = bh % ${H}u;
  let qkb = bh * n * ${d4}u;`;

/**
 * dQ' = Σ_keys dS·K̂ for a block of bq queries (rows), walking key tiles (columns). Per tile: S and dP (two score
 * products staged together), dS = P∘(dP − Δ) to workgroup memory, then the value product with K̂ rows.
 */
function buildAttnDqKernel(dims: AttnDims, t: AttnTile): Kernel {
  const { heads: H, headDim: d } = dims;
  const l = tileLayout(t, d);
  const { tx, ty, d4, rd4, qs } = l;
  const RM = t.rm;
  const L = loaders(H, d4);
  const offA = 0, pairSize = (t.bq + t.bk) * qs;
  const total = Math.max(2 * pairSize, valueRegion(t, l, 1));
  const q = (r: string) => `q0 + ${r}`, k = (r: string) => `k0 + ${r}`;
  const pairs = [
    {
      acc: "s",
      aOff: offA,
      bOff: offA + t.bq * qs,
      loadA: (r: string, c: string) => L.qt(q(r), c),
      loadB: (r: string, c: string) => L.kt(k(r), c),
    },
    {
      acc: "dp",
      aOff: offA + pairSize,
      bOff: offA + pairSize + t.bq * qs,
      loadA: (r: string, c: string) => L.go(q(r), c),
      loadB: (r: string, c: string) => L.v(k(r), c),
    },
  ];
  const ds = rep(
    RM,
    (i) =>
      rep(
        t.rn,
        (j) =>
          `let ds${i}_${j} = select(0.0, exp2(s${i}_${j} - lse${i}), k0 + tx + ${
            j * tx
          }u < n) * (dp${i}_${j} - del${i});`,
        "\n    ",
      ),
    "\n    ",
  );
  const rowStats = rep(
    RM,
    (i) =>
      `let row${i} = min(q0 + ty * ${RM}u + ${i}u, n - 1u); let lse${i} = lse[bh * n + row${i}]; let del${i} = delta[bh * n + row${i}];`,
    "\n  ",
  );
  const code = `${PARAMS_WGSL}
${BWD_INPUTS}
@group(0) @binding(6) var<storage, read_write> dq: array<vec4<f32>>;
@group(0) @binding(7) var<uniform> P: Params;
${smemDecl(total)}
${header(tx, ty, H, d4)}
  let q0 = wid.x * ${t.bq}u;
  ${rowStats}
  ${accDecl(RM, "g", rd4, ZERO4)}
  for (var kt_i = 0u; kt_i < P.ntiles; kt_i++) {
    let k0 = kt_i * ${t.bk}u;
    ${accDecl(RM, "s", t.rn, "0.0")}
    ${accDecl(RM, "dp", t.rn, "0.0")}
    ${scoreProduct(t, l, pairs)}
    ${ds}
    ${valueProduct(t, l, 0, ["g"], ["ds"], [(c, c4) => L.kt(`k0 + ${c}`, c4)])}
  }
  ${storeRows(RM, "g", "dq", "q0", rd4, tx, d4)}
}`;
  return { name: `attn_dq_h${H}_d${d}_${tileTag(t)}`, code };
}

/**
 * dK' = Σ_queries dSᵀ·Q̃ and dV = Σ_queries Pᵀ·dO for a block of bq keys (rows), walking query tiles (columns).
 * Per tile: Sᵀ = K̂·Q̃ᵀ and dPᵀ = V·dOᵀ, Pᵀ and dSᵀ to workgroup memory, then both value products.
 */
function buildAttnDkvKernel(dims: AttnDims, t: AttnTile): Kernel {
  const { heads: H, headDim: d } = dims;
  const l = tileLayout(t, d);
  const { tx, ty, d4, rd4, qs } = l;
  const RM = t.rm;
  const L = loaders(H, d4);
  const pairSize = (t.bq + t.bk) * qs;
  const total = Math.max(2 * pairSize, valueRegion(t, l, 2));
  const key = (r: string) => `k0 + ${r}`, qry = (r: string) => `q0 + ${r}`;
  const pairs = [
    {
      acc: "s",
      aOff: 0,
      bOff: t.bq * qs,
      loadA: (r: string, c: string) => L.kt(key(r), c),
      loadB: (r: string, c: string) => L.qt(qry(r), c),
    },
    {
      acc: "dp",
      aOff: pairSize,
      bOff: pairSize + t.bq * qs,
      loadA: (r: string, c: string) => L.v(key(r), c),
      loadB: (r: string, c: string) => L.go(qry(r), c),
    },
  ];
  const colStats = rep(
    t.rn,
    (j) =>
      `let col${j} = min(q0 + tx + ${
        j * tx
      }u, n - 1u); let lse${j} = lse[bh * n + col${j}]; let del${j} = delta[bh * n + col${j}];
    let ok${j} = q0 + tx + ${j * tx}u < n;`,
    "\n    ",
  );
  const pds = rep(
    RM,
    (i) =>
      rep(
        t.rn,
        (j) =>
          `let p${i}_${j} = select(0.0, exp2(s${i}_${j} - lse${j}), ok${j}); let ds${i}_${j} = p${i}_${j} * (dp${i}_${j} - del${j});`,
        "\n    ",
      ),
    "\n    ",
  );
  const code = `${PARAMS_WGSL}
${BWD_INPUTS}
@group(0) @binding(6) var<storage, read_write> dk: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> dv: array<vec4<f32>>;
@group(0) @binding(8) var<uniform> P: Params;
${smemDecl(total)}
${header(tx, ty, H, d4)}
  let k0 = wid.x * ${t.bq}u;
  ${accDecl(RM, "gk", rd4, ZERO4)}
  ${accDecl(RM, "gv", rd4, ZERO4)}
  for (var qt_i = 0u; qt_i < P.ntiles; qt_i++) {
    let q0 = qt_i * ${t.bk}u;
    ${accDecl(RM, "s", t.rn, "0.0")}
    ${accDecl(RM, "dp", t.rn, "0.0")}
    ${scoreProduct(t, l, pairs)}
    ${colStats}
    ${pds}
    ${
    valueProduct(t, l, 0, ["gv", "gk"], ["p", "ds"], [
      (c, c4) => L.go(`q0 + ${c}`, c4),
      (c, c4) => L.qt(`q0 + ${c}`, c4),
    ])
  }
  }
  ${storeRows(RM, "gk", "dk", "k0", rd4, tx, d4)}
  ${storeRows(RM, "gv", "dv", "k0", rd4, tx, d4)}
}`;
  return { name: `attn_dkv_h${H}_d${d}_${tileTag(t)}`, code };
}

/**
 * post: one invocation per (b, n, h) row. From Q̃, K̂, the reciprocal RMS values and the raw sums dQ', dK', dV:
 * d(qkv) (B, N, 3, H, d) and dφ (B, N, H·d/2) (q and k contributions summed).
 */
function buildAttnPostKernel(dims: AttnDims, wg = 64): Kernel {
  const { heads: H, headDim: d, axes: A } = dims;
  const d4 = d / 4, half = (H * d) / 2;
  const qScale = LOG2E / Math.sqrt(d);
  const angle = (slot: string) =>
    rep(A, (a) => `coords[n * ${A}u + ${a}u] * theta[${a * half}u + ${slot}]`, " + ");
  const code = `${PARAMS_WGSL}
@group(0) @binding(0) var<storage, read> qt: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> kt: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> rs: array<f32>;
@group(0) @binding(3) var<storage, read> coords: array<f32>;
@group(0) @binding(4) var<storage, read> theta: array<f32>;
@group(0) @binding(5) var<storage, read> gq: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> gk: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> gv: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> dqkv: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read_write> dphi: array<f32>;
@group(0) @binding(10) var<uniform> P: Params;
// R(−φ) on two adjacent pairs.
fn unrot(x: vec4<f32>, c: vec2<f32>, s: vec2<f32>) -> vec4<f32> {
  return vec4<f32>(x.x * c.x + x.y * s.x, -x.x * s.x + x.y * c.x, x.z * c.y + x.w * s.y, -x.z * s.y + x.w * c.y);
}
// ∂L/∂φ for the two pairs of a vec4: g_b·x_a − g_a·x_b.
fn dang(g: vec4<f32>, x: vec4<f32>) -> vec2<f32> {
  return vec2<f32>(g.y * x.x - g.x * x.y, g.w * x.z - g.z * x.w);
}
@compute @workgroup_size(${wg})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let row = gid.x + gid.y * nwg.x * ${wg}u;
  if (row >= P.rows) { return; }
  let n_tok = P.n;
  let h = row % ${H}u;
  let bn = row / ${H}u;
  let n = bn % n_tok;
  let b = bn / n_tok;
  let rb = ((b * ${H}u + h) * n_tok + n) * ${d4}u;
  var dq_dot = 0.0;
  var dk_dot = 0.0;
  for (var i = 0u; i < P.d4; i++) {
    dq_dot += dot(gq[rb + i], qt[rb + i]);
    dk_dot += dot(gk[rb + i], kt[rb + i]);
  }
  // ⟨g_q, q_r⟩ with g_q = dQ'/√d and q_r = Q̃/qScale; ⟨g_k, k_r⟩ with g_k = dK'/log2(e).
  dq_dot = dq_dot * ${f32(1 / (Math.sqrt(d) * qScale) / d)};
  dk_dot = dk_dot * ${f32(1 / LOG2E / d)};
  let r2 = ((b * ${H}u + h) * n_tok + n) * 2u;
  let rq = rs[r2];
  let rk = rs[r2 + 1u];
  let ob = (bn * 3u * ${H}u + h) * ${d4}u;
  let pb = bn * ${half}u + h * ${d / 2}u;
  for (var i = 0u; i < P.d4; i++) {
    let j = h * ${d / 2}u + 2u * i;
    let phi = vec2<f32>(${angle("j")}, ${angle("j + 1u")});
    let c = cos(phi);
    let s = sin(phi);
    let qr = qt[rb + i] * ${f32(1 / qScale)};
    let kr = kt[rb + i];
    let g_q = gq[rb + i] * ${f32(1 / Math.sqrt(d))};
    let g_k = gk[rb + i] * ${f32(1 / LOG2E)};
    dqkv[ob + i] = unrot(g_q - qr * dq_dot, c, s) * rq;
    dqkv[ob + ${H * d4}u + i] = unrot(g_k - kr * dk_dot, c, s) * rk;
    dqkv[ob + ${2 * H * d4}u + i] = gv[rb + i];
    let da = dang(g_q, qr) + dang(g_k, kr);
    dphi[pb + 2u * i] = da.x;
    dphi[pb + 2u * i + 1u] = da.y;
  }
}`;
  return { name: `attn_post_h${H}_d${d}_a${A}_w${wg}`, code };
}

/** dΘ[a, j] = Σ_{b, n} coords[n, a]·dφ[b, n, j]; one invocation per slot j (P.rows = batch). */
function buildAttnDthetaKernel(dims: AttnDims, wg = 64): Kernel {
  const { heads: H, headDim: d, axes: A } = dims;
  const half = (H * d) / 2;
  const code = `${PARAMS_WGSL}
@group(0) @binding(0) var<storage, read> dphi: array<f32>;
@group(0) @binding(1) var<storage, read> coords: array<f32>;
@group(0) @binding(2) var<storage, read_write> dtheta: array<f32>;
@group(0) @binding(3) var<uniform> P: Params;
@compute @workgroup_size(${wg})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let j = gid.x + gid.y * nwg.x * ${wg}u;
  if (j >= ${half}u) { return; }
  ${rep(A, (a) => `var acc${a} = 0.0;`, " ")}
  for (var n = 0u; n < P.n; n++) {
    var g = 0.0;
    for (var b = 0u; b < P.rows; b++) { g += dphi[(b * P.n + n) * ${half}u + j]; }
    ${rep(A, (a) => `acc${a} = fma(coords[n * ${A}u + ${a}u], g, acc${a});`, " ")}
  }
  ${rep(A, (a) => `dtheta[${a * half}u + j] = acc${a};`, " ")}
}`;
  return { name: `attn_dtheta_h${H}_d${d}_a${A}_w${wg}`, code };
}

// One Kernel object per arguments (kernels/common.ts cachedKernel).
export const attnDeltaKernel = cachedKernel(buildAttnDeltaKernel);
export const attnDqKernel = cachedKernel(buildAttnDqKernel);
export const attnDkvKernel = cachedKernel(buildAttnDkvKernel);
export const attnPostKernel = cachedKernel(buildAttnPostKernel);
export const attnDthetaKernel = cachedKernel(buildAttnDthetaKernel);
