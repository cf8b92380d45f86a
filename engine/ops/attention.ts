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
 * Tile and implementation choice per adapter: attention_tiles.ts; the float64 reference: attention_reference.ts.
 */
import {
  type AttnDims,
  attnFwdKernel,
  attnPrepKernel,
  type AttnTile,
  paramsWords,
} from "../../kernels/attention.wgsl.ts";
import {
  attnDeltaKernel,
  attnDkvKernel,
  attnDqKernel,
  attnDthetaKernel,
  attnPostKernel,
} from "../../kernels/attention_bwd.wgsl.ts";
import { needsGrad, record } from "../autograd.ts";
import { gpu } from "../device.ts";
import { dispatch, grid1d, releaseBuffer, uniformBuffer } from "../runtime.ts";
import { shapeStr, Tensor } from "../tensor.ts";
import { denseBackward, denseForward } from "./attention_dense.ts";
import { type AttentionImpl, attentionImpl, checkedTile } from "./attention_tiles.ts";
import { gather } from "./shape.ts";

export { adapt, type AttentionImpl, attentionImpl, attentionTile } from "./attention_tiles.ts";
export { type AttnRefShape, reference } from "./attention_reference.ts";

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

/** Q̃, K̂ (B·H, N, d), the reciprocal RMS of q and k (B·H, N, 2), and with `values` V as (B·H, N, d). */
function prep(qkv: Tensor, theta: Tensor, coords: Tensor, g: Geometry, eps: number, values = false) {
  const { batch: B, tokens: N, dims } = g;
  const H = dims.heads, d = dims.headDim;
  const qt = Tensor.empty([B * H, N, d]), kt = Tensor.empty([B * H, N, d]), rs = Tensor.empty([B * H, N, 2]);
  const vt = values ? Tensor.empty([B * H, N, d]) : null;
  const rows = B * N * H, wg = 64;
  const params = uniformBuffer(paramsWords(N, 1, rows, d));
  dispatch(
    attnPrepKernel(dims, eps, wg, values),
    [
      qkv.buffer,
      coords.buffer,
      theta.buffer,
      qt.buffer,
      kt.buffer,
      rs.buffer,
      params,
      ...(vt ? [vt.buffer] : []),
    ],
    grid1d(rows, wg),
  );
  releaseBuffer(params);
  return { qt, kt, rs, vt };
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
  const pre = prep(qkv, theta, coords, g, eps, impl === "dense");
  const { qt, kt, vt } = pre;
  const lse = Tensor.empty([B * H, N]);
  let out: Tensor;
  let saved: Tensor | null = null; // the dense path's P, kept for the backward where it is small
  if (vt) {
    const { out: o, p } = denseForward(qt, kt, vt, lse);
    saved = p;
    out = mergeHeads(o, g);
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
  // Reverse mode only: MMPS (method §8) differentiates the denoiser by VJPs; forward mode is needed through the
  // decoder alone, which does not use this op. A tangent reaching it fails, naming the op.
  // The backward reads the forward's Q̃, K̂, V, RMS values and P (no second prep pass, 4 MB a `default` block);
  // they live as long as the other saved tensors (lse, out): until the scope ends, as a pullback may repeat.
  record(out, "attention", [qkv, theta], (gOut) => {
    const grads = attentionBackward(qkv, coords, theta, out, lse, gOut, g, opts.tiles?.bwd, pre, saved);
    return [needsGrad(qkv) ? grads.dqkv : (grads.dqkv.dispose(), null), grads.dtheta];
  });
  // No tape: nothing will read them.
  if (!out.node) { for (const t of [qt, kt, pre.rs, vt, saved]) t?.dispose(); }
  return out;
}

function attentionBackward(
  qkv: Tensor,
  coords: Tensor,
  theta: Tensor,
  out: Tensor,
  lse: Tensor,
  gOut: Tensor,
  g: Geometry,
  tileOverride: AttnTile | undefined,
  { qt, kt, rs, vt }: ReturnType<typeof prep>,
  saved: Tensor | null,
): { dqkv: Tensor; dtheta: Tensor | null } {
  const { batch: B, tokens: N, dims, width: D } = g;
  const H = dims.heads, d = dims.headDim, A = dims.axes;
  const rows = B * H * N;
  // Δ_i = Σ dO∘O per (b, h, n).
  const delta = Tensor.empty([B * H, N]);
  const go = vt ? Tensor.empty([B * H, N, d]) : null; // dO split into heads for the dense path
  const p1 = uniformBuffer(paramsWords(N, 1, rows, d));
  dispatch(
    attnDeltaKernel(dims, 64, !!go),
    [gOut.buffer, out.buffer, delta.buffer, p1, ...(go ? [go.buffer] : [])],
    grid1d(rows, 64),
  );
  let dq: Tensor, dk: Tensor, dv: Tensor;
  if (vt && go) {
    ({ dq, dk, dv } = denseBackward(qt, kt, vt, go, lse, delta, saved));
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
  if (needsGrad(theta)) {
    dtheta = Tensor.empty([A, D / 2]);
    const p4 = uniformBuffer(paramsWords(N, 1, B, d));
    dispatch(attnDthetaKernel(dims), [dphi.buffer, coords.buffer, dtheta.buffer, p4], grid1d(D / 2, 64));
    releaseBuffer(p4);
  }
  for (const p of [p1, p3]) releaseBuffer(p);
  for (const t of [delta, dq, dk, dv, dphi]) t.dispose();
  return { dqkv, dtheta };
}

/** FLOPs of one attention forward (Q·Kᵀ and P·V, an FMA = 2) and of its backward (the usual 2.5×). */
export function attentionFlops(batch: number, tokens: number, heads: number, headDim: number) {
  const fwd = 4 * batch * heads * tokens * tokens * headDim;
  return { fwd, bwd: 2.5 * fwd };
}
