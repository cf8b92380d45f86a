/**
 * 2-D compressible Euler equations, second-order finite volumes: the built-in simulator behind the default
 * dataset (`data/euler_dataset.ts`), modelled on The Well's `euler_multi_quadrants`.
 *
 * Scheme: MUSCL reconstruction of primitive variables (ρ, u, v, p) with a slope limiter, HLLC (or HLL) fluxes,
 * SSP-RK2 (Heun) in time, dt from the CFL condition. Axis 0 is x (index i), axis 1 is y (index j); arrays are
 * row-major (i·ny + j), which is the order The Well stores fields in.
 *
 * Invariants:
 * - The state is conservative (ρ, ρu, ρv, E) in Float64Array; every update is a flux difference, so with periodic
 *   boundaries mass, momentum and energy change only by round-off.
 * - Density and pressure stay positive: interfaces whose reconstruction is not admissible fall back to first
 *   order, and a step whose result is not admissible is redone with half the dt (both keep conservation, unlike
 *   clipping). If halving 8 times does not help, `step` throws.
 */

export type EulerBoundary = "periodic" | "open";
export type EulerFlux = "hllc" | "hll";
export type EulerLimiter = "minmod" | "vanleer" | "mc";

export interface EulerOptions {
  nx: number;
  ny: number;
  /** Cell sizes; default 1/nx for both (square cells, domain [0,1] × [0, ny/nx]). */
  dx?: number;
  dy?: number;
  gamma: number;
  /** Per axis [x, y], or one for both. "open" is zero-gradient outflow, as in The Well's open-BC Euler set. */
  boundary: EulerBoundary | [EulerBoundary, EulerBoundary];
  cfl?: number;
  flux?: EulerFlux;
  limiter?: EulerLimiter;
}

/** Primitive fields, each (nx, ny) row-major. */
export interface Primitives {
  rho: Float64Array;
  vx: Float64Array;
  vy: Float64Array;
  p: Float64Array;
}

const G = 2; // ghost layers: MUSCL needs two neighbours on each side

function limit(kind: number, a: number, b: number): number {
  if (a * b <= 0) return 0;
  if (kind === 0) return Math.abs(a) < Math.abs(b) ? a : b; // minmod
  if (kind === 1) return (2 * a * b) / (a + b); // van Leer
  const c = 0.5 * (a + b); // monotonized central
  const m = Math.min(Math.abs(c), 2 * Math.abs(a), 2 * Math.abs(b));
  return a > 0 ? m : -m;
}

/**
 * Numerical flux normal to an interface, written into out[0..3] as (mass, normal momentum, tangential momentum,
 * energy). States are primitive: density, normal velocity, tangential velocity, pressure.
 */
