/**
 * GPU building blocks of PSGD-Kron (spec/psgd.md §6), on raw tensors without autodiff: mode-k products (as
 * chains of leading-axis products that rotate the layout), the combined Grams E = triu(T1 − T2) /
 * S = T1 + T2, the blocked upper-triangular inverse. Small factor sizes use the kernels of
 * kernels/psgd.wgsl.ts; larger ones (PSGD_MATMUL, per adapter) go through matmul. Every function encodes
 * dispatches only and returns temporaries of the caller's scope. Each takes `g` same-shape tensors stacked
 * back to back (a group of parameters updated together), each with its own factor: X is [g, ...shape], M is
 * [g, d, d] (or [g, d]); g = 1 is a single tensor.
 */
import {
  gramChunks,
  gramInvocations,
  type ModeConfig,
  modeInvocations,
  PSGD_FUSED_MAX_D,
  PSGD_SMALL_D,
  PSGD_WG,
  psgdGramFinishKernel,
  psgdGramKernel,
  psgdLiveCopyKernel,
  psgdModeKernel,
  psgdTriEpilogueKernel,
  psgdTriInvLeafKernel,
  psgdTriKernel,
  triInvocations,
} from "../../kernels/psgd.wgsl.ts";
import { adapterTable } from "../adapter.ts";
import { gpu } from "../device.ts";
import { matmulRaw } from "../ops/matmul.ts";
import { permute } from "../ops/shape.ts";
import { dispatch, grid1d } from "../runtime.ts";
import { Tensor } from "../tensor.ts";

/** The [a, d, b] view of `shape` around axis k. */
export function splitAxis(shape: readonly number[], k: number): [number, number, number] {
  const a = shape.slice(0, k).reduce((x, y) => x * y, 1);
  const b = shape.slice(k + 1).reduce((x, y) => x * y, 1);
  return [a, shape[k], b];
}

/**
 * Where the dense products leave the own kernels, per adapter: factors above `ownMaxD` go through matmul.
 * lavapipe, where matmul reads textures and the own kernels' 4×4 tiles pay the per-lane storage loads (Zen 5,
 * 2026-12-04): the `default` AE's PSGD step with every factor updated 0.80–0.81 s at ownMaxD 64, 0.75–0.77 at
 * 32, 0.95 at 16 (16-wide products are too small for the texture path).
 */
export const PSGD_MATMUL = adapterTable<{ ownMaxD: number; triMinD: number }>({
  // triMinD: the factor's own d×d products (the update E·Q and the cache QᵀQ) go through matmul from this d.
  // lavapipe (Zen 5, 2026-12-04): at d = 256 the 4×4-tile kernels take 2.2–2.6 ms (update) and 3.3 ms
  // (cache) against ~1 ms for the texture matmul with its triangle skipped; at 64 the kernels win (0.17 ms).
  lavapipe: { ownMaxD: 32, triMinD: 128 },
  default: { ownMaxD: PSGD_SMALL_D, triMinD: Infinity },
});

/**
 * Q_out = Q − (η/ℓ)·E·Q per member where its update is live (ℓ at ell[member·stride + slot]), Q elsewhere,
 * exact zeros below the diagonal: a new [g, d, d] tensor.
 */
export function triUpdate(
  q: Tensor,
  e: Tensor,
  ell: Tensor,
  qctl: Tensor,
  c: { d: number; eta: number; slot: number; g: number; stride: number },
): Tensor {
  const { d, g } = c;
  const out = Tensor.empty([g * d * d]);
  if (d < PSGD_MATMUL.for(gpu().adapterKind).triMinD) {
    const upd = psgdTriKernel(d, { kind: "update", eta: c.eta, slot: c.slot }, g, c.stride);
    dispatch(
      upd,
      [q.buffer, e.buffer, ell.buffer, qctl.buffer, out.buffer],
      grid1d(triInvocations(d, g), PSGD_WG),
    );
    return out;
  }
  const [ev, qv] = [e.view([g, d, d]), q.view([g, d, d])];
  const t = matmulRaw(ev, qv, false, false, undefined, "upper");
  dispatch(
    psgdTriEpilogueKernel(c),
    [q.buffer, t.buffer, ell.buffer, qctl.buffer, out.buffer],
    grid1d(g * d * d, PSGD_WG),
  );
  for (const x of [ev, qv, t]) x.dispose();
  return out;
}

