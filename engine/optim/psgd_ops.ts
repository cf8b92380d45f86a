/**
 * GPU building blocks of PSGD-Kron (spec/psgd.md §6), on raw tensors without autodiff: mode-k products, the
 * combined Grams E = triu(T1 − T2) / S = T1 + T2, the blocked upper-triangular inverse. Small factor sizes use
 * the kernels of kernels/psgd.wgsl.ts; larger ones (PSGD_MATMUL, per adapter) go through matmul.
 * Every function encodes dispatches only and returns temporaries of the caller's scope. Each takes `g` same-shape
 * tensors stacked back to back (a group of parameters updated together), each with its own factor: X is
 * [g, ...shape], M is [g, d, d] (or [g, d]); g = 1 is a single tensor.
 */
import {
  gramChunks,
  gramInvocations,
  modeInvocations,
  PSGD_SMALL_D,
  PSGD_WG,
  psgdGramFinishKernel,
  psgdGramKernel,
  psgdModeKernel,
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
 * Where the dense products leave the own kernels, per adapter: factors above `ownMaxD` go through matmul where
 * its output is wide enough, and with `permuteNarrow` narrow ones too (moved to (d, a·b) and back). lavapipe,
 * where matmul reads textures and the own kernels' 4×4 tiles pay the per-lane storage loads (Zen 5,
 * 2026-12-04): the `default` AE's PSGD step with every factor updated 0.80–0.81 s at ownMaxD 64, 0.75–0.77 at
 * 32, 0.95 at 16 (16-wide products are too small for the texture path); the [C, C, 3, 3] middle axes (b = 9)
 * through permutes and matmul: 64×256×9 19.2 → 4.7 ms, 64×64×9 2.0 → 1.6 ms.
 */
export const PSGD_MATMUL = adapterTable<{ ownMaxD: number; permuteNarrow: boolean }>({
  lavapipe: { ownMaxD: 32, permuteNarrow: true },
  default: { ownMaxD: PSGD_SMALL_D, permuteNarrow: false },
});

/** Largest batch of the tiled matmul (its batch runs on the z axis of the grid). */
const MAX_BATCH = 65535;
/** Narrower outputs go to the own tiled kernel. */
const MIN_MATMUL_COLS = 32;

/**
 * Y = X ×_k M per member: op "mm" uses M, "mmT" uses Mᵀ (d×d); "mul"/"div" scale by the vector M. `upper`
 * tells the own kernel that M is upper-triangular. Returns a flat tensor of X's size.
 */
export function modeProduct(
  x: Tensor,
  shape: readonly number[],
  k: number,
  m: Tensor,
  op: "mm" | "mmT" | "mul" | "div",
  upper = false,
  g = 1,
): Tensor {
  const [a, d, b] = splitAxis(shape, k);
  const dense = op === "mm" || op === "mmT";
  const trans = op === "mmT";
  const rule = PSGD_MATMUL.for(gpu().adapterKind);
  if (dense && d > rule.ownMaxD) {
    const mm = m.view([g, d, d]);
    // The tiled matmul wastes most of its 64-wide tiles on narrow outputs ([C, C, 3, 3] has b = 9).
    const y = b === 1
      ? viewed(x, [g, a, d], (v) => matmulRaw(v, mm, false, !trans))
      : b < MIN_MATMUL_COLS
      ? (rule.permuteNarrow ? narrowProduct(x, [g, a, d, b], mm, trans) : null)
      : a === 1
      ? viewed(x, [g, d, b], (v) => matmulRaw(mm, v, trans, false))
      : g === 1 && a <= MAX_BATCH
      ? viewed(x, [a, d, b], (v) => matmulRaw(mm.view([d, d]), v, trans, false))
      : null;
    mm.dispose();
    if (y) return y;
  }
  const y = Tensor.empty([x.size]);
  const cfg = { a, d, b, op, upper, g };
  dispatch(psgdModeKernel(cfg), [x.buffer, m.buffer, y.buffer], grid1d(modeInvocations(cfg), PSGD_WG));
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

/** X ×_k M on a narrow [g, a, d, b] view: X moved to (g, d, a·b), one batched matmul, moved back. */
function narrowProduct(x: Tensor, [g, a, d, b]: number[], mm: Tensor, trans: boolean): Tensor {
  const p = swapMiddle(x, [g, a, d, b]);
  const y = viewed(p, [g, d, a * b], (v) => matmulRaw(mm, v, trans, false));
  p.dispose();
  const out = swapMiddle(y, [g, d, a, b]);
  y.dispose();
  return out;
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
  const [a, d, b] = splitAxis(shape, k);
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
  const chunks = gramChunks(a, d, b, diag);
  const pe = Tensor.empty([g * chunks * outs]), ps = Tensor.empty([g * chunks * outs]);
  const cfg = { a, d, b, chunks, diag, g };
  const bind = [aT.buffer, bT.buffer, pe.buffer, ps.buffer];
  dispatch(psgdGramKernel(cfg), bind, grid1d(gramInvocations(cfg), PSGD_WG));
  const fin = psgdGramFinishKernel({ d, chunks, diag, from: "partials", g });
  dispatch(fin, [pe.buffer, ps.buffer, e.buffer, s.buffer], grid1d(g * outs, PSGD_WG));
  pe.dispose();
  ps.dispose();
  return { e, s };
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