function riemannFlux(
  hllc: boolean,
  g: number,
  rL: number,
  uL: number,
  vL: number,
  pL: number,
  rR: number,
  uR: number,
  vR: number,
  pR: number,
  out: Float64Array,
): void {
  const gm1 = g - 1;
  const eL = pL / gm1 + 0.5 * rL * (uL * uL + vL * vL);
  const eR = pR / gm1 + 0.5 * rR * (uR * uR + vR * vR);
  const cL = Math.sqrt((g * pL) / rL);
  const cR = Math.sqrt((g * pR) / rR);
  // Davis wave-speed estimates: they bound the fastest signals on both sides.
  const sL = Math.min(uL - cL, uR - cR);
  const sR = Math.max(uL + cL, uR + cR);
  if (sL >= 0) {
    out[0] = rL * uL;
    out[1] = rL * uL * uL + pL;
    out[2] = rL * uL * vL;
    out[3] = (eL + pL) * uL;
    return;
  }
  if (sR <= 0) {
    out[0] = rR * uR;
    out[1] = rR * uR * uR + pR;
    out[2] = rR * uR * vR;
    out[3] = (eR + pR) * uR;
    return;
  }
  if (!hllc) {
    const inv = 1 / (sR - sL);
    const sLR = sL * sR;
    out[0] = (sR * rL * uL - sL * rR * uR + sLR * (rR - rL)) * inv;
    out[1] = (sR * (rL * uL * uL + pL) - sL * (rR * uR * uR + pR) + sLR * (rR * uR - rL * uL)) * inv;
    out[2] = (sR * rL * uL * vL - sL * rR * uR * vR + sLR * (rR * vR - rL * vL)) * inv;
    out[3] = (sR * (eL + pL) * uL - sL * (eR + pR) * uR + sLR * (eR - eL)) * inv;
    return;
  }
  // HLLC (Toro, Riemann Solvers, §10.4): restores the contact wave that HLL smears.
  const mL = rL * (sL - uL);
  const mR = rR * (sR - uR);
  const sM = (pR - pL + mL * uL - mR * uR) / (mL - mR);
  if (sM >= 0) {
    const f = mL / (sL - sM);
    const eS = f * (eL / rL + (sM - uL) * (sM + pL / mL));
    out[0] = rL * uL + sL * (f - rL);
    out[1] = rL * uL * uL + pL + sL * (f * sM - rL * uL);
    out[2] = rL * uL * vL + sL * (f * vL - rL * vL);
    out[3] = (eL + pL) * uL + sL * (eS - eL);
  } else {
    const f = mR / (sR - sM);
    const eS = f * (eR / rR + (sM - uR) * (sM + pR / mR));
    out[0] = rR * uR + sR * (f - rR);
    out[1] = rR * uR * uR + pR + sR * (f * sM - rR * uR);
    out[2] = rR * uR * vR + sR * (f * vR - rR * vR);
    out[3] = (eR + pR) * uR + sR * (eS - eR);
  }
}

export class EulerSolver {
  readonly nx: number;
  readonly ny: number;
  readonly dx: number;
  readonly dy: number;
  readonly gamma: number;
  readonly boundary: [EulerBoundary, EulerBoundary];
  readonly cfl: number;
  /** Conserved state (4, nx, ny): ρ, ρu, ρv, E. */
  readonly u: Float64Array;
  time = 0;
  private readonly hllc: boolean;
  private readonly limiter: number;
  // Scratch, allocated once: padded primitives (4, nx+2G, ny+2G), stage buffers, one interface flux.
  private readonly w: Float64Array;
  private readonly u0: Float64Array;
  private readonly us: Float64Array;
  private readonly rhs: Float64Array;
  private readonly f = new Float64Array(4);
  private readonly slopes: Float64Array;

  constructor(o: EulerOptions) {
    if (!(o.nx >= 4 && o.ny >= 1)) throw new Error(`Euler grid ${o.nx}×${o.ny} is too small (nx ≥ 4)`);
    this.nx = o.nx;
    this.ny = o.ny;
    this.dx = o.dx ?? 1 / o.nx;
    this.dy = o.dy ?? this.dx;
    this.gamma = o.gamma;
    this.boundary = typeof o.boundary === "string" ? [o.boundary, o.boundary] : o.boundary;
    this.cfl = o.cfl ?? 0.4;
    this.hllc = (o.flux ?? "hllc") === "hllc";
    this.limiter = { minmod: 0, vanleer: 1, mc: 2 }[o.limiter ?? "vanleer"];
    const n = this.nx * this.ny;
    this.u = new Float64Array(4 * n);
    this.u0 = new Float64Array(4 * n);
    this.us = new Float64Array(4 * n);
    this.rhs = new Float64Array(4 * n);
    this.w = new Float64Array(4 * (this.nx + 2 * G) * (this.ny + 2 * G));
    this.slopes = new Float64Array(4 * (Math.max(this.nx, this.ny) + 2));
  }

  setPrimitives(s: Primitives): void {
    const n = this.nx * this.ny, g1 = this.gamma - 1, u = this.u;
    for (let c = 0; c < n; c++) {
      const r = s.rho[c], vx = s.vx[c], vy = s.vy[c];
      u[c] = r;
      u[n + c] = r * vx;
      u[2 * n + c] = r * vy;
      u[3 * n + c] = s.p[c] / g1 + 0.5 * r * (vx * vx + vy * vy);
    }
  }

