/**
 * Fused multi-head self-attention of the emulator transformer (method §2.3–2.4), forward and backward on the
 * GPU plus a float64 reference:
 *
 *   y = merge_h softmax(q̂_h k̂_hᵀ / √d) v_h,   q̂ = rope(rms_norm(q)), k̂ = rope(rms_norm(k))
 *
 * with q, k, v split from the packed `qkv_proj` output (B, N, 3·D) as (3, H, d), RMS norm over d (eps 1e-5, no
 * gain), and RoPE rotating adjacent pairs (2i, 2i+1) of head h by φ = p·Θ[:, h·d/2 + i] (p: integer token
 * coordinates (N, A), Θ: learned directions (A, D/2)). No mask, no dropout; heads merged as (B, N, H·d).
 *
 * Forward: prep (norm + rotate) then one flash kernel (no N×N matrix, LSE saved). Backward recomputes Q̃, K̂,
 * then Δ = rowsum(dO∘O), a dQ kernel and a dK/dV kernel (flash-style recomputation of P), a post kernel that
 * undoes the rotation and the RMS norm (giving d(qkv) and the per-token angle gradients dφ), and
 * dΘ[a, j] = Σ_{b,n} p[n, a]·dφ[b, n, j]. One tape node; the saved LSE lives in the backward closure.
 * The "dense" implementation (attention_dense.ts) swaps only the flash kernels for matmuls over materialised
 * scores, a chunk of heads at a time; adapters where that is faster (CPU ones) use it by default.
 * The softmax shift is the exact QK-norm bound √d instead of a running maximum (kernels/attention.wgsl.ts).
 */
import {
  type AttnDims,
  attnFwdKernel,
  attnPrepKernel,
  type AttnTile,
  fwdSharedBytes,
  paramsWords,
  tileLayout,
} from "../../kernels/attention.wgsl.ts";
import {
  attnDeltaKernel,
  attnDkvKernel,
  attnDqKernel,
  attnDthetaKernel,
  attnPostKernel,
  bwdSharedBytes,
} from "../../kernels/attention_bwd.wgsl.ts";
import { record } from "../autograd.ts";
import { gpu } from "../device.ts";
import { dispatch, grid1d, releaseBuffer, uniformBuffer } from "../runtime.ts";
import { shapeStr, Tensor } from "../tensor.ts";
import { denseBackward, denseFits, denseForward } from "./attention_dense.ts";
import { reference as matmulRef } from "./matmul.ts";
import { gather } from "./shape.ts";
import { reference as normRef } from "./norm.ts";

export interface AttentionOptions {
  heads: number;
  /** RMS-norm epsilon of the QK norm (method §2.3: 1e-5). */
  eps?: number;
  /** Override the adapter's flash tiles (tests, sweeps); given without `impl`, they select flash. */
  tiles?: { fwd?: AttnTile; bwd?: AttnTile };
  /**
   * "flash": the fused kernels, no N×N buffer; "dense": the scores through the matmul a chunk of heads at a time
   * (engine/ops/attention_dense.ts). Default: the adapter's faster one (attentionImpl()).
   */
  impl?: AttentionImpl;
}

export type AttentionImpl = "flash" | "dense";

/**
 * Per-adapter tiles (from bench/kernels/attention.ts sweeps), matched against the adapter description; `adapt`
 * then fits any head dim and the workgroup-memory limit. The default is a GPU shape: 128 invocations of 4 rows ×
 * 4 columns, 64 query rows × 32-key tiles staged in workgroup memory.
 */
const LAVAPIPE_FWD = (d: number): AttnTile => ({
  bq: d >= 64 ? 128 : 64,
  rm: 16,
  bk: 64,
  rn: 8,
  dc: 16,
  vc: 16,
});
const LAVAPIPE_BWD = (d: number): AttnTile =>
  d >= 64
    ? { bq: 128, rm: 16, bk: 64, rn: 8, dc: 16, vc: 16 }
    : { bq: 64, rm: 8, bk: 64, rn: 8, dc: 16, vc: 16 };

