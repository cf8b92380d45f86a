/**
 * Augmentations (method §0, the_well augmentation.py): a flipped / permuted / rolled sample equals the sample of
 * the flipped / permuted / translated physical field, for scalar, vector and rank-2 tensor fields, identically for
 * all frames, with the BC tensor transformed to match.
 */
import assert from "node:assert/strict";
import {
  applyAugmentation,
  augmentationsFor,
  augmentBoundaryConditions,
  type AxisAugmentation,
  channelKinds,
  drawAugmentation,
} from "../../data/augment.ts";
import { Rng } from "../../data/rng.ts";
import type { FieldInfo } from "../../data/well_file.ts";
import { maxAbsDiff } from "./fixtures.ts";

/**
 * Physical fields on [0,1]^D at time τ: scalar p, vector u (analytic), and the tensor A = ∇u (A_ij = ∂u_i/∂x_j),
 * which transforms as R A Rᵀ, like any rank-2 field.
 */
const D3 = 3;
function p(x: number[], tau: number) {
  return Math.sin(2 * x[0] + 0.3 * tau) + x[1] * x[1] * 1.7 - 0.4 * x[2] * x[0];
}
function u(x: number[], tau: number): number[] {
  return [
    Math.sin(3 * x[1] + tau) + x[0],
    x[0] * x[2] - 2 * x[1] * x[1],
    Math.cos(x[0] + 2 * x[1]) + 0.5 * x[2],
  ];
}
function gradU(x: number[], tau: number): number[][] {
  return [
    [1, 3 * Math.cos(3 * x[1] + tau), 0],
    [x[2], -4 * x[1], x[0]],
    [-Math.sin(x[0] + 2 * x[1]), -2 * Math.sin(x[0] + 2 * x[1]), 0.5],
  ];
}

/** Frames (L, C = 1 + 3 + 9, N0, N1, N2) sampled at cell centres, with a map from grid point to position. */
function sampleFields(shape: number[], L: number, pos: (idx: number[]) => number[], field = { p, u, gradU }) {
  const S = shape.reduce((a, b) => a * b, 1), C = 1 + 3 + 9;
  const out = new Float32Array(L * C * S);
  for (let l = 0; l < L; l++) {
    for (let s = 0; s < S; s++) {
      const idx = [Math.floor(s / (shape[1] * shape[2])), Math.floor(s / shape[2]) % shape[1], s % shape[2]];
      const x = pos(idx);
      const vals = [field.p(x, l), ...field.u(x, l), ...field.gradU(x, l).flat()];
      vals.forEach((v, c) => (out[(l * C + c) * S + s] = v));
    }
  }
  return out;
}

const fields: FieldInfo[] = [
  {
    name: "p",
    group: "t0_fields",
    order: 0,
    sampleVarying: true,
    timeVarying: true,
    dimVarying: [true, true, true],
    channels: ["p"],
  },
  {
    name: "u",
    group: "t1_fields",
    order: 1,
    sampleVarying: true,
    timeVarying: true,
    dimVarying: [true, true, true],
    channels: ["u_x", "u_y", "u_z"],
  },
  {
    name: "A",
    group: "t2_fields",
    order: 2,
    sampleVarying: true,
    timeVarying: true,
    dimVarying: [true, true, true],
    channels: Array(9).fill("A"),
  },
];
const kinds = channelKinds(fields, D3);

/**
 * The expected augmented sample from physics: output point with index o sits at position y (in the output grid);
 * it came from input position x = Φ⁻¹(y) where Φ = roll ∘ permute ∘ flip; values are v' = R v(x) for vectors,
 * R A(x) Rᵀ for tensors, where R is the linear part of Φ.
 */
function expected(shape: number[], a: AxisAugmentation, L: number): Float32Array {
  const outShape = a.permutation.map((q) => shape[q]);
  const centre = (i: number, n: number) => (i + 0.5) / n;
  // R[i][k]: output component i from input component k
  const R: number[][] = a.permutation.map((q) =>
    Array.from({ length: D3 }, (_, k) => (k === q ? (a.flips[q] ? -1 : 1) : 0))
  );
  const inPos = (o: number[]) => {
    const x = [0, 0, 0];
    a.permutation.forEach((q, i) => {
      const n = outShape[i];
      const j = (((o[i] - a.shifts[i]) % n) + n) % n; // undo the roll (periodic translation)
      const c = centre(j, n);
      x[q] = a.flips[q] ? 1 - c : c; // undo the flip x ↦ 1 − x
    });
    return x;
  };
  const mv = (v: number[]) => R.map((row) => row.reduce((acc, r, k) => acc + r * v[k], 0));
  const rart = (A: number[][]) => {
    const RA = R.map((row) => A[0].map((_, j) => row.reduce((acc, r, k) => acc + r * A[k][j], 0)));
    return RA.map((row) => R.map((rj) => row.reduce((acc, v, k) => acc + v * rj[k], 0)));
  };
  return sampleFields(outShape, L, inPos, {
    p,
    u: (x, t) => mv(u(x, t)),
    gradU: (x, t) => rart(gradU(x, t)),
  });
}