/** cache ← QᵀQ per member where its update is live. */
export function triCache(q: Tensor, qctl: Tensor, cache: Tensor, d: number, g: number): void {
  if (d < PSGD_MATMUL.for(gpu().adapterKind).triMinD) {
    const bind = [q.buffer, qctl.buffer, cache.buffer];
    dispatch(psgdTriKernel(d, { kind: "cache" }, g), bind, grid1d(triInvocations(d, g), PSGD_WG));
    return;
  }
  const qv = q.view([g, d, d]);
  const t = matmulRaw(qv, qv, true, false, undefined, "upper");
  dispatch(psgdLiveCopyKernel(d * d, g), [t.buffer, qctl.buffer, cache.buffer], grid1d(g * d * d, PSGD_WG));
  qv.dispose();
  t.dispose();
}

export type ModeOp = ModeConfig["op"];

/**
 * Y = X ×_0 M per member on X viewed as [d, rest], written as [rest, d]: the product's axis moves last. op "mm"
 * uses M, "mmT" Mᵀ (d×d); "mul"/"div" scale by the vector M; `upper`: M is upper-triangular (the own kernel
 * skips its zeros, matmul for "mmT").
 * Applied to each axis in turn (`modeChain`) every axis comes to lead and the result ends in the original
 * layout, so no product needs the permutes a middle axis would (lavapipe: [C, C, 3, 3]'s second axis).
 */
export function leadProduct(
  x: Tensor,
  [d, rest]: [number, number],
  m: Tensor,
  op: ModeOp,
  upper = false,
  g = 1,
  lead = 1,
): Tensor {
  if (ownsProduct(d, op === "mm" || op === "mmT")) {
    const y = Tensor.empty([x.size]);
    const cfg = { d, rest, op, upper, g, lead };
    dispatch(psgdModeKernel(cfg), [x.buffer, m.buffer, y.buffer], grid1d(modeInvocations(cfg), PSGD_WG));
    return y;
  }
  if (lead !== 1) throw new Error(`leadProduct: a matmul product (d = ${d}) cannot move a second axis`);
  const mm = m.view([g, d, d]);
  // Y = Xᵀ·Mᵀ ("mm") or Xᵀ·M ("mmT"), both [rest, d] per member. An upper M (the update's Q⁻¹) lets "mmT" skip
  // its zeros; "mm" keeps the full product, whose pipeline the per-step P·u (dense caches) shares: a separate
  // triangular one per shape cost more pipeline creation on a fresh process (~30–85 ms each from a warm Mesa
  // cache on lavapipe) than it saved a step.
  const tri = upper && op === "mmT" ? "upper" : undefined;
  const y = viewed(x, [g, d, rest], (v) => matmulRaw(v, mm, true, op === "mm", undefined, tri));
  mm.dispose();
  return y;
}

/** Whether the own kernel forms a product along an axis of d (diagonal factors always). */
function ownsProduct(d: number, dense: boolean): boolean {
  return !dense || d <= PSGD_MATMUL.for(gpu().adapterKind).ownMaxD;
}

/**
 * The layout the update's chains should end in so that no Gram needs a permute: 1 (the first axis moved last)
 * where the second axis is a dense matmul-sized one and no later axis is (the conv kernels' [C_out, C_in, 3, 3]
 * with C_in > ownMaxD: both big axes then sit at the ends), else 0 (the original layout).
 */
