/**
 * Fused attention (engine/ops/attention.ts) against the float64 reference composed from the reference matmul,
 * softmax, rms_norm and the pair rotation: the output, d(qkv) and dΘ, at the paper-like token counts, a prime
 * count and head dims 32/64/128; the reference's own gradients against central finite differences; the GPU
 * tile shape on this adapter; 2,560 tokens without an N×N buffer.
 *
 * Tolerances (float32 kernels vs float64): |err| ≤ 2e-5·max|ref| + 1e-4·|ref| for y and d(qkv), and
 * ≤ 1e-5·max|ref| + 1e-4·|ref| for dΘ (a sum over every token of every batch).
 */
import { assertClose, gpuReady, randArray } from "../helpers.ts";
import { backward, pool, scope, Tensor } from "../../engine/index.ts";
import {
  adapt,
  attention,
  type AttentionImpl,
  attentionImpl,
  attentionTile,
  type AttnRefShape,
  reference,
} from "../../engine/ops/attention.ts";
import { setDenseBudget, setDenseSaveBudget } from "../../engine/ops/attention_dense.ts";
import type { AttnTile } from "../../kernels/attention.wgsl.ts";

/** Integer token coordinates, row-major over `grid` (t slowest), or random small integers without a grid. */
function coordsOf(n: number, axes: number, grid?: number[], seed = 5): Float64Array {
  const c = new Float64Array(n * axes);
  if (!grid) return randArray(n * axes, seed, 0, 8).map(Math.floor);
  for (let i = 0; i < n; i++) {
    let r = i;
    for (let a = axes - 1; a >= 0; a--) {
      c[i * axes + a] = r % grid[a];
      r = Math.floor(r / grid[a]);
    }
  }
  return c;
}