const TILES: {
  match: RegExp;
  fwd: (d: number) => AttnTile;
  bwd: (d: number) => AttnTile;
  impl: AttentionImpl;
  note: string;
}[] = [
  {
    // Bigger per-invocation tiles pay on lavapipe (every load is a per-lane loop), but JIT time grows with
    // them: rn 16 gave +15 % forward for +8 s of first-use compile, +4 % backward for +28 s.
    match: /llvmpipe|lavapipe/i,
    fwd: LAVAPIPE_FWD,
    bwd: LAVAPIPE_BWD,
    // Loads are per-lane loops here, so no flash tile beats the matmul's 32×32 register tile: dense measured
    // 2.2× faster forward + backward at 1,280 tokens × 8 heads × 128 and 1.4× at the default preset.
    impl: "dense",
    note: "sweep at 1,280 tokens × 8 heads × 128: 15 (fwd) / 10 (bwd) GFLOP/s per CPU-second of both cores",
  },
];

const GPU_TILE: AttnTile = { bq: 64, rm: 4, bk: 32, rn: 4, dc: 16, vc: 16 };

/**
 * The implementation `attention` uses on this adapter when the caller does not choose one: LOLA_ATTENTION
 * (`flash` or `dense`) if set, else the table's, else dense on any CPU adapter (the same per-lane cost model as
 * lavapipe's) and flash on GPUs; flash wherever one head's N×N scores (given `tokens`) would not fit a dense
 * chunk, unless LOLA_ATTENTION asks for dense (which then errors, saying so).
 */
export function attentionImpl(tokens?: number): AttentionImpl {
  const env = Deno.env.get("LOLA_ATTENTION");
  if (env) {
    if (env !== "flash" && env !== "dense") {
      throw new Error(`LOLA_ATTENTION must be flash or dense, got '${env}'`);
    }
    return env;
  }
  const g = gpu();
  const impl = TILES.find((t) => t.match.test(g.adapterName))?.impl ?? (g.isCpu ? "dense" : "flash");
  return impl === "dense" && tokens !== undefined && !denseFits(tokens) ? "flash" : impl;
}

export function attentionTile(d: number, kind: "fwd" | "bwd" = "fwd"): AttnTile {
  const g = gpu();
  const rule = TILES.find((t) => t.match.test(g.adapterName));
  const base = rule ? rule[kind](d) : GPU_TILE;
  return adapt(base, d, kind, g.limits.maxComputeWorkgroupStorageSize);
}

/**
 * Fit a tile to the head dim (d/4 must split evenly over the bk/rn column invocations, dc must divide d) and
 * shrink it until its workgroup memory fits the adapter's limit (16 KiB on minimal WebGPU adapters).
 */
export function adapt(t: AttnTile, d: number, kind: "fwd" | "bwd", limit: number): AttnTile {
  let cur = { ...t, dc: Math.min(t.dc, d) };
  while ((d / 4) % (cur.bk / cur.rn) && cur.rn < cur.bk) cur.rn *= 2;
  while (d % cur.dc) cur.dc /= 2;
  const tx = cur.bk / cur.rn;
  cur.vc = Math.max(cur.vc, tx);
  const bytes = (x: AttnTile) => (kind === "fwd" ? fwdSharedBytes(x, d) : bwdSharedBytes(x, d));
  while (bytes(cur) > limit) {
    if (cur.vc / 2 >= tx && (cur.vc / 2) % tx === 0) cur = { ...cur, vc: cur.vc / 2 };
    else if (cur.bq > 2 * cur.rm) cur = { ...cur, bq: cur.bq / 2 };
    else if (cur.dc > 4) cur = { ...cur, dc: cur.dc / 2 };
    else throw new Error(`attention: no ${kind} tile fits ${limit} B of workgroup memory at head dim ${d}`);
  }
  tileLayout(cur, d);
  return cur;
}

/** The override (validated against the adapter's workgroup-memory limit) or the adapter's tile. */
function checkedTile(t: AttnTile | undefined, d: number, kind: "fwd" | "bwd"): AttnTile {
  if (!t) return attentionTile(d, kind);
  const limit = gpu().limits.maxComputeWorkgroupStorageSize;
  const bytes = kind === "fwd" ? fwdSharedBytes(t, d) : bwdSharedBytes(t, d);
  if (bytes > limit) {
    throw new Error(`attention ${kind} tile ${JSON.stringify(t)}: ${bytes} B of workgroup memory > ${limit}`);
  }
  tileLayout(t, d);
  return t;
}

interface Geometry {
  batch: number;
  tokens: number;
  dims: AttnDims;
  width: number;
}

