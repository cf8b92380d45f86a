/**
 * The built-in simulator: the exact Riemann solver against Toro's tables, the Sod tube (through the 2-D solver,
 * along either axis) converging to the exact solution, conservation with periodic boundaries, positivity, and
 * reproducible datasets.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import h5wasm from "h5wasm/node";
import type { Dataset, Group } from "h5wasm/node";
import { type EulerFlux, EulerSolver, type Primitives, quadrantInitialCondition } from "../../data/euler.ts";
import { generateEulerDataset, simulateTrajectory } from "../../data/euler_dataset.ts";
import { ensureH5 } from "../../data/h5.ts";
import { exactRiemann, type GasState } from "../../data/riemann_exact.ts";
import { Rng } from "../../data/rng.ts";
import { WellDataset } from "../../data/well_dataset.ts";
import { withTempDir } from "./fixtures.ts";

Deno.test("euler: the exact Riemann solver reproduces Toro's star states (tests 1–3, Table 4.2)", () => {
  const cases: [GasState, GasState, number, number][] = [
    [{ rho: 1, u: 0, p: 1 }, { rho: 0.125, u: 0, p: 0.1 }, 0.30313, 0.92745],
    [{ rho: 1, u: -2, p: 0.4 }, { rho: 1, u: 2, p: 0.4 }, 0.00189, 0],
    [{ rho: 1, u: 0, p: 1000 }, { rho: 1, u: 0, p: 0.01 }, 460.894, 19.5975],
  ];
  for (const [L, R, p, u] of cases) {
    const s = exactRiemann(L, R, 1.4);
    assert.ok(Math.abs(s.pStar - p) <= 5e-5 * Math.max(1, p), `p* = ${s.pStar}, Toro ${p}`);
    assert.ok(Math.abs(s.uStar - u) <= 5e-5 * Math.max(1, Math.abs(u)), `u* = ${s.uStar}, Toro ${u}`);
  }
});

/** Sod tube along `axis` of an n × 4 (or 4 × n) grid with open ends; returns the L1 density error at t = 0.2. */
function sodError(n: number, axis: 0 | 1, flux: EulerFlux = "hllc"): { l1: number; rho: Float64Array } {
  const [nx, ny] = axis === 0 ? [n, 4] : [4, n];
  const s = new EulerSolver({ nx, ny, dx: 1 / n, dy: 1 / n, gamma: 1.4, boundary: "open", flux });
  const N = nx * ny;
  const prim: Primitives = {
    rho: new Float64Array(N),
    vx: new Float64Array(N),
    vy: new Float64Array(N),
    p: new Float64Array(N),
  };
  for (let i = 0; i < nx; i++) {
    for (let j = 0; j < ny; j++) {
      const x = ((axis === 0 ? i : j) + 0.5) / n, c = i * ny + j;
      prim.rho[c] = x < 0.5 ? 1 : 0.125;
      prim.p[c] = x < 0.5 ? 1 : 0.1;
    }
  }
  s.setPrimitives(prim);
  s.advanceTo(0.2);
  const exact = exactRiemann({ rho: 1, u: 0, p: 1 }, { rho: 0.125, u: 0, p: 0.1 }, 1.4);
  const out = s.primitives();
  let l1 = 0;
  const rho = new Float64Array(n);
  for (let k = 0; k < n; k++) {
    // every row across the tube must be identical: the problem is 1-D
    const cells = Array.from({ length: 4 }, (_, a) => (axis === 0 ? k * ny + a : a * ny + k));
    for (const c of cells) {
      assert.ok(Math.abs(out.rho[c] - out.rho[cells[0]]) < 1e-13, "uniform across the tube");
    }
    rho[k] = out.rho[cells[0]];
    l1 += Math.abs(rho[k] - exact.sample(((k + 0.5) / n - 0.5) / 0.2).rho) / n;
  }
  return { l1, rho };
}

