/**
 * `encode` is all or nothing (issue 16 item 5): every split is opened and checked before anything is written (a
 * corrupt train file is named, not reported as a missing split; a grid not divisible by the autoencoder's down
 * factor is one line naming the sizes, not a BigInt error), and a failure midway leaves no cache behind.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { saveSafetensors } from "../../engine/checkpoint.ts";
import { Autoencoder } from "../../models/autoencoder.ts";
import { AE_PRESETS } from "../../models/autoencoder_config.ts";
import { encodeDataset } from "../../train/encode.ts";
import { gpuReady } from "../helpers.ts";
import { assertDataError, encode, withTempDir, writeDatasetRoot } from "./fixtures.ts";

/** An autoencoder run folder: config.json, and model.safetensors when `weights` (needs the GPU). */
async function aeRun(dir: string, weights = false): Promise<string> {
  const run = join(dir, "ae");
  Deno.mkdirSync(run, { recursive: true });
  const model = AE_PRESETS.tiny(5, 4);
  Deno.writeTextFileSync(join(run, "config.json"), JSON.stringify({ model }));
  if (weights) {
    await gpuReady();
    const ae = new Autoencoder(model, 0);
    await saveSafetensors(join(run, "model.safetensors"), ae.stateDict());
    ae.dispose();
  }
  return run;
}

const listing = (dir: string): string[] => {
  try {
    return [...Deno.readDirSync(dir)].flatMap((e) =>
      e.isDirectory ? listing(join(dir, e.name)).map((n) => `${e.name}/${n}`) : [e.name]
    );
  } catch {
    return [];
  }
};

Deno.test("encode: a corrupt train file is named before anything is written", async () => {
  await withTempDir(async (dir) => {
    const data = join(dir, "data_root");
    const opts = { B: 1, T: 2, shape: [8, 8] };
    await writeDatasetRoot(data, {
      valid: [{ name: "v.hdf5", opts }],
      test: [{ name: "t.hdf5", opts }],
      train: [],
    });
    Deno.writeTextFileSync(join(data, "data", "train", "a.hdf5"), "garbage");
    const ae = await aeRun(dir, true);
    await assertDataError(
      () => encodeDataset({ ae, data, out: join(dir, "cache") }),
      /train\/a\.hdf5 is not an HDF5 file/,
    );
    assert.deepEqual(listing(join(dir, "cache")), [], "no valid or test cache written");
  });
});

Deno.test("encode: a grid not divisible by the down factor is one line naming the sizes", async () => {
  await withTempDir(async (dir) => {
    const data = join(dir, "data_root");
    await writeDatasetRoot(data, { train: [{ name: "a.hdf5", opts: { B: 1, T: 2, shape: [50, 50] } }] });
    const ae = await aeRun(dir, true);
    await assertDataError(
      () => encodeDataset({ ae, data, out: join(dir, "cache") }),
      /train split of .* is 50×50, not divisible by the autoencoder's down factor 4 .*multiples of 4/,
    );
    assert.deepEqual(listing(join(dir, "cache")), []);
  });
});

Deno.test("encode: a failure in the last split leaves no cache of the earlier ones", async () => {
  await withTempDir(async (dir) => {
    const data = join(dir, "data_root");
    const nanInTest = (k: number, b: number, t: number, s: number, c: number, K: number) =>
      t === 1 && s === 0 ? NaN : encode(k, b, t, s, c, K) / 1000;
    await writeDatasetRoot(data, {
      train: [{ name: "a.hdf5", opts: { B: 1, T: 2, shape: [8, 8], value: (...a) => encode(...a) / 1000 } }],
      valid: [{ name: "a.hdf5", opts: { B: 1, T: 2, shape: [8, 8], value: (...a) => encode(...a) / 1000 } }],
      test: [{ name: "a.hdf5", opts: { B: 1, T: 2, shape: [8, 8], value: nanInTest } }],
    });
    const ae = await aeRun(dir, true);
    await assertDataError(
      () => encodeDataset({ ae, data, out: join(dir, "cache"), repeat: 1 }),
      /test\/a\.hdf5: field 'energy' of trajectory 0 holds NaN at step 1/,
    );
    assert.deepEqual(listing(join(dir, "cache")), [], "train and valid caches were not renamed into place");
  });
});