function geometry(qkv: Tensor, theta: Tensor, coords: Tensor, heads: number): Geometry {
  if (qkv.ndim !== 3 || qkv.shape[2] % (3 * heads)) {
    throw new Error(`attention: qkv must be (B, N, 3·H·d), got ${shapeStr(qkv.shape)} for ${heads} heads`);
  }
  const [batch, tokens] = qkv.shape;
  const width = qkv.shape[2] / 3, headDim = width / heads;
  if (headDim % 8 || headDim > 256) {
    throw new Error(`attention: head dim ${headDim} must be a multiple of 8, ≤ 256`);
  }
  const axes = coords.shape[1];
  if (coords.ndim !== 2 || coords.shape[0] !== tokens) {
    throw new Error(`attention: coords must be (N=${tokens}, axes), got ${shapeStr(coords.shape)}`);
  }
  if (theta.ndim !== 2 || theta.shape[0] !== axes || theta.shape[1] !== width / 2) {
    throw new Error(`attention: theta must be (${axes}, ${width / 2}), got ${shapeStr(theta.shape)}`);
  }
  // Every tensor is bound whole: the largest (qkv and its gradient) must fit one storage binding.
  const limit = gpu().limits.maxStorageBufferBindingSize;
  if (qkv.byteSize > limit) {
    throw new Error(
      `attention: qkv ${
        shapeStr(qkv.shape)
      } is ${qkv.byteSize} B, over this adapter's ${limit} B storage binding: ` +
        `split the batch`,
    );
  }
  return { batch, tokens, dims: { heads, headDim, axes }, width };
}

/** Q̃, K̂ (B·H, N, d) and the reciprocal RMS of q and k (B·H, N, 2). */
function prep(qkv: Tensor, theta: Tensor, coords: Tensor, g: Geometry, eps: number) {
  const { batch: B, tokens: N, dims } = g;
  const H = dims.heads, d = dims.headDim;
  const qt = Tensor.empty([B * H, N, d]), kt = Tensor.empty([B * H, N, d]), rs = Tensor.empty([B * H, N, 2]);
  const rows = B * N * H, wg = 64;
  const params = uniformBuffer(paramsWords(N, 1, rows, d));
  dispatch(
    attnPrepKernel(dims, eps, wg),
    [qkv.buffer, coords.buffer, theta.buffer, qt.buffer, kt.buffer, rs.buffer, params],
    grid1d(rows, wg),
  );
  releaseBuffer(params);
  return { qt, kt, rs };
}

/** V of every head as (B·H, N, d) from the packed qkv (B, N, 3, H, d). */
function valueHeads(qkv: Tensor, g: Geometry): Tensor {
  const { batch: B, tokens: N, dims: { heads: H, headDim: d } } = g;
  return regather(qkv, [B, N, 3, H, d], [0, 3, 1, 2, 4], [0, 0, 0, 2, 0], [B, H, N, 1, d], [B * H, N, d]);
}

/** (B, N, H·d) → (B·H, N, d). */
function splitHeads(y: Tensor, g: Geometry): Tensor {
  const { batch: B, tokens: N, dims: { heads: H, headDim: d } } = g;
  return regather(y, [B, N, H, d], [0, 2, 1, 3], [0, 0, 0, 0], [B, H, N, d], [B * H, N, d]);
}

/** (B·H, N, d) → (B, N, H·d). */
function mergeHeads(o: Tensor, g: Geometry): Tensor {
  const { batch: B, tokens: N, dims: { heads: H, headDim: d } } = g;
  return regather(o, [B, H, N, d], [0, 2, 1, 3], [0, 0, 0, 0], [B, N, H, d], [B, N, H * d]);
}

/** x seen as `inShape`, gathered (kernels/gather.wgsl.ts: perm, offset) to `outShape`, returned as `as`. */
function regather(
  x: Tensor,
  inShape: number[],
  perm: number[],
  offset: number[],
  outShape: number[],
  as: number[],
): Tensor {
  const xv = x.view(inShape);
  const p = gather(xv, { outShape, perm, offset, mode: "constant", fill: 0 });
  xv.dispose();
  const out = p.view(as);
  p.dispose();
  return out;
}

/**
 * Fused attention. qkv (B, N, 3·D) packed (3, H, d) on the last axis; theta (A, D/2); coords (N, A) integer
 * token coordinates (row-major t, y, x[, z]). Returns (B, N, D). Differentiable in qkv and theta.
 */