export function gramRotation(shape: readonly number[], dense: readonly boolean[]): 0 | 1 {
  const big = shape.map((d, k) => !ownsProduct(d, dense[k]));
  return shape.length >= 3 && big[1] && !big.slice(2).some((b) => b) ? 1 : 0;
}

/**
 * X ×_1 M_1 ⋯ ×_K M_K over every axis of `shape` (per member, X stacked [g, ...shape]) as K leading-axis
 * products; `factor(k)` gives axis k's operand. The result is in the original layout, or with `rotation` 1 in
 * [shape[1], …, shape[K−1], shape[0]] (the last product moves the first axis too; it must be an own-kernel
 * one, see gramRotation). Returns a new tensor; x is left to the caller.
 */
export function modeChain(
  x: Tensor,
  shape: readonly number[],
  factor: (k: number) => { m: Tensor; op: ModeOp; upper?: boolean },
  g = 1,
  rotation: 0 | 1 = 0,
): Tensor {
  const n = shape.reduce((p, q) => p * q, 1);
  const K = shape.length;
  let y = x;
  shape.forEach((d, k) => {
    const f = factor(k);
    const lead = rotation && k === K - 1 ? shape[0] : 1;
    const next = leadProduct(y, [d, n / d], f.m, f.op, f.upper ?? false, g, lead);
    if (y !== x) y.dispose();
    y = next;
  });
  return y;
}

/** fn(x viewed as `shape`), with the view released and the result flattened. */
function viewed(x: Tensor, shape: number[], fn: (v: Tensor) => Tensor): Tensor {
  const v = x.view(shape);
  const y = fn(v);
  v.dispose();
  const out = y.view([y.size]);
  y.dispose();
  return out;
}

/** x viewed as (g, p, q, r) with its middle two axes swapped, flat. */
function swapMiddle(x: Tensor, [g, p, q, r]: [number, number, number, number]): Tensor {
  return viewed(x, [g, p, q, r], (v) => permute(v, [0, 2, 1, 3], false));
}

/** Gram_k(X) = X_(k) X_(k)ᵀ per member with the tiled matmul (for large d): [g, d, d], flat. */
function gramMatmul(x: Tensor, shape: readonly number[], k: number, g: number): Tensor {
  const [a, d, b] = splitAxis(shape, k);
  if (a === 1) return viewed(x, [g, d, b], (v) => matmulRaw(v, v, false, true));
  if (b === 1) return viewed(x, [g, a, d], (v) => matmulRaw(v, v, true, false));
  const p = swapMiddle(x, [g, a, d, b]);
  const t = viewed(p, [g, d, a * b], (v) => matmulRaw(v, v, false, true));
  p.dispose();
  return t;
}

/**
 * For axis k, per member: E = triu(Gram_k(A) − Gram_k(B)) and S = Gram_k(A) + Gram_k(B), both d×d (S full);
 * with `diag` only the diagonals, as length-d vectors e = t1 − t2 and s = t1 + t2.
 */
export function grams(
  aT: Tensor,
  bT: Tensor,
  shape: readonly number[],
  k: number,
  diag: boolean,
  g = 1,
): { e: Tensor; s: Tensor } {
  const d = shape[k];
  const outs = diag ? d : d * d;
  const e = Tensor.empty([g * outs]), s = Tensor.empty([g * outs]);
  if (!diag && d > PSGD_MATMUL.for(gpu().adapterKind).ownMaxD) {
    const t1 = gramMatmul(aT, shape, k, g), t2 = gramMatmul(bT, shape, k, g);
    const fin = psgdGramFinishKernel({ d, chunks: 1, diag, from: "grams", g });
    dispatch(fin, [t1.buffer, t2.buffer, e.buffer, s.buffer], grid1d(g * outs, PSGD_WG));
    t1.dispose();
    t2.dispose();
    return { e, s };
  }
  const { pe, ps, chunks } = gramPartials(aT, bT, shape, k, diag, g);
  const fin = psgdGramFinishKernel({ d, chunks, diag, from: "partials", g });
  dispatch(fin, [pe.buffer, ps.buffer, e.buffer, s.buffer], grid1d(g * outs, PSGD_WG));
  pe.dispose();
  ps.dispose();
  return { e, s };
}