Deno.test("augment: a flipped, permuted and rolled field equals the same map applied to the physical field", () => {
  const shape = [6, 5, 4], L = 2;
  const centre = (idx: number[]) => idx.map((i, d) => (i + 0.5) / shape[d]);
  const x = sampleFields(shape, L, centre);
  const all: AxisAugmentation[] = [];
  for (const perm of [[0, 1, 2], [1, 0, 2], [2, 0, 1], [0, 2, 1], [1, 2, 0], [2, 1, 0]]) {
    for (let f = 0; f < 8; f++) {
      const flips = [0, 1, 2].map((d) => ((f >> d) & 1) === 1);
      all.push({ flips, permutation: perm, shifts: [0, 0, 0] });
      all.push({
        flips,
        permutation: perm,
        shifts: [f % 3, 0, (f * 2 + 1) % 4].map((s, i) => s % shape[perm[i]]),
      });
    }
  }
  let worst = 0;
  for (const a of all) {
    const got = applyAugmentation(x, shape, kinds, a);
    const want = expected(shape, a, L);
    const err = maxAbsDiff(got, want);
    worst = Math.max(worst, err);
    assert.ok(err < 1e-5, `flips ${a.flips} perm ${a.permutation} shifts ${a.shifts}: max error ${err}`);
  }
  assert.ok(worst < 1e-5, `max error ${worst}`);
});

Deno.test("augment: the gradient of an augmented potential is the augmented gradient (vector signs and order)", () => {
  // φ(x, y) on a 2-D grid; u = ∇φ by central differences, computed before and after augmentation.
  const N = [7, 7], S = 49;
  const phi = (i: number, j: number) => Math.sin(0.9 * i + 0.2 * j * j) + 0.1 * i * j;
  const grad = (f: (i: number, j: number) => number) => {
    const out = new Float32Array(3 * S);
    for (let i = 0; i < 7; i++) {
      for (let j = 0; j < 7; j++) {
        out[i * 7 + j] = f(i, j);
        out[S + i * 7 + j] = (f(i + 1, j) - f(i - 1, j)) / 2;
        out[2 * S + i * 7 + j] = (f(i, j + 1) - f(i, j - 1)) / 2;
      }
    }
    return out;
  };
  const k2 = channelKinds([
    { ...fields[0], dimVarying: [true, true] },
    { ...fields[1], dimVarying: [true, true], channels: ["u_x", "u_y"] },
  ], 2);
  for (
    const a of [
      { flips: [true, false], permutation: [0, 1], shifts: [0, 0] },
      { flips: [false, true], permutation: [1, 0], shifts: [0, 0] },
      { flips: [true, true], permutation: [1, 0], shifts: [0, 0] },
    ]
  ) {
    const got = applyAugmentation(grad(phi), N, k2, a);
    // the augmented potential as a function of output indices
    const aphi = (i: number, j: number) => {
      const o = [i, j], src = [0, 0];
      a.permutation.forEach((q, d) => (src[q] = a.flips[q] ? 6 - o[d] : o[d]));
      return phi(src[0], src[1]);
    };
    const want = grad(aphi);
    assert.ok(maxAbsDiff(got, want) < 1e-5, `${JSON.stringify(a)}: max error ${maxAbsDiff(got, want)}`);
  }
});

Deno.test("augment: BC entries swap on flipped axes, rows follow the permutation, only periodic axes roll", () => {
  const bc = [[0, 1], [2, 2], [1, 1]]; // x: wall/open, y periodic, z open
  const a: AxisAugmentation = { flips: [true, false, true], permutation: [2, 0, 1], shifts: [0, 0, 0] };
  assert.deepEqual(augmentBoundaryConditions(bc, a), [[1, 1], [1, 0], [2, 2]]);
  let rolledNonPeriodic = 0, rolledPeriodic = 0;
  for (let s = 0; s < 200; s++) {
    const d = drawAugmentation(new Rng(s), { flip: true, permute: true, roll: true }, [4, 4, 4], bc);
    const out = augmentBoundaryConditions(bc, d);
    d.shifts.forEach((sh, i) => {
      if (out[i][0] === 2 && out[i][1] === 2) rolledPeriodic += sh > 0 ? 1 : 0;
      else rolledNonPeriodic += sh;
    });
  }
  assert.equal(rolledNonPeriodic, 0, "non-periodic axes never roll");
  assert.ok(rolledPeriodic > 100, `periodic axes roll by a uniform shift (${rolledPeriodic}/200 non-zero)`);
});

Deno.test("augment: draws are seeded, flips have p = 1/2 per axis, permutations are uniform", () => {
  const a1 = drawAugmentation(new Rng(42), { flip: true, permute: true, roll: true }, [8, 8], [[2, 2], [
    2,
    2,
  ]]);
  const a2 = drawAugmentation(new Rng(42), { flip: true, permute: true, roll: true }, [8, 8], [[2, 2], [
    2,
    2,
  ]]);
  assert.deepEqual(a1, a2);
  const n = 4000;
  let flips = 0, swaps = 0;
  for (let s = 0; s < n; s++) {
    const a = drawAugmentation(new Rng(s * 7919 + 1), { flip: true, permute: true }, [8, 8], [[1, 1], [
      1,
      1,
    ]]);
    flips += a.flips.filter(Boolean).length;
    swaps += a.permutation[0] === 1 ? 1 : 0;
  }
  assert.ok(Math.abs(flips / (2 * n) - 0.5) < 0.03, `flip rate ${flips / (2 * n)}`);
  assert.ok(Math.abs(swaps / n - 0.5) < 0.03, `swap rate ${swaps / n}`);
  assert.deepEqual(augmentationsFor("rayleigh_benard", [512, 128]), { flip: true, roll: true });
  assert.deepEqual(augmentationsFor("euler_multi_quadrants", [64, 64]), {
    flip: true,
    permute: true,
    roll: true,
  });
});
