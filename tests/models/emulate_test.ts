/**
 * The autoregressive rollout of method §5 (models/emulate.ts): window bookkeeping (temporal bundling, the next
 * context is the last c frames of the previous window, truncation to T), lead times (t − c + 1)·Δ, the
 * diffusion rollout (context frames reproduced, same seed → same rollout, K members differ), the latent and
 * pixel solver rollouts, and frame-by-frame decoding.
 */
import assert from "node:assert/strict";
import { concat, map, scope, slice, Tensor } from "../../engine/index.ts";
import { Autoencoder } from "../../models/autoencoder.ts";
import { AE_PRESETS } from "../../models/autoencoder_config.ts";
import { Denoiser } from "../../models/diffusion.ts";
import {
  decodeWindow,
  diffusionWindow,
  encodeWindow,
  Rollout,
  rollout,
  rolloutPlan,
  solverWindow,
  type WindowModel,
} from "../../models/emulate.ts";
import { PixelSolver, Solver } from "../../models/solver.ts";
import { transformerPreset } from "../../models/transformer.ts";
import { gpuReady, randArray } from "../helpers.ts";

async function read(t: Tensor): Promise<Float32Array> {
  const a = await t.read();
  t.dispose();
  return a;
}

/** Element (n, c, t) of a (N, C, T, S…) host array, flattened over space. */
function frame(a: Float32Array, shape: readonly number[], n: number, c: number, t: number): Float32Array {
  const [, C, T] = shape, S = shape.slice(3).reduce((x, y) => x * y, 1);
  const o = ((n * C + c) * T + t) * S;
  return a.subarray(o, o + S);
}

/** Frames ≥ c of a window continue its last context frame: x_{c−1} + (l − c + 1). Tests the bookkeeping. */
function counter(c: number): WindowModel {
  return (x) => {
    const L = x.shape[2], last = slice(x, 2, c - 1, c);
    const parts = [slice(x, 2, 0, c)];
    for (let l = c; l < L; l++) parts.push(map([last], `in0 + ${l - c + 1}.0`, "counter"));
    return concat(parts, 2);
  };
}

Deno.test("rollout plan: windows, truncation, lead times (t − c + 1)·Δ; bad geometry is one line", () => {
  const p = rolloutPlan({ window: 5, context: 1, stride: 4, horizon: 17 });
  assert.equal(p.windows, 4); // 5 + 4 + 4 + 4 = 17
  assert.deepEqual(p.leadTimes, Array.from({ length: 17 }, (_, t) => 4 * t));
  const q = rolloutPlan({ window: 5, context: 3, stride: 2, horizon: 10 });
  assert.equal(q.windows, 4); // 5 + 2 + 2 + 2 ≥ 10
  assert.deepEqual(q.leadTimes.slice(0, 4), [-4, -2, 0, 2]);
  assert.equal(rolloutPlan({ window: 5, context: 2, stride: 1, horizon: 3 }).windows, 1);
  assert.throws(() => rolloutPlan({ window: 5, context: 5, stride: 1, horizon: 9 }), /1 ≤ c < L = 5/);
  assert.throws(() => rolloutPlan({ window: 5, context: 0, stride: 1, horizon: 9 }), /context c/);
  assert.throws(() => rolloutPlan({ window: 5, context: 2, stride: 1, horizon: 2 }), /horizon must exceed/);
});

