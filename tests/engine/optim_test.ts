/**
 * Adam(W) against a float64 reference of torch.optim.Adam/AdamW for several steps, global-norm clipping,
 * skipping of non-finite steps (counted on the GPU), the cosine schedule, and one loop serving both optimizers
 * through the Optimizer interface.
 */
import assert from "node:assert/strict";
import * as E from "../../engine/index.ts";
import type { Optimizer } from "../../engine/optim/optimizer.ts";
import { assertClose, gpuReady, randArray } from "../helpers.ts";

function adamRef(
  p: Float64Array,
  grads: Float64Array[],
  lr: number,
  wd: number,
  decoupled: boolean,
  clip = 0,
) {
  const m = new Float64Array(p.length), v = new Float64Array(p.length);
  const [b1, b2, eps] = [0.9, 0.999, 1e-8];
  grads.forEach((g0, s) => {
    const t = s + 1;
    const norm = Math.sqrt(g0.reduce((a, x) => a + x * x, 0));
    const scale = clip > 0 ? Math.min(1, clip / (norm + 1e-6)) : 1;
    for (let i = 0; i < p.length; i++) {
      let g = g0[i] * scale;
      if (decoupled) p[i] *= 1 - lr * wd;
      else g += wd * p[i];
      m[i] = b1 * m[i] + (1 - b1) * g;
      v[i] = b2 * v[i] + (1 - b2) * g * g;
      p[i] -= (lr * (m[i] / (1 - b1 ** t))) / (Math.sqrt(v[i] / (1 - b2 ** t)) + eps);
    }
  });
  return p;
}

for (const [decoupled, wd, clip] of [[true, 0.1, 0], [false, 0.05, 0], [true, 0, 0.5]] as const) {
  Deno.test(`optim: ${decoupled ? "AdamW" : "Adam (L2)"} wd=${wd} clip=${clip} matches the float64 reference over 5 steps`, async () => {
    await gpuReady();
    const n = 37;
    const p0 = randArray(n, 1);
    const grads = [0, 1, 2, 3, 4].map((s) => randArray(n, 10 + s, -2, 2));
    const p = E.Tensor.parameter(Float32Array.from(p0), [n], "p");
    const opt = new E.Adam([p], { lr: 0.01, weightDecay: wd, decoupled });
    for (const g of grads) {
      p.grad = E.Tensor.fromData(Float32Array.from(g), [n], { persistent: true });
      E.scope(() => opt.step(clip ? { gradNorm: E.gradNorm([p]), maxNorm: clip } : {}));
      E.zeroGrad([p]);
    }
    const want = adamRef(Float64Array.from(p0), grads, 0.01, wd, decoupled, clip);
    assertClose("adam params", await p.read(), want, { atol: 2e-6, rtol: 1e-5 });
    assert.deepEqual(await opt.stepCounts(), { steps: 5, skipped: 0 });
    p.dispose();
    opt.dispose();
  });
}

Deno.test("optim: a step whose gradient norm is not finite is skipped and counted, without a host sync", async () => {
  await gpuReady();
  const p = E.Tensor.parameter([1, 2, 3], [3], "p");
  const opt = new E.Adam([p], { lr: 0.1 });
  for (const g of [[1, 1, 1], [NaN, 1, 1], [1, Infinity, 1]]) {
    p.grad = E.Tensor.fromData(g, [3], { persistent: true });
    E.scope(() => opt.step({ gradNorm: E.gradNorm([p]), maxNorm: 1 }));
    E.zeroGrad([p]);
  }
  const v = await p.read();
  assert.ok(v.every(Number.isFinite), `parameters became ${v}`);
  assert.deepEqual(await opt.stepCounts(), { steps: 1, skipped: 2 });
  p.dispose();
  opt.dispose();
});

Deno.test("optim: cosine schedule warms up linearly, decays to minLr, is monotone after warmup", () => {
  assert.equal(E.cosineLr(0, 100, 1, { warmup: 10 }), 0.1);
  assert.equal(E.cosineLr(9, 100, 1, { warmup: 10 }), 1);
  assert.equal(E.cosineLr(10, 100, 1, { warmup: 10 }), 1);
  assert.ok(Math.abs(E.cosineLr(55, 100, 1, { warmup: 10 }) - 0.5) < 1e-12);
  assert.equal(E.cosineLr(100, 100, 1, { minLr: 0.1 }), 0.1);
  let prev = Infinity;
  for (let s = 10; s <= 100; s++) {
    const lr = E.cosineLr(s, 100, 1, { warmup: 10 });
    assert.ok(lr <= prev);
    prev = lr;
  }
});

Deno.test("optim: Adam and PSGDKron both implement Optimizer: one loop steps, counts and restores either", async () => {
  await gpuReady();
  const makers: [string, (ps: E.Tensor[]) => Optimizer][] = [
    ["Adam", (ps) => new E.Adam(ps, { lr: 1e-2 })],
    ["PSGDKron", (ps) => new E.PSGDKron(ps, { lr: 1e-2 })],
  ];
  for (const [name, make] of makers) {
    const p = E.Tensor.parameter(randArray(12, 3, -1, 1), [3, 4], "w");
    const opt = make([p]);
    try {
      for (let s = 0; s < 2; s++) {
        p.grad?.dispose();
        p.grad = E.Tensor.fromData(Float32Array.from(randArray(12, 10 + s, -1, 1)), [3, 4], {
          persistent: true,
        });
        opt.step({ lr: 1e-2 });
      }
      assert.deepEqual(await opt.stepCounts(), { steps: 2, skipped: 0 }, name);
      const sd = opt.stateDict();
      const host: Record<string, ArrayLike<number> | number> = {};
      for (const [k, v] of Object.entries(sd)) host[k] = typeof v === "number" ? v : await v.read();
      opt.loadStateDict(host);
      assert.deepEqual(await opt.stepCounts(), { steps: 2, skipped: 0 }, `${name} after loadStateDict`);
    } finally {
      opt.dispose();
      p.grad?.dispose();
      p.dispose();
    }
  }
});
