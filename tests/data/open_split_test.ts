/**
 * openNormalizedSplit (issue 16 items 4 and 11): a missing split is null, a corrupt or empty one is a one-line
 * DataError naming the file; stats.yaml comes from the dataset root only (never `x.hdf5/stats.yaml`), and an
 * invalid one is reported as invalid with the parse error and `--force` advice, not as missing.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { openNormalizedSplit } from "../../data/open_split.ts";
import { assertDataError, withTempDir, writeDatasetRoot, writeFixture } from "./fixtures.ts";

const custom = { datasetName: "custom_physics" };
const STATS = `mean:\n  density: 1.0\n  energy: 1.0\n  momentum: [0.0, 0.0]\n  pressure: 1.0\n` +
  `std:\n  density: 2.0\n  energy: 2.0\n  momentum: [1.0, 1.0]\n  pressure: 2.0\n`;

Deno.test("open split: a split that is absent or has no files is null; one that exists opens normalized", async () => {
  await withTempDir(async (dir) => {
    await writeDatasetRoot(dir, { train: [{ name: "a.hdf5" }], valid: [] });
    const train = await openNormalizedSplit(dir, "train", { nSteps: 2 });
    assert.ok(train);
    assert.equal(train.ds.nSteps, 2);
    assert.equal(train.root, dir);
    assert.equal(train.normalizer.source, "method");
    assert.equal(train.kinds.length, 5);
    assert.deepEqual(train.fields.map((f) => f.name), ["energy", "density", "pressure", "momentum"]);
    train.ds.close();
    assert.equal(await openNormalizedSplit(dir, "valid"), null, "empty folder");
    assert.equal(await openNormalizedSplit(dir, "test"), null, "no folder");
  });
});

Deno.test("open split: a corrupt file in an existing split is an error naming the file, not a missing split", async () => {
  await withTempDir(async (dir) => {
    await writeDatasetRoot(dir, { train: [{ name: "a.hdf5" }], valid: [] });
    Deno.writeTextFileSync(join(dir, "data", "valid", "bad.hdf5"), "not hdf5");
    await assertDataError(() => openNormalizedSplit(dir, "valid"), /valid\/bad\.hdf5 is not an HDF5 file/);
    // an HDF5 file cut short: the signature is there, the rest is not
    const good = Deno.readFileSync(join(dir, "data", "train", "a.hdf5"));
    Deno.writeFileSync(join(dir, "data", "valid", "bad.hdf5"), good.subarray(0, 600));
    await assertDataError(() => openNormalizedSplit(dir, "valid"), /valid\/bad\.hdf5/);
  });
});

Deno.test("open split: windows that cannot be formed and splits with no trajectories are errors", async () => {
  await withTempDir(async (dir) => {
    await writeDatasetRoot(dir, { train: [{ name: "a.hdf5", opts: { T: 4 } }] });
    await assertDataError(() => openNormalizedSplit(dir, "train", { nSteps: 5 }), /a\.hdf5 has only 4/);
    await writeDatasetRoot(dir, { valid: [{ name: "empty.hdf5", opts: { B: 0 } }] });
    await assertDataError(
      () => openNormalizedSplit(dir, "valid"),
      /valid split of .* has no trajectories \(empty\.hdf5\)/,
    );
  });
});

Deno.test("open split: stats.yaml is read from the dataset root of a lone file, never from beside the file", async () => {
  await withTempDir(async (dir) => {
    await writeDatasetRoot(dir, {
      train: [{ name: "a.hdf5", opts: custom }],
      valid: [{ name: "v.hdf5", opts: custom }],
    });
    Deno.writeTextFileSync(join(dir, "stats.yaml"), STATS);
    const file = join(dir, "data", "valid", "v.hdf5");
    const s = await openNormalizedSplit(file, "valid");
    assert.ok(s, "a file inside data/valid is the valid split");
    assert.equal(s.root, dir);
    assert.deepEqual([...s.normalizer.std], [2, 2, 2, 1, 1]);
    s.ds.close();
    assert.equal(await openNormalizedSplit(file, "train"), null, "a valid file is not a train split");

    const lone = join(dir, "lone.hdf5");
    await writeFixture(lone, custom);
    await assertDataError(
      () => openNormalizedSplit(lone, "train"),
      /needs stats\.yaml for normalization, but its files are not inside a dataset root/,
    );
  });
});

Deno.test("open split: an invalid stats.yaml is reported as invalid with the parse error and --force advice", async () => {
  await withTempDir(async (dir) => {
    await writeDatasetRoot(dir, { train: [{ name: "a.hdf5", opts: custom }] });
    Deno.writeTextFileSync(join(dir, "stats.yaml"), "mean: [unclosed\n");
    await assertDataError(
      () => openNormalizedSplit(dir, "train"),
      /invalid stats file: .*stats\.yaml is not valid YAML \(.+\).*data stats .* --force/,
    );
  });
});
