/**
 * The exact solution of the 1-D Riemann problem for the Euler equations of an ideal gas (Toro, "Riemann Solvers
 * and Numerical Methods for Fluid Dynamics", ch. 4): the reference the simulator is validated against (Sod tube).
 *
 * Invariants: the star pressure solves f_L(p) + f_R(p) + u_R − u_L = 0 by Newton iteration from the PVRS guess
 * (relative change < 1e-12); states with a vacuum (2(c_L + c_R)/(γ−1) ≤ u_R − u_L) are rejected.
 */

export interface GasState {
  rho: number;
  u: number;
  p: number;
}

export interface RiemannSolution {
  pStar: number;
  uStar: number;
  /** The state at similarity coordinate ξ = (x − x0)/t. */
  sample(xi: number): GasState;
}

export function exactRiemann(L: GasState, R: GasState, gamma: number): RiemannSolution {
  const g = gamma;
  const cL = Math.sqrt((g * L.p) / L.rho), cR = Math.sqrt((g * R.p) / R.rho);
  if ((2 * (cL + cR)) / (g - 1) <= R.u - L.u) {
    throw new Error("exactRiemann: the initial data generate a vacuum");
  }

  // f_K(p) and its derivative: shock branch for p > p_K, rarefaction branch otherwise.
  const fK = (p: number, s: GasState, c: number): [number, number] => {
    if (p > s.p) {
      const A = 2 / ((g + 1) * s.rho), B = ((g - 1) / (g + 1)) * s.p;
      const q = Math.sqrt(A / (p + B));
      return [(p - s.p) * q, q * (1 - (p - s.p) / (2 * (B + p)))];
    }
    const r = p / s.p;
    return [
      ((2 * c) / (g - 1)) * (r ** ((g - 1) / (2 * g)) - 1),
      (1 / (s.rho * c)) * r ** (-(g + 1) / (2 * g)),
    ];
  };

  let p = Math.max(1e-10, 0.5 * (L.p + R.p) - 0.125 * (R.u - L.u) * (L.rho + R.rho) * (cL + cR));
  for (let it = 0; it < 100; it++) {
    const [fl, dl] = fK(p, L, cL), [fr, dr] = fK(p, R, cR);
    const next = Math.max(1e-12, p - (fl + fr + R.u - L.u) / (dl + dr));
    const change = Math.abs(next - p) / (0.5 * (next + p));
    p = next;
    if (change < 1e-12) break;
  }
  const pStar = p;
  const uStar = 0.5 * (L.u + R.u) + 0.5 * (fK(pStar, R, cR)[0] - fK(pStar, L, cL)[0]);
  const gm = (g - 1) / (g + 1);

  const sample = (xi: number): GasState => {
    if (xi <= uStar) {
      if (pStar > L.p) { // left shock
        const sL = L.u - cL * Math.sqrt(((g + 1) / (2 * g)) * (pStar / L.p) + (g - 1) / (2 * g));
        if (xi <= sL) return { ...L };
        return { rho: (L.rho * (pStar / L.p + gm)) / (gm * (pStar / L.p) + 1), u: uStar, p: pStar };
      }
      const cStar = cL * (pStar / L.p) ** ((g - 1) / (2 * g)); // left rarefaction
      if (xi <= L.u - cL) return { ...L };
      if (xi >= uStar - cStar) return { rho: L.rho * (pStar / L.p) ** (1 / g), u: uStar, p: pStar };
      const f = 2 / (g + 1) + (gm / cL) * (L.u - xi);
      return {
        rho: L.rho * f ** (2 / (g - 1)),
        u: (2 / (g + 1)) * (cL + ((g - 1) / 2) * L.u + xi),
        p: L.p * f ** ((2 * g) / (g - 1)),
      };
    }
    if (pStar > R.p) { // right shock
      const sR = R.u + cR * Math.sqrt(((g + 1) / (2 * g)) * (pStar / R.p) + (g - 1) / (2 * g));
      if (xi >= sR) return { ...R };
      return { rho: (R.rho * (pStar / R.p + gm)) / (gm * (pStar / R.p) + 1), u: uStar, p: pStar };
    }
    const cStar = cR * (pStar / R.p) ** ((g - 1) / (2 * g)); // right rarefaction
    if (xi >= R.u + cR) return { ...R };
    if (xi <= uStar + cStar) return { rho: R.rho * (pStar / R.p) ** (1 / g), u: uStar, p: pStar };
    const f = 2 / (g + 1) - (gm / cR) * (R.u - xi);
    return {
      rho: R.rho * f ** (2 / (g - 1)),
      u: (2 / (g + 1)) * (-cR + ((g - 1) / 2) * R.u + xi),
      p: R.p * f ** ((2 * g) / (g - 1)),
    };
  };
  return { pStar, uStar, sample };
}