Deno.test("rollout bookkeeping: each window continues the last c frames of the previous one", async () => {
  await gpuReady();
  for (const c of [1, 2, 3]) {
    const B = 2, C = 1, L = 5, T = 13;
    // Context frames hold t (trajectory 0) and 10 + t (trajectory 1), so frame t of the rollout must be t (+10).
    const ctx = new Float32Array(B * C * c * 4);
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < c; t++) ctx.fill(10 * b + t, (b * c + t) * 4, (b * c + t + 1) * 4);
    }
    const context = Tensor.fromData(ctx, [B, C, c, 2, 2]);
    const r = new Rollout(counter(c), context, null, {
      window: L,
      context: c,
      stride: 2,
      horizon: T,
      members: 3,
    });
    const seen: number[] = [];
    let firsts = 0;
    const chunks: Tensor[] = [];
    for (let ch = r.next(); ch; ch = r.next()) {
      assert.equal(ch.first, firsts);
      assert.deepEqual(ch.leadTimes, r.plan.leadTimes.slice(ch.first, ch.first + ch.frames.shape[2]));
      firsts += ch.frames.shape[2];
      seen.push(ch.frames.shape[2]);
      chunks.push(ch.frames);
    }
    r.dispose();
    context.dispose();
    assert.equal(firsts, T);
    assert.equal(seen.length, r.plan.windows);
    assert.equal(seen[0], L);
    const all = scope(() => concat(chunks, 2).keep());
    chunks.forEach((t) => t.dispose());
    assert.deepEqual(all.shape, [B * 3, C, T, 2, 2]);
    const host = await read(all);
    for (let n = 0; n < B * 3; n++) {
      const b = Math.floor(n / 3);
      for (let t = 0; t < T; t++) {
        assert.equal(frame(host, all.shape, n, 0, t)[0], 10 * b + t, `c=${c} n=${n} t=${t}`);
      }
    }
  }
});

function tinyDenoiser(C: number, labelDim: number, seed = 1): Denoiser {
  return new Denoiser(
    transformerPreset("tiny", { channels: C, spatial: 2, labelDim, kind: "denoiser" }),
    seed,
  );
}

Deno.test("diffusion rollout: shapes, context reproduced, same seed → same rollout, members differ", async () => {
  await gpuReady();
  const B = 2, C = 2, c = 2, L = 4, K = 3, T = 7, sp = [4, 4];
  const den = tinyDenoiser(C, 1);
  const context = Tensor.fromData(Float32Array.from(randArray(B * C * c * 16, 5)), [B, C, c, ...sp]);
  const label = Tensor.fromData([0.3, -0.2], [B, 1]);
  const geom = { window: L, context: c, stride: 3, horizon: T, members: K };
  const run = (seed: number) => {
    const m = diffusionWindow(den, { seed, steps: 4 });
    try {
      return rollout(m, context, label, geom);
    } finally {
      m.dispose();
    }
  };
  const a = run(7), b = run(7), d = run(8);
  assert.deepEqual(a.frames.shape, [B * K, C, T, ...sp]);
  assert.deepEqual(a.leadTimes, [-3, 0, 3, 6, 9, 12, 15]);
  const [ha, hb, hd, hc] = [
    await read(a.frames),
    await read(b.frames),
    await read(d.frames),
    await context.read(),
  ];
  assert.deepEqual(ha, hb, "same seed, same rollout");
  // Context entries end at y + (ρ_min/ρ_max)(z_init − y) ≈ y + 1e-3·ε (method §4.1).
  let ctxErr = 0;
  for (let n = 0; n < B * K; n++) {
    const bt = Math.floor(n / K);
    for (let ch = 0; ch < C; ch++) {
      for (let t = 0; t < c; t++) {
        const got = frame(ha, a.frames.shape, n, ch, t), want = frame(hc, [B, C, c, ...sp], bt, ch, t);
        for (let i = 0; i < got.length; i++) ctxErr = Math.max(ctxErr, Math.abs(got[i] - want[i]));
      }
    }
  }
  console.log(`context frames reproduced within ${ctxErr.toExponential(2)}`);
  assert.ok(ctxErr < 2e-2, `context error ${ctxErr}`);
  // Members of one trajectory differ on generated frames; another seed gives another rollout.
  const diff = (x: Float32Array, y: Float32Array) =>
    x.reduce((s, v, i) => s + Math.abs(v - y[i]), 0) / x.length;
  for (let t = c; t < T; t++) {
    assert.ok(diff(frame(ha, a.frames.shape, 0, 0, t), frame(ha, a.frames.shape, 1, 0, t)) > 1e-3, `t=${t}`);
  }
  assert.ok(diff(ha, hd) > 1e-3);
  assert.ok(ha.every(Number.isFinite));
  den.dispose();
  context.dispose();
  label.dispose();
});