Deno.test("euler: Sod shock tube converges to the exact solution, L1 density error falling as resolution doubles", () => {
  const errs = [64, 128, 256].map((n) => sodError(n, 0).l1);
  console.log(
    `Sod L1(ρ), HLLC: N=64 ${errs[0].toExponential(3)}, 128 ${errs[1].toExponential(3)}, 256 ${
      errs[2].toExponential(3)
    }`,
  );
  assert.ok(
    errs[1] < 0.75 * errs[0] && errs[2] < 0.75 * errs[1],
    `errors ${errs} must fall by ≥ 25% per doubling`,
  );
  assert.ok(errs[2] < 6e-3, `L1 error at N=256 is ${errs[2]}`);
  const hll = [64, 128].map((n) => sodError(n, 0, "hll").l1);
  assert.ok(hll[1] < 0.75 * hll[0], `HLL errors ${hll}`);
  assert.ok(errs[0] < hll[0], `HLLC resolves the contact better than HLL (${errs[0]} vs ${hll[0]})`);
});

Deno.test("euler: the Sod tube along y gives the same profile as along x (sweeps are symmetric)", () => {
  const x = sodError(64, 0), y = sodError(64, 1);
  let worst = 0;
  x.rho.forEach((v, k) => (worst = Math.max(worst, Math.abs(v - y.rho[k]))));
  assert.ok(worst < 1e-12, `max |ρ_x − ρ_y| = ${worst}`);
});

Deno.test("euler: mass, momentum and energy are conserved to 1e-6 with periodic boundaries", () => {
  for (const seed of [1, 2, 3]) {
    const s = new EulerSolver({ nx: 32, ny: 24, gamma: 1.13 + 0.2 * seed, boundary: "periodic" });
    s.setPrimitives(quadrantInitialCondition(new Rng(seed), 32, 24));
    const before = s.totals();
    const scale = [before[0], Math.abs(before[0]), Math.abs(before[0]), before[3]]; // momentum measured against mass
    const steps = s.advanceTo(0.5);
    const after = s.totals();
    const rel = after.map((a, k) => Math.abs(a - before[k]) / scale[k]);
    console.log(
      `seed ${seed}: ${steps} steps, relative drift ρ ${rel[0].toExponential(1)}, ρu ${
        rel[1].toExponential(1)
      }, ` +
        `ρv ${rel[2].toExponential(1)}, E ${rel[3].toExponential(1)}`,
    );
    assert.ok(Math.max(...rel) <= 1e-6, `seed ${seed}: max relative drift ${Math.max(...rel)}`);
  }
});

Deno.test("euler: density and pressure stay positive (random quadrants, and Toro's near-vacuum 123 problem)", () => {
  for (const [seed, boundary] of [[4, "open"], [5, "periodic"], [6, "open"], [7, "periodic"]] as const) {
    const r = simulateTrajectory({
      resolution: 32,
      steps: 9,
      tEnd: 1.5,
      gamma: 1.13 + 0.08 * seed,
      boundary,
      seed,
    });
    const minRho = Math.min(...r.density), minP = Math.min(...r.pressure);
    assert.ok(minRho > 0 && minP > 0, `seed ${seed}: min ρ ${minRho}, min p ${minP}`);
    assert.ok(r.density.every(Number.isFinite) && r.energy.every(Number.isFinite));
  }
  const n = 100, s = new EulerSolver({ nx: n, ny: 2, gamma: 1.4, boundary: "open" });
  const N = 2 * n,
    prim: Primitives = {
      rho: new Float64Array(N).fill(1),
      vx: new Float64Array(N),
      vy: new Float64Array(N),
      p: new Float64Array(N).fill(0.4),
    };
  for (let c = 0; c < N; c++) prim.vx[c] = Math.floor(c / 2) < n / 2 ? -2 : 2;
  s.setPrimitives(prim);
  s.advanceTo(0.15);
  const out = s.primitives();
  assert.ok(
    Math.min(...out.rho) > 0 && Math.min(...out.p) > 0,
    `123 problem: min ρ ${Math.min(...out.rho)}, min p ${Math.min(...out.p)}`,
  );
  const exact = exactRiemann({ rho: 1, u: -2, p: 0.4 }, { rho: 1, u: 2, p: 0.4 }, 1.4);
  let l1 = 0;
  for (let k = 0; k < n; k++) {
    l1 += Math.abs(out.rho[2 * k] - exact.sample(((k + 0.5) / n - 0.5) / 0.15).rho) / n;
  }
  assert.ok(l1 < 0.05, `123 problem L1(ρ) = ${l1}`);
});

