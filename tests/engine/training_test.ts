/**
 * End-to-end learning checks of the engine: a 2-layer MLP regression trained with Adam must really learn
 * (loss ÷100), must not leak GPU memory over 500 steps, and must be bit-reproducible for a fixed seed.
 */
import assert from "node:assert/strict";
import { pool } from "../../engine/index.ts";
import { fitMlp } from "../../train/mlp.ts";
import { gpuReady, randArray } from "../helpers.ts";

interface RunResult {
  losses: number[];
  bytesInUse: number[];
}

/** The `deno task train mlp` loop (train/mlp.ts) on 64 fixed points, reading the loss every `probeEvery` steps. */
async function trainMlp(seed: number, steps: number, probeEvery: number): Promise<RunResult> {
  const x = Float32Array.from(randArray(64 * 4, 11, -2, 2));
  const logs = await fitMlp({
    seed,
    steps,
    lr: 2e-2,
    hidden: 64,
    x,
    warmup: 10,
    maxNorm: 10,
    logEvery: probeEvery,
  });
  return { losses: logs.map((l) => l.loss), bytesInUse: logs.map((l) => l.bytesInUse) };
}

Deno.test("training: a 2-layer MLP regression trained with Adam drops its loss at least 100x", async () => {
  await gpuReady();
  const { losses } = await trainMlp(1, 500, 50);
  const ratio = losses[0] / losses[losses.length - 1];
  console.log(
    `loss ${losses[0].toFixed(4)} -> ${losses[losses.length - 1].toExponential(3)} (x${ratio.toFixed(0)})`,
  );
  assert.ok(
    ratio >= 100,
    `loss only dropped ${ratio.toFixed(1)}x: ${losses.map((l) => l.toExponential(2)).join(" ")}`,
  );
});

Deno.test("training: 500 steps keep bytes in use flat, and the same seed gives the same loss to the last bit", async () => {
  await gpuReady();
  const before = pool.stats.bytesInUse;
  const a = await trainMlp(7, 500, 25);
  const after = pool.stats.bytesInUse;
  const steady = a.bytesInUse.slice(2);
  assert.equal(Math.max(...steady), Math.min(...steady), `bytes in use drifted: ${steady.join(", ")}`);
  assert.equal(after, before, `bytes in use after the run ${after} != before ${before}`);
  const b = await trainMlp(7, 500, 25);
  assert.deepEqual(b.losses, a.losses, "second run with the same seed differs");
});
