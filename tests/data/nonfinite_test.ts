/**
 * Non-finite values in the data (issue 16 item 3): windows are checked as they load and name file, field,
 * trajectory and step; `data info --check` counts them per field; `data stats` refuses them instead of writing
 * NAN; a zero std in stats.yaml is an error, not a silent 1e-4 floor.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { dataCommand } from "../../cli/data.ts";
import { parseStats, writeStats } from "../../data/stats.ts";
import { Normalizer } from "../../data/transforms.ts";
import { WellDataset } from "../../data/well_dataset.ts";
import type { FieldInfo } from "../../data/well_file.ts";
import { assertDataError, encode, withTempDir, writeDatasetRoot } from "./fixtures.ts";
import { captureConsole } from "../helpers.ts";

/** density (field 1) of trajectory 1 is NaN at step 5, spatial index 3; energy (field 0) is +Inf at b 0, t 2. */
const poisoned = (k: number, b: number, t: number, s: number, c: number, K: number) =>
  k === 1 && b === 1 && t === 5 && s === 3
    ? NaN
    : k === 0 && b === 0 && t === 2 && s === 0
    ? Infinity
    : encode(
      k,
      b,
      t,
      s,
      c,
      K,
    );

const quiet = captureConsole;

Deno.test("non-finite: a checked window holding NaN throws one line naming file, field, trajectory and step", async () => {
  await withTempDir(async (dir) => {
    await writeDatasetRoot(dir, { train: [{ name: "a.hdf5", opts: { B: 2, T: 8, value: poisoned } }] });
    const ds = await WellDataset.open(dir, { nSteps: 2, checkFinite: true });
    try {
      ds.getWindow(ds.length - 1); // trajectory 1, steps 6..7: finite
      const w = 7; // windows per trajectory: trajectory 1 starts at window 7; its window 4 holds steps 4, 5
      await assertDataError(
        () => ds.getWindow(w + 4),
        /a\.hdf5: field 'density' of trajectory 1 holds NaN at step 5.*data info PATH --check/,
      );
      await assertDataError(
        () => ds.readFrames(0, 0, 0, 8),
        /field 'energy' of trajectory 0 holds Infinity at step 2/,
      );
    } finally {
      ds.close();
    }
    const unchecked = await WellDataset.open(dir, { nSteps: 2 });
    assert.ok(
      Number.isNaN(unchecked.getWindow(7 + 4).data[(5 + 1) * 48 + 3]),
      "off by default: data as stored",
    );
    unchecked.close();
  });
});

Deno.test("non-finite: `data info --check` counts NaN/Inf per split and field and exits 1", async () => {
  await withTempDir(async (dir) => {
    await writeDatasetRoot(dir, {
      train: [{ name: "a.hdf5", opts: { B: 2, T: 8, value: poisoned } }],
      valid: [{ name: "a.hdf5", opts: { B: 1, T: 8 } }],
    });
    const { r, out, err } = await quiet(() => dataCommand(["info", dir, "--check", "--json"]));
    assert.equal(r, 1, err);
    const s = JSON.parse(out);
    assert.deepEqual(s.non_finite, {
      train: { energy: 1, density: 1, pressure: 0, momentum: 0 },
      valid: { energy: 0, density: 0, pressure: 0, momentum: 0 },
    });
    assert.match(err, /^error: .* holds non-finite values/m);
    const text = await quiet(() => dataCommand(["info", dir, "--check"]));
    assert.match(text.out, /non-finite +train: energy 1, density 1/);
    assert.match(text.out, /non-finite +valid: none/);
    const clean = await quiet(() => dataCommand(["info", join(dir, "data", "valid"), "--check"]));
    assert.equal(clean.r, 0, clean.err);
  });
});

Deno.test("non-finite: `data stats` refuses NaN data and writes no stats.yaml", async () => {
  await withTempDir(async (dir) => {
    await writeDatasetRoot(dir, { train: [{ name: "a.hdf5", opts: { B: 2, T: 8, value: poisoned } }] });
    await assertDataError(
      () => writeStats(dir),
      /a\.hdf5: field 'energy' of trajectory 0 holds Infinity at step 2: stats\.yaml would not be finite/,
    );
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["data"], "nothing written");
  });
});

const field = (name: string): FieldInfo => ({
  name,
  group: "t0_fields",
  order: 0,
  sampleVarying: true,
  timeVarying: true,
  dimVarying: [true, true],
  channels: [name],
});

Deno.test("non-finite: a zero or NAN std in stats.yaml is an error naming the channel, not a 1e-4 floor", async () => {
  const ds = {
    datasetName: "custom",
    channels: ["a", "b"],
    fields: [field("a"), field("b")],
  };
  const zero = parseStats(`mean:\n  a: 1.0\n  b: 2.0\nstd:\n  a: 1.0\n  b: 0.0\n`);
  await assertDataError(
    () => Normalizer.forDataset(ds, zero, { statsPath: "/d/stats.yaml", datasetRoot: "/d" }),
    /\/d\/stats\.yaml: the std of channel 'b' is 0: the channel is constant.*data stats \/d --force/,
  );
  const tiny = parseStats(`mean:\n  a: 1.0\n  b: 2.0\nstd:\n  a: 1.0\n  b: 1.0E-05\n`);
  assert.equal(Normalizer.forDataset(ds, tiny).std[1], 1e-4, "a tiny non-zero std keeps The Well's floor");
  await assertDataError(
    () => parseStats(`mean:\n  a: 1.0\n  b: NAN\nstd:\n  a: 1.0\n  b: 1.0\n`, "s.yaml"),
    /s\.yaml: mean\.b is not finite/,
  );
});