  primitives(): Primitives {
    const n = this.nx * this.ny, g1 = this.gamma - 1, u = this.u;
    const out = {
      rho: new Float64Array(n),
      vx: new Float64Array(n),
      vy: new Float64Array(n),
      p: new Float64Array(n),
    };
    for (let c = 0; c < n; c++) {
      const r = u[c], vx = u[n + c] / r, vy = u[2 * n + c] / r;
      out.rho[c] = r;
      out.vx[c] = vx;
      out.vy[c] = vy;
      out.p[c] = g1 * (u[3 * n + c] - 0.5 * r * (vx * vx + vy * vy));
    }
    return out;
  }

  /** Domain totals of (ρ, ρu, ρv, E), times the cell area. */
  totals(): [number, number, number, number] {
    const n = this.nx * this.ny, a = this.dx * this.dy, t: [number, number, number, number] = [0, 0, 0, 0];
    for (let k = 0; k < 4; k++) {
      let s = 0;
      for (let c = 0; c < n; c++) s += this.u[k * n + c];
      t[k] = s * a;
    }
    return t;
  }

  /** Largest stable dt for the current state (CFL condition of the unsplit scheme). */
  stableDt(): number {
    const n = this.nx * this.ny, g = this.gamma, u = this.u;
    let m = 0;
    for (let c = 0; c < n; c++) {
      const r = u[c], vx = u[n + c] / r, vy = u[2 * n + c] / r;
      const p = (g - 1) * (u[3 * n + c] - 0.5 * r * (vx * vx + vy * vy));
      const cs = Math.sqrt((g * Math.max(p, 0)) / r);
      const s = (Math.abs(vx) + cs) / this.dx + (Math.abs(vy) + cs) / this.dy;
      if (s > m) m = s;
    }
    return this.cfl / m;
  }

  /** Advances to time tEnd with CFL-adaptive substeps, landing exactly on tEnd. Returns the substep count. */
  advanceTo(tEnd: number): number {
    let steps = 0;
    while (this.time < tEnd - 1e-12 * Math.max(1, tEnd)) {
      const dt = Math.min(this.stableDt(), tEnd - this.time);
      this.step(dt);
      steps++;
    }
    this.time = tEnd;
    return steps;
  }

  /** One SSP-RK2 step: u1 = u + dt L(u); u ← ½u + ½(u1 + dt L(u1)). Halves dt until the result is admissible. */
  step(dt: number): void {
    const n4 = this.u.length;
    this.u0.set(this.u);
    for (let attempt = 0; attempt < 9; attempt++) {
      const h = dt / 2 ** attempt;
      let ok = true;
      for (let sub = 0; sub < 2 ** attempt && ok; sub++) {
        const start = this.us;
        start.set(this.u);
        this.rhsInto(this.u, this.rhs);
        for (let k = 0; k < n4; k++) this.u[k] += h * this.rhs[k];
        this.rhsInto(this.u, this.rhs);
        for (let k = 0; k < n4; k++) this.u[k] = 0.5 * start[k] + 0.5 * (this.u[k] + h * this.rhs[k]);
        ok = this.admissible();
      }
      if (ok) {
        this.time += dt;
        return;
      }
      this.u.set(this.u0);
    }
    throw new Error(`Euler step lost positivity at t=${this.time} even with dt/256`);
  }

  private admissible(): boolean {
    const n = this.nx * this.ny, u = this.u;
    for (let c = 0; c < n; c++) {
      const r = u[c];
      const ke = 0.5 * (u[n + c] * u[n + c] + u[2 * n + c] * u[2 * n + c]) / r;
      if (!(r > 0) || !(u[3 * n + c] - ke > 0)) return false;
    }
    return true;
  }

