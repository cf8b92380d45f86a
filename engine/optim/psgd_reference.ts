/**
 * Float64 CPU reference of PSGD-Kron as specified in spec/psgd.md (heavyball 1.4.3 `CachedDelayedPSGDKron`, the
 * variant lola trained its autoencoders with). Tests drive it with the same injected probes and decisions as the
 * GPU optimizer and compare; it is written from the spec's formulas, never from the GPU code.
 *
 * Layout conventions: tensors are row-major Float64Arrays with an explicit shape; a dense factor is d×d with an
 * exact-zero lower triangle, a diagonal factor is a length-d vector. Mode k views a tensor as [a, d_k, b].
 */

/** Smallest normal f32 (heavyball's `tiny`). */
export const TINY = 1.17549435e-38;
/** √ε32 = √2⁻²³: the relative damping-noise level of 1.4.3. */
export const SQRT_EPS32 = Math.sqrt(2 ** -23);

export interface RefFactor {
  dense: boolean;
  d: number;
  /** d×d (dense, upper-triangular) or d (diagonal). */
  q: Float64Array;
}

function split(shape: readonly number[], k: number): [number, number, number] {
  const a = shape.slice(0, k).reduce((x, y) => x * y, 1);
  const b = shape.slice(k + 1).reduce((x, y) => x * y, 1);
  return [a, shape[k], b];
}

/** Y = X ×_k M (Y[p,i,q] = Σ_j M[i,j] X[p,j,q]), or with Mᵀ. */
export function modeProduct(
  x: Float64Array,
  shape: readonly number[],
  k: number,
  m: Float64Array,
  trans = false,
): Float64Array {
  const [a, d, b] = split(shape, k);
  const y = new Float64Array(x.length);
  for (let p = 0; p < a; p++) {
    for (let i = 0; i < d; i++) {
      for (let q = 0; q < b; q++) {
        let s = 0;
        for (let j = 0; j < d; j++) s += (trans ? m[j * d + i] : m[i * d + j]) * x[(p * d + j) * b + q];
        y[(p * d + i) * b + q] = s;
      }
    }
  }
  return y;
}

/** Scale along axis k by v (op "mul") or 1/v ("div"). */
export function diagScale(
  x: Float64Array,
  shape: readonly number[],
  k: number,
  v: Float64Array,
  op: "mul" | "div",
): Float64Array {
  const [a, d, b] = split(shape, k);
  const y = new Float64Array(x.length);
  for (let p = 0; p < a; p++) {
    for (let i = 0; i < d; i++) {
      for (let q = 0; q < b; q++) {
        const o = (p * d + i) * b + q;
        y[o] = op === "mul" ? x[o] * v[i] : x[o] / v[i];
      }
    }
  }
  return y;
}

/** Gram_k(X) = X_(k) X_(k)ᵀ (d×d). */
export function gram(x: Float64Array, shape: readonly number[], k: number): Float64Array {
  const [a, d, b] = split(shape, k);
  const g = new Float64Array(d * d);
  for (let i = 0; i < d; i++) {
    for (let j = 0; j < d; j++) {
      let s = 0;
      for (let p = 0; p < a; p++) {
        for (let q = 0; q < b; q++) s += x[(p * d + i) * b + q] * x[(p * d + j) * b + q];
      }
      g[i * d + j] = s;
    }
  }
  return g;
}

/** heavyball's cheap spectral-norm lower bound: one power step from the largest column of S/max|S|. */
export function lb(s: Float64Array, d: number): number {
  let mu = 0;
  for (const v of s) mu = Math.max(mu, Math.abs(v));
  if (mu === 0) return 0;
  const sh = s.map((v) => v / mu);
  let best = -1, jstar = 0;
  for (let j = 0; j < d; j++) {
    let c = 0;
    for (let i = 0; i < d; i++) c += sh[i * d + j] ** 2;
    if (c > best) [best, jstar] = [c, j];
  }
  const y = new Float64Array(d);
  for (let j = 0; j < d; j++) {
    for (let i = 0; i < d; i++) y[j] += sh[i * d + j] * sh[i * d + jstar];
  }
  const ny = Math.hypot(...y);
  let z2 = 0;
  for (let i = 0; i < d; i++) {
    let z = 0;
    for (let j = 0; j < d; j++) z += sh[i * d + j] * y[j] / ny;
    z2 += z * z;
  }
  return mu * Math.sqrt(z2);
}