/**
 * The own kernel's split-K partial Grams for axis k (d ≤ ownMaxD): pe = Σ A_i A_j − B_i B_j and ps = Σ A_i A_j
 * + B_i B_j per chunk, [g, chunks, d, d] (upper triangles written) or [g, chunks, d] with `diag`.
 */
export function gramPartials(
  aT: Tensor,
  bT: Tensor,
  shape: readonly number[],
  k: number,
  diag: boolean,
  g = 1,
): { pe: Tensor; ps: Tensor; chunks: number } {
  const [a, d, b] = splitAxis(shape, k);
  const outs = diag ? d : d * d;
  const chunks = gramChunks(a, d, b, diag);
  const pe = Tensor.empty([g * chunks * outs]), ps = Tensor.empty([g * chunks * outs]);
  const cfg = { a, d, b, chunks, diag, g };
  dispatch(
    psgdGramKernel(cfg),
    [aT.buffer, bT.buffer, pe.buffer, ps.buffer],
    grid1d(gramInvocations(cfg), PSGD_WG),
  );
  return { pe, ps, chunks };
}

/** Whether a dense factor of size d takes the fused small-factor update (own Grams, state in one workgroup). */
export function fusedUpdate(d: number): boolean {
  return d <= Math.min(PSGD_FUSED_MAX_D, PSGD_MATMUL.for(gpu().adapterKind).ownMaxD);
}

/**
 * Q⁻¹ for an upper-triangular d×d Q with positive diagonal (spec §6.6 option b): diagonal blocks of `leaf`
 * rows by back substitution, then log₂(d/leaf) doubling levels of [[A, C], [0, D]]⁻¹ = [[A⁻¹, −A⁻¹CD⁻¹],
 * [0, D⁻¹]], each two dispatches.
 */
export function triuInverse(q: Tensor, d: number, leaf = 32, g = 1): Tensor {
  if (leaf % 4 !== 0) throw new Error(`triuInverse: leaf ${leaf} is not a multiple of 4`);
  const x = Tensor.empty([g * d * d]);
  dispatch(psgdTriInvLeafKernel({ d, leaf, g }), [q.buffer, x.buffer], grid1d(g * d, PSGD_WG));
  if (leaf >= d) return x;
  const t = Tensor.empty([g * d * d]);
  const grid = grid1d(triInvocations(d, g), PSGD_WG);
  for (let h = leaf; h < d; h *= 2) {
    dispatch(psgdTriKernel(d, { kind: "inv0", h }, g), [q.buffer, x.buffer, t.buffer], grid);
    dispatch(psgdTriKernel(d, { kind: "inv1", h }, g), [x.buffer, t.buffer], grid);
  }
  t.dispose();
  return x;
}

/** Index of (i, j ≥ i) in heavyball's packed upper triangle (`store_triu_as_line`, torch.triu_indices order). */
export function triuIndex(i: number, j: number, d: number): number {
  return i * d - (i * (i - 1)) / 2 + (j - i);
}

/** Dense d×d upper-triangular (row-major) → heavyball's packed line of d(d+1)/2 values. */
export function packTriu(q: ArrayLike<number>, d: number): Float32Array {
  const out = new Float32Array((d * (d + 1)) / 2);
  for (let i = 0; i < d; i++) for (let j = i; j < d; j++) out[triuIndex(i, j, d)] = q[i * d + j];
  return out;
}

/** heavyball's packed line → dense d×d with an exact-zero lower triangle. */
export function unpackTriu(line: ArrayLike<number>, d: number): Float32Array {
  const out = new Float32Array(d * d);
  for (let i = 0; i < d; i++) for (let j = i; j < d; j++) out[i * d + j] = line[triuIndex(i, j, d)];
  return out;
}
