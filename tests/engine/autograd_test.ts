/**
 * Autodiff and memory semantics: shared subexpressions accumulate, leaf gradients accumulate across backward
 * calls until zeroGrad (a leaf takes its first gradient without a copy unless another leaf holds it), noGrad records nothing, detach cuts the tape, scopes give temporaries back and keep what
 * is returned, a backward returning the wrong number of gradients fails naming its op, and linear (torch layout)
 * has the right gradients.
 */
import assert from "node:assert/strict";
import * as E from "../../engine/index.ts";
import { record } from "../../engine/autograd.ts";
import { vjp } from "../../engine/jvp.ts";
import { reference } from "../../engine/ops/matmul.ts";
import { checkOp, gpuReady, randArray } from "../helpers.ts";

Deno.test("autograd: a value used twice gets both contributions; leaf grads accumulate until zeroGrad", async () => {
  await gpuReady();
  const x = E.Tensor.parameter([1, 2, 3], [3], "x");
  const run = () =>
    E.scope(() => {
      const y = E.mul(x, x); // dy/dx = 2x
      E.backward(E.sum(E.add(y, E.mul(y, x)))); // d/dx (x² + x³) = 2x + 3x²
    });
  run();
  assert.deepEqual([...await x.grad!.read()], [5, 16, 33]);
  run();
  assert.deepEqual([...await x.grad!.read()], [10, 32, 66]);
  E.zeroGrad([x]);
  assert.equal(x.grad, null);
  x.dispose();
});

Deno.test("autograd: a leaf's first gradient is the backward's own tensor, never one another leaf also holds", async () => {
  await gpuReady();
  const w = E.Tensor.fromData([1, -2, 3, -4], [4], { persistent: true });
  // add's backward hands one tensor to both leaves: one of them must get a copy, or the second backward's
  // accumulation into one would change the other (scoped leaves, so nothing else tells them apart).
  const [gp, gq] = E.scope(() => {
    const p = E.Tensor.fromData([1, 2, 3, 4], [4], { requiresGrad: true });
    const q = E.Tensor.fromData([5, 6, 7, 8], [4], { requiresGrad: true });
    for (let i = 0; i < 2; i++) E.backward(E.sum(E.mul(E.add(p, q), w)));
    return [E.copy(p.grad!), E.copy(q.grad!)];
  });
  assert.deepEqual([...await gp.read()], [2, -4, 6, -8]);
  assert.deepEqual([...await gq.read()], [2, -4, 6, -8]);
  for (const t of [gp, gq]) t.dispose();
  // A parameter takes its first gradient without a copy: the next backward's accumulation costs one dispatch
  // more than it (an add), where a copy would have cost as much.
  const p = E.Tensor.parameter([1, 2, 3, 4], [4], "p"), q = E.Tensor.parameter([5, 6, 7, 8], [4], "q");
  const count = () => {
    const d0 = E.counters.dispatches;
    E.scope(() => E.backward(E.sum(E.mul(p, w))));
    return E.counters.dispatches - d0;
  };
  const first = count(), second = count();
  assert.equal(second, first + 1, `first backward ${first} dispatches, accumulating one ${second}`);
  assert.deepEqual([...await p.grad!.read()], [2, -4, 6, -8]);
  E.zeroGrad([p, q]);
  for (const t of [p, q, w]) t.dispose();
});

Deno.test("autograd: vjp of x + y hands each input its own gradient, neither the cotangent", async () => {
  await gpuReady();
  const x = E.Tensor.fromData([1, 2], [2], { persistent: true }),
    y = E.Tensor.fromData([3, 4], [2], { persistent: true });
  const v = E.Tensor.fromData([5, 6], [2], { persistent: true });
  const { out, grads: [gx, gy] } = vjp(([a, b]) => E.add(a, b), [x, y], v);
  assert.ok(gx !== gy && gx !== v && gy !== v, "a gradient aliases the cotangent or the other input's");
  assert.deepEqual([...await gx.read()], [5, 6]);
  assert.deepEqual([...await gy.read()], [5, 6]);
  for (const t of [x, y, v, out, gx, gy]) t.dispose();
});

Deno.test("autograd: noGrad records no tape and detach cuts it", async () => {
  await gpuReady();
  const x = E.Tensor.parameter([1, 2], [2]);
  E.scope(() => {
    const y = E.noGrad(() => E.mul(x, 2));
    assert.equal(y.requiresGrad, false);
    const z = E.add(E.mul(E.detach(x), x), 0); // d/dx = detach(x)
    E.backward(E.sum(z));
  });
  assert.deepEqual([...await x.grad!.read()], [1, 2]);
  x.grad!.dispose();
  x.dispose();
});

Deno.test("autograd: a backward that returns too few or too many gradients fails, naming the op", async () => {
  await gpuReady();
  const a = E.Tensor.parameter([1, 2], [2]), b = E.Tensor.parameter([3, 4], [2]);
  for (const count of [1, 3]) {
    E.scope(() => {
      const y = record(E.add(E.detach(a), E.detach(b)), "broken_op", [a, b], (g) => Array(count).fill(g));
      assert.throws(
        () => E.backward(E.sum(y)),
        new RegExp(`backward of broken_op returned ${count} gradients for 2 inputs`),
      );
    });
  }
  assert.equal(a.grad, null);
  a.dispose();
  b.dispose();
});