/** Inverse of an upper-triangular matrix by back substitution (column by column). */
export function triuInverse(q: Float64Array, d: number): Float64Array {
  const x = new Float64Array(d * d);
  for (let j = 0; j < d; j++) {
    x[j * d + j] = 1 / q[j * d + j];
    for (let i = j - 1; i >= 0; i--) {
      let s = 0;
      for (let l = i + 1; l <= j; l++) s += q[i * d + l] * x[l * d + j];
      x[i * d + j] = -s / q[i * d + i];
    }
  }
  return x;
}

/** Elementwise trust-region clip of 1.4.3. */
export function trustRegion(x: number): number {
  const y = x / 1.5;
  const v = 1.5 * (0.9 * Math.tanh(y) + 0.1 * Math.sign(y) * Math.log1p(Math.abs(y)));
  return Math.min(2, Math.max(-2, v));
}

/** QᵀQ (dense) or q² (diagonal). */
export function cacheOf(f: RefFactor): Float64Array {
  if (!f.dense) return f.q.map((v) => v * v);
  const { d, q } = f;
  const c = new Float64Array(d * d);
  for (let i = 0; i < d; i++) {
    for (let j = 0; j < d; j++) {
      let s = 0;
      for (let l = 0; l < d; l++) s += q[l * d + i] * q[l * d + j];
      c[i * d + j] = s;
    }
  }
  return c;
}

/** u ×_1 C_1 ⋯ ×_K C_K for caches C_k (dense: d×d symmetric, diagonal: vector). */
export function applyCaches(
  u: Float64Array,
  shape: readonly number[],
  caches: { dense: boolean; c: Float64Array }[],
): Float64Array {
  let x = u;
  caches.forEach((c, k) => x = c.dense ? modeProduct(x, shape, k, c.c) : diagScale(x, shape, k, c.c, "mul"));
  return x;
}

/** P·x straight from the factors: x ×_k Q_k, then ×_k Q_kᵀ. */
export function precondition(x: Float64Array, shape: readonly number[], factors: RefFactor[]): Float64Array {
  return applyCaches(x, shape, factors.map((f) => ({ dense: f.dense, c: cacheOf(f) })));
}

export interface RefUpdateInfo {
  /** Normaliser ℓ per factor. */
  ell: number[];
}

/**
 * One preconditioner update (spec §2.3) of `factors` in place from input G (already damped) and probe V.
 * All factors are updated from the old Q's. Returns the normalisers.
 */
export function updateFactors(
  g: Float64Array,
  v: Float64Array,
  shape: readonly number[],
  factors: RefFactor[],
  eta: number,
): RefUpdateInfo {
  let a = g, b = v;
  factors.forEach((f, k) => {
    a = f.dense ? modeProduct(a, shape, k, f.q) : diagScale(a, shape, k, f.q, "mul");
    b = f.dense ? modeProduct(b, shape, k, triuInverse(f.q, f.d), true) : diagScale(b, shape, k, f.q, "div");
  });
  const ell: number[] = [];
  factors.forEach((f, k) => {
    const d = f.d;
    const t1 = gram(a, shape, k), t2 = gram(b, shape, k);
    if (f.dense) {
      const s = t1.map((x, i) => x + t2[i]);
      const l = Math.max(lb(s, d), TINY);
      ell.push(l);
      const nq = new Float64Array(d * d);
      for (let i = 0; i < d; i++) {
        for (let j = i; j < d; j++) {
          let acc = 0;
          for (let m = i; m <= j; m++) acc += (t1[i * d + m] - t2[i * d + m]) * f.q[m * d + j];
          nq[i * d + j] = f.q[i * d + j] - (eta / l) * acc;
        }
      }
      f.q = nq;
    } else {
      let l = 0;
      for (let i = 0; i < d; i++) l = Math.max(l, Math.abs(t1[i * d + i] + t2[i * d + i]));
      l = Math.max(l, TINY);
      ell.push(l);
      f.q = f.q.map((q, i) => q - (eta / l) * (t1[i * d + i] - t2[i * d + i]) * q);
    }
  });
  return { ell };
}

