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

// Sizes across the multi-tensor kernels' cases: vec4 and scalar, one and several workgroups (256 lanes for
// Adam, 4,096-element chunks for the norm), more tensors than one dispatch binds (7 for Adam, 31 for the norm
// on lavapipe's 32 storage bindings).
const SIZES = [37, 4, 1, 1100, 256, 1025, 8, 3, 2048, 5, 12, 9001, 4096, 4100, 2];

Deno.test("optim: gradNorm over 45 tensors of mixed sizes matches float64, and a NaN or Inf anywhere propagates", async () => {
  await gpuReady();
  const sizes = [...SIZES, ...SIZES, ...SIZES];
  const grads = sizes.map((n, i) => randArray(n, 100 + i, -2, 2));
  const params = sizes.map((n, i) => {
    const p = E.Tensor.parameter(new Float32Array(n), [n], `p${i}`);
    p.grad = E.Tensor.fromData(Float32Array.from(grads[i]), [n], { persistent: true });
    return p;
  });
  params[3].grad!.dispose();
  params[3].grad = null; // a parameter without a gradient is left out
  const want = Math.sqrt(grads.reduce((a, g, i) => (i === 3 ? a : a + g.reduce((b, x) => b + x * x, 0)), 0));
  const norm = async () => {
    const t = E.scope(() => E.gradNorm(params).keep());
    const v = await t.read();
    t.dispose();
    return v;
  };
  const got = await norm();
  assertClose("gradNorm", got, [want], { atol: 0, rtol: 2e-6 });
  for (const [bad, check] of [[NaN, Number.isNaN], [Infinity, (x: number) => x === Infinity]] as const) {
    const last = params[params.length - 2]; // in the last dispatch
    const v = Float32Array.from(grads[params.length - 2]);
    v[4097] = bad; // in its second chunk
    last.grad!.dispose();
    last.grad = E.Tensor.fromData(v, [v.length], { persistent: true });
    const [n] = await norm();
    assert.ok(check(n), `gradNorm with a ${bad} gradient gave ${n}`);
  }
  for (const p of params) {
    p.grad?.dispose();
    p.dispose();
  }
});

Deno.test("optim: Adam steps 15 tensors of mixed sizes (several per dispatch) like torch, one left without a gradient", async () => {
  await gpuReady();
  const steps = 4, lr = 0.01, wd = 0.1, clip = 30;
  const p0 = SIZES.map((n, i) => randArray(n, 200 + i));
  const grads = [...Array(steps).keys()].map((s) =>
    SIZES.map((n, i) => randArray(n, 300 + 20 * s + i, -2, 2))
  );
  const params = SIZES.map((n, i) => E.Tensor.parameter(Float32Array.from(p0[i]), [n], `p${i}`));
  const opt = new E.Adam(params, { lr, weightDecay: wd });
  // Tensor 5 has no gradient in the last step: it keeps its value, the others step with the norm of theirs.
  const has = (s: number, i: number) => !(s === steps - 1 && i === 5);
  for (let s = 0; s < steps; s++) {
    params.forEach((p, i) => {
      if (has(s, i)) {
        p.grad = E.Tensor.fromData(Float32Array.from(grads[s][i]), [SIZES[i]], { persistent: true });
      }
    });
    E.scope(() => opt.step({ gradNorm: E.gradNorm(params), maxNorm: clip }));
    E.zeroGrad(params);
  }
  const [b1, b2, eps] = [0.9, 0.999, 1e-8];
  const want = p0.map((p) => Float64Array.from(p));
  const m = SIZES.map((n) => new Float64Array(n)), v = SIZES.map((n) => new Float64Array(n));
  for (let s = 0; s < steps; s++) {
    const t = s + 1;
    let sq = 0;
    SIZES.forEach((_, i) => has(s, i) && grads[s][i].forEach((x) => (sq += x * x)));
    const scale = Math.min(1, clip / (Math.sqrt(sq) + 1e-6));
    SIZES.forEach((n, i) => {
      if (!has(s, i)) return;
      for (let k = 0; k < n; k++) {
        const g = grads[s][i][k] * scale;
        want[i][k] *= 1 - lr * wd;
        m[i][k] = b1 * m[i][k] + (1 - b1) * g;
        v[i][k] = b2 * v[i][k] + (1 - b2) * g * g;
        want[i][k] -= (lr * (m[i][k] / (1 - b1 ** t))) / (Math.sqrt(v[i][k] / (1 - b2 ** t)) + eps);
      }
    });
  }
  for (let i = 0; i < SIZES.length; i++) {
    assertClose(`adam p${i} (${SIZES[i]})`, await params[i].read(), want[i], { atol: 2e-6, rtol: 1e-5 });
  }
  assert.throws(() => new E.Adam([params[0], params[0]], { lr }), /listed twice/);
  for (const p of params) p.dispose();
  opt.dispose();
});

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
