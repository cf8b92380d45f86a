/**
 * Bad inputs (issue "Data", item 8): each is one clear DataError line naming what is wrong, and nothing
 * half-written is left behind.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { generateEulerDataset } from "../../data/euler_dataset.ts";
import { readStats, writeStats } from "../../data/stats.ts";
import { Normalizer } from "../../data/transforms.ts";
import { WellDataset } from "../../data/well_dataset.ts";
import { assertDataError, withTempDir, writeDatasetRoot, writeFixture } from "./fixtures.ts";

Deno.test("errors: a missing path says it does not exist", async () => {
  await assertDataError(
    () => WellDataset.open("/nonexistent/well/data"),
    /\/nonexistent\/well\/data does not exist/,
  );
});

Deno.test("errors: a file that is not HDF5 says so, even with an .hdf5 name", async () => {
  await withTempDir(async (dir) => {
    const p = join(dir, "fake.hdf5");
    Deno.writeTextFileSync(p, "<html>503 Service Unavailable</html>");
    await assertDataError(() => WellDataset.open(p), /fake\.hdf5 is not an HDF5 file/);
    await assertDataError(() => WellDataset.open(dir), /fake\.hdf5 is not an HDF5 file/);
  });
});

Deno.test("errors: a folder without HDF5 files or splits says what it expected", async () => {
  await withTempDir(async (dir) => {
    await assertDataError(
      () => WellDataset.open(dir),
      /no \.hdf5\/\.h5 files and no data\/\{train,valid,test\}/,
    );
    Deno.mkdirSync(join(dir, "data", "train"), { recursive: true });
    await assertDataError(() => WellDataset.open(dir, { split: "valid" }), /has no valid split/);
    await assertDataError(() => WellDataset.open(dir), /the train split .* holds no \.hdf5/);
  });
});

Deno.test("errors: a missing group or attribute is named", async () => {
  await withTempDir(async (dir) => {
    const cases: [string[], RegExp][] = [
      [["group:t1_fields"], /missing group \/t1_fields/],
      [["group:scalars"], /missing group \/scalars/],
      [["attr:/:n_trajectories"], /missing attribute 'n_trajectories' on \//],
      [["attr:t0_fields:field_names"], /missing attribute 'field_names' on \/t0_fields/],
      [["attr:t0_fields/density:dim_varying"], /missing attribute 'dim_varying' on \/t0_fields\/density/],
      [["dataset:dimensions/time"], /missing dataset \/dimensions\/time/],
      [["dataset:t0_fields/pressure"], /missing dataset \/t0_fields\/pressure/],
    ];
    for (const [omit, re] of cases) {
      const p = join(dir, `${omit[0].replace(/[:/]/g, "_")}.hdf5`);
      await writeFixture(p, { omit });
      await assertDataError(() => WellDataset.open(p), re);
    }
  });
});

Deno.test("errors: a field whose shape contradicts n_trajectories is named", async () => {
  await withTempDir(async (dir) => {
    const p = join(dir, "f.hdf5");
    await writeFixture(p, { B: 2 });
    const h5wasm = (await import("h5wasm/node")).default;
    const f = new h5wasm.File(p, "a");
    f.attrs["n_trajectories"] && f.delete_attribute("n_trajectories");
    f.create_attribute("n_trajectories", new BigInt64Array([3n]), [], "<q");
    f.close();
    await assertDataError(
      () => WellDataset.open(p),
      /t0_fields\/energy has shape \[2,8,8,6\] .* imply \[3,8,8,6\]/,
    );
  });
});

Deno.test("errors: files of different resolution in one split name both files", async () => {
  await withTempDir(async (dir) => {
    await writeDatasetRoot(dir, {
      train: [{ name: "a.hdf5", opts: { shape: [8, 6] } }, { name: "b.hdf5", opts: { shape: [8, 8] } }],
    });
    await assertDataError(
      () => WellDataset.open(dir),
      /share the spatial resolution: .*a\.hdf5 has \[8,6\], .*b\.hdf5 has \[8,8\]/,
    );
  });
});

Deno.test("errors: a window longer than the trajectory says how long each is", async () => {
  await withTempDir(async (dir) => {
    const p = join(dir, "short.hdf5");
    await writeFixture(p, { T: 8 });
    await assertDataError(
      () => WellDataset.open(p, { nSteps: 5, stride: 2 }),
      /spans 9 steps, but .*short\.hdf5 has only 8/,
    );
    const ok = await WellDataset.open(p, { nSteps: 4, stride: 2 }); // spans 7: fits
    assert.equal(ok.length, 2 * 2);
    ok.close();
  });
});

Deno.test("errors: a missing stats.yaml points to `data stats`", async () => {
  await withTempDir(async (dir) => {
    await writeDatasetRoot(dir, { train: [{ name: "a.hdf5", opts: { datasetName: "custom_physics" } }] });
    assert.throws(() => readStats(join(dir, "stats.yaml"), dir), /compute it with `deno task data stats /);
    const ds = await WellDataset.open(dir);
    try {
      const info = { datasetName: ds.datasetName, channels: ds.channels, fields: ds.files[0].fields };
      await assertDataError(
        () => Normalizer.forDataset(info, null, { statsPath: join(dir, "stats.yaml"), datasetRoot: dir }),
        /missing .*stats\.yaml: compute it with `deno task data stats /,
      );
    } finally {
      ds.close();
    }
  });
});

Deno.test("errors: stats over inconsistent files writes no stats.yaml", async () => {
  await withTempDir(async (dir) => {
    await writeDatasetRoot(dir, {
      train: [{ name: "a.hdf5", opts: { shape: [8, 6] } }, { name: "b.hdf5", opts: { shape: [4, 6] } }],
    });
    await assertDataError(() => writeStats(dir), /spatial resolution/);
    assert.deepEqual(
      [...Deno.readDirSync(dir)].map((e) => e.name),
      ["data"],
      "nothing written next to data/",
    );
  });
});

Deno.test("errors: an Euler generation that fails midway leaves neither the dataset nor a temp folder", async () => {
  await withTempDir(async (dir) => {
    const out = join(dir, "euler");
    for (const workers of [0, 2]) {
      await assert.rejects(
        generateEulerDataset({
          out,
          resolution: 8,
          trajectories: 6,
          steps: 3,
          tEnd: 0.05,
          gammas: 1,
          boundaries: ["periodic"],
          workers,
          onProgress: (p) => {
            if (p.done === 4) throw new Error("interrupted");
          },
        }),
        /interrupted/,
      );
      assert.deepEqual([...Deno.readDirSync(dir)], [], `workers=${workers}: nothing left in ${dir}`);
    }
    await generateEulerDataset({
      out,
      resolution: 8,
      trajectories: 3,
      steps: 2,
      tEnd: 0.01,
      gammas: 1,
      boundaries: ["open"],
      workers: 0,
    });
    await assertDataError(() => generateEulerDataset({ out, workers: 0 }), /already exists/);
  });
});
