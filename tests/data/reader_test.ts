/**
 * The Well reader: channel order, tensor-field expansion, trajectory/time slicing with strides across files,
 * h5py's encodings (from a committed h5py-written fixture), lazy reads and bounded file handles.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import h5wasm from "h5wasm/node";
import type { Dataset, Group } from "h5wasm/node";
import { attrBool, attrBoolList, attrStringList, ensureH5, withH5 } from "../../data/h5.ts";
import { WellDataset } from "../../data/well_dataset.ts";
import { constantScalars, readWellFileInfo } from "../../data/well_file.ts";
import { encode, maxAbsDiff, withTempDir, writeDatasetRoot, writeFixture } from "./fixtures.ts";

const H5PY_FIXTURE = new URL("./fixtures/h5py_tiny.hdf5", import.meta.url).pathname;

/** Expected window from the encoding: channels of field k with K components, channels-first. */
function expectedWindow(
  fields: { k: number; K: number }[],
  b: number,
  t0: number,
  L: number,
  stride: number,
  S: number,
  offset = 0,
): Float32Array {
  const C = fields.reduce((a, f) => a + f.K, 0);
  const out = new Float32Array(L * C * S);
  for (let l = 0; l < L; l++) {
    let ch = 0;
    for (const { k, K } of fields) {
      for (let c = 0; c < K; c++, ch++) {
        for (let s = 0; s < S; s++) {
          out[(l * C + ch) * S + s] = encode(k, b, t0 + l * stride, s, c, K) + offset;
        }
      }
    }
  }
  return out;
}

Deno.test("reader: channel order follows field_names, not keys()", async () => {
  await withTempDir(async (dir) => {
    const p = join(dir, "f.hdf5");
    await writeFixture(p, { t0: ["energy", "density", "pressure"], t1: ["momentum"] });
    const ds = await WellDataset.open(p);
    try {
      assert.deepEqual(ds.channels, ["energy", "density", "pressure", "momentum_x", "momentum_y"]);
      const keys = await withH5(p, (f) => (f.get("t0_fields") as Group).keys());
      assert.deepEqual(
        keys,
        ["density", "energy", "pressure"],
        "keys() is alphabetical: the trap this test guards",
      );
      const w = ds.getWindow(0);
      const want = expectedWindow(
        [{ k: 0, K: 1 }, { k: 1, K: 1 }, { k: 2, K: 1 }, { k: 3, K: 2 }],
        0,
        0,
        1,
        1,
        48,
      );
      assert.equal(maxAbsDiff(w.data, want), 0, `max error ${maxAbsDiff(w.data, want)}`);
      assert.deepEqual(w.shape, [1, 5, 8, 6]);
    } finally {
      ds.close();
    }
  });
});

Deno.test("reader: t1 fields expand to _x,_y,_z and t2 fields to xx,xy,… in row-major order", async () => {
  await withTempDir(async (dir) => {
    const p = join(dir, "f3.hdf5");
    await writeFixture(p, { shape: [4, 3, 2], t0: ["density"], t1: ["velocity"], t2: ["D"], B: 1, T: 3 });
    const ds = await WellDataset.open(p);
    try {
      const comps = ["xx", "xy", "xz", "yx", "yy", "yz", "zx", "zy", "zz"].map((s) => `D_${s}`);
      assert.deepEqual(ds.channels, ["density", "velocity_x", "velocity_y", "velocity_z", ...comps]);
      const w = ds.getWindow(2);
      const want = expectedWindow([{ k: 0, K: 1 }, { k: 1, K: 3 }, { k: 2, K: 9 }], 0, 2, 1, 1, 24);
      assert.equal(maxAbsDiff(w.data, want), 0, `max error ${maxAbsDiff(w.data, want)}`);
    } finally {
      ds.close();
    }
  });
});

