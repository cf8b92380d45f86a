/**
 * Philox RNG and dropout: GPU draws are bit-identical to the CPU Philox-4x32-10 reference, the same seed gives
 * the same tensor and a new draw a new one, the moments are right, and dropout keeps 1−p of the values scaled by
 * 1/(1−p) with a gradient that uses the same mask; the fused silu_dropout gives dropout(silu(x)) with the same draw.
 */
import assert from "node:assert/strict";
import * as E from "../../engine/index.ts";
import { philoxCpu, uniformCpu } from "../../engine/random.ts";
import { assertClose, checkOp, gpuReady, randArray } from "../helpers.ts";

Deno.test("random: Philox-4x32-10 matches the Random123 known-answer vector", () => {
  // Random123 kat_vectors: philox4x32 10 rounds, counter 0, key 0.
  const got = philoxCpu([0, 0, 0, 0], [0, 0]).map((v) => v.toString(16).padStart(8, "0"));
  assert.deepEqual(got, ["6627e8d5", "e169c58d", "bc57ac4c", "9b00dbd8"]);
});

Deno.test("random: GPU uniform draws equal the CPU reference bit for bit", async () => {
  await gpuReady();
  const gen = new E.Generator(123456789012);
  gen.uniform([5]).dispose();
  const got = await gen.uniform([1001]).read(); // second draw: call index 1
  assert.deepEqual(got, uniformCpu(123456789012, 1, 1001));
  // A multiple of 4 takes the quad stores.
  assert.deepEqual(await gen.uniform([1000]).read(), uniformCpu(123456789012, 2, 1000));
});

Deno.test("random: same seed → same tensor; next draw differs; normal moments", async () => {
  await gpuReady();
  const a = await new E.Generator(5).normal([4096]).read();
  const b = await new E.Generator(5).normal([4096]).read();
  assert.deepEqual(a, b);
  const g = new E.Generator(5);
  g.normal([4096]).dispose();
  const c = await g.normal([4096]).read();
  assert.notDeepEqual(a, c);
  const big = await new E.Generator(9).normal([1 << 16], 1, 2).read();
  const mean = big.reduce((s, v) => s + v, 0) / big.length;
  const sd = Math.sqrt(big.reduce((s, v) => s + (v - mean) ** 2, 0) / big.length);
  assert.ok(Math.abs(mean - 1) < 0.03 && Math.abs(sd - 2) < 0.03, `mean ${mean}, std ${sd}`);
});

Deno.test("random: dropout keeps ~(1-p), scales by 1/(1-p), backward uses the same mask", async () => {
  await gpuReady();
  const n = 20000, p = 0.25;
  const x = E.Tensor.fromData(new Float32Array(n).fill(2), [n], { requiresGrad: true, persistent: true });
  const y = E.scope(() => {
    const out = E.dropout(x, p, true, new E.Generator(3));
    E.backward(E.sum(E.mul(out, 3)));
    return out.keep();
  });
  const yv = await y.read(), gv = await x.grad!.read();
  let kept = 0;
  for (let i = 0; i < n; i++) {
    if (yv[i] !== 0) {
      kept++;
      assert.ok(Math.abs(yv[i] - 2 / (1 - p)) < 1e-6);
      assert.ok(Math.abs(gv[i] - 3 / (1 - p)) < 1e-6);
    } else assert.equal(gv[i], 0);
  }
  assert.ok(Math.abs(kept / n - (1 - p)) < 0.02, `kept fraction ${kept / n}`);
  assert.equal(E.dropout(x, p, false, new E.Generator(3)), x, "eval mode is the identity");
  for (const t of [x.grad!, x, y]) t.dispose();
});

Deno.test("random: silu_dropout is dropout(silu(x)) with the same draw; values and gradient match float64", async () => {
  await gpuReady();
  const n = 1030, p = 0.3, seed = 11;
  const x = randArray(n, 5, -4, 4);
  const u = uniformCpu(seed, 0, n); // the generator's first draw
  const sig = (v: number) => 1 / (1 + Math.exp(-v));
  const r = await checkOp({
    label: "silu_dropout",
    inputs: [{ data: x, shape: [n] }],
    fn: ([t]) => E.silu_dropout(t, p, true, new E.Generator(seed)),
    ref: ([t]) => t.map((v, i) => (u[i] >= p ? (v * sig(v)) / (1 - p) : 0)),
    fwdTol: { atol: 1e-6, rtol: 1e-6 },
    gradTol: { atol: 1e-4, rtol: 1e-4 },
    h: 1e-3,
  });
  console.log(
    `silu_dropout: max error forward ${r.fwd.toExponential(2)}, gradient ${r.grad.toExponential(2)}`,
  );
  // The same numbers as the two ops composed, forward and backward.
  const t = E.Tensor.fromData(Float32Array.from(x), [n], { requiresGrad: true, persistent: true });
  const run = async (f: (t: E.Tensor) => E.Tensor) => {
    const y = E.scope(() => {
      const y = f(t);
      E.backward(E.sum(E.mul(y, E.Tensor.fromData(Float32Array.from(u), [n]))));
      return y.keep();
    });
    const out = [await y.read(), await t.grad!.read()];
    y.dispose();
    E.zeroGrad([t]);
    return out;
  };
  const [yf, gf] = await run((t) => E.silu_dropout(t, p, true, new E.Generator(seed)));
  const [yc, gc] = await run((t) => E.dropout(E.silu(t), p, true, new E.Generator(seed)));
  assertClose("silu_dropout vs composed", yf, yc, { atol: 1e-7, rtol: 1e-6 });
  assertClose("silu_dropout grad vs composed", gf, gc, { atol: 1e-7, rtol: 1e-6 });
  const ev = E.silu_dropout(t, p, false, new E.Generator(seed));
  assertClose("eval mode is silu", await ev.read(), await E.silu(t).read(), { atol: 0, rtol: 0 });
  t.dispose();
});
