/**
 * stats.yaml (well-format §5): streaming computation vs a direct float64 computation, the exact text PyYAML
 * writes, parsing, and per-channel flattening.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  channelStats,
  computeStats,
  formatE4,
  formatStats,
  parseStats,
  readStats,
  type WellStats,
  writeStats,
} from "../../data/stats.ts";
import { WellDataset } from "../../data/well_dataset.ts";
import { assertDataError, withTempDir, writeDatasetRoot } from "./fixtures.ts";

/** A deterministic, non-trivial value per element (float32-rounded, like the stored data). */
function val(k: number, b: number, t: number, s: number, c: number, file: number): number {
  return Math.fround(
    Math.sin(1.3 * k + 0.7 * b + 0.11 * t * (c + 1) + 0.37 * s) * (k + 1) + 0.05 * t * t + 3 * file + c,
  );
}

Deno.test("stats: streamed stats equal a direct float64 computation over the train split", async () => {
  await withTempDir(async (dir) => {
    const shape = [5, 4], S = 20;
    const files = [{ B: 3, T: 7 }, { B: 2, T: 11 }];
    await writeDatasetRoot(dir, {
      train: files.map(({ B, T }, file) => ({
        name: `f${file}.hdf5`,
        opts: {
          B,
          T,
          shape,
          t0: ["density"],
          t1: ["velocity"],
          t2: ["tau"],
          value: (k, b, t, s, c) => val(k, b, t, s, c, file),
        },
      })),
      valid: [{
        name: "v.hdf5",
        opts: { shape, t0: ["density"], t1: ["velocity"], t2: ["tau"], value: () => 1e6 },
      }],
    });
    // Direct: gather every value per (field, component), two-pass mean/variance in float64.
    const fields = [{ name: "density", K: 1 }, { name: "velocity", K: 2 }, { name: "tau", K: 4 }];
    const want = { mean: {}, std: {}, rms: {}, mean_delta: {}, std_delta: {}, rms_delta: {} } as WellStats;
    fields.forEach(({ name, K }, k) => {
      const comp = (delta: boolean) =>
        Array.from({ length: K }, (_, c) => {
          const xs: number[] = [];
          files.forEach(({ B, T }, file) => {
            for (let b = 0; b < B; b++) {
              for (let t = delta ? 1 : 0; t < T; t++) {
                for (let s = 0; s < S; s++) {
                  xs.push(
                    delta
                      ? val(k, b, t, s, c, file) - val(k, b, t - 1, s, c, file)
                      : val(k, b, t, s, c, file),
                  );
                }
              }
            }
          });
          const m = xs.reduce((a, x) => a + x, 0) / xs.length;
          const v = xs.reduce((a, x) => a + (x - m) ** 2, 0) / xs.length;
          return [m, Math.sqrt(v), Math.sqrt(v + m * m)];
        });
      const shaped = (a: number[]) => (K === 1 ? a[0] : K === 2 ? a : [a.slice(0, 2), a.slice(2, 4)]);
      for (const [suffix, delta] of [["", false], ["_delta", true]] as const) {
        const r = comp(delta);
        want[`mean${suffix}`][name] = shaped(r.map((x) => x[0]));
        want[`std${suffix}`][name] = shaped(r.map((x) => x[1]));
        want[`rms${suffix}`][name] = shaped(r.map((x) => x[2]));
      }
    });
    for (const blockFloats of [1 << 24, 3 * S * 4]) { // one read per trajectory, and blocks of 3 steps of tau
      const { stats } = await computeStats(dir, { blockFloats });
      let worst = 0;
      for (const key of Object.keys(want) as (keyof WellStats)[]) {
        for (const name of Object.keys(want[key])) {
          const a = [want[key][name]].flat(2) as number[], b = [stats[key][name]].flat(2) as number[];
          assert.equal(b.length, a.length, `${key}.${name} shape`);
          a.forEach((x, i) => (worst = Math.max(worst, Math.abs(x - b[i]) / Math.max(1, Math.abs(x)))));
        }
        assert.deepEqual(Object.keys(stats[key]).sort(), Object.keys(want[key]).sort());
      }
      assert.ok(worst < 1e-12, `block ${blockFloats}: max relative error ${worst}`);
    }
  });
});

