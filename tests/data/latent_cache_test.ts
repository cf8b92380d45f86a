/**
 * Latent cache: `state` (N, T, C_z, h, w[, d]) and `label` (N, D_θ) written trajectory by trajectory to a temp name
 * and renamed, read back as windows of L frames (MiniWellDataset semantics).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { LatentCache, LatentCacheWriter } from "../../data/latent_cache.ts";
import { assertDataError, maxAbsDiff, withTempDir } from "./fixtures.ts";

const value = (n: number, t: number, q: number) => n * 1000 + t + q / 1024;

function trajectory(n: number, T: number, F: number): Float32Array {
  const a = new Float32Array(T * F);
  for (let t = 0; t < T; t++) for (let q = 0; q < F; q++) a[t * F + q] = value(n, t, q);
  return a;
}

Deno.test("latent cache: round trip of trajectories and labels, windows of L=5 frames with a stride", async () => {
  await withTempDir(async (dir) => {
    const p = join(dir, "cache", "train.h5");
    const T = 12, shape = [4, 3, 2], F = 24, N = 3;
    const w = await LatentCacheWriter.create(p, {
      frames: T,
      latentShape: shape,
      thetaDim: 5,
      attributes: { source: "test", ae_step: 7 },
    });
    for (let n = 0; n < N; n++) {
      w.append(trajectory(n, T, F), [1.4 + n, 2, 2, 1, 1]);
      assert.equal(Deno.statSync(`${p}.tmp-${Deno.pid}`).isFile, true, "written under the temp name");
      assert.throws(() => Deno.statSync(p), "nothing at the final name before close()");
    }
    assert.equal(w.close(), p);
    assert.throws(() => Deno.statSync(`${p}.tmp-${Deno.pid}`), "temp name gone after close()");

    const c = await LatentCache.open(p); // default L = 5, stride 1
    try {
      assert.deepEqual([c.count, c.frames, c.latentShape, c.thetaDim], [N, T, shape, 5]);
      assert.equal(c.windowsPerTrajectory, T - 4);
      assert.equal(c.length, N * (T - 4));
      for (let n = 0; n < N; n++) assert.equal(maxAbsDiff(c.readTrajectory(n), trajectory(n, T, F)), 0);
      const win = c.getWindow(1 * (T - 4) + 3); // trajectory 1, frames 3..7
      assert.deepEqual([win.trajectory, win.t0, win.shape], [1, 3, [5, 4, 3, 2]]);
      assert.equal(maxAbsDiff(win.data, trajectory(1, T, F).subarray(3 * F, 8 * F)), 0);
      assert.deepEqual(Array.from(win.label), [Math.fround(2.4), 2, 2, 1, 1]);
    } finally {
      c.close();
    }
    const s = await LatentCache.open(p, { length: 3, stride: 4 }); // frames t0, t0+4, t0+8
    try {
      assert.equal(s.windowsPerTrajectory, T - 8);
      const win = s.getWindow(2 * (T - 8) + 1);
      const want = [1, 5, 9].flatMap((t) => Array.from(trajectory(2, T, F).subarray(t * F, (t + 1) * F)));
      assert.equal(maxAbsDiff(win.data, want), 0, `max error ${maxAbsDiff(win.data, want)}`);
    } finally {
      s.close();
    }
  });
});

Deno.test("latent cache: abort() and bad appends leave nothing at the final name", async () => {
  await withTempDir(async (dir) => {
    const p = join(dir, "valid.h5");
    const w = await LatentCacheWriter.create(p, { frames: 4, latentShape: [2, 2, 2], thetaDim: 3 });
    w.append(new Float32Array(32), [0, 0, 0]);
    assert.throws(() => w.append(new Float32Array(31), [0, 0, 0]), /expected \(4, 2,2,2\)/);
    assert.throws(() => w.append(new Float32Array(32), [0, 0]), /label has 2 values/);
    w.abort();
    assert.deepEqual([...Deno.readDirSync(dir)], []);
  });
});

Deno.test("latent cache: a window longer than the trajectories and a non-cache file are named errors", async () => {
  await withTempDir(async (dir) => {
    const p = join(dir, "short.h5");
    const w = await LatentCacheWriter.create(p, { frames: 4, latentShape: [1, 2, 2], thetaDim: 2 });
    w.append(new Float32Array(16), [1, 2]);
    w.close();
    await assertDataError(
      () => LatentCache.open(p),
      /a window of 5 frames .* spans 5 steps, but .*short\.h5 has only 4/,
    );
    await assertDataError(() => LatentCache.open(join(dir, "nope.h5")), /does not exist/);
    const { writeFixture } = await import("./fixtures.ts");
    const q = join(dir, "well.hdf5");
    await writeFixture(q);
    await assertDataError(() => LatentCache.open(q), /missing dataset \/state/);
  });
});

Deno.test("latent cache: 3-D latents (N, T, C_z, h, w, d) round trip", async () => {
  await withTempDir(async (dir) => {
    const p = join(dir, "tgc.h5");
    const shape = [2, 3, 2, 2], F = 24, T = 6;
    const w = await LatentCacheWriter.create(p, { frames: T, latentShape: shape, thetaDim: 9 });
    w.append(trajectory(0, T, F), Array(9).fill(1));
    w.append(trajectory(1, T, F), Array(9).fill(2));
    w.close();
    const c = await LatentCache.open(p, { length: 5 });
    try {
      assert.deepEqual(c.spatialShape, [3, 2, 2]);
      const win = c.getWindow(3);
      assert.deepEqual([win.trajectory, win.t0], [1, 1]);
      assert.equal(maxAbsDiff(win.data, trajectory(1, T, F).subarray(F, 6 * F)), 0);
    } finally {
      c.close();
    }
  });
});
