/**
 * Batches: seeded shuffling, per-window augmentation streams, normalization, θ, prefetch (batch k+1 assembled while
 * the caller awaits on k), and the upload to engine tensors.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  applyAugmentation,
  augmentBoundaryConditions,
  channelKinds,
  drawAugmentation,
} from "../../data/augment.ts";
import { batchToTensor, epochOrder, WindowLoader, type WindowSource } from "../../data/batches.ts";
import { deriveSeed, Rng } from "../../data/rng.ts";
import { Normalizer, thetaVector } from "../../data/transforms.ts";
import { WellDataset } from "../../data/well_dataset.ts";
import { maxAbsDiff, withTempDir, writeDatasetRoot } from "./fixtures.ts";

/** A synthetic source: window i is filled with i + c/10 per channel; records when windows were read. */
class FakeSource implements WindowSource {
  readonly nSteps = 1;
  readonly spatialShape = [2, 2];
  readonly channels = ["a", "b"];
  reads: number[] = [];
  constructor(readonly length: number) {}
  getWindow(i: number, out = new Float32Array(8), offset = 0) {
    this.reads.push(i);
    for (let c = 0; c < 2; c++) for (let s = 0; s < 4; s++) out[offset + c * 4 + s] = i + c / 10;
    return { boundaryConditions: [[2, 2], [1, 1]], constantScalars: [{ name: "gamma", value: 1.5 }] };
  }
}

Deno.test("batches: epoch order is a seeded permutation, new each epoch, repeatable", () => {
  const a = epochOrder(100, 7, 0),
    b = epochOrder(100, 7, 0),
    c = epochOrder(100, 7, 1),
    d = epochOrder(100, 8, 0);
  assert.deepEqual(a, b);
  assert.deepEqual([...a].sort((x, y) => x - y), [...Array(100).keys()]);
  assert.notDeepEqual(a, c);
  assert.notDeepEqual(a, d);
  assert.deepEqual(epochOrder(5, 7, 3, false), Int32Array.from([0, 1, 2, 3, 4]));
});

Deno.test("batches: one epoch visits every window once, in shuffled batches, dropping the last partial batch", async () => {
  const src = new FakeSource(23);
  const loader = new WindowLoader(src, { batchSize: 5, seed: 3 });
  assert.equal(loader.batchesPerEpoch, 4);
  const seen: number[] = [];
  for await (const b of loader.epoch(0)) {
    assert.deepEqual(b.shape, [5, 2, 2, 2]);
    assert.equal(b.thetaDim, 5);
    b.indices.forEach((i, k) => {
      assert.equal(b.x[k * 8], i, "batch row k holds window indices[k]");
      assert.equal(b.x[k * 8 + 4], Math.fround(i + 0.1));
    });
    assert.deepEqual(Array.from(b.theta.slice(0, 5)), [1.5, 2, 2, 1, 1]);
    seen.push(...b.indices);
  }
  assert.equal(seen.length, 20);
  assert.equal(new Set(seen).size, 20);
  assert.deepEqual(seen, Array.from(epochOrder(23, 3, 0).slice(0, 20)));
  const keep = new WindowLoader(src, { batchSize: 5, seed: 3, dropLast: false });
  let last = 0;
  for await (const b of keep.epoch(0)) last = b.shape[0];
  assert.equal(last, 3);
});

Deno.test("batches: batch k+1 is assembled while the caller awaits on batch k (prefetch)", async () => {
  const src = new FakeSource(40);
  const loader = new WindowLoader(src, { batchSize: 4, seed: 1 });
  const it = loader.epoch(0);
  const first = await it.next();
  assert.equal(first.done, false);
  assert.equal(src.reads.length, 4, "only batch 0 was read when it was handed out");
  await new Promise((r) => setTimeout(r, 20)); // the caller awaits its GPU work
  assert.equal(src.reads.length, 8, "batch 1 was read during the caller's await");
  const second = await it.next();
  assert.deepEqual(second.value!.indices, src.reads.slice(4, 8));
  await it.return(undefined); // stopping early leaves no pending timer (the test sanitizer checks)
});