export function attention(qkv: Tensor, theta: Tensor, coords: Tensor, opts: AttentionOptions): Tensor {
  const g = geometry(qkv, theta, coords, opts.heads);
  const eps = opts.eps ?? 1e-5;
  const { batch: B, tokens: N, dims } = g;
  const H = dims.heads, d = dims.headDim;
  const impl = opts.impl ?? (opts.tiles ? "flash" : attentionImpl(N));
  const { qt, kt, rs } = prep(qkv, theta, coords, g, eps);
  rs.dispose();
  const lse = Tensor.empty([B * H, N]);
  let out: Tensor;
  if (impl === "dense") {
    const v = valueHeads(qkv, g);
    const o = denseForward(qt, kt, v, lse);
    out = mergeHeads(o, g);
    v.dispose();
    o.dispose();
  } else {
    const tile = checkedTile(opts.tiles?.fwd, d, "fwd");
    out = Tensor.empty([B, N, g.width]);
    const params = uniformBuffer(paramsWords(N, tile.bk, 0, d));
    dispatch(
      attnFwdKernel(dims, tile),
      [qt.buffer, kt.buffer, qkv.buffer, out.buffer, lse.buffer, params],
      [Math.ceil(N / tile.bq), B * H],
    );
    releaseBuffer(params);
  }
  qt.dispose();
  kt.dispose();
  return record(out, "attention", [qkv, theta], (gOut) => {
    const grads = attentionBackward(qkv, theta, coords, out, lse, gOut, g, eps, impl, opts.tiles?.bwd);
    return [qkv.requiresGrad ? grads.dqkv : (grads.dqkv.dispose(), null), grads.dtheta];
  });
}

function attentionBackward(
  qkv: Tensor,
  theta: Tensor,
  coords: Tensor,
  out: Tensor,
  lse: Tensor,
  gOut: Tensor,
  g: Geometry,
  eps: number,
  impl: AttentionImpl,
  tileOverride?: AttnTile,
): { dqkv: Tensor; dtheta: Tensor | null } {
  const { batch: B, tokens: N, dims, width: D } = g;
  const H = dims.heads, d = dims.headDim, A = dims.axes;
  const { qt, kt, rs } = prep(qkv, theta, coords, g, eps);
  const rows = B * H * N;
  // Δ_i = Σ dO∘O per (b, h, n).
  const delta = Tensor.empty([B * H, N]);
  const p1 = uniformBuffer(paramsWords(N, 1, rows, d));
  dispatch(attnDeltaKernel(dims), [gOut.buffer, out.buffer, delta.buffer, p1], grid1d(rows, 64));
  let dq: Tensor, dk: Tensor, dv: Tensor;
  if (impl === "dense") {
    const v = valueHeads(qkv, g), go = splitHeads(gOut, g);
    ({ dq, dk, dv } = denseBackward(qt, kt, v, go, lse, delta));
    v.dispose();
    go.dispose();
  } else {
    const tile = checkedTile(tileOverride, d, "bwd");
    dq = Tensor.empty([B * H, N, d]);
    dk = Tensor.empty([B * H, N, d]);
    dv = Tensor.empty([B * H, N, d]);
    const p2 = uniformBuffer(paramsWords(N, tile.bk, 0, d));
    const grid: [number, number] = [Math.ceil(N / tile.bq), B * H];
    dispatch(
      attnDqKernel(dims, tile),
      [qt.buffer, kt.buffer, qkv.buffer, gOut.buffer, lse.buffer, delta.buffer, dq.buffer, p2],
      grid,
    );
    dispatch(
      attnDkvKernel(dims, tile),
      [qt.buffer, kt.buffer, qkv.buffer, gOut.buffer, lse.buffer, delta.buffer, dk.buffer, dv.buffer, p2],
      grid,
    );
    releaseBuffer(p2);
  }
  const dqkv = Tensor.empty([B, N, 3 * D]);
  const dphi = Tensor.empty([B, N, D / 2]);
  const p3 = uniformBuffer(paramsWords(N, 1, B * N * H, d));
  dispatch(
    attnPostKernel(dims),
    [
      qt.buffer,
      kt.buffer,
      rs.buffer,
      coords.buffer,
      theta.buffer,
      dq.buffer,
      dk.buffer,
      dv.buffer,
      dqkv.buffer,
      dphi.buffer,
      p3,
    ],
    grid1d(B * N * H, 64),
  );
  let dtheta: Tensor | null = null;
  if (theta.requiresGrad) {
    dtheta = Tensor.empty([A, D / 2]);
    const p4 = uniformBuffer(paramsWords(N, 1, B, d));
    dispatch(attnDthetaKernel(dims), [dphi.buffer, coords.buffer, dtheta.buffer, p4], grid1d(D / 2, 64));
    releaseBuffer(p4);
  }
  for (const p of [p1, p3]) releaseBuffer(p);
  for (const t of [qt, kt, rs, delta, dq, dk, dv, dphi]) t.dispose();
  return { dqkv, dtheta };
}

