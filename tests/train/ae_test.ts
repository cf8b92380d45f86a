/**
 * The autoencoder training loop and latent caching on a small generated Euler dataset: a run writes its config,
 * metrics, checkpoints and figures; an interrupted run resumed with --resume ends bit-identical to an
 * uninterrupted one (PSGD state, data order and dropout draws included); bad resumes fail with one clear line;
 * `encode` writes a latent cache that the data reader reads back as 5-frame windows.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadSafetensors } from "../../engine/checkpoint.ts";
import { generateEulerDataset } from "../../data/euler_dataset.ts";
import { LatentCache } from "../../data/latent_cache.ts";
import { WellDataset } from "../../data/well_dataset.ts";
import { type TrainAeConfig, trainAutoencoder } from "../../train/ae.ts";
import { encodeDataset } from "../../train/encode.ts";
import { gpuReady } from "../helpers.ts";

let dataRoot: string | null = null;
async function dataset(): Promise<string> {
  if (!dataRoot) {
    const dir = await Deno.makeTempDir();
    dataRoot = join(dir, "euler_multi_quadrants");
    await generateEulerDataset({
      out: dataRoot,
      resolution: 16,
      trajectories: 12,
      steps: 6,
      tEnd: 0.2,
      gammas: 2,
      workers: 0,
    });
  }
  return dataRoot;
}

function config(data: string, out: string, over: Partial<TrainAeConfig> = {}): TrainAeConfig {
  return {
    preset: "tiny",
    data,
    latentChannels: 4,
    epochs: 2,
    stepsPerEpoch: 3,
    batch: 4,
    lr: 1e-3,
    optimizer: "psgd",
    loss: "vrmse",
    seed: 3,
    out,
    identityInit: true,
    validBatches: 1,
    logEvery: 2,
    maxNorm: 1,
    resume: false,
    ...over,
  };
}

Deno.test("train ae: a run writes config, metrics, checkpoints and a figure per epoch; resume is bit-exact", async () => {
  await gpuReady();
  const data = await dataset();
  const tmp = await Deno.makeTempDir();
  const full = join(tmp, "full"), split = join(tmp, "split");
  const a = await trainAutoencoder(config(data, full));
  assert.equal(a.epochsDone, 2);
  assert.ok(a.lastValidation && Number.isFinite(a.lastValidation.mean));
  const files = [...Deno.readDirSync(full)].map((e) => e.name).sort();
  assert.deepEqual(files, [
    "checkpoint.safetensors",
    "config.json",
    "figures",
    "metrics.jsonl",
    "model.safetensors",
  ]);
  assert.equal([...Deno.readDirSync(join(full, "figures"))].length, 2);
  const metrics = (await Deno.readTextFile(join(full, "metrics.jsonl"))).trim().split("\n").map((l) =>
    JSON.parse(l)
  );
  assert.ok(metrics.some((m) => typeof m.train_loss === "number"));
  assert.equal(metrics.filter((m) => m.valid_vrmse).length, 2);

  // Interrupt after 4 of 6 steps (mid-epoch), then resume.
  let steps = 0;
  const b = await trainAutoencoder(config(data, split), {
    onStep: () => steps++,
    shouldStop: () => steps >= 4,
  });
  assert.equal(b.stopped, true);
  await assert.rejects(trainAutoencoder(config(data, split)), /exists: pass --resume/);
  await assert.rejects(trainAutoencoder(config(data, split, { resume: true, batch: 2 })), /batch=4, not 2/);
  const c = await trainAutoencoder(config(data, split, { resume: true }));
  assert.equal(c.epochsDone, 2);
  const x = (await loadSafetensors(join(full, "checkpoint.safetensors"))).tensors;
  const y = (await loadSafetensors(join(split, "checkpoint.safetensors"))).tensors;
  assert.deepEqual([...x.keys()].sort(), [...y.keys()].sort());
  for (const [k, t] of x) assert.deepEqual(y.get(k)!.data, t.data, `${k} differs after resume`);

  // The reference state dict holds every parameter plus the norm.eps buffers.
  const model = (await loadSafetensors(join(full, "model.safetensors"))).tensors;
  assert.deepEqual(model.get("encoder.descent.0.1.norm.eps")!.shape, []);
  assert.ok(model.has("decoder.ascent.2.1.weight"));

  const cache = await encodeDataset({ ae: full, data, repeat: 2, batch: 4 });
  assert.deepEqual(Object.keys(cache).sort(), ["test", "train", "valid"]);
  const lc = await LatentCache.open(cache.train.path, { length: 5 });
  try {
    const ds = await WellDataset.open(data, { split: "train" });
    const trainTrajs = ds.trajectories().length;
    ds.close();
    assert.equal(cache.train.trajectories, 2 * trainTrajs, "the train split is encoded twice (repeat 2)");
    assert.equal(lc.length, 2 * trainTrajs * (6 - 5 + 1), "windows of 5 frames from 6-frame trajectories");
    const w = lc.getWindow(0);
    assert.ok(w.label && w.label.length === 5, "θ = γ + 4 boundary codes");
  } finally {
    lc.close();
  }
  await Deno.remove(tmp, { recursive: true });
});
