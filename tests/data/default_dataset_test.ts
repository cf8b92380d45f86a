/**
 * The default dataset: generated on first use into the cache folder, reused while its recorded options match the
 * current defaults, regenerated when they do not. (Run here with tiny options; the real defaults take about a
 * minute, measured separately.)
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  cacheRoot,
  DEFAULT_DATASET_OPTIONS,
  defaultDatasetPath,
  ensureDefaultDataset,
  isCurrentDefaultDataset,
} from "../../data/default_dataset.ts";
import { withTempDir } from "./fixtures.ts";

const tiny = {
  resolution: 8,
  trajectories: 3,
  steps: 2,
  tEnd: 0.01,
  gammas: 1,
  boundaries: ["open" as const],
  workers: 0,
};

Deno.test("default dataset: generated once into the cache, then reused; other options regenerate it", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "euler_default");
    let starts = 0, progress = 0;
    const opts = { path, options: tiny, onStart: () => starts++, onProgress: () => progress++ };
    assert.equal(await ensureDefaultDataset(opts), path);
    assert.deepEqual([starts, progress], [1, 3]);
    assert.ok(isCurrentDefaultDataset(path, tiny));
    assert.ok(!isCurrentDefaultDataset(path), "not the real defaults");
    const stamp = Deno.statSync(join(path, "stats.yaml")).mtime?.getTime();
    assert.equal(await ensureDefaultDataset(opts), path);
    assert.equal(starts, 1, "second call reuses the cached dataset");
    assert.equal(Deno.statSync(join(path, "stats.yaml")).mtime?.getTime(), stamp);
    await ensureDefaultDataset({ ...opts, options: { ...tiny, seed: 9 } });
    assert.equal(starts, 2, "changed options regenerate");
    assert.deepEqual(
      [...Deno.readDirSync(dir)].map((e) => e.name),
      ["euler_default"],
      "no temp folders left",
    );
  });
});

Deno.test("default dataset: lives under XDG_CACHE_HOME (or ~/.cache)/lola-webgpu/euler_default", () => {
  const saved = Deno.env.get("XDG_CACHE_HOME");
  try {
    Deno.env.set("XDG_CACHE_HOME", "/tmp/xdg-test");
    assert.equal(defaultDatasetPath(), "/tmp/xdg-test/lola-webgpu/euler_default");
    Deno.env.delete("XDG_CACHE_HOME");
    assert.equal(cacheRoot(), join(Deno.env.get("HOME")!, ".cache", "lola-webgpu"));
  } finally {
    if (saved === undefined) Deno.env.delete("XDG_CACHE_HOME");
    else Deno.env.set("XDG_CACHE_HOME", saved);
  }
  assert.equal(DEFAULT_DATASET_OPTIONS.resolution, 64);
});