/** FLOPs of one attention forward (Q·Kᵀ and P·V, an FMA = 2) and of its backward (the usual 2.5×). */
export function attentionFlops(batch: number, tokens: number, heads: number, headDim: number) {
  const fwd = 4 * batch * heads * tokens * tokens * headDim;
  return { fwd, bwd: 2.5 * fwd };
}

// ---------------------------------------------------------------------------------------------------------
// Float64 reference (tests): the same computation composed from the reference matmul, softmax and rms_norm
// plus the rotation, and its analytic backward composed the same way.

export interface AttnRefShape {
  batch: number;
  tokens: number;
  heads: number;
  headDim: number;
  axes: number;
}

/** Rotate adjacent pairs of each d-row of x (rows, d) by `phi(row, i)`; `sign` −1 applies R(−φ). */
function rotate(x: Float64Array, phi: (row: number, i: number) => number, d: number, sign = 1): Float64Array {
  const out = new Float64Array(x.length);
  for (let r = 0; r < x.length / d; r++) {
    for (let i = 0; i < d / 2; i++) {
      const a = x[r * d + 2 * i], b = x[r * d + 2 * i + 1];
      const f = phi(r, i), c = Math.cos(f), sn = sign * Math.sin(f);
      out[r * d + 2 * i] = a * c - b * sn;
      out[r * d + 2 * i + 1] = a * sn + b * c;
    }
  }
  return out;
}

/** φ (N, D/2) = coords (N, A) · Θ (A, D/2). */
function angles(theta: Float64Array, coords: Float64Array, s: AttnRefShape): Float64Array {
  const half = (s.heads * s.headDim) / 2;
  return matmulRef.matmul(coords, [s.tokens, s.axes], theta, [s.axes, half]);
}

/** Per (b, h): the (N, d) block `part` (0 q, 1 k, 2 v) of qkv (B, N, 3, H, d). */
function headBlock(qkv: Float64Array, s: AttnRefShape, b: number, h: number, part: number): Float64Array {
  const { tokens: N, heads: H, headDim: d } = s;
  const out = new Float64Array(N * d);
  for (let n = 0; n < N; n++) {
    const src = (((b * N + n) * 3 + part) * H + h) * d;
    out.set(qkv.subarray(src, src + d), n * d);
  }
  return out;
}

interface HeadForward {
  qn: Float64Array;
  kn: Float64Array;
  qr: Float64Array;
  kr: Float64Array;
  v: Float64Array;
  p: Float64Array;
  o: Float64Array;
  phiOf: (row: number, i: number) => number;
}

function headForward(
  qkv: Float64Array,
  phi: Float64Array,
  s: AttnRefShape,
  b: number,
  h: number,
  eps: number,
) {
  const { tokens: N, headDim: d, heads: H } = s;
  const half = (H * d) / 2;
  const phiOf = (row: number, i: number) => phi[row * half + h * (d / 2) + i];
  const qn = normRef.rms_norm(headBlock(qkv, s, b, h, 0), [N, d], undefined, eps);
  const kn = normRef.rms_norm(headBlock(qkv, s, b, h, 1), [N, d], undefined, eps);
  const v = headBlock(qkv, s, b, h, 2);
  const qr = rotate(qn, phiOf, d), kr = rotate(kn, phiOf, d);
  const scores = matmulRef.matmul(qr, [N, d], kr, [N, d], false, true).map((x) => x / Math.sqrt(d));
  const p = normRef.softmax(scores, [N, N]);
  const o = matmulRef.matmul(p, [N, N], v, [N, d]);
  return { qn, kn, qr, kr, v, p, o, phiOf } satisfies HeadForward;
}

