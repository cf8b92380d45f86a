/**
 * The per-tensor GPU pipeline of PSGD-Kron: P·x from the caches or the factors, and one preconditioner update
 * (spec/psgd.md §2.3: damping, A and B, per-axis Grams, lb-normalised triangular step, then balancing §2.3.5
 * and the cache refresh §1.5), for one tensor or a group of same-shape tensors at once. Encodes dispatches
 * only; every state write is guarded on the GPU by its tensor's flag in `qctl`.
 */
import {
  PSGD_WG,
  psgdAbsMaxKernel,
  psgdBalanceKernel,
  psgdDiagCacheKernel,
  psgdDiagUpdateKernel,
  psgdElementwise,
  psgdNoiseKernel,
  psgdNormKernel,
  psgdSmallParams,
  psgdSmallUpdateKernel,
  psgdUpdateControlKernel,
} from "../../kernels/psgd.wgsl.ts";
import { map } from "../ops/elementwise.ts";
import { copyBuffer, dispatch, grid1d, releaseBuffer, uniformBuffer } from "../runtime.ts";
import { Tensor } from "../tensor.ts";
import { matmulRaw } from "../ops/matmul.ts";
import {
  fusedUpdate,
  gramPartials,
  gramRotation,
  grams,
  modeChain,
  triCache,
  triuInverse,
  triUpdate,
} from "./psgd_ops.ts";

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
  /** Position in the optimizer's parameter list. */
  index: number;
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
  /** Small dense factors through the fused update kernel (`fusedUpdate`). */
  fuseSmall: boolean;
  /** [go, clip scale, w_t] of the current step. */
  live: Tensor;
  /** Damping noise Z of `size` values (all members at once), or null for none. */
  noise: ((size: number) => Tensor) | null;
  /** Probes V ~ N(0, 1) of the members, stacked (`stackTensors`); the tensor is consumed. */
  probe: (group: Slot[]) => Tensor;
}

/** A group's state stacked member after member: momentum u, and per axis the factors Q_k and caches C_k. */
export interface GroupState {
  m: Tensor;
  q: Tensor[];
  cache: Tensor[];
}

/** u ×_1 C_1 ⋯ ×_K C_K with the cached factors (a new flat tensor). */
export function applyCaches(s: Slot, x: Tensor): Tensor {
  return modeChain(x, s.shape, (k) => ({ m: s.factors[k].cache, op: s.factors[k].dense ? "mm" : "mul" }));
}

/** x ×_k Q_kᵀQ_k over all axes, straight from the factors (diagnostics: the products are formed here). */
export function applyFactors(s: Slot, x: Tensor): Tensor {
  const p = s.factors.map((f) => {
    if (!f.dense) return map([f.q], "in0 * in0", "psgd_sq");
    const q = f.q.view([f.d, f.d]);
    const qtq = matmulRaw(q, q, true, false);
    q.dispose();
    return qtq;
  });
  const y = modeChain(x, s.shape, (k) => ({ m: p[k], op: s.factors[k].dense ? "mm" : "mul" }));
  for (const t of p) t.dispose();
  return y;
}

/** Same-size tensors back to back in a new tensor (one is returned as it is: the caller keeps both cases apart). */
export function stackTensors(ts: Tensor[]): Tensor {
  if (ts.length === 1) return ts[0];
  const out = Tensor.empty([ts.length * ts[0].size]);
  ts.forEach((t, i) => copyBuffer(t.buffer, 0, out.buffer, i * t.byteSize, t.byteSize));
  return out;
}

/**
 * One factor update of a group of same-shape, same-layout slots (one slot is a group of one), then (optionally)
 * balancing and the cache refresh. A group of g > 1 works on stacked copies of the members' state, one dispatch
 * per stage for all of them, and copies the factors, caches and normalisers back: the per-stage dispatch cost
 * dominates the small factors' updates on lavapipe. Each member keeps its own guard, σ and normalisers.
 * `given`: the group's state already stacked (the optimizer keeps it for g > 1), updated in place instead.
 */
