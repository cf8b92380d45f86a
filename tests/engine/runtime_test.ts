/**
 * The buffer pool inside one open encoder (engine/runtime.ts): a temporary released before the submit is
 * reused for the next kernel-written result of its size (a step's footprint is its live peak), while host
 * writes never land in a buffer that unsubmitted work still uses (fromData takes committed buffers only, and
 * writeBuffer into a recycled one submits first), and a repeated step gets the same buffers, so its bind groups
 * are found again. Exact values: every check is on small integers.
 */
import assert from "node:assert/strict";
import * as E from "../../engine/index.ts";
import { counters, pipelineFor, writeBuffer } from "../../engine/runtime.ts";
import { psgdMomentumKernel } from "../../kernels/psgd.wgsl.ts";
import { gpuReady } from "../helpers.ts";

const N = 1024;
const range = (f: (i: number) => number) => Float32Array.from({ length: N }, (_, i) => f(i));

Deno.test("runtime: a temporary released mid-encoder is reused for the next kernel result, values intact", async () => {
  await gpuReady();
  const a = E.Tensor.fromData(range((i) => i), [N], { persistent: true });
  try {
    const [y, z] = E.scope(() => {
      const t1 = E.mul(a, 2);
      const y = E.add(t1, 1).keep(); // reads t1 before t1 is released
      t1.dispose();
      const created = E.pool.stats.buffersCreated;
      const z = E.mul(a, 3).keep(); // t1's buffer, recycled inside this encoder
      assert.equal(E.pool.stats.buffersCreated, created, "the released temporary was not reused");
      return [y, z];
    });
    assert.deepEqual([...await y.read()], [...range((i) => 2 * i + 1)]);
    assert.deepEqual([...await z.read()], [...range((i) => 3 * i)]);
    y.dispose();
    z.dispose();
  } finally {
    a.dispose();
  }
});

Deno.test("runtime: host writes never overtake pending work on a recycled buffer", async () => {
  await gpuReady();
  const a = E.Tensor.fromData(range((i) => i), [N], { persistent: true });
  try {
    await E.sync();
    E.pool.trim(); // no committed free buffers: every reuse below comes from inside the encoder
    const [y, z, w] = E.scope(() => {
      const t1 = E.mul(a, 2);
      const y = E.add(t1, 1).keep();
      t1.dispose();
      // fromData must not take t1's buffer (its upload would land before `add` reads t1): it takes a new one
      // rather than submitting early.
      const before = counters.submits;
      const w = E.Tensor.fromData(range(() => -7), [N]).keep();
      assert.equal(counters.submits, before, "fromData submitted the open encoder");
      const t2 = E.mul(a, 2);
      const y2 = E.add(t2, 0).keep();
      t2.dispose();
      // A kernel-type acquisition may take t2's buffer; writing it from the host must submit first.
      const z = E.Tensor.empty([N]).keep();
      const submits = counters.submits;
      writeBuffer(z.buffer, range(() => 5));
      assert.equal(counters.submits, submits + 1, "writeBuffer into a recycled buffer did not submit first");
      const fine = E.add(y2, 0).keep();
      y2.dispose();
      return [E.add(y, fine), z, w];
    });
    assert.deepEqual([...await y.read()], [...range((i) => 4 * i + 1)]);
    assert.deepEqual([...await z.read()], [...range(() => 5)]);
    assert.deepEqual([...await w.read()], [...range(() => -7)]);
    for (const t of [y, z, w]) t.dispose();
  } finally {
    a.dispose();
  }
});

Deno.test("runtime: a cached kernel builder returns one Kernel per arguments, whose pipeline is found again", async () => {
  await gpuReady();
  const a = psgdMomentumKernel(64), b = psgdMomentumKernel(64), c = psgdMomentumKernel(128);
  assert.equal(a, b, "same arguments, same object");
  assert.notEqual(a, c);
  assert.notEqual(a.code, c.code);
  const before = counters.pipelines;
  const p = pipelineFor(a);
  assert.equal(pipelineFor(b), p, "found by the Kernel object");
  assert.equal(pipelineFor({ ...a }), p, "an equal source from another object finds the same pipeline");
  assert.ok(counters.pipelines - before <= 1, "at most one pipeline created");
});

Deno.test("runtime: a step repeated on pooled buffers reuses its bind groups, whatever order they came back in", async () => {
  await gpuReady();
  const a = E.Tensor.fromData(range((i) => i), [N], { persistent: true });
  // Three temporaries, kept past the scope so the test decides the order they go back to the pool in.
  const step = () =>
    E.scope(() => {
      const t1 = E.mul(a, 2), t2 = E.add(t1, 1), t3 = E.mul(t2, t1);
      return [t1, t2, t3].map((t) => t.keep());
    });
  const check = async (ts: E.Tensor[]) => {
    assert.deepEqual([...await ts[2].read()], [...range((i) => (2 * i + 1) * 2 * i)]);
  };
  try {
    await E.sync();
    E.pool.trim(); // no free buffers from earlier tests; also empties the bind-group cache
    let ts = step();
    await check(ts);
    for (const i of [0, 1, 2]) ts[i].dispose(); // committed: straight to the free lists
    ts = step();
    await check(ts);
    for (const i of [2, 0, 1]) ts[i].dispose();
    const groups = counters.bindGroups, created = E.pool.stats.buffersCreated;
    ts = step();
    await check(ts);
    assert.equal(E.pool.stats.buffersCreated, created, "the repeated step created buffers");
    assert.equal(counters.bindGroups, groups, "the repeated step created bind groups: it got other buffers");
    for (const t of ts) t.dispose();
    await E.sync();
    E.pool.trim(); // destroys those buffers: the next step binds new ones, in new groups
    ts = step();
    assert.ok(counters.bindGroups > groups, "no new groups after trim");
    await check(ts);
    for (const t of ts) t.dispose();
  } finally {
    a.dispose();
  }
});