Deno.test("reader: windows of L frames with stride Δ start at every offset, across files in sorted order", async () => {
  await withTempDir(async (dir) => {
    const shape = [4, 3], S = 12;
    // Written out of order; the sorted order is a_, b_. Each file's values carry a 10000·file offset.
    await writeDatasetRoot(dir, {
      train: [
        { name: "b_second.hdf5", opts: { shape, B: 2, T: 9, value: (...a) => encode(...a) + 10000 } },
        { name: "a_first.hdf5", opts: { shape, B: 3, T: 7 } },
      ],
    });
    const L = 3, stride = 2;
    const ds = await WellDataset.open(dir, { split: "train", nSteps: L, stride });
    try {
      assert.deepEqual(ds.files.map((f) => f.path.split("/").pop()), ["a_first.hdf5", "b_second.hdf5"]);
      assert.deepEqual(ds.windowsPerTrajectory, [7 - 4, 9 - 4]);
      assert.equal(ds.length, 3 * 3 + 2 * 5);
      const fields = [{ k: 0, K: 1 }, { k: 1, K: 1 }, { k: 2, K: 1 }, { k: 3, K: 2 }];
      let i = 0;
      for (const [f, B, W] of [[0, 3, 3], [1, 2, 5]]) {
        for (let b = 0; b < B; b++) {
          for (let t0 = 0; t0 < W; t0++, i++) {
            const w = ds.getWindow(i);
            assert.deepEqual([w.fileIndex, w.trajectory, w.t0], [f, b, t0], `window ${i}`);
            const want = expectedWindow(fields, b, t0, L, stride, S, f === 1 ? 10000 : 0);
            assert.equal(maxAbsDiff(w.data, want), 0, `window ${i}: max error ${maxAbsDiff(w.data, want)}`);
          }
        }
      }
      assert.throws(() => ds.getWindow(ds.length), RangeError);
    } finally {
      ds.close();
    }
  });
});

Deno.test("reader: h5py-written file (t2 field, tiled constant field, enum-bool WALL mask, time-varying scalar) reads as the loader does", async () => {
  const ds = await WellDataset.open(H5PY_FIXTURE, { nSteps: 2, stride: 3 });
  try {
    const info = ds.files[0];
    assert.equal(info.nTrajectories, 2);
    assert.equal(info.nSteps, 6);
    assert.deepEqual(info.spatialShape, [8, 6]);
    assert.deepEqual(ds.channels, [
      "energy",
      "density",
      "pressure",
      "momentum_x",
      "momentum_y",
      "stress_xx",
      "stress_xy",
      "stress_yx",
      "stress_yy",
    ]);
    assert.deepEqual(info.constantChannels, ["porosity"]);
    assert.deepEqual(info.boundaryConditions, [[2, 2], [0, 0]], "x periodic, y wall (enum-bool masks)");
    assert.deepEqual(
      constantScalars(info, 1),
      [{ name: "gamma", value: Math.fround(1.4) }],
      "time-varying 'forcing' is not constant",
    );
    // h5py formula: 1000(k+1) + 100b + t + (64c + 8i + j)/512
    const w = ds.getWindow(1 * 3 + 2); // trajectory 1, t0 = 2, frames 2 and 5
    assert.deepEqual([w.trajectory, w.t0], [1, 2]);
    const K = [1, 1, 1, 2, 2, 4, 4, 4, 4],
      kOf = [0, 1, 2, 3, 3, 4, 4, 4, 4],
      cOf = [0, 0, 0, 0, 1, 0, 1, 2, 3];
    let worst = 0;
    for (let l = 0; l < 2; l++) {
      for (let ch = 0; ch < 9; ch++) {
        for (let i = 0; i < 8; i++) {
          for (let j = 0; j < 6; j++) {
            const want = 1000 * (kOf[ch] + 1) + 100 + (2 + 3 * l) + (64 * cOf[ch] + 8 * i + j) / 512;
            worst = Math.max(worst, Math.abs(w.data[((l * 9 + ch) * 8 + i) * 6 + j] - want));
          }
        }
      }
    }
    assert.equal(worst, 0, `max error ${worst} (K=${K})`);
    const cf = ds.readConstantFields(0, 1); // porosity[b=1, i] = 10 + i, tiled along y
    assert.deepEqual(Array.from(cf), Array.from({ length: 48 }, (_, s) => 10 + Math.floor(s / 6)));
  } finally {
    ds.close();
  }
});

