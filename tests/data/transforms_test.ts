/**
 * Normalization (method §0 transforms and constants, The Well's z-score) and the conditioning vector θ.
 */
import assert from "node:assert/strict";
import { parseStats } from "../../data/stats.ts";
import {
  METHOD_PRESETS,
  methodPresetFor,
  Normalizer,
  thetaNames,
  thetaVector,
} from "../../data/transforms.ts";
import type { FieldInfo } from "../../data/well_file.ts";
import { maxAbsDiff } from "./fixtures.ts";

const field = (name: string, order: 0 | 1, channels: string[]): FieldInfo => ({
  name,
  group: order === 0 ? "t0_fields" : "t1_fields",
  order,
  sampleVarying: true,
  timeVarying: true,
  dimVarying: [true, true],
  channels,
});
const eulerFields = [
  field("energy", 0, ["energy"]),
  field("density", 0, ["density"]),
  field("pressure", 0, ["pressure"]),
  field("momentum", 1, ["momentum_x", "momentum_y"]),
];
const eulerChannels = ["energy", "density", "pressure", "momentum_x", "momentum_y"];

/** Positive values for the log channels, signed ones elsewhere: (B=3, C, S=7). */
function sample(C: number, positive: boolean[]): Float32Array {
  const S = 7, x = new Float32Array(3 * C * S);
  for (let i = 0; i < x.length; i++) {
    const c = Math.floor(i / S) % C;
    const v = Math.sin(i * 0.91) * 3;
    x[i] = positive[c] ? Math.abs(v) * 2 + 1e-3 : v;
  }
  return x;
}

Deno.test("normalization: Euler uses log1p on energy, density, pressure and the method's μ, s", () => {
  const n = Normalizer.forDataset({
    datasetName: "euler_multi_quadrants_openBC",
    channels: eulerChannels,
    fields: eulerFields,
  }, null);
  assert.equal(n.source, "method");
  assert.deepEqual(n.transforms, ["log1p", "log1p", "log1p", null, null]);
  const x = Float32Array.from([Math.E - 1, Math.E - 1, Math.E - 1, 0.53, -0.52]); // S = 1
  n.normalize(x, 1);
  const want = [(1 - 1.2) / 0.51, (1 - 0.6) / 0.27, (1 - 0.58) / 0.29, 1, -1];
  assert.ok(maxAbsDiff(x, want) < 1e-6, `max error ${maxAbsDiff(x, want)}`);
  assert.equal(
    methodPresetFor("euler_multi_quadrants")?.channels[0],
    "energy",
    "the built-in dataset's name selects it",
  );
});

Deno.test("normalization: TGC uses log(x + 1e-6) on density, pressure, temperature", () => {
  const p = METHOD_PRESETS.turbulence_gravity_cooling;
  const fields = [
    field("density", 0, ["density"]),
    field("pressure", 0, ["pressure"]),
    field("temperature", 0, ["temperature"]),
    { ...field("velocity", 1, ["velocity_x", "velocity_y", "velocity_z"]), dimVarying: [true, true, true] },
  ];
  const n = Normalizer.forDataset(
    { datasetName: "turbulence_gravity_cooling", channels: p.channels, fields },
    null,
  );
  const x = Float32Array.from([1e-6, 1, Math.exp(5.5) - 1e-6, 0.5, 0, -0.5]);
  n.normalize(x, 1);
  const want = [(Math.log(2e-6) + 1.75) / 0.95, (Math.log(1 + 1e-6) + 4.2) / 1.75, 0, 1, 0, -1];
  assert.ok(maxAbsDiff(x, want) < 1e-5, `max error ${maxAbsDiff(x, want)}`);
});

Deno.test("normalization: denormalize(normalize(x)) = x for the method presets and z-score", () => {
  const stats = parseStats(
    `mean:\n  energy: 2.0\n  density: 0.5\n  pressure: 1.0\n  momentum: [0.1, -0.2]\n` +
      `std:\n  energy: 1.5\n  density: 0.25\n  pressure: 0.00001\n  momentum: [0.5, 0.7]\n`,
  );
  const cases: [string, Normalizer, boolean[]][] = [
    [
      "euler method",
      Normalizer.forDataset({
        datasetName: "euler_multi_quadrants_periodicBC",
        channels: eulerChannels,
        fields: eulerFields,
      }, null),
      [true, true, true, false, false],
    ],
    [
      "z-score",
      Normalizer.forDataset({ datasetName: "custom", channels: eulerChannels, fields: eulerFields }, stats),
      [false, false, false, false, false],
    ],
  ];
  const rb = METHOD_PRESETS.rayleigh_benard;
  const rbFields = [
    field("buoyancy", 0, ["buoyancy"]),
    field("pressure", 0, ["pressure"]),
    field("velocity", 1, ["velocity_x", "velocity_y"]),
  ];
  cases.push([
    "rayleigh_benard",
    Normalizer.forDataset({ datasetName: "rayleigh_benard", channels: rb.channels, fields: rbFields }, null),
    [false, false, false, false],
  ]);
  for (const [label, n, positive] of cases) {
    const x = sample(n.channels.length, positive);
    const y = n.denormalize(n.normalize(x.slice(), 7), 7);
    let worst = 0;
    x.forEach((v, i) => (worst = Math.max(worst, Math.abs(y[i] - v) / Math.max(1, Math.abs(v)))));
    assert.ok(worst < 2e-6, `${label}: max relative round-trip error ${worst}`);
  }
  // z-score floors std at 1e-4, as The Well does
  assert.equal(cases[1][1].std[2], 1e-4);
});

Deno.test("normalization: a dataset whose channels contradict its method preset is an error", () => {
  assert.throws(
    () =>
      Normalizer.forDataset({
        datasetName: "euler_multi_quadrants_openBC",
        channels: ["density", "energy"],
        fields: [],
      }, null),
    /method preset expects/,
  );
});

Deno.test("θ: constant scalars (log of Rayleigh and Prandtl) then the flattened BC codes", () => {
  assert.deepEqual(Array.from(thetaVector([{ name: "gamma", value: 1.4 }], [[2, 2], [2, 2]])), [
    Math.fround(1.4),
    2,
    2,
    2,
    2,
  ]);
  const rb = thetaVector([{ name: "Rayleigh", value: 1e8 }, { name: "Prandtl", value: 0.1 }], [[2, 2], [
    0,
    0,
  ]]);
  assert.equal(rb.length, 6, "RB: D_θ = 6");
  assert.ok(Math.abs(rb[0] - Math.log(1e8)) < 1e-5 && Math.abs(rb[1] - Math.log(0.1)) < 1e-6);
  assert.deepEqual(Array.from(rb.slice(2)), [2, 2, 0, 0]);
  const tgc = thetaVector([{ name: "rho0", value: 44.5 }, { name: "Z", value: 0.1 }, {
    name: "T0",
    value: 100,
  }], [[1, 1], [1, 1], [1, 1]]);
  assert.equal(
    tgc.length,
    9,
    "TGC: D_θ = 9, its scalars are not logged (lola's LogScalars only knows rayleigh/prandtl)",
  );
  assert.equal(tgc[2], 100);
  assert.deepEqual(thetaNames(["gamma"], ["x", "y"]), [
    "gamma",
    "bc_x_lower",
    "bc_x_upper",
    "bc_y_lower",
    "bc_y_upper",
  ]);
});
