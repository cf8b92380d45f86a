/**
 * End-to-end learning checks of the engine: a 2-layer MLP regression trained with Adam must really learn
 * (loss ÷100), must not leak GPU memory over 500 steps, and must be bit-reproducible for a fixed seed.
 */
import assert from "node:assert/strict";
import {
  Adam,
  backward,
  cosineLr,
  Generator,
  gradNorm,
  linear,
  mean,
  mul,
  pool,
  scope,
  silu,
  square,
  sub,
  Tensor,
  zeroGrad,
} from "../../engine/index.ts";
import { gpuReady, randArray } from "../helpers.ts";

interface RunResult {
  losses: number[];
  bytesInUse: number[];
}

async function trainMlp(seed: number, steps: number, probeEvery: number): Promise<RunResult> {
  const n = 64, din = 4, hidden = 64;
  const xData = Float32Array.from(randArray(n * din, 11, -2, 2));
  const yData = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < din; j++) s += Math.sin(xData[i * din + j] * (j + 1) * 0.4);
    yData[i] = s;
  }
  const x = Tensor.fromData(xData, [n, din], { persistent: true });
  const y = Tensor.fromData(yData, [n, 1], { persistent: true });
  const gen = new Generator(seed);
  const init = (shape: number[], std: number) => scope(() => mul(gen.normal(shape), std).keep());
  const w1 = init([hidden, din], 0.5), b1 = init([hidden], 0.1);
  const w2 = init([1, hidden], 1 / Math.sqrt(hidden)), b2 = init([1], 0.1);
  const params = [w1, b1, w2, b2];
  for (const p of params) p.requiresGrad = true;
  const opt = new Adam(params, { lr: 2e-2 });
  const losses: number[] = [];
  const bytesInUse: number[] = [];
  for (let step = 0; step < steps; step++) {
    const loss = scope(() => {
      const h = silu(linear(x, w1, b1));
      const pred = linear(h, w2, b2);
      const l = mean(square(sub(pred, y)));
      backward(l);
      opt.step({ lr: cosineLr(step, steps, 2e-2, { warmup: 10 }), gradNorm: gradNorm(params), maxNorm: 10 });
      zeroGrad(params);
      return (step % probeEvery === 0 || step === steps - 1) ? l : null;
    });
    if (loss) {
      losses.push(await loss.item());
      loss.dispose();
      bytesInUse.push(pool.stats.bytesInUse);
    }
  }
  for (const t of [...params, x, y]) t.dispose();
  opt.dispose();
  return { losses, bytesInUse };
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
