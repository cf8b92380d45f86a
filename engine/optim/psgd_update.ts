/**
 * The per-tensor GPU pipeline of PSGD-Kron: P·x from the caches or the factors, and one preconditioner update
 * (spec/psgd.md §2.3: damping, A and B, per-axis Grams, lb-normalised triangular step, then balancing §2.3.5
 * and the cache refresh §1.5). Encodes dispatches only; every state write is guarded on the GPU by `qctl[0]`.
 */
import {
  PSGD_WG,
  psgdAbsMaxKernel,
  psgdBalanceKernel,
  psgdDiagCacheKernel,
  psgdDiagUpdateKernel,
  psgdNoiseKernel,
  psgdNormKernel,
  psgdTriKernel,
  psgdUpdateControlKernel,
  triInvocations,
} from "../../kernels/psgd.wgsl.ts";
import { map } from "../ops/elementwise.ts";
import { sum } from "../ops/reduce.ts";
import { copyBuffer, dispatch, grid1d } from "../runtime.ts";
import { Tensor } from "../tensor.ts";
import { grams, modeProduct, triuInverse } from "./psgd_ops.ts";

export interface Factor {
  dense: boolean;
  d: number;
  /** Q (d×d, exact-zero lower triangle) or q (d). */
  q: Tensor;
  /** QᵀQ or q². */
  cache: Tensor;
}

export interface Slot {
  param: Tensor;
  key: string;
  /** The parameter's shape; a 0-d tensor is treated as [1]. */
  shape: number[];
  /** Debiased momentum. */
  m: Tensor;
  factors: Factor[];
  /** Normaliser ℓ of each factor at its last update (diagnostics). */
  ell: Tensor;
  /** Steps at which this tensor had a gradient. */
  n: number;
}

export interface UpdateContext {
  eta: number;
  staleCache: boolean;
  zeroGradGuard: boolean;
  inverseLeaf: number;
  /** [go, clip scale, w_t] of the current step. */
  live: Tensor;
  /** Damping noise Z, or null for none. */
  noise: (() => Tensor) | null;
  /** Probe V ~ N(0, 1); the tensor is consumed. */
  probe: () => Tensor;
}

/** u ×_1 C_1 ⋯ ×_K C_K with the cached factors (a new flat tensor). */
export function applyCaches(s: Slot, x: Tensor): Tensor {
  let y = x;
  s.factors.forEach((f, k) => {
    const next = modeProduct(y, s.shape, k, f.cache, f.dense ? "mm" : "mul");
    if (y !== x) y.dispose();
    y = next;
  });
  return y;
}

/** x ×_k Q_k then ×_k Q_kᵀ over all axes, straight from the factors. */
export function applyFactors(s: Slot, x: Tensor): Tensor {
  let y = x;
  s.factors.forEach((f, k) => {
    for (const op of f.dense ? ["mm", "mmT"] as const : ["mul", "mul"] as const) {
      const next = modeProduct(y, s.shape, k, f.q, op, true);
      if (y !== x) y.dispose();
      y = next;
    }
  });
  return y;
}

/** One factor update on the slot's momentum, then (optionally) balancing and the cache refresh. */
export function updateFactors(s: Slot, c: UpdateContext, balance: boolean): void {
  const { shape, factors } = s;
  const n = s.param.size;
  const ss = sum(map([s.m], "in0 * in0", "psgd_sq"));
  const qctl = Tensor.empty([2]);
  dispatch(psgdUpdateControlKernel(n, c.zeroGradGuard), [ss.buffer, c.live.buffer, qctl.buffer], [1]);
  ss.dispose();
  let a = s.m;
  if (c.noise) {
    const z = c.noise();
    a = Tensor.empty([n]);
    dispatch(psgdNoiseKernel(n), [s.m.buffer, z.buffer, qctl.buffer, a.buffer], grid1d(n, PSGD_WG));
    z.dispose();
  }
  let b = c.probe();
  const mine = new Set([a === s.m ? null : a, b]);
  const swap = (x: Tensor, y: Tensor) => {
    if (mine.has(x)) x.dispose();
    mine.add(y);
    return y;
  };
  // A = G̃ ×_k Q_k and B = V ×_k Q_k^{-T} over all axes, all from the old factors.
  factors.forEach((f, k) => {
    if (f.dense) {
      a = swap(a, modeProduct(a, shape, k, f.q, "mm", true));
      const inv = triuInverse(f.q, f.d, c.inverseLeaf);
      b = swap(b, modeProduct(b, shape, k, inv, "mmT", true));
      inv.dispose();
    } else {
      a = swap(a, modeProduct(a, shape, k, f.q, "mul"));
      b = swap(b, modeProduct(b, shape, k, f.q, "div"));
    }
  });
  if (c.staleCache) refreshCaches(s, qctl, c.staleCache, true);
  factors.forEach((f, k) => {
    const { e, s: sm } = grams(a, b, shape, k, !f.dense);
    if (f.dense) {
      const y = Tensor.empty([f.d]);
      dispatch(psgdNormKernel({ d: f.d, slot: k }), [sm.buffer, y.buffer, s.ell.buffer], [1]);
      const qn = Tensor.empty([f.d * f.d]);
      const upd = psgdTriKernel(f.d, { kind: "update", eta: c.eta, slot: k });
      const bind = [f.q.buffer, e.buffer, s.ell.buffer, qctl.buffer, qn.buffer];
      dispatch(upd, bind, grid1d(triInvocations(f.d), PSGD_WG));
      copyBuffer(qn.buffer, 0, f.q.buffer, 0, f.q.byteSize);
      for (const t of [y, qn]) t.dispose();
    } else {
      const upd = psgdDiagUpdateKernel({ d: f.d, eta: c.eta, slot: k });
      dispatch(upd, [e.buffer, sm.buffer, qctl.buffer, f.q.buffer, s.ell.buffer], [1]);
    }
    e.dispose();
    sm.dispose();
  });
  for (const t of mine) t?.dispose();
  if (balance && factors.length > 1) balanceFactors(s, qctl);
  refreshCaches(s, qctl, c.staleCache, false);
  qctl.dispose();
}

/** Rescale the factors of a slot to the geometric mean of their max-abs values (P unchanged). */
function balanceFactors(s: Slot, qctl: Tensor): void {
  const K = s.factors.length;
  const norms = Tensor.empty([K]);
  s.factors.forEach((f, k) => {
    dispatch(psgdAbsMaxKernel({ n: f.q.size, slot: k }), [f.q.buffer, norms.buffer], [1]);
  });
  s.factors.forEach((f, k) => {
    const kern = psgdBalanceKernel({ n: f.q.size, factors: K, slot: k });
    dispatch(kern, [f.q.buffer, norms.buffer, qctl.buffer], grid1d(f.q.size, PSGD_WG));
  });
  norms.dispose();
}

/**
 * Caches from the current factors, where the update was live. Before the update (`beforeUpdate`) only the
 * dense caches of the stale policy; after it the diagonal ones and, with the fresh policy, the dense ones.
 */
function refreshCaches(s: Slot, qctl: Tensor, stale: boolean, beforeUpdate: boolean): void {
  for (const f of s.factors) {
    if (beforeUpdate !== (f.dense && stale)) continue;
    const bind = [f.q.buffer, qctl.buffer, f.cache.buffer];
    if (f.dense) dispatch(psgdTriKernel(f.d, { kind: "cache" }), bind, grid1d(triInvocations(f.d), PSGD_WG));
    else dispatch(psgdDiagCacheKernel(f.d), bind, grid1d(f.d, PSGD_WG));
  }
}