  /** Fills the padded primitive array from u, including ghost layers along both axes. */
  private fillPrimitives(u: Float64Array): void {
    const { nx, ny } = this, n = nx * ny, g1 = this.gamma - 1;
    const NY = ny + 2 * G, P = (nx + 2 * G) * NY, w = this.w;
    for (let i = 0; i < nx; i++) {
      for (let j = 0; j < ny; j++) {
        const c = i * ny + j, q = (i + G) * NY + j + G;
        const r = u[c], vx = u[n + c] / r, vy = u[2 * n + c] / r;
        w[q] = r;
        w[P + q] = vx;
        w[2 * P + q] = vy;
        w[3 * P + q] = g1 * (u[3 * n + c] - 0.5 * r * (vx * vx + vy * vy));
      }
    }
    const [bx, by] = this.boundary;
    for (let k = 0; k < 4; k++) {
      const o = k * P;
      for (let g = 0; g < G; g++) {
        for (let j = G; j < ny + G; j++) {
          const lo = bx === "periodic" ? nx + g : G; // source row for ghost row g
          const hi = bx === "periodic" ? G + g : nx + G - 1;
          w[o + g * NY + j] = w[o + lo * NY + j];
          w[o + (nx + G + g) * NY + j] = w[o + hi * NY + j];
        }
      }
      for (let i = G; i < nx + G; i++) {
        const row = o + i * NY;
        for (let g = 0; g < G; g++) {
          w[row + g] = w[row + (by === "periodic" ? ny + g : G)];
          w[row + ny + G + g] = w[row + (by === "periodic" ? G + g : ny + G - 1)];
        }
      }
    }
  }

  /** rhs = −∂F/∂x − ∂G/∂y for state u. */
  private rhsInto(u: Float64Array, rhs: Float64Array): void {
    this.fillPrimitives(u);
    rhs.fill(0);
    this.sweep(rhs, 0);
    this.sweep(rhs, 1);
  }

  /** Adds the flux divergence along one axis (0: x, 1: y) to rhs. */
  private sweep(rhs: Float64Array, axis: 0 | 1): void {
    const { nx, ny } = this, n = nx * ny, w = this.w, f = this.f, lim = this.limiter, g = this.gamma;
    const NY = ny + 2 * G, P = (nx + 2 * G) * NY;
    const step = axis === 0 ? NY : 1; // padded-index distance to the next cell along the axis
    const nAlong = axis === 0 ? nx : ny, nAcross = axis === 0 ? ny : nx;
    const inv = 1 / (axis === 0 ? this.dx : this.dy);
    const pn = axis === 0 ? P : 2 * P, pt = axis === 0 ? 2 * P : P; // normal / tangential velocity planes
    const mn = axis === 0 ? n : 2 * n, mt = axis === 0 ? 2 * n : n;
    const hllc = this.hllc;
    const L = nAlong + 2, sl = this.slopes; // limited slopes of cells −1..nAlong of one line, per variable
    for (let a = 0; a < nAcross; a++) {
      const q0 = axis === 0 ? (G - 1) * NY + a + G : (a + G) * NY + G - 1; // padded index of cell −1
      for (let k = 0; k < L; k++) {
        const q = q0 + k * step;
        sl[k] = limit(lim, w[q] - w[q - step], w[q + step] - w[q]);
        sl[L + k] = limit(lim, w[pn + q] - w[pn + q - step], w[pn + q + step] - w[pn + q]);
        sl[2 * L + k] = limit(lim, w[pt + q] - w[pt + q - step], w[pt + q + step] - w[pt + q]);
        sl[3 * L + k] = limit(lim, w[3 * P + q] - w[3 * P + q - step], w[3 * P + q + step] - w[3 * P + q]);
      }
      for (let s = 0; s <= nAlong; s++) {
        // interface between interior cells s−1 (left: slope slot s, padded qa) and s (right: slot s+1, qb)
        const qa = q0 + s * step, qb = qa + step;
        let rL = w[qa], uL = w[pn + qa], vL = w[pt + qa], pL = w[3 * P + qa];
        let rR = w[qb], uR = w[pn + qb], vR = w[pt + qb], pR = w[3 * P + qb];
        const rL2 = rL + 0.5 * sl[s], uL2 = uL + 0.5 * sl[L + s];
        const vL2 = vL + 0.5 * sl[2 * L + s], pL2 = pL + 0.5 * sl[3 * L + s];
        const rR2 = rR - 0.5 * sl[s + 1], uR2 = uR - 0.5 * sl[L + s + 1];
        const vR2 = vR - 0.5 * sl[2 * L + s + 1], pR2 = pR - 0.5 * sl[3 * L + s + 1];
        if (rL2 > 0 && pL2 > 0 && rR2 > 0 && pR2 > 0) {
          rL = rL2, uL = uL2, vL = vL2, pL = pL2, rR = rR2, uR = uR2, vR = vR2, pR = pR2;
        }
        riemannFlux(hllc, g, rL, uL, vL, pL, rR, uR, vR, pR, f);
        // cell s−1 loses the flux, cell s gains it (skipping ghost cells)
        if (s > 0) {
          const c = axis === 0 ? (s - 1) * ny + a : a * ny + s - 1;
          rhs[c] -= f[0] * inv;
          rhs[mn + c] -= f[1] * inv;
          rhs[mt + c] -= f[2] * inv;
          rhs[3 * n + c] -= f[3] * inv;
        }
        if (s < nAlong) {
          const c = axis === 0 ? s * ny + a : a * ny + s;
          rhs[c] += f[0] * inv;
          rhs[mn + c] += f[1] * inv;
          rhs[mt + c] += f[2] * inv;
          rhs[3 * n + c] += f[3] * inv;
        }
      }
    }
  }
}