Deno.test("stats: formatStats writes exactly what PyYAML's yaml.dump writes with the %.4E representer", () => {
  // Golden text produced by PyYAML 6.0.3 (yaml.dump, default options, the_well's float representer).
  const stats = {
    mean: { velocity: [2.1672e-05, 1.0063e-13], buoyancy: 0.37085, D: [[1.0, -2.5e-7], [3.0, 1.03125]] },
    std: { x: 1e100, y: -0.0 },
    mean_delta: {},
    rms: {},
    rms_delta: {},
    std_delta: {},
  } as WellStats;
  const golden = `mean:
  D:
  - - 1.0000E+00
    - -2.5000E-07
  - - 3.0000E+00
    - 1.0312E+00
  buoyancy: 3.7085E-01
  velocity:
  - 2.1672E-05
  - 1.0063E-13
mean_delta: {}
rms: {}
rms_delta: {}
std:
  x: 1.0000E+100
  y: -0.0000E+00
std_delta: {}
`;
  assert.equal(formatStats(stats), golden);
});

Deno.test("stats: formatE4 matches Python's f'{x:.4E}', ties to even", () => {
  const xs = [
    1.03125,
    1.09375,
    2.5,
    0.00012345,
    -0.0,
    1e100,
    1e-300,
    123456789.0,
    -7.77777e-9,
    0.1,
    0.3,
    2 / 3,
  ];
  const py = [
    "1.0312E+00",
    "1.0938E+00",
    "2.5000E+00",
    "1.2345E-04",
    "-0.0000E+00",
    "1.0000E+100",
    "1.0000E-300",
  ];
  py.push("1.2346E+08", "-7.7778E-09", "1.0000E-01", "3.0000E-01", "6.6667E-01");
  const more = [9.99995, 9.99994999, 1.00015, 3.14159265, 1.5e-5, 6.103515625e-05, NaN];
  const pyMore = ["1.0000E+01", "9.9999E+00", "1.0002E+00", "3.1416E+00", "1.5000E-05", "6.1035E-05", "NAN"];
  assert.deepEqual([...xs, ...more].map(formatE4), [...py, ...pyMore]);
});

Deno.test("stats: parse(format(stats)) gives the values rounded to 5 significant digits", () => {
  const stats = {
    mean: { rho: 0.123456789, v: [1.5, -2.25e-3] },
    std: { rho: 2.0, v: [3, 4] },
    rms: {},
    mean_delta: {},
    std_delta: {},
    rms_delta: {},
  } as WellStats;
  const back = parseStats(formatStats(stats));
  assert.deepEqual(back.mean, { rho: 0.12346, v: [1.5, -0.00225] });
  assert.deepEqual(back.std, { rho: 2, v: [3, 4] });
});

Deno.test("stats: per-channel values follow channel order (t1 → D values, t2 → D² row-major)", async () => {
  await withTempDir(async (dir) => {
    await writeDatasetRoot(dir, { train: [{ name: "a.hdf5", opts: { t0: ["p"], t1: ["u"], t2: ["s"] } }] });
    const ds = await WellDataset.open(dir);
    try {
      const stats = parseStats(
        `mean:\n  p: 1.0\n  u: [2.0, 3.0]\n  s: [[4.0, 5.0], [6.0, 7.0]]\nstd:\n  p: 1.0\n`,
      );
      assert.deepEqual(Array.from(channelStats(stats, "mean", ds.files[0].fields)), [1, 2, 3, 4, 5, 6, 7]);
      assert.deepEqual(ds.channels, ["p", "u_x", "u_y", "s_xx", "s_xy", "s_yx", "s_yy"]);
      await assertDataError(
        () => channelStats(stats, "std", ds.files[0].fields),
        /no std entry for field 'u'/,
      );
    } finally {
      ds.close();
    }
  });
});

Deno.test("stats: writeStats writes <root>/stats.yaml once and refuses to overwrite without force", async () => {
  await withTempDir(async (dir) => {
    await writeDatasetRoot(dir, {
      train: [{ name: "a.hdf5", opts: { value: (k, b, t, s, c) => k + b + t * s + c } }],
    });
    const { path } = await writeStats(dir);
    assert.equal(path, join(dir, "stats.yaml"));
    const stats = readStats(path);
    assert.deepEqual(Object.keys(stats.mean), ["density", "energy", "momentum", "pressure"]);
    assert.equal((stats.mean_delta.momentum as number[]).length, 2);
    await assertDataError(() => writeStats(dir), /already exists: pass --force/);
    await writeStats(dir, { force: true });
    assert.deepEqual(
      [...Deno.readDirSync(dir)].map((e) => e.name).sort(),
      ["data", "stats.yaml"],
      "no temp file left",
    );
  });
});

Deno.test("stats: a stats.yaml that is not YAML or lacks mean/std is a DataError", async () => {
  await assertDataError(() => parseStats("mean: [unclosed", "s.yaml"), /s\.yaml is not valid YAML/);
  await assertDataError(() => parseStats("<html>503</html>", "s.yaml"), /s\.yaml is not a stats\.yaml/);
  await assertDataError(() => parseStats("rms:\n  a: 1.0\n", "s.yaml"), /has no 'mean' entries/);
});