Deno.test("scope: temporaries return to the pool, returned tensors survive into the parent scope", async () => {
  await gpuReady();
  const before = E.pool.stats.bytesInUse;
  const kept = E.scope(() => {
    const a = E.Tensor.fromData(randArray(1000, 1), [1000]);
    const b = E.exp(E.mul(a, 0.5));
    return { out: E.sum(b) };
  });
  assert.ok(E.pool.stats.bytesInUse > before);
  const v = await kept.out.item();
  assert.ok(Number.isFinite(v));
  kept.out.dispose();
  assert.equal(E.pool.stats.bytesInUse, before);
  assert.throws(() => E.scope(() => Promise.resolve(1)), /synchronous/);
  assert.equal(E.pool.stats.bytesInUse, before);
});

Deno.test("linear: y = x Wᵀ + b with W (out, in) like torch.nn.Linear (x, W, b gradients)", async () => {
  await gpuReady();
  const x = randArray(2 * 5 * 7, 1), w = randArray(3 * 7, 2), b = randArray(3, 3);
  await checkOp({
    label: "linear",
    inputs: [{ data: x, shape: [2, 5, 7] }, { data: w, shape: [3, 7] }, { data: b, shape: [3] }],
    fn: ([xt, wt, bt]) => E.linear(xt, wt, bt),
    ref: ([xv, wv, bv]) => {
      const y = reference.matmul(xv, [10, 7], wv, [3, 7], false, true);
      return y.map((v, i) => v + bv[i % 3]);
    },
    fwdTol: { atol: 1e-5, rtol: 1e-5 },
    gradTol: { atol: 1e-3, rtol: 1e-3 },
  });
});

Deno.test("device: GPU validation errors surface as exceptions at the next read", async () => {
  await gpuReady();
  const bad = {
    name: "broken",
    code: "@compute @workgroup_size(1) fn main() { let x: f32 = undefined_symbol; }",
  };
  const t = E.Tensor.fromData([1], [1]);
  let threw = false;
  try {
    (await import("../../engine/runtime.ts")).dispatch(bad, [], [1]);
    await t.read();
  } catch (e) {
    threw = /WebGPU error|undefined_symbol|broken/.test(String(e));
  }
  // A second read after the error is reported must work again.
  assert.ok(threw, "an invalid shader did not raise");
  E.flush();
  t.dispose();
});

// A deep chain of linear + silu layers on (64, 128): each layer leaves two activations of S = 32 KiB.
function chain(x: E.Tensor, ws: E.Tensor[]): E.Tensor {
  let h = x;
  for (const w of ws) h = E.silu(E.linear(h, w));
  return E.mean(E.square(h));
}

Deno.test("backward: gradients are freed once consumed; freeActivations frees the forward too, same gradients", async () => {
  await gpuReady();
  const L = 12, S = 64 * 128 * 4;
  const ws = Array.from(
    { length: L },
    (_, i) => E.Tensor.parameter(randArray(128 * 128, 40 + i, -0.15, 0.15), [128, 128], `w${i}`),
  );
  const x = E.Tensor.fromData(randArray(64 * 128, 7), [64, 128], { persistent: true });
  const run = (freeActivations: boolean) => {
    E.zeroGrad(ws);
    const base = E.pool.stats.bytesInUse;
    let forward = 0, backwardPeak = 0, afterBackward = 0;
    let hidden: E.Tensor | null = null;
    E.scope(() => {
      const h = E.silu(E.linear(x, ws[0]));
      hidden = h;
      const l = chain(h, ws.slice(1));
      forward = E.pool.stats.bytesInUse - base;
      E.pool.stats.peakBytesInUse = E.pool.stats.bytesInUse;
      E.backward(l, undefined, { freeActivations });
      backwardPeak = E.pool.stats.peakBytesInUse - base - forward;
      afterBackward = E.pool.stats.bytesInUse - base;
    });
    return { forward, backwardPeak, afterBackward, hidden: hidden! as E.Tensor };
  };
  const keep = run(false);
  const gKeep = await Promise.all(ws.map((w) => w.grad!.read()));
  const free = run(true);
  const gFree = await Promise.all(ws.map((w) => w.grad!.read()));
  const paramGrads = L * 128 * 128 * 4;
  console.log(
    `forward ${keep.forward / S} S; backward adds at most ${keep.backwardPeak / S} S (keep) / ` +
      `${free.backwardPeak / S} S (free); after backward ${keep.afterBackward / S} S / ${
        free.afterBackward / S
      } S ` +
      `(parameter gradients ${paramGrads / S} S)`,
  );
  // Holding every gradient would add ~2L·S; freed as consumed, the backward needs a few S beyond the leaf grads.
  assert.ok(keep.backwardPeak <= paramGrads + 6 * S, `backward peak +${keep.backwardPeak / S} S`);
  // With freeActivations the forward's 2L activations are gone when backward returns: leaf grads remain.
  assert.ok(free.afterBackward <= paramGrads + 2 * S, `after backward ${free.afterBackward / S} S`);
  // ... and the backward's peak barely exceeds the forward's: each activation goes as its gradient arrives.
  assert.ok(free.backwardPeak <= 4 * S, `backward peak with freeActivations +${free.backwardPeak / S} S`);
  assert.ok(
    keep.afterBackward >= paramGrads + 2 * L * S - S,
    `after backward (keep) ${keep.afterBackward / S} S`,
  );
  for (let i = 0; i < L; i++) assert.deepEqual(gFree[i], gKeep[i], `w${i}.grad differs with freeActivations`);
  assert.equal(keep.hidden.isDisposed, true); // its scope ended
  assert.throws(() => free.hidden.buffer, /use of a disposed tensor/);
  E.zeroGrad(ws);
  for (const t of [x, ...ws]) t.dispose();
});