Deno.test("solver rollouts (latent and pixel): whole window is the output, deterministic, same bookkeeping", async () => {
  await gpuReady();
  const B = 1, C = 2, c = 1, L = 3, T = 6;
  const solver = new Solver(
    transformerPreset("tiny", { channels: C, spatial: 2, labelDim: 0, kind: "solver" }),
    2,
  );
  const ctx = Tensor.fromData(Float32Array.from(randArray(B * C * c * 16, 9)), [B, C, c, 4, 4]);
  const geom = { window: L, context: c, stride: 1, horizon: T };
  const a = rollout(solverWindow(solver), ctx, null, geom),
    b = rollout(solverWindow(solver), ctx, null, geom);
  assert.deepEqual(a.frames.shape, [B, C, T, 4, 4]);
  assert.deepEqual(await read(a.frames), await read(b.frames));
  solver.dispose();
  ctx.dispose();

  const p = 4, Cp = 2;
  const pixel = new PixelSolver(
    transformerPreset("tiny", { channels: Cp * p * p, spatial: 2, labelDim: 0, kind: "solver" }),
    p,
    3,
  );
  const px = Tensor.fromData(Float32Array.from(randArray(Cp * 2 * 64, 4)), [1, Cp, 2, 8, 8]);
  const r = rollout(solverWindow(pixel), px, null, {
    window: 4,
    context: 2,
    stride: 2,
    horizon: 7,
    members: 2,
  });
  assert.deepEqual(r.frames.shape, [2, Cp, 7, 8, 8]);
  const h = await read(r.frames);
  assert.deepEqual(
    frame(h, [2, Cp, 7, 8, 8], 0, 1, 5),
    frame(h, [2, Cp, 7, 8, 8], 1, 1, 5),
    "solver members agree",
  );
  pixel.dispose();
  px.dispose();
});

Deno.test("encodeWindow / decodeWindow: frame by frame in eval mode equals per-frame encode/decode", async () => {
  await gpuReady();
  const ae = new Autoencoder(AE_PRESETS.tiny(2, 3), 4);
  const shape = [2, 2, 3, 8, 8];
  const host = Float32Array.from(randArray(2 * 2 * 3 * 64, 6));
  const x = Tensor.fromData(host, shape);
  const z = encodeWindow(ae, x);
  assert.deepEqual(z.shape, [2, 3, 3, 2, 2]);
  const xr = decodeWindow(ae, z);
  assert.deepEqual(xr.shape, shape);
  // Entry 1, frame 1, by hand.
  const f = new Float32Array(2 * 64);
  for (let ch = 0; ch < 2; ch++) f.set(frame(host, shape, 1, ch, 1), ch * 64);
  const one = scope(() => {
    const t = Tensor.fromData(f, [1, 2, 8, 8]);
    return ae.decode(ae.encode(t, { training: false }), { training: false }).keep();
  });
  const [hr, h1] = [await read(xr), await read(one)];
  let err = 0;
  for (let ch = 0; ch < 2; ch++) {
    const got = frame(hr, shape, 1, ch, 1), want = h1.subarray(ch * 64, (ch + 1) * 64);
    for (let i = 0; i < 64; i++) err = Math.max(err, Math.abs(got[i] - want[i]));
  }
  console.log(`frame-by-frame decode matches within ${err.toExponential(2)}`);
  assert.ok(err < 1e-4, `decode error ${err}`);
  z.dispose();
  x.dispose();
  ae.dispose();
});