export interface QuadrantOptions {
  /** Ranges of the uniform draws of each quadrant's constant state. */
  density?: [number, number];
  pressure?: [number, number];
  velocity?: [number, number];
  /** Range of the split point, as a fraction of each side. */
  split?: [number, number];
}

/**
 * Multi-quadrant Riemann initial condition, as in The Well's `euler_multi_quadrants`: a random split point cuts the
 * domain into four rectangles, each with its own constant (ρ, u, v, p). Draw order: split x, split y, then per
 * quadrant ρ, u, v, p. The default ranges (ρ ∈ [0.1, 1.7], p ∈ [0.1, 1.6], u, v ∈ [−1, 1]) are chosen so that the
 * method's fixed Euler constants (log1p, μ = [1.20, 0.60, 0.58, 0, 0], s = [0.51, 0.27, 0.29, 0.53, 0.52]) map the
 * simulated fields to roughly zero mean and unit variance, as they do for The Well's data.
 */
export function quadrantInitialCondition(
  rng: { uniform(lo: number, hi: number): number },
  nx: number,
  ny: number,
  o: QuadrantOptions = {},
): Primitives {
  const [r0, r1] = o.density ?? [0.1, 1.7];
  const [p0, p1] = o.pressure ?? [0.1, 1.6];
  const [v0, v1] = o.velocity ?? [-1, 1];
  const [s0, s1] = o.split ?? [0.25, 0.75];
  const sx = rng.uniform(s0, s1) * nx, sy = rng.uniform(s0, s1) * ny;
  const q = Array.from(
    { length: 4 },
    () => [rng.uniform(r0, r1), rng.uniform(v0, v1), rng.uniform(v0, v1), rng.uniform(p0, p1)],
  );
  const n = nx * ny;
  const out = {
    rho: new Float64Array(n),
    vx: new Float64Array(n),
    vy: new Float64Array(n),
    p: new Float64Array(n),
  };
  for (let i = 0; i < nx; i++) {
    for (let j = 0; j < ny; j++) {
      const k = (i + 0.5 < sx ? 0 : 1) + (j + 0.5 < sy ? 0 : 2), c = i * ny + j, s = q[k];
      out.rho[c] = s[0];
      out.vx[c] = s[1];
      out.vy[c] = s[2];
      out.p[c] = s[3];
    }
  }
  return out;
}