Deno.test("reader: h5py's int64 (BigInt), enum booleans and empty lists (float64 (0,)) decode as numbers, booleans, []", async () => {
  await ensureH5();
  await withH5(H5PY_FIXTURE, (f) => {
    assert.equal(typeof f.attrs["n_trajectories"].value, "bigint");
    const bc = f.get("boundary_conditions/x_periodic") as Group;
    assert.ok(
      bc.attrs["associated_fields"].value instanceof Float64Array,
      "h5py writes [] as a float64 array",
    );
    assert.deepEqual(attrStringList(bc, "associated_fields", H5PY_FIXTURE), []);
    const energy = f.get("t0_fields/energy") as Dataset;
    assert.equal(energy.attrs["time_varying"].metadata.type, 8, "an HDF5 enum (h5py bool)");
    assert.equal(attrBool(energy, "time_varying", H5PY_FIXTURE), true);
    assert.deepEqual(attrBoolList(energy, "dim_varying", H5PY_FIXTURE), [true, true]);
    const info = readWellFileInfo(f, H5PY_FIXTURE);
    assert.equal(info.nTrajectories, 2);
    assert.equal(info.nSpatialDims, 2);
    assert.deepEqual(info.simulationParameters, ["gamma"]);
  });
});

Deno.test("reader: a window read loads only its slice, not the file", async () => {
  await withTempDir(async (dir) => {
    const p = join(dir, "big.hdf5");
    const T = 256, N = 256; // 64 MiB of float32 (the fixture writer goes frame by frame)
    await writeFixture(p, { B: 1, T, shape: [N, N], t0: ["density"], t1: [], value: (_k, _b, t) => t });
    assert.ok(Deno.statSync(p).size > 64 * 2 ** 20);
    const M = (await h5wasm.ready) as unknown as { HEAPU8: Uint8Array };
    const ds = await WellDataset.open(p, { nSteps: 2, stride: 50 });
    try {
      const w = ds.getWindow(150);
      assert.deepEqual([w.data[0], w.data[N * N]], [150, 200]);
    } finally {
      ds.close();
    }
    const heap = M.HEAPU8.byteLength;
    assert.ok(heap < 64 * 2 ** 20, `wasm heap is ${heap} bytes after reading 512 KiB of a 64 MiB file`);
  });
});

Deno.test("reader: open file handles stay within maxOpenFiles and close() releases them", async () => {
  await withTempDir(async (dir) => {
    await writeDatasetRoot(dir, {
      train: Array.from(
        { length: 5 },
        (_, k) => ({ name: `f${k}.hdf5`, opts: { B: 1, T: 3, shape: [4, 3] } }),
      ),
    });
    const ds = await WellDataset.open(dir, { maxOpenFiles: 2 });
    try {
      assert.equal(ds.openFiles, 0, "metadata reads close their files");
      let peak = 0;
      for (let round = 0; round < 2; round++) {
        for (let i = 0; i < ds.length; i++) {
          ds.getWindow(i);
          peak = Math.max(peak, ds.openFiles);
        }
      }
      assert.equal(peak, 2);
    } finally {
      ds.close();
    }
    assert.equal(ds.openFiles, 0);
  });
});

Deno.test("reader: readFrames returns whole trajectories with a stride", async () => {
  await withTempDir(async (dir) => {
    const p = join(dir, "f.hdf5");
    await writeFixture(p, { B: 2, T: 9, shape: [4, 3] });
    const ds = await WellDataset.open(p);
    try {
      const v = ds.readFrames(0, 1, 1, 4, 2);
      const want = expectedWindow(
        [{ k: 0, K: 1 }, { k: 1, K: 1 }, { k: 2, K: 1 }, { k: 3, K: 2 }],
        1,
        1,
        4,
        2,
        12,
      );
      assert.equal(maxAbsDiff(v, want), 0);
      assert.deepEqual(ds.trajectories().map((t) => [t.fileIndex, t.trajectory, t.nSteps]), [[0, 0, 9], [
        0,
        1,
        9,
      ]]);
    } finally {
      ds.close();
    }
  });
});
