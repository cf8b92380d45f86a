/**
 * The diffusion model and the neural solver (models/diffusion.ts, models/solver.ts) against method §3, §4.1, §6:
 * the schedule, the EDM preconditioning (VE and RF agree; c_in, c_skip, c_out against float64), the masked
 * wrapper, the denoiser / solver / pixel-solver forward against a float64 reference of the whole transformer, the
 * loss against a float64 host computation for fixed τ and ε, and the context-mask frequencies.
 *
 * Tolerances: forward outputs within 2e-4 of max |reference| (float32 through 2 blocks of attention and the
 * embeddings); preconditioning coefficients within 1e-5 relative; mask frequencies within 4σ of the exact ones.
 */
import assert from "node:assert/strict";
import { mul, noGrad, scope, Tensor } from "../../engine/index.ts";
import { Rng } from "../../data/rng.ts";
import {
  contextMasks,
  Denoiser,
  denoiserLoss,
  rfTime,
  schedule,
  scheduleHost,
  SIGMA_MAX,
  SIGMA_MIN,
} from "../../models/diffusion.ts";
import { patchify, PixelSolver, Solver, unpatchify } from "../../models/solver.ts";
import { type TransformerConfig, transformerPreset } from "../../models/transformer.ts";
import { transformerReference } from "../../models/transformer_reference.ts";
import { assertClose, gpuReady, randArray } from "../helpers.ts";

const SHAPE = [2, 4, 3, 4, 4]; // (B, C, L, h, w): 48 tokens
const LABEL_DIM = 3;

function tinyCfg(kind: "denoiser" | "solver", channels = 4): TransformerConfig {
  return { ...transformerPreset("tiny", { channels, spatial: 2, labelDim: LABEL_DIM, kind }), dropout: 0 };
}

async function hostParams(sd: Record<string, Tensor>): Promise<Record<string, Float64Array>> {
  const out: Record<string, Float64Array> = {};
  for (const [k, t] of Object.entries(sd)) out[k] = Float64Array.from(await t.read());
  return out;
}

/** Frame-major masks (B·L) expanded to (B, C, L, h, w). */
function expandMask(frames: ArrayLike<number>, shape: number[]): Float64Array {
  const [B, C, L, ...sp] = shape;
  const S = sp.reduce((a, b) => a * b, 1);
  const out = new Float64Array(B * C * L * S);
  for (let i = 0; i < out.length; i++) {
    const b = Math.floor(i / (C * L * S)), l = Math.floor(i / S) % L;
    out[i] = frames[b * L + l];
  }
  return out;
}

/** Runs `fn` in a scope without gradients, reads its named outputs back and frees them. */
async function readAll(fn: () => Record<string, Tensor>): Promise<Record<string, Float32Array>> {
  const kept = scope(() =>
    noGrad(() => Object.fromEntries(Object.entries(fn()).map(([k, t]) => [k, t.keep()] as const)))
  );
  const out: Record<string, Float32Array> = {};
  for (const [k, t] of Object.entries(kept)) {
    out[k] = await t.read();
    t.dispose();
  }
  return out;
}

const MASK = [1, 0, 0, 0, 0, 1]; // sample 0: first frame context; sample 1: last frame

function maskTensor(): Tensor {
  return Tensor.fromData(MASK, [2, 1, 3, 1, 1]);
}

Deno.test("diffusion: the log-logit schedule spans σ ∈ [1e-3, 1e3] and is rectified flow rescaled (§3.1)", async () => {
  await gpuReady();
  const ve0 = scheduleHost(0), ve1 = scheduleHost(1);
  assert.ok(
    Math.abs(ve0.sigma - SIGMA_MIN) / SIGMA_MIN < 1e-12 &&
      Math.abs(ve1.sigma - SIGMA_MAX) / SIGMA_MAX < 1e-12,
  );
  for (const tau of [0, 0.1, 0.5, 0.9, 1]) {
    const ve = scheduleHost(tau, "ve"), rf = scheduleHost(tau, "rf"), s = rfTime(tau);
    assert.ok(Math.abs(ve.sigma - Math.exp(Math.log(s / (1 - s)))) < 1e-9 * ve.sigma);
    assert.ok(Math.abs(rf.sigma / rf.alpha - ve.sigma / ve.alpha) < 1e-9 * ve.sigma, `ρ differs at τ=${tau}`);
    assert.ok(Math.abs(rf.alpha - (1 - s)) < 1e-15 && Math.abs(rf.sigma - s) < 1e-15);
  }
  const taus = [0, 0.25, 0.5, 0.75, 1];
  const r = await readAll(() => {
    const t = Tensor.fromData(taus, [5]);
    const ve = schedule(t, "ve"), rf = schedule(t, "rf");
    return { a: ve.alpha, b: ve.sigma, c: rf.alpha, d: rf.sigma };
  });
  const got = [r.a, r.b, r.c, r.d];
  assertClose("VE α", got[0], taus.map(() => 1), { atol: 0, rtol: 0 });
  assertClose("VE σ", got[1], taus.map((t) => scheduleHost(t, "ve").sigma), { atol: 0, rtol: 1e-4 });
  assertClose("RF α", got[2], taus.map((t) => scheduleHost(t, "rf").alpha), { atol: 1e-7, rtol: 1e-6 });
  assertClose("RF σ", got[3], taus.map((t) => scheduleHost(t, "rf").sigma), { atol: 1e-7, rtol: 1e-6 });
});