/** Θ initialised like method §2.4: amplitude 100^(−U) times a random unit direction over the axes. */
function thetaOf(axes: number, half: number, seed: number): Float64Array {
  const u = randArray(half * (axes + 1), seed, 0, 1);
  const th = new Float64Array(axes * half);
  for (let j = 0; j < half; j++) {
    const v = Array.from({ length: axes }, (_, a) => u[j * (axes + 1) + a] - 0.5);
    const norm = Math.hypot(...v) || 1;
    const amp = Math.pow(100, -u[j * (axes + 1) + axes]);
    for (let a = 0; a < axes; a++) th[a * half + j] = Math.fround((amp * v[a]) / norm);
  }
  return th;
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

interface Case {
  s: AttnRefShape;
  grid?: number[];
  tiles?: { fwd?: AttnTile; bwd?: AttnTile };
  /** Implementations to check (default both). */
  impls?: AttentionImpl[];
}

/** Both implementations against one float64 reference computation. */
async function checkAgainstReference(label: string, c: Case) {
  const ref = referenceOf(c);
  for (const impl of c.impls ?? ["flash", "dense"]) await checkImpl(`${label} ${impl}`, c, impl, ref);
}

function referenceOf(c: Case) {
  const { s } = c;
  const D = s.heads * s.headDim;
  const qkv = randArray(s.batch * s.tokens * 3 * D, 11, -2, 2);
  const theta = thetaOf(s.axes, D / 2, 12);
  const coords = coordsOf(s.tokens, s.axes, c.grid);
  const gy = randArray(s.batch * s.tokens * D, 13);
  const t0 = performance.now();
  const want = reference.attention(qkv, theta, coords, s);
  const wantGrad = reference.attentionBackward(qkv, theta, coords, gy, s);
  return { qkv, theta, coords, gy, want, wantGrad, refMs: performance.now() - t0 };
}

async function checkImpl(label: string, c: Case, impl: AttentionImpl, r: ReturnType<typeof referenceOf>) {
  const { s } = c;
  const D = s.heads * s.headDim;
  const { qkv, theta, coords, gy, want, wantGrad, refMs } = r;

  const tq = Tensor.fromData(Float32Array.from(qkv), [s.batch, s.tokens, 3 * D], {
    requiresGrad: true,
    persistent: true,
  });
  const tt = Tensor.fromData(Float32Array.from(theta), [s.axes, D / 2], {
    requiresGrad: true,
    persistent: true,
  });
  const tc = Tensor.fromData(Float32Array.from(coords), [s.tokens, s.axes], { persistent: true });
  const tg = Tensor.fromData(Float32Array.from(gy), [s.batch, s.tokens, D], { persistent: true });
  const before = pool.stats.bytesInUse;
  pool.stats.peakBytesInUse = before;
  const t1 = performance.now();
  try {
    const y = scope(() => {
      const out = attention(tq, tt, tc, { heads: s.heads, tiles: c.tiles, impl });
      backward(out, tg);
      return out.keep();
    });
    const got = await y.read();
    const gpuMs = performance.now() - t1;
    const peak = pool.stats.peakBytesInUse - before;
    y.dispose();
    const tolOf = (ref: Float64Array, a: number) => ({ atol: a * maxAbs(ref), rtol: 1e-4 });
    const e1 = assertClose(`${label} y`, got, want, tolOf(want, 2e-5));
    const e2 = assertClose(
      `${label} d(qkv)`,
      await tq.grad!.read(),
      wantGrad.dqkv,
      tolOf(wantGrad.dqkv, 2e-5),
    );
    const e3 = assertClose(
      `${label} dΘ`,
      await tt.grad!.read(),
      wantGrad.dtheta,
      tolOf(wantGrad.dtheta, 1e-5),
    );
    console.log(
      `${label}: max |err| y ${e1.toExponential(2)} (max|y| ${maxAbs(want).toFixed(2)}), d(qkv) ${
        e2.toExponential(2)
      } (max ${maxAbs(wantGrad.dqkv).toFixed(2)}), dΘ ${e3.toExponential(2)} (max ${
        maxAbs(wantGrad.dtheta).toFixed(2)
      }); gpu ${gpuMs.toFixed(0)} ms (incl. compile), ref ${refMs.toFixed(0)} ms, peak temporaries ${
        (peak / 2 ** 20).toFixed(1)
      } MiB`,
    );
    return { peak };
  } finally {
    for (const t of [tq, tt, tc, tg]) {
      t.grad?.dispose();
      t.dispose();
    }
  }
}

Deno.test("attention: 80 tokens (5×4×4), 2 heads × 32, batch 2: y, d(qkv), dΘ match float64", async () => {
  await gpuReady();
  await checkAgainstReference("N=80 d=32", {
    s: { batch: 2, tokens: 80, heads: 2, headDim: 32, axes: 3 },
    grid: [5, 4, 4],
  });
});

Deno.test("attention: dense with P recomputed in the backward (no saved P), 80 tokens: y, d(qkv), dΘ match float64", async () => {
  await gpuReady();
  setDenseSaveBudget(0);
  try {
    await checkAgainstReference("dense recomputed P N=80", {
      s: { batch: 2, tokens: 80, heads: 2, headDim: 32, axes: 3 },
      grid: [5, 4, 4],
      impls: ["dense"],
    });
  } finally {
    setDenseSaveBudget(null);
  }
});

Deno.test("attention: 320 tokens (RB: 5×16×4), 2 heads × 64: y, d(qkv), dΘ match float64", async () => {
  await gpuReady();
  await checkAgainstReference("N=320 d=64", {
    s: { batch: 1, tokens: 320, heads: 2, headDim: 64, axes: 3 },
    grid: [5, 16, 4],
  });
});

Deno.test("attention: 1,280 tokens (Euler: 5×16×16), head dim 128: y, d(qkv), dΘ match float64", async () => {
  await gpuReady();
  await checkAgainstReference("N=1280 d=128", {
    s: { batch: 1, tokens: 1280, heads: 1, headDim: 128, axes: 3 },
    grid: [5, 16, 16],
  });
});

Deno.test("attention: 2,560 tokens (TGC: 5×8×8×8) run forward + backward without an N×N buffer (flash)", async () => {
  await gpuReady();
  // 2 heads × 32 like the 80-token case (shared pipelines).
  const B = 1, N = 2560, H = 2, d = 32, A = 4, D = H * d;
  const qkv = Tensor.fromData(Float32Array.from(randArray(B * N * 3 * D, 51, -2, 2)), [B, N, 3 * D], {
    requiresGrad: true,
    persistent: true,
  });
  const tt = Tensor.fromData(Float32Array.from(thetaOf(A, D / 2, 52)), [A, D / 2], {
    requiresGrad: true,
    persistent: true,
  });
  const tc = Tensor.fromData(Float32Array.from(coordsOf(N, A, [5, 8, 8, 8])), [N, A], { persistent: true });
  const before = pool.stats.bytesInUse;
  pool.stats.peakBytesInUse = before;
  try {
    const y = scope(() => {
      const out = attention(qkv, tt, tc, { heads: H, impl: "flash" });
      backward(out, out);
      return out.keep();
    });
    const [got, g] = [await y.read(), await qkv.grad!.read()];
    const peak = pool.stats.peakBytesInUse - before;
    y.dispose();
    // Each output is a convex combination of the v rows: it lies within their per-column range.
    const v = await qkv.read();
    for (let c = 0; c < D; c++) {
      let lo = Infinity, hi = -Infinity;
      for (let n = 0; n < N; n++) {
        const x = v[n * 3 * D + 2 * D + c];
        lo = Math.min(lo, x);
        hi = Math.max(hi, x);
      }
      for (let n = 0; n < N; n++) {
        const o = got[n * D + c];
        if (!(o >= lo - 1e-5 && o <= hi + 1e-5)) {
          throw new Error(`y[${n}, ${c}] = ${o} outside [${lo}, ${hi}]`);
        }
      }
    }
    if (!g.every(Number.isFinite)) throw new Error("non-finite d(qkv)");
    console.log(
      `N=2560: peak temporaries ${(peak / 2 ** 20).toFixed(1)} MiB (N×N scores: ${
        (N * N * 4 / 2 ** 20).toFixed(0)
      } MiB)`,
    );
    // The unfused path holds H·N² scores (50 MiB) at least once; everything here is O(N·D).
    if (peak >= (N * N * 4) / 2) throw new Error(`attention used ${peak} B of temporaries: an N×N buffer?`);
  } finally {
    for (const t of [qkv, tt, tc]) {
      t.grad?.dispose();
      t.dispose();
    }
  }
});

Deno.test("attention: a prime token count (97), 3-D data (4 axes), batch 3, head dim 128: y, d(qkv), dΘ", async () => {
  await gpuReady();
  // One head like the 1,280-token case, so the flash kernels (baked per heads × head dim) are shared.
  await checkAgainstReference("N=97 d=128 A=4", {
    s: { batch: 3, tokens: 97, heads: 1, headDim: 128, axes: 4 },
  });
});

Deno.test("attention: the GPU tile shape (64×32 tiles, 4×4 per invocation) is correct here too", async () => {
  await gpuReady();
  const d = 64;
  const limit = 16384; // the WebGPU default limit a small GPU adapter may report
  const tiles = { fwd: adapt(GPU_LIKE, d, "fwd", limit), bwd: adapt(GPU_LIKE, d, "bwd", limit) };
  await checkAgainstReference("GPU tile N=150 d=64", {
    s: { batch: 2, tokens: 150, heads: 2, headDim: d, axes: 3 },
    grid: [6, 5, 5],
    tiles,
    impls: ["flash"],
  });
  console.log(
    `adapter tiles at d=128: fwd ${JSON.stringify(attentionTile(128))}, bwd ${
      JSON.stringify(attentionTile(128, "bwd"))
    }`,
  );
});

Deno.test("attention: GPU tiles at head dims 128 and 32 (the large preset's and the default's), 16 and 32 KiB", async () => {
  await gpuReady();
  // What a GPU adapter runs for the large (d 128) and default (d 32) presets, fitted to the WebGPU default
  // workgroup-memory limit and to a common larger one: shapes no lavapipe run otherwise compiles.
  for (const [d, limit] of [[128, 16384], [128, 32768], [32, 16384]]) {
    const tiles = { fwd: adapt(GPU_LIKE, d, "fwd", limit), bwd: adapt(GPU_LIKE, d, "bwd", limit) };
    await checkAgainstReference(`GPU tile N=70 d=${d} ${limit / 1024} KiB`, {
      s: { batch: 1, tokens: 70, heads: 1, headDim: d, axes: 3 },
      grid: [2, 5, 7],
      tiles,
      impls: ["flash"],
    });
  }
});

Deno.test("attention: dense in chunks of heads (3 of 8 per chunk); over budget: error, default flash; LOLA_ATTENTION", async () => {
  await gpuReady();
  const tokens = 80;
  const saved = Deno.env.get("LOLA_ATTENTION"); // the defaults below are the adapter's, not an override's
  Deno.env.delete("LOLA_ATTENTION");
  setDenseBudget(3 * tokens * tokens * 4);
  try {
    // Chunks of 3, 3 and 2 (batch 2 × 4 heads), heads × head dim as in the 80-token case.
    await checkAgainstReference("dense chunks N=80 d=32", {
      s: { batch: 4, tokens, heads: 2, headDim: 32, axes: 3 },
      grid: [5, 4, 4],
      impls: ["dense"],
    });
    // A budget below one head's scores: dense refuses with a one-line error, the default falls back to flash.
    setDenseBudget(tokens * tokens * 4 - 4);
    if (attentionImpl(tokens) !== "flash") throw new Error("default attention does not fall back to flash");
    const qkv = Tensor.fromData(randArray(tokens * 3 * 64, 3), [1, tokens, 3 * 64], { persistent: true });
    const th = Tensor.fromData(thetaOf(3, 32, 4), [3, 32], { persistent: true });
    const co = Tensor.fromData(coordsOf(tokens, 3, [5, 4, 4]), [tokens, 3], { persistent: true });
    try {
      let msg = "";
      try {
        scope(() => attention(qkv, th, co, { heads: 2, impl: "dense" }));
      } catch (e) {
        msg = (e as Error).message;
      }
      if (!/use impl "flash"/.test(msg)) throw new Error(`dense over its budget: wrong error '${msg}'`);
    } finally {
      for (const t of [qkv, th, co]) t.dispose();
    }
  } finally {
    setDenseBudget(null);
  }
  console.log(`this adapter's default attention: ${attentionImpl()}`);
  // LOLA_ATTENTION overrides the adapter's choice; anything else is an error naming the variable.
  try {
    for (const v of ["flash", "dense"] as const) {
      Deno.env.set("LOLA_ATTENTION", v);
      if (attentionImpl(tokens) !== v) throw new Error(`LOLA_ATTENTION=${v} ignored`);
    }
    Deno.env.set("LOLA_ATTENTION", "fast");
    let msg = "";
    try {
      attentionImpl();
    } catch (e) {
      msg = (e as Error).message;
    }
    if (!msg.includes("LOLA_ATTENTION")) throw new Error(`LOLA_ATTENTION=fast: wrong error '${msg}'`);
  } finally {
    if (saved === undefined) Deno.env.delete("LOLA_ATTENTION");
    else Deno.env.set("LOLA_ATTENTION", saved);
  }
});

const GPU_LIKE: AttnTile = { bq: 64, rm: 4, bk: 32, rn: 4, dc: 16, vc: 16 };

Deno.test("attention: float64 reference gradients (d(qkv), dΘ) match central finite differences", () => {
  const s: AttnRefShape = { batch: 2, tokens: 12, heads: 2, headDim: 8, axes: 3 };
  const D = s.heads * s.headDim;
  const qkv = randArray(s.batch * s.tokens * 3 * D, 21, -2, 2);
  const theta = thetaOf(s.axes, D / 2, 22);
  const coords = coordsOf(s.tokens, s.axes, [3, 2, 2]);
  const gy = randArray(s.batch * s.tokens * D, 23);
  const loss = (q: Float64Array, th: Float64Array) =>
    reference.attention(q, th, coords, s).reduce((a, y, i) => a + y * gy[i], 0);
  const { dqkv, dtheta } = reference.attentionBackward(qkv, theta, coords, gy, s);
  const h = 1e-5;
  const fd = (x: Float64Array, i: number, f: (x: Float64Array) => number) => {
    const p = x.slice(), m = x.slice();
    p[i] += h;
    m[i] -= h;
    return (f(p) - f(m)) / (2 * h);
  };
  const wantTheta = Array.from(theta, (_, i) => fd(theta, i, (th) => loss(qkv, th)));
  const eTheta = assertClose("reference dΘ vs finite differences", dtheta, wantTheta, {
    atol: 1e-7,
    rtol: 1e-6,
  });
  const probes = Array.from({ length: 64 }, (_, k) => (k * 37) % qkv.length);
  const eQkv = assertClose(
    "reference d(qkv) vs finite differences",
    probes.map((i) => dqkv[i]),
    probes.map((i) => fd(qkv, i, (q) => loss(q, theta))),
    { atol: 1e-7, rtol: 1e-6 },
  );
  console.log(
    `reference vs finite differences: dΘ ${eTheta.toExponential(2)}, d(qkv) ${eQkv.toExponential(2)}`,
  );
});

Deno.test("attention: GPU dΘ matches central finite differences of the float64 forward", async () => {
  await gpuReady();
  // The 80-token case's heads and head dim: its pipelines are reused.
  const s: AttnRefShape = { batch: 1, tokens: 24, heads: 2, headDim: 32, axes: 3 };
  const D = s.heads * s.headDim;
  const qkv = randArray(s.batch * s.tokens * 3 * D, 31, -2, 2);
  const theta = thetaOf(s.axes, D / 2, 32);
  const coords = coordsOf(s.tokens, s.axes, [2, 3, 4]);
  const gy = randArray(s.batch * s.tokens * D, 33);
  const loss = (th: Float64Array) =>
    reference.attention(qkv, th, coords, s).reduce((a, y, i) => a + y * gy[i], 0);
  const h = 1e-5;
  const want = Array.from(theta, (_, i) => {
    const p = theta.slice(), m = theta.slice();
    p[i] += h;
    m[i] -= h;
    return (loss(p) - loss(m)) / (2 * h);
  });
  const tq = Tensor.fromData(Float32Array.from(qkv), [1, s.tokens, 3 * D], { persistent: true });
  const tt = Tensor.fromData(Float32Array.from(theta), [s.axes, D / 2], {
    requiresGrad: true,
    persistent: true,
  });
  const tc = Tensor.fromData(Float32Array.from(coords), [s.tokens, s.axes], { persistent: true });
  const tg = Tensor.fromData(Float32Array.from(gy), [1, s.tokens, D], { persistent: true });
  try {
    scope(() => backward(attention(tq, tt, tc, { heads: s.heads }), tg));
    const got = await tt.grad!.read();
    const e = assertClose("GPU dΘ vs finite differences", got, want, {
      atol: 1e-5 * maxAbs(want),
      rtol: 1e-4,
    });
    console.log(
      `GPU dΘ vs finite differences: max |err| ${e.toExponential(2)} (max |dΘ| ${maxAbs(want).toFixed(3)})`,
    );
  } finally {
    for (const t of [tq, tt, tc, tg]) {
      t.grad?.dispose();
      t.dispose();
    }
  }
});