export function updateFactors(group: Slot[], c: UpdateContext, balance: boolean, given?: GroupState): void {
  const g = group.length;
  const { shape, factors } = group[0];
  const n = group[0].param.size;
  const K = factors.length;
  const ids = group.map((s) => s.key).join(", ");
  for (const s of group) {
    if (s.shape.join() !== shape.join() || s.factors.some((f, k) => f.dense !== factors[k].dense)) {
      throw new Error(`updateFactors: group members ${ids} differ in shape or factor layout`);
    }
  }
  const stacked = new Set<Tensor>();
  const stack = (ts: Tensor[]): Tensor => {
    const out = stackTensors(ts);
    if (out !== ts[0]) stacked.add(out);
    return out;
  };
  if (given && g === 1) throw new Error("updateFactors: stacked state is for groups of ≥ 2");
  const m = given?.m ?? stack(group.map((s) => s.m));
  const q = given?.q ?? factors.map((_, k) => stack(group.map((s) => s.factors[k].q)));
  const cache = given?.cache ?? factors.map((_, k) => stack(group.map((s) => s.factors[k].cache)));
  const ell = g === 1 ? group[0].ell : Tensor.empty([g * K]);
  const qctl = Tensor.empty([2 * g]);
  dispatch(psgdUpdateControlKernel(n, c.zeroGradGuard, g), [m.buffer, c.live.buffer, qctl.buffer], [g]);
  let a = m;
  if (c.noise) {
    const z = c.noise(g * n);
    a = Tensor.empty([g * n]);
    const grid = grid1d(psgdElementwise(n, g * n), PSGD_WG);
    dispatch(psgdNoiseKernel(n, g), [m.buffer, z.buffer, qctl.buffer, a.buffer], grid);
    z.dispose();
  }
  const v = c.probe(group);
  // A = G̃ ×_k Q_k and B = V ×_k Q_k^{-T} over all axes, all from the old factors, ending in the layout whose
  // Grams need no permute (axis k at position (k − r) mod K).
  const inv = factors.map((f, k) => f.dense ? triuInverse(q[k], f.d, c.inverseLeaf, g) : null);
  const dense = factors.map((f) => f.dense);
  const r = gramRotation(shape, dense);
  const layout = [...shape.slice(r), ...shape.slice(0, r)];
  const aT = modeChain(a, shape, (k) => ({ m: q[k], op: dense[k] ? "mm" : "mul", upper: dense[k] }), g, r);
  const bT = modeChain(
    v,
    shape,
    (k) => ({ m: inv[k] ?? q[k], op: dense[k] ? "mmT" : "div", upper: dense[k] }),
    g,
    r,
  );
  for (const t of [...inv, v, a === m ? null : a]) t?.dispose();
  if (c.staleCache) refreshCaches(factors, q, cache, qctl, g, true, true);
  // Small dense factors update in one kernel, with their fresh cache unless balancing must come first.
  const fuseCache = !c.staleCache && !(balance && K > 1);
  const fused = new Set<number>();
  factors.forEach((f, k) => {
    const axis = (k - r + K) % K;
    if (c.fuseSmall && f.dense && fusedUpdate(f.d)) {
      const { pe, ps, chunks } = gramPartials(aT, bT, layout, axis, false, g);
      const kern = psgdSmallUpdateKernel({ d: f.d, chunks, cache: fuseCache });
      const params = uniformBuffer(psgdSmallParams(k, K, c.eta));
      const bind = [pe.buffer, ps.buffer, q[k].buffer, qctl.buffer, ell.buffer, params];
      dispatch(kern, fuseCache ? [...bind, cache[k].buffer] : bind, [g]);
      releaseBuffer(params);
      if (fuseCache) fused.add(k);
      pe.dispose();
      ps.dispose();
      return;
    }
    const { e, s: sm } = grams(aT, bT, layout, axis, !f.dense, g);
    if (f.dense) {
      const y = Tensor.empty([g * f.d]);
      dispatch(psgdNormKernel({ d: f.d, slot: k, g, stride: K }), [sm.buffer, y.buffer, ell.buffer], [g]);
      const qn = triUpdate(q[k], e, ell, qctl, { d: f.d, eta: c.eta, slot: k, g, stride: K });
      if (g === 1 || given) {
        copyBuffer(qn.buffer, 0, q[k].buffer, 0, q[k].byteSize);
        qn.dispose();
      } else {
        q[k].dispose();
        stacked.delete(q[k]);
        stacked.add(qn);
        q[k] = qn;
      }
      y.dispose();
    } else {
      const upd = psgdDiagUpdateKernel({ d: f.d, eta: c.eta, slot: k, g, stride: K });
      dispatch(upd, [e.buffer, sm.buffer, qctl.buffer, q[k].buffer, ell.buffer], [g]);
    }
    e.dispose();
    sm.dispose();
  });
  for (const t of [aT, bT]) t.dispose();
  if (balance && K > 1) balanceFactors(q, qctl, g);
  refreshCaches(factors, q, cache, qctl, g, c.staleCache, false, fused);
  qctl.dispose();
  if (g === 1) return;
  // Back to the members: factors, caches (unchanged where a member's update was skipped) and normalisers.
  group.forEach((s, i) => {
    s.factors.forEach((f, k) => {
      copyBuffer(q[k].buffer, i * f.q.byteSize, f.q.buffer, 0, f.q.byteSize);
      copyBuffer(cache[k].buffer, i * f.cache.byteSize, f.cache.buffer, 0, f.cache.byteSize);
    });
    copyBuffer(ell.buffer, i * s.ell.byteSize, s.ell.buffer, 0, s.ell.byteSize);
  });
  ell.dispose();
  for (const t of stacked) t.dispose();
}

/** Rescale each member's factors to the geometric mean of their max-abs values (P unchanged). */
function balanceFactors(q: Tensor[], qctl: Tensor, g: number): void {
  const K = q.length;
  const norms = Tensor.empty([g * K]);
  q.forEach((t, k) => {
    const n = t.size / g;
    dispatch(psgdAbsMaxKernel({ n, slot: k, g, stride: K }), [t.buffer, norms.buffer], [g]);
  });
  q.forEach((t, k) => {
    const kern = psgdBalanceKernel({ n: t.size / g, factors: K, slot: k, g });
    dispatch(kern, [t.buffer, norms.buffer, qctl.buffer], grid1d(t.size, PSGD_WG));
  });
  norms.dispose();
}

/**
 * Caches from the current (stacked) factors, where the update was live. Before the update (`beforeUpdate`)
 * only the dense caches of the stale policy; after it the diagonal ones and, with the fresh policy, the dense
 * ones; none of the factors in `done` (their update kernel wrote the cache).
 */
function refreshCaches(
  factors: Factor[],
  q: Tensor[],
  cache: Tensor[],
  qctl: Tensor,
  g: number,
  stale: boolean,
  beforeUpdate: boolean,
  done = new Set<number>(),
): void {
  factors.forEach((f, k) => {
    if (beforeUpdate !== (f.dense && stale) || done.has(k)) return;
    if (f.dense) triCache(q[k], qctl, cache[k], f.d, g);
    else {
      const bind = [q[k].buffer, qctl.buffer, cache[k].buffer];
      dispatch(psgdDiagCacheKernel(f.d, g), bind, grid1d(g * f.d, PSGD_WG));
    }
  });
}