/** Rescale the factors to a common max-abs (geometric mean); P is unchanged. */
export function balance(factors: RefFactor[]): void {
  const norms = factors.map((f) => f.q.reduce((m, x) => Math.max(m, Math.abs(x)), 0));
  const gm = Math.exp(norms.reduce((s, n) => s + Math.log(n), 0) / norms.length);
  factors.forEach((f, k) => f.q = f.q.map((x) => x * gm / norms[k]));
}

export interface RefStepInput {
  grad: Float64Array;
  /** Probe V (N(0,1)), used only when `update`. */
  v?: Float64Array;
  /** Damping noise Z; omitted = no noise. */
  z?: Float64Array;
  update: boolean;
  balance: boolean;
}

/** One parameter tensor under the full optimizer (momentum, delayed cached P·u, update, trust region). */
export class ReferenceTensor {
  m: Float64Array;
  factors: RefFactor[];
  caches: { dense: boolean; c: Float64Array }[];
  t = 0;

  constructor(
    public p: Float64Array,
    readonly shape: readonly number[],
    dense: boolean[],
    readonly opts: { lr: number; beta: number; eta: number; wd: number; stale: boolean; clip: boolean },
  ) {
    this.m = new Float64Array(p.length);
    this.factors = shape.map((d, k) => ({
      dense: dense[k],
      d,
      q: dense[k] ? identity(d) : new Float64Array(d).fill(1),
    }));
    this.caches = this.factors.map((f) => ({ dense: f.dense, c: cacheOf(f) }));
  }

  step(s: RefStepInput, lr = this.opts.lr): Float64Array {
    const { beta, eta, wd, stale, clip } = this.opts;
    this.t++;
    const w = (1 - beta) / (1 - beta ** this.t);
    for (let i = 0; i < this.m.length; i++) this.m[i] += w * (s.grad[i] - this.m[i]);
    const d = applyCaches(this.m, this.shape, this.caches);
    for (let i = 0; i < this.p.length; i++) {
      this.p[i] = this.p[i] * (1 - lr * wd) - lr * (clip ? trustRegion(d[i]) : d[i]);
    }
    const norm = Math.hypot(...this.m);
    if (s.update && norm > 0) {
      const old = this.factors.map((f) => ({ dense: f.dense, c: cacheOf(f) }));
      const sigma = SQRT_EPS32 * norm / this.m.length;
      const g = s.z ? this.m.map((x, i) => x + sigma * s.z![i]) : this.m;
      updateFactors(g, s.v!, this.shape, this.factors, eta);
      if (s.balance && this.shape.length > 1) balance(this.factors);
      this.caches = this.factors.map((f, k) => f.dense && stale ? old[k] : { dense: f.dense, c: cacheOf(f) });
    }
    return d;
  }
}

export function identity(d: number): Float64Array {
  const q = new Float64Array(d * d);
  for (let i = 0; i < d; i++) q[i * d + i] = 1;
  return q;
}

/** The float64 reference in one object, as the op files of engine/ops export theirs. */
export const reference = {
  modeProduct,
  diagScale,
  gram,
  lb,
  triuInverse,
  trustRegion,
  cacheOf,
  applyCaches,
  precondition,
  updateFactors,
  balance,
  ReferenceTensor,
};