Deno.test("batches: windows are augmented with their own seeded draw, then normalized; θ uses the augmented BCs", async () => {
  await withTempDir(async (dir) => {
    await writeDatasetRoot(dir, {
      train: [{
        name: "a.hdf5",
        opts: {
          B: 3,
          T: 5,
          shape: [4, 4],
          bcs: [{ name: "x_periodic", type: "PERIODIC", dims: ["x"] }, {
            name: "y_wall",
            type: "WALL",
            dims: ["y"],
          }],
          value: (k, b, t, s, c) => 1 + k + 0.1 * b + 0.01 * t + 0.001 * s + 0.3 * c,
        },
      }],
    });
    const ds = await WellDataset.open(dir, { nSteps: 2, stride: 2 });
    try {
      const fields = ds.files[0].fields;
      const norm = Normalizer.forDataset(
        { datasetName: ds.datasetName, channels: ds.channels, fields },
        null,
      );
      const kinds = channelKinds(fields, 2);
      const augment = { flip: true, permute: true, roll: true };
      const loader = new WindowLoader(ds, {
        batchSize: 3,
        seed: 11,
        normalizer: norm,
        augment,
        channelKinds: kinds,
      });
      const batch = loader.assemble(2, 1);
      assert.deepEqual(batch.shape, [3, 2, 5, 4, 4]);
      const n = 2 * 5 * 16;
      const thetas = new Set<string>();
      batch.indices.forEach((i, k) => {
        const w = ds.getWindow(i);
        const a = drawAugmentation(new Rng(deriveSeed(11, 2, i)), augment, [4, 4], w.boundaryConditions);
        const want = norm.normalize(applyAugmentation(w.data, [4, 4], kinds, a), 16);
        const got = batch.x.subarray(k * n, (k + 1) * n);
        assert.ok(maxAbsDiff(got, want) < 1e-6, `window ${i}: max error ${maxAbsDiff(got, want)}`);
        const theta = thetaVector(w.constantScalars, augmentBoundaryConditions(w.boundaryConditions, a));
        assert.deepEqual(Array.from(batch.theta.subarray(k * 5, (k + 1) * 5)), Array.from(theta));
        thetas.add(theta.join());
      });
      const again = new WindowLoader(ds, {
        batchSize: 2,
        seed: 11,
        normalizer: norm,
        augment,
        channelKinds: kinds,
      });
      const i0 = batch.indices[0];
      const other = again.assemble(2, epochOrder(ds.length, 11, 2).indexOf(i0) >> 1);
      const k0 = other.indices.indexOf(i0);
      assert.equal(
        maxAbsDiff(other.x.subarray(k0 * n, (k0 + 1) * n), batch.x.subarray(0, n)),
        0,
        "same window, same draw, whatever the batch size",
      );
    } finally {
      ds.close();
    }
  });
});

const adapter = await navigator.gpu?.requestAdapter().catch(() => null);

Deno.test({
  name: "batches: batchToTensor uploads x as (B, C, H, W) and θ as (B, D_θ) engine tensors",
  ignore: !adapter, // no WebGPU adapter at all on this machine: nothing to upload to
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    Deno.env.set("LOLA_QUIET", "1");
    const { initDevice } = await import("../../engine/device.ts");
    await initDevice();
    const src = new FakeSource(6);
    const batch = new WindowLoader(src, { batchSize: 3, seed: 0 }).assemble(0, 0);
    const { x, theta } = batchToTensor(batch);
    try {
      assert.deepEqual([...x.shape], [3, 2, 2, 2]);
      assert.deepEqual([...theta!.shape], [3, 5]);
      assert.equal(maxAbsDiff(await x.read(), batch.x), 0);
      assert.equal(maxAbsDiff(await theta!.read(), batch.theta), 0);
    } finally {
      x.dispose();
      theta?.dispose();
    }
  },
});

Deno.test("batches: the loader reads a latent cache too (θ from the stored label)", async () => {
  const { LatentCache, LatentCacheWriter } = await import("../../data/latent_cache.ts");
  await withTempDir(async (dir) => {
    const p = join(dir, "train.h5");
    const w = await LatentCacheWriter.create(p, { frames: 6, latentShape: [2, 3, 3], thetaDim: 4 });
    for (let n = 0; n < 3; n++) w.append(new Float32Array(6 * 18).fill(n), [n, 1, 2, 3]);
    w.close();
    const cache = await LatentCache.open(p, { length: 5 });
    try {
      const loader = new WindowLoader(cache, { batchSize: 2, seed: 5 });
      const b = loader.assemble(0, 0);
      assert.deepEqual(b.shape, [2, 5, 2, 3, 3]);
      b.indices.forEach((i, k) => {
        const traj = Math.floor(i / 2);
        assert.deepEqual(Array.from(b.theta.subarray(k * 4, k * 4 + 4)), [traj, 1, 2, 3]);
        assert.equal(b.x[k * 90], traj);
      });
    } finally {
      cache.close();
    }
  });
});
