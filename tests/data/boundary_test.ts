/**
 * Boundary-condition tensor (well-format §2): (D, 2), WALL=0, OPEN=1, PERIODIC=2, OPEN by default; any-True
 * masks for OPEN/PERIODIC, all-True for WALL; a missing /boundary_conditions group is an error.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { WellDataset } from "../../data/well_dataset.ts";
import { assertDataError, type FixtureBc, withTempDir, writeFixture } from "./fixtures.ts";

async function bcOf(bcs: FixtureBc[] | null, shape = [8, 6]): Promise<number[][]> {
  return await withTempDir(async (dir) => {
    const p = join(dir, "bc.hdf5");
    await writeFixture(p, { bcs, shape, B: 1, T: 2 });
    const ds = await WellDataset.open(p);
    try {
      return ds.getWindow(0).boundaryConditions;
    } finally {
      ds.close();
    }
  });
}

Deno.test("boundary: periodic groups on both axes give [[2,2],[2,2]]", async () => {
  assert.deepEqual(
    await bcOf([
      { name: "x_periodic", type: "PERIODIC", dims: ["x"] },
      { name: "y_periodic", type: "PERIODIC", dims: ["y"] },
    ]),
    [[2, 2], [2, 2]],
  );
});

Deno.test("boundary: periodic x and wall y (Rayleigh–Bénard) give [[2,2],[0,0]]", async () => {
  assert.deepEqual(
    await bcOf([
      { name: "x_periodic", type: "PERIODIC", dims: ["x"] },
      { name: "y_wall_dirichlet", type: "WALL", dims: ["y"] },
    ]),
    [[2, 2], [0, 0]],
  );
});

Deno.test("boundary: open groups give 1, and bc_type is upper-cased", async () => {
  assert.deepEqual(
    await bcOf([
      { name: "x_open", type: "open", dims: ["x"] },
      { name: "y_open", type: "Open", dims: ["y"] },
    ]),
    [[1, 1], [1, 1]],
  );
});

Deno.test("boundary: a dim with no BC group stays OPEN", async () => {
  assert.deepEqual(await bcOf([{ name: "y_wall", type: "WALL", dims: ["y"] }]), [[1, 1], [0, 0]]);
  assert.deepEqual(await bcOf([]), [[1, 1], [1, 1]], "an empty /boundary_conditions group");
});

Deno.test("boundary: a mask True at one end only sets that edge", async () => {
  const mask = [true, false, false, false, false, false];
  assert.deepEqual(await bcOf([{ name: "y_wall", type: "WALL", dims: ["y"], mask }]), [[1, 1], [0, 1]]);
});

Deno.test("boundary: 2-D masks use any-True for OPEN/PERIODIC and all-True for WALL", async () => {
  // mask over (x=4, y=3): x=0 row all True, x=3 row partly True; y=0 column partly True.
  const m = [
    [true, true, true],
    [true, false, false],
    [false, false, false],
    [true, false, true],
  ].flat();
  const shape = [4, 3];
  const wall = await bcOf(
    [{ name: "xy_wall", type: "WALL", dims: ["x", "y"], mask: m, maskShape: shape }],
    shape,
  );
  assert.deepEqual(wall, [[0, 1], [1, 1]], "WALL needs every point of the edge");
  const open = await bcOf(
    [{ name: "xy_open", type: "OPEN", dims: ["x", "y"], mask: m, maskShape: shape }],
    shape,
  );
  assert.deepEqual(open, [[1, 1], [1, 1]]);
  const per = await bcOf([{
    name: "xy_periodic",
    type: "PERIODIC",
    dims: ["x", "y"],
    mask: m,
    maskShape: shape,
  }], shape);
  assert.deepEqual(per, [[2, 2], [2, 2]], "PERIODIC needs any point of the edge");
});

Deno.test("boundary: a missing /boundary_conditions group is a named error", async () => {
  await withTempDir(async (dir) => {
    const p = join(dir, "nobc.hdf5");
    await writeFixture(p, { bcs: null });
    await assertDataError(() => WellDataset.open(p), /missing group \/boundary_conditions/);
  });
});

Deno.test("boundary: an unknown bc_type and a BC group without mask are named errors", async () => {
  await withTempDir(async (dir) => {
    const p = join(dir, "bad.hdf5");
    await writeFixture(p, { bcs: [{ name: "x_weird", type: "SLIPPERY", dims: ["x"] }] });
    await assertDataError(() => WellDataset.open(p), /bc_type 'SLIPPERY'/);
    const q = join(dir, "nomask.hdf5");
    await writeFixture(q, {
      bcs: [{ name: "x_periodic", type: "PERIODIC", dims: ["x"] }],
      omit: ["dataset:boundary_conditions/x_periodic/mask"],
    });
    await assertDataError(
      () => WellDataset.open(q),
      /missing dataset \/boundary_conditions\/x_periodic\/mask/,
    );
  });
});