/** RMS-norm backward over rows of d: dx = r·(g − x̂·mean(g∘x̂)), r = 1/√(mean(x²) + eps). */
function rmsBackward(
  x: Float64Array,
  xn: Float64Array,
  g: Float64Array,
  d: number,
  eps: number,
): Float64Array {
  const out = new Float64Array(x.length);
  for (let r = 0; r < x.length / d; r++) {
    let dot = 0, ms = 0;
    for (let i = 0; i < d; i++) {
      dot += g[r * d + i] * xn[r * d + i];
      ms += x[r * d + i] ** 2 / d;
    }
    const k = 1 / Math.sqrt(ms + eps);
    for (let i = 0; i < d; i++) out[r * d + i] = k * (g[r * d + i] - (xn[r * d + i] * dot) / d);
  }
  return out;
}

export const reference = {
  angles,
  rotate,

  /** Forward: y (B, N, H·d). */
  attention(qkv: Float64Array, theta: Float64Array, coords: Float64Array, s: AttnRefShape, eps = 1e-5) {
    const { batch: B, tokens: N, heads: H, headDim: d } = s;
    const phi = angles(theta, coords, s);
    const y = new Float64Array(B * N * H * d);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        const { o } = headForward(qkv, phi, s, b, h, eps);
        for (let n = 0; n < N; n++) y.set(o.subarray(n * d, n * d + d), ((b * N + n) * H + h) * d);
      }
    }
    return y;
  },

  /** Backward for upstream gradient gy (B, N, H·d): d(qkv) (B, N, 3·H·d) and dΘ (A, H·d/2). */
  attentionBackward(
    qkv: Float64Array,
    theta: Float64Array,
    coords: Float64Array,
    gy: Float64Array,
    s: AttnRefShape,
    eps = 1e-5,
  ) {
    const { batch: B, tokens: N, heads: H, headDim: d, axes: A } = s;
    const half = (H * d) / 2, sq = Math.sqrt(d);
    const phi = angles(theta, coords, s);
    const dqkv = new Float64Array(qkv.length);
    const dphi = new Float64Array(B * N * half);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        const f = headForward(qkv, phi, s, b, h, eps);
        const go = new Float64Array(N * d);
        for (let n = 0; n < N; n++) {
          const src = ((b * N + n) * H + h) * d;
          go.set(gy.subarray(src, src + d), n * d);
        }
        const dv = matmulRef.matmul(f.p, [N, N], go, [N, d], true, false);
        const dp = matmulRef.matmul(go, [N, d], f.v, [N, d], false, true);
        const ds = new Float64Array(N * N);
        for (let i = 0; i < N; i++) {
          let dot = 0;
          for (let j = 0; j < N; j++) dot += dp[i * N + j] * f.p[i * N + j];
          for (let j = 0; j < N; j++) ds[i * N + j] = (f.p[i * N + j] * (dp[i * N + j] - dot)) / sq;
        }
        const gqr = matmulRef.matmul(ds, [N, N], f.kr, [N, d]);
        const gkr = matmulRef.matmul(ds, [N, N], f.qr, [N, d], true, false);
        const parts = [
          rmsBackward(headBlock(qkv, s, b, h, 0), f.qn, rotate(gqr, f.phiOf, d, -1), d, eps),
          rmsBackward(headBlock(qkv, s, b, h, 1), f.kn, rotate(gkr, f.phiOf, d, -1), d, eps),
          dv,
        ];
        for (let n = 0; n < N; n++) {
          for (let part = 0; part < 3; part++) {
            dqkv.set(parts[part].subarray(n * d, n * d + d), (((b * N + n) * 3 + part) * H + h) * d);
          }
          for (let i = 0; i < d / 2; i++) {
            const a = n * d + 2 * i;
            dphi[(b * N + n) * half + h * (d / 2) + i] = gqr[a + 1] * f.qr[a] - gqr[a] * f.qr[a + 1] +
              gkr[a + 1] * f.kr[a] - gkr[a] * f.kr[a + 1];
          }
        }
      }
    }
    const dtheta = new Float64Array(A * half);
    for (let b = 0; b < B; b++) {
      const blk = dphi.subarray(b * N * half, (b + 1) * N * half);
      const part = matmulRef.matmul(coords, [N, A], blk, [N, half], true, false);
      for (let i = 0; i < part.length; i++) dtheta[i] += part[i];
    }
    return { dqkv, dtheta };
  },
};