Deno.test("diffusion: c_in, c_skip, c_out, c_noise and the variance match float64; VE and RF give the same mean (§3.2)", async () => {
  await gpuReady();
  const ve = new Denoiser(tinyCfg("denoiser"), 5, "ve"), rf = new Denoiser(tinyCfg("denoiser"), 5, "rf");
  try {
    const x = randArray(SHAPE.reduce((a, b) => a * b), 11, -2, 2);
    const label = randArray(2 * LABEL_DIM, 12);
    const taus = [0.2, 0.85];
    const hosts = taus.map((t) => scheduleHost(t, "ve"));
    const P = await hostParams(ve.stateDict());
    const res = await readAll(() => {
      const xt = Tensor.fromData(Float32Array.from(x), SHAPE);
      const lab = Tensor.fromData(Float32Array.from(label), [2, LABEL_DIM]);
      const t = Tensor.fromData(taus, [2]);
      const { alpha, sigma } = schedule(t, "ve");
      const p = ve.precondition(xt, alpha, sigma, maskTensor(), lab);
      // RF state of the same noisy sample: z_rf = α_rf · z_ve.
      const scale = Tensor.fromData(taus.map((tt) => scheduleHost(tt, "rf").alpha), [2, 1, 1, 1, 1]);
      const rfMean = rf.forward(mul(xt, scale), t, maskTensor(), lab);
      return { mean: p.mean, raw: p.raw, variance: p.variance, rfMean };
    });
    const per = x.length / 2;
    const want = new Float64Array(x.length);
    for (let i = 0; i < x.length; i++) {
      const { alpha: a, sigma: s } = hosts[Math.floor(i / per)];
      const k = a * a + s * s;
      want[i] = (a / k) * x[i] + (s / Math.sqrt(k)) * res.raw[i];
    }
    const e1 = assertClose("mean = c_skip·x + c_out·F", res.mean, want, { atol: 1e-5, rtol: 1e-5 });
    assertClose("variance σ²/(α²+σ²)", res.variance, hosts.map((h) => h.sigma ** 2 / (1 + h.sigma ** 2)), {
      atol: 0,
      rtol: 1e-5,
    });
    // The network saw c_in·x and c_noise = 10·ln(σ/α): the float64 model on those inputs gives F.
    const xin = x.map((v, i) => v / Math.sqrt(1 + hosts[Math.floor(i / per)].sigma ** 2));
    const refRaw = transformerReference(tinyCfg("denoiser"), P, xin, SHAPE, expandMask(MASK, SHAPE), {
      label,
      time: Float64Array.from(hosts.map((h) => 10 * Math.log(h.sigma / h.alpha))),
    });
    const scaleF = Math.max(...refRaw.map(Math.abs));
    const e2 = assertClose("F(c_in·x, c_noise) vs float64", res.raw, refRaw, {
      atol: 2e-4 * scaleF,
      rtol: 0,
    });
    const e3 = assertClose("RF mean = VE mean", res.rfMean, res.mean, { atol: 5e-5, rtol: 5e-5 });
    console.log(
      `mean ${e1.toExponential(2)}, F ${e2.toExponential(2)} (max |F| ${scaleF.toFixed(3)}), VE↔RF ${
        e3.toExponential(2)
      }`,
    );
  } finally {
    ve.dispose();
    rf.dispose();
  }
});