/** Every attribute and dataset of an HDF5 file, as comparable JSON-ish values (object timestamps excluded). */
function contents(path: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const f = new h5wasm.File(path, "r");
  try {
    const walk = (g: Group, prefix: string) => {
      for (const [k, a] of Object.entries(g.attrs)) out[`${prefix}@${k}`] = a.json_value;
      for (const name of g.keys()) {
        const e = g.get(name)!;
        if (e instanceof h5wasm.Group) walk(e, `${prefix}/${name}`);
        else {
          const d = e as Dataset;
          for (const [k, a] of Object.entries(d.attrs)) out[`${prefix}/${name}@${k}`] = a.json_value;
          out[`${prefix}/${name}`] = [d.shape, Array.from(d.value as Float32Array)];
        }
      }
    };
    walk(f, "");
  } finally {
    f.close();
  }
  return out;
}

Deno.test("euler: the same seed gives the same dataset contents, whatever the number of workers", async () => {
  await ensureH5();
  await withTempDir(async (dir) => {
    const opts = {
      resolution: 12,
      trajectories: 6,
      steps: 4,
      tEnd: 0.3,
      gammas: 1,
      boundaries: ["periodic", "open"] as ("periodic" | "open")[],
    };
    await generateEulerDataset({ ...opts, out: join(dir, "a"), seed: 5, workers: 2 });
    await generateEulerDataset({ ...opts, out: join(dir, "b"), seed: 5, workers: 0 });
    await generateEulerDataset({ ...opts, out: join(dir, "c"), seed: 6, workers: 0 });
    const files = (root: string) =>
      ["train", "valid", "test"].flatMap((s) =>
        [...Deno.readDirSync(join(root, "data", s))].map((e) => join(s, e.name)).sort()
      );
    assert.deepEqual(files(join(dir, "a")), files(join(dir, "b")));
    for (const f of files(join(dir, "a"))) {
      assert.deepEqual(contents(join(dir, "a", "data", f)), contents(join(dir, "b", "data", f)), f);
    }
    assert.equal(
      Deno.readTextFileSync(join(dir, "a", "stats.yaml")),
      Deno.readTextFileSync(join(dir, "b", "stats.yaml")),
    );
    assert.notEqual(
      Deno.readTextFileSync(join(dir, "a", "stats.yaml")),
      Deno.readTextFileSync(join(dir, "c", "stats.yaml")),
    );
  });
});

Deno.test("euler: a generated dataset reads back through the Well reader with its fields, θ and stats", async () => {
  await withTempDir(async (dir) => {
    const out = join(dir, "euler");
    await generateEulerDataset({
      out,
      resolution: 16,
      trajectories: 9,
      steps: 5,
      tEnd: 0.2,
      gammas: 1,
      boundaries: ["periodic", "open"],
      seed: 3,
      workers: 0,
    });
    const ds = await WellDataset.open(out, { split: "train", nSteps: 2 });
    try {
      assert.equal(ds.datasetName, "euler_multi_quadrants");
      assert.deepEqual(ds.channels, ["energy", "density", "pressure", "momentum_x", "momentum_y"]);
      assert.deepEqual(
        ds.files.map((f) => f.boundaryConditions),
        [[[1, 1], [1, 1]], [[2, 2], [2, 2]]],
        "open file sorts first",
      );
      const gamma = ds.files[0].scalars[0].values[0];
      assert.ok(gamma >= 1.13 && gamma <= 1.76, `γ = ${gamma}`);
      // the stored fields are consistent: E = p/(γ−1) + |m|²/(2ρ)
      const w = ds.getWindow(ds.length - 1), S = 256;
      let worst = 0;
      for (let s = 0; s < S; s++) {
        const [E, rho, p, mx, my] = [0, 1, 2, 3, 4].map((c) => w.data[(5 + c) * S + s]);
        worst = Math.max(worst, Math.abs(E - (p / (gamma - 1) + (mx * mx + my * my) / (2 * rho))) / E);
      }
      assert.ok(worst < 1e-5, `energy identity off by ${worst}`);
    } finally {
      ds.close();
    }
    const splits = ["train", "valid", "test"].map((s) => [...Deno.readDirSync(join(out, "data", s))].length);
    assert.deepEqual(splits, [2, 2, 2], "every parameter set appears in every split");
  });
});