Deno.test("diffusion: withContext returns y on the context and feeds √(α²+σ²)·y to the network there (§4.1)", async () => {
  await gpuReady();
  const den = new Denoiser(tinyCfg("denoiser"), 9);
  try {
    const n = SHAPE.reduce((a, b) => a * b);
    const x = randArray(n, 21, -3, 3), y = randArray(n, 22, -1, 1), label = randArray(2 * LABEL_DIM, 23);
    const m = expandMask(MASK, SHAPE);
    const tau = [0.7, 0.3], h = tau.map((t) => scheduleHost(t));
    const got = await readAll(() => {
      const { alpha, sigma } = schedule(Tensor.fromData(tau, [2]));
      const lab = Tensor.fromData(Float32Array.from(label), [2, LABEL_DIM]);
      const out = den.withContext(
        Tensor.fromData(Float32Array.from(x), SHAPE),
        alpha,
        sigma,
        maskTensor(),
        Tensor.fromData(Float32Array.from(y), SHAPE),
        lab,
      );
      // By hand: the context entries of the input replaced by √k·y, then the plain preconditioned mean.
      const per = n / 2;
      const xin = Float32Array.from(
        x.map((v, i) => m[i] ? Math.sqrt(1 + h[Math.floor(i / per)].sigma ** 2) * y[i] : v),
      );
      const manual = den.precondition(Tensor.fromData(xin, SHAPE), alpha, sigma, maskTensor(), lab).mean;
      return { out, manual };
    });
    const ctx = [...m.keys()].filter((i) => m[i]), free = [...m.keys()].filter((i) => !m[i]);
    assertClose("context entries are y", ctx.map((i) => got.out[i]), ctx.map((i) => Math.fround(y[i])), {
      atol: 0,
      rtol: 0,
    });
    assertClose("free entries", free.map((i) => got.out[i]), free.map((i) => got.manual[i]), {
      atol: 1e-6,
      rtol: 1e-6,
    });
  } finally {
    den.dispose();
  }
});

Deno.test("diffusion: the loss for fixed τ and ε equals a float64 host computation (§3.3)", async () => {
  await gpuReady();
  const cfg = tinyCfg("denoiser");
  const den = new Denoiser(cfg, 13);
  try {
    const n = SHAPE.reduce((a, b) => a * b);
    const Z = randArray(n, 31, -2, 2),
      eps = randArray(n, 32, -1.5, 1.5),
      label = randArray(2 * LABEL_DIM, 33);
    const tau = [0.15, 0.6];
    const P = await hostParams(den.stateDict());
    const got = (await readAll(() => ({
      l: denoiserLoss(
        den,
        Tensor.fromData(Float32Array.from(Z), SHAPE),
        maskTensor(),
        Tensor.fromData(Float32Array.from(label), [2, LABEL_DIM]),
        {
          training: false,
          tau: Tensor.fromData(tau, [2]),
          eps: Tensor.fromData(Float32Array.from(eps), SHAPE),
        },
      ),
    }))).l[0];
    const m = expandMask(MASK, SHAPE), per = n / 2;
    const hs = tau.map((t) => scheduleHost(t));
    const zt = Z.map((z, i) => {
      const { alpha: a, sigma: s } = hs[Math.floor(i / per)];
      return m[i] ? Math.sqrt(a * a + s * s) * z : a * z + s * eps[i];
    });
    const xin = zt.map((v, i) => v / Math.sqrt(1 + hs[Math.floor(i / per)].sigma ** 2));
    const F = transformerReference(cfg, P, xin, SHAPE, m, {
      label,
      time: Float64Array.from(hs.map((h) => 10 * Math.log(h.sigma))),
    });
    let want = 0;
    for (let i = 0; i < n; i++) {
      const { alpha: a, sigma: s } = hs[Math.floor(i / per)];
      const k = a * a + s * s;
      const D = (a / k) * zt[i] + (s / Math.sqrt(k)) * F[i];
      want += ((D - Z[i]) ** 2 * k) / (s * s);
    }
    want /= n;
    console.log(
      `loss GPU ${got}, float64 ${want}, relative error ${(Math.abs(got - want) / want).toExponential(2)}`,
    );
    assert.ok(Math.abs(got - want) <= 1e-4 * want, `loss ${got} vs float64 ${want}`);
  } finally {
    den.dispose();
  }
});

Deno.test("solver: forward is the transformer on [x·m ; m] without time embedding (§6); pixel patches round-trip", async () => {
  await gpuReady();
  const cfg = tinyCfg("solver");
  const solver = new Solver(cfg, 17);
  try {
    const n = SHAPE.reduce((a, b) => a * b);
    const x = randArray(n, 41, -2, 2), label = randArray(2 * LABEL_DIM, 42);
    const P = await hostParams(solver.stateDict());
    const got = (await readAll(() => ({
      y: solver.forward(
        Tensor.fromData(Float32Array.from(x), SHAPE),
        maskTensor(),
        Tensor.fromData(Float32Array.from(label), [2, LABEL_DIM]),
      ),
    }))).y;
    const m = expandMask(MASK, SHAPE);
    const want = transformerReference(cfg, P, x.map((v, i) => v * m[i]), SHAPE, m, { label });
    const scale = Math.max(...want.map(Math.abs));
    const e = assertClose("solver vs float64", got, want, { atol: 2e-4 * scale, rtol: 0 });
    console.log(`solver forward max error ${e.toExponential(2)} (max |y| ${scale.toFixed(3)})`);
    assert.ok(!Object.keys(solver.stateDict()).some((k) => k.includes("time_embedding")));
  } finally {
    solver.dispose();
  }
  // patchify: (B, C, L, H, W) → (B, C·p², L, H/p, W/p), channel c·p² + row-major sub-position; unpatchify inverts.
  const shape = [1, 2, 2, 4, 4], n = 64;
  const data = Float32Array.from({ length: n }, (_, i) => i);
  const { p, back } = await readAll(() => {
    const y = patchify(Tensor.fromData(data, shape), 2);
    assert.deepEqual(y.shape, [1, 8, 2, 2, 2]);
    return { p: y, back: unpatchify(y, 2) };
  });
  assert.deepEqual([...back], [...data]);
  // Channel c·4 + (dy·2 + dx), frame l, patch (i, j) holds x[c, l, 2i + dy, 2j + dx].
  for (let c = 0; c < 2; c++) {
    for (let s = 0; s < 4; s++) {
      for (let l = 0; l < 2; l++) {
        for (let i = 0; i < 2; i++) {
          for (let j = 0; j < 2; j++) {
            const [dy, dx] = [Math.floor(s / 2), s % 2];
            const want = data[((c * 2 + l) * 4 + 2 * i + dy) * 4 + 2 * j + dx];
            assert.equal(p[((((c * 4 + s) * 2 + l) * 2 + i) * 2) + j], want);
          }
        }
      }
    }
  }
  const pix = new PixelSolver(tinyCfg("solver", 4 * 4), 2, 3);
  try {
    const out = (await readAll(() => ({
      y: pix.forward(
        Tensor.fromData(Float32Array.from(randArray(2 * 4 * 3 * 8 * 8, 5)), [2, 4, 3, 8, 8]),
        maskTensor(),
        Tensor.fromData(Float32Array.from(randArray(2 * LABEL_DIM, 6)), [2, LABEL_DIM]),
      ),
    }))).y;
    assert.equal(out.length, 2 * 4 * 3 * 8 * 8);
    assert.ok(out.every(Number.isFinite));
  } finally {
    pix.dispose();
  }
});

Deno.test("diffusion: context masks — c = Poisson(1) mod 4 + 1 with 0.66 forward, over 10,000 draws (§3.4)", () => {
  const L = 5, n = 10_000;
  const masks = contextMasks(n, L, new Rng(2024));
  const counts = [0, 0, 0, 0], fwd = [0];
  for (let b = 0; b < n; b++) {
    const row = masks.subarray(b * L, (b + 1) * L);
    const c = row.reduce((a, v) => a + v, 0);
    counts[c - 1]++;
    const first = row.slice(0, c).every((v) => v === 1), last = row.slice(L - c).every((v) => v === 1);
    assert.ok(first || last, `sample ${b}: context is not a block of whole frames at either end`);
    if (first && !(last && c === L)) fwd[0] += row[0] === 1 && (c < L) ? 1 : 0;
  }
  // Exact probabilities of (Poisson(1) mod 4) + 1.
  const p = [0, 0, 0, 0];
  let term = Math.exp(-1);
  for (let k = 0; k < 40; k++) {
    p[k % 4] += term;
    term /= k + 1;
  }
  for (let c = 0; c < 4; c++) {
    const f = counts[c] / n, sd = Math.sqrt((p[c] * (1 - p[c])) / n);
    assert.ok(Math.abs(f - p[c]) <= 4 * sd, `P(c=${c + 1}) = ${f}, expected ${p[c].toFixed(3)} ± ${4 * sd}`);
  }
  assert.deepEqual(p.map((v) => Number(v.toFixed(3))), [0.383, 0.371, 0.184, 0.061]);
  // Forward = the first frame is context (a backward window of c < L leaves frame 0 free).
  const f = fwd[0] / n, sd = Math.sqrt((0.66 * 0.34) / n);
  assert.ok(Math.abs(f - 0.66) <= 4 * sd, `forward fraction ${f}, expected 0.66 ± ${4 * sd}`);
  console.log(`c frequencies ${counts.map((c) => c / n)}, forward ${f}`);
  // The paper's variant: Poisson(2) kept in [1, L−1], always forward.
  const paper = contextMasks(2000, L, new Rng(7), "paper");
  for (let b = 0; b < 2000; b++) assert.equal(paper[b * L], 1, "paper prior: the context comes first");
});
