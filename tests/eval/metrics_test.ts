/**
 * eval/metrics.ts against the claims of well-format §4 (golden values of the_well's metrics, band edges and point
 * counts) and method §7 (VRMSE of the truth and of its spatial mean, spread/skill of a calibrated ensemble, the
 * spectral band errors against a float64 host computation). Every comparison prints its max error.
 */
import assert from "node:assert/strict";
import { Tensor } from "../../engine/index.ts";
import { reference } from "../../eval/fft.ts";
import {
  evaluate,
  isotropicBinning,
  isotropicPowerSpectrum,
  paperBandMasks,
  paperMetrics,
  wellBands,
  wellMetrics,
} from "../../eval/metrics.ts";
import { assertClose, gpuReady, rng } from "../helpers.ts";

await gpuReady();

/**
 * Agreement to the digits the spec prints: half a unit of the last printed digit, plus 5e-7 relative because
 * the goldens carry 7 significant digits, float32's limit, and float32 sums in another order differ by ulps.
 */
function assertDigits(label: string, got: ArrayLike<number>, want: string[]): number {
  let worst = 0;
  for (let i = 0; i < want.length; i++) {
    const w = Number(want[i]);
    const decimals = (want[i].split(".")[1] ?? "").length;
    const tol = 0.5 * 10 ** -decimals + 5e-7 * Math.abs(w);
    const err = Math.abs(got[i] - w);
    worst = Math.max(worst, err);
    assert.ok(err <= tol, `${label}[${i}]: got ${got[i]}, want ${want[i]} (error ${err.toExponential(2)})`);
  }
  console.log(`${label}: max abs error ${worst.toExponential(2)}`);
  return worst;
}

/** The 2-D golden case of §4 in our layout (T=2, C=3, H=16, W=12). */
function golden2d(): { x: Float32Array; y: Float32Array } {
  const T = 2, C = 3, H = 16, W = 12;
  const x = new Float32Array(T * C * H * W), y = new Float32Array(T * C * H * W);
  for (let t = 0; t < T; t++) {
    for (let c = 0; c < C; c++) {
      for (let i = 0; i < H; i++) {
        for (let j = 0; j < W; j++) {
          const yy = Math.sin(2 * Math.PI * i / 16 * (c + 1)) + Math.cos(2 * Math.PI * j / 12 * (t + 1)) +
            0.1 * c;
          const xx = yy + 0.05 * Math.cos(2 * Math.PI * 3 * i / 16) * Math.sin(2 * Math.PI * 2 * j / 12) +
            0.01 * (c + 1) + 0.02 * ((7 * i + 3 * j + c) % 5);
          const o = ((t * C + c) * H + i) * W + j;
          y[o] = yy;
          x[o] = xx;
        }
      }
    }
  }
  return { x, y };
}

Deno.test("well §4: the 2-D golden values (MSE, NRMSE, VRMSE, spectral mse bins) at t=0, c=0..2", async () => {
  const { x, y } = golden2d();
  const m = await wellMetrics(Tensor.fromData(x, [2, 3, 16, 12]), Tensor.fromData(y, [2, 3, 16, 12]), 2);
  const t0 = (name: string) => m[name].subarray(0, 3);
  assertDigits("MSE", t0("MSE"), ["0.0040526", "0.00513041", "0.0060274"]);
  assertDigits("NRMSE", t0("NRMSE"), ["0.06366003", "0.07127142", "0.07612868"]);
  assertDigits("VRMSE", t0("VRMSE"), ["0.06349403", "0.07144012", "0.07743389"]);
  assertDigits("spectral mse bin 0", t0("spectral_error_mse_per_bin_0"), [
    "0.0024898541",
    "0.0036127712",
    "0.0048715738",
  ]);
  assertDigits("spectral mse bin 1", t0("spectral_error_mse_per_bin_1"), [
    "0.0009559727",
    "0.0009108673",
    "0.0005541355",
  ]);
  assertDigits("spectral mse bin 2", t0("spectral_error_mse_per_bin_2"), [
    "0.0006067729",
    "0.000606773",
    "0.0006016907",
  ]);
  // Parseval: the three bands sum to the MSE on every row.
  const sums = m.MSE.map((_, r) =>
    [0, 1, 2].reduce((s, i) => s + m[`spectral_error_mse_per_bin_${i}`][r], 0)
  );
  const e = assertClose("Σ spectral bins = MSE", sums, m.MSE, { atol: 0, rtol: 1e-5 });
  console.log(`Parseval over bands: max abs error ${e.toExponential(2)}`);
});

Deno.test("well §4: RMSE, NMSE, VMSE, MAE, LInfinity, PearsonR and nmse bins follow their definitions", async () => {
  const { x, y } = golden2d();
  const m = await wellMetrics(Tensor.fromData(x, [2, 3, 16, 12]), Tensor.fromData(y, [2, 3, 16, 12]), 2);
  const S = 192,
    want: Record<string, number[]> = { MAE: [], LInfinity: [], PearsonR: [], VMSE: [], NMSE: [] };
  for (let r = 0; r < 6; r++) {
    const xs = Array.from(x.subarray(r * S, r * S + S)), ys = Array.from(y.subarray(r * S, r * S + S));
    const mx = xs.reduce((a, b) => a + b) / S, my = ys.reduce((a, b) => a + b) / S;
    const d = xs.map((v, i) => v - ys[i]);
    const mse = d.reduce((a, b) => a + b * b, 0) / S;
    const varX = xs.reduce((a, v) => a + (v - mx) ** 2, 0) / (S - 1);
    const varY = ys.reduce((a, v) => a + (v - my) ** 2, 0) / (S - 1);
    const cov = xs.reduce((a, v, i) => a + (v - mx) * (ys[i] - my), 0) / S;
    want.MAE.push(d.reduce((a, b) => a + Math.abs(b), 0) / S);
    want.LInfinity.push(Math.max(...d.map(Math.abs)));
    want.PearsonR.push(cov / (Math.sqrt(varX * varY) + 1e-7));
    want.VMSE.push(mse / (varY + 1e-7));
    want.NMSE.push(mse / (ys.reduce((a, b) => a + b * b, 0) / S + 1e-7));
  }
  for (const [k, w] of Object.entries(want)) {
    const e = assertClose(k, m[k], w, { atol: 1e-7, rtol: 1e-5 });
    console.log(`${k}: max abs error vs float64 ${e.toExponential(2)}`);
  }
  assertClose("RMSE² = MSE", m.RMSE.map((v) => v * v), m.MSE, { atol: 0, rtol: 1e-12 });
  assert.ok(m.PearsonR.every((v) => v > 0.99 && v < 1), "near-identical fields correlate just under 1");
  // A prediction equal to the truth: every error is 0 and PearsonR is 1 − O(1/N).
  const same = await wellMetrics(Tensor.fromData(y, [6, 16, 12]), Tensor.fromData(y, [6, 16, 12]), 2);
  for (const k of ["MSE", "VRMSE", "LInfinity", "spectral_error_nmse_per_bin_1"]) {
    assert.ok(same[k].every((v) => v === 0), `${k} of the truth itself is 0`);
  }
});

Deno.test("well §4: the 3-D golden values (MSE 0.01375, VRMSE 0.13522421, bins 0.005625/0.005/0.003125)", async () => {
  const N = [8, 8, 6], C = 2, S = 384;
  const x = new Float32Array(C * S), y = new Float32Array(C * S);
  for (let c = 0; c < C; c++) {
    for (let i = 0; i < 8; i++) {
      for (let j = 0; j < 8; j++) {
        for (let k = 0; k < 6; k++) {
          const yy = Math.sin(2 * Math.PI * i / 8) * Math.cos(2 * Math.PI * j / 8 * (c + 1)) +
            Math.sin(2 * Math.PI * k / 6) + 0.3 * c;
          const o = c * S + (i * 8 + j) * 6 + k;
          y[o] = yy;
          x[o] = yy + 0.1 * Math.cos(2 * Math.PI * 2 * k / 6) + 0.05 * ((i + 2 * j + 3 * k + c) % 4);
        }
      }
    }
  }
  const m = await wellMetrics(Tensor.fromData(x, [1, C, ...N]), Tensor.fromData(y, [1, C, ...N]), 3);
  assertDigits("3-D MSE", m.MSE, ["0.01375", "0.01375"]);
  assertDigits("3-D VRMSE", m.VRMSE, ["0.13522421", "0.13522421"]);
  for (const [i, w] of ["0.005625", "0.005", "0.003125"].entries()) {
    assertDigits(`3-D spectral mse bin ${i}`, m[`spectral_error_mse_per_bin_${i}`], [w, w]);
  }
});

Deno.test("well §4: band edges and point counts (16×12, euler 512², rayleigh_benard 512×128, 64³)", () => {
  const cases: [number[], string[], number[]][] = [
    [[16, 12], ["0", "0.88158", "1.97908", "4.442884"], [11, 50, 131]],
    [[512, 512], ["0", "0.087464", "0.623371", "4.442884"], [161, 7932, 254051]],
    [[512, 128], ["0", "0.087464", "0.623371", "4.442884"], [37, 1988, 63511]],
    [[64, 64, 64], ["0", "0.374315", "1.427163", "5.441399"], [251, 12714, 249179]],
  ];
  for (const [grid, edges, counts] of cases) {
    const b = wellBands(grid);
    assertDigits(`edges ${grid.join("x")}`, b.edges, edges);
    assert.deepEqual(b.counts, counts, `points per band for ${grid.join("x")}`);
  }
});

Deno.test("paper §7: isotropic binning has ⌊√D·min/2⌋ bins, DC alone in bin 0, edges up to max|k|", () => {
  const b = isotropicBinning([64, 64]);
  assert.equal(b.edges.length, Math.floor(Math.sqrt(2) * 32) + 1);
  assert.equal(b.counts[0], 1);
  assert.equal(b.index[0], 0);
  assert.ok(Math.abs(b.edges[b.edges.length - 1] - Math.SQRT1_2) < 1e-6);
  assert.equal([...b.counts].reduce((a, c) => a + c, 0), 64 * 64);
  const b3 = isotropicBinning([8, 8, 6]);
  assert.equal(b3.edges.length, Math.floor(Math.sqrt(3) * 3) + 1);
  const masks = paperBandMasks(b.edges.slice(1));
  const freq = b.edges.slice(1);
  assert.ok(masks.low[0] && !masks.mid[0] && !masks.sub[0], "k₁ is the first bin of the low band");
  assert.ok(masks.sub.every((m, i) => m === freq[i] >= 0.5), "sub is exactly the bins with k ≥ 0.5");
  assert.ok(masks.high.every((m, i) => !m || freq[i] <= 0.5 + 1e-6), "high stops at 0.5");
});

Deno.test("paper §7: the isotropic spectrum of a sinusoid peaks in the bin of its frequency", async () => {
  const H = 32, W = 32, kx = 5;
  const x = new Float32Array(H * W);
  for (let i = 0; i < H; i++) for (let j = 0; j < W; j++) x[i * W + j] = Math.sin(2 * Math.PI * kx * i / H);
  const { freq, power } = await isotropicPowerSpectrum(Tensor.fromData(x, [1, H, W]), 2);
  const peak = power.indexOf(Math.max(...power));
  assert.ok(freq[peak] >= kx / H && (peak === 0 || freq[peak - 1] < kx / H), `peak bin holds k = ${kx / H}`);
  // Parseval over the bins: Σ mean·count = Σ x² (ortho DFT); no energy outside the peak bin.
  const others = power.reduce((a, p, i) => (i === peak ? a : a + p), 0);
  assert.ok(others < 1e-9, `power outside the peak bin: ${others}`);
});

/** Gaussian samples from a seeded PRNG (Box–Muller). */
function gaussians(n: number, seed: number): Float32Array {
  const r = rng(seed), out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  return out;
}

Deno.test("paper §7: VRMSE of the truth is 0 and of its spatial mean ≈ 1", async () => {
  const T = 2, C = 2, S = [16, 16];
  const u = gaussians(T * C * 256, 3).map((v, i) => 2 * v + (i % 7));
  const mean = new Float32Array(u.length);
  for (let r = 0; r < T * C; r++) {
    const m = u.subarray(r * 256, r * 256 + 256).reduce((a, b) => a + b, 0) / 256;
    mean.fill(m, r * 256, r * 256 + 256);
  }
  const exact = await evaluate(u, u, { K: 1, T, C, spatial: S });
  assert.ok(exact.paper.VRMSE.every((v) => v === 0) && exact.well.VRMSE.every((v) => v === 0));
  assert.ok(exact.paper.spectrum_error_mid.every((v) => v === 0), "identical spectra: no band error");
  const flat = await evaluate(u, mean, { K: 1, T, C, spatial: S });
  // MSE of the mean is the biased variance: VRMSE = √((N−1)/N) ≈ 0.998 up to ε and float32 sums.
  const want = Math.sqrt(255 / 256);
  const e = assertClose("VRMSE of the spatial mean", flat.paper.VRMSE, new Array(T * C).fill(want), {
    atol: 1e-5,
    rtol: 0,
  });
  assertClose("Well VRMSE of the spatial mean", flat.well.VRMSE, new Array(T * C).fill(want), {
    atol: 1e-5,
    rtol: 0,
  });
  console.log(`VRMSE(spatial mean) vs √(255/256): max abs error ${e.toExponential(2)}`);
  assert.ok(
    flat.paper.spread.every((v) => v === 0) && flat.paper.spread_skill.every((v) => v === 0),
    "K = 1",
  );
});

Deno.test("paper §7: spread/skill of an ensemble drawn from the truth's distribution ≈ 1 (±5% over 4096 px)", async () => {
  const K = 8, T = 2, C = 2, S = [64, 64], n = T * C * 4096;
  const u = gaussians(n, 11);
  const v = gaussians(K * n, 12);
  const ev = await evaluate(u, v, { K, T, C, spatial: S });
  const worst = Math.max(...ev.paper.spread_skill.map((r) => Math.abs(r - 1)));
  console.log(`spread/skill: ${Array.from(ev.paper.spread_skill, (r) => r.toFixed(4)).join(", ")}`);
  assert.ok(worst < 0.05, `spread/skill within 5% of 1 (worst deviation ${worst.toFixed(4)})`);
  // White noise vs white noise: the ensemble spectrum matches the truth's within the sampling error.
  console.log(`spectrum error (high band): ${Array.from(ev.paper.spectrum_error_high, (r) => r.toFixed(4))}`);
  assert.ok(ev.paper.spectrum_error_high.every((x) => x < 0.3), "high-band spectrum error of matched noise");
});

Deno.test("paper §7: spectrum and cross-correlation band errors match a float64 host computation", async () => {
  const K = 3, R = 2, H = 16, W = 12, S = H * W;
  const r = rng(21);
  const u = Float32Array.from({ length: R * S }, (_, i) => Math.sin(i * 0.37) + 0.3 * r());
  const v = Float32Array.from({ length: K * R * S }, (_, i) => u[i % (R * S)] + 0.2 * r() - 0.1);
  const got = await paperMetrics(Tensor.fromData(v, [K, R, H, W]), Tensor.fromData(u, [R, H, W]), 2);
  // float64: DFTs, radial means with the same bins, the same band masks.
  const bins = isotropicBinning([H, W]), B = bins.counts.length - 1;
  const masks = paperBandMasks(bins.edges.slice(1));
  const fu = reference.dftn(Float64Array.from(u), [R, H, W], 2, "ortho");
  const fv = reference.dftn(Float64Array.from(v), [K * R, H, W], 2, "ortho");
  const binMean = (vals: (s: number) => number) => {
    const acc = new Float64Array(B + 1);
    for (let s = 0; s < S; s++) acc[bins.index[s]] += vals(s);
    return Array.from({ length: B }, (_, i) => acc[i + 1] / Math.max(bins.counts[i + 1], 1));
  };
  const want: Record<string, number[]> = {};
  for (let row = 0; row < R; row++) {
    const abs2 = (f: Float64Array, m: number, s: number) =>
      f[2 * m * S + s] ** 2 + f[(2 * m + 1) * S + s] ** 2;
    const pu = binMean((s) => abs2(fu, row, s));
    const pv = binMean((s) => [...Array(K).keys()].reduce((a, k) => a + abs2(fv, k * R + row, s), 0) / K);
    const c = binMean((s) =>
      [...Array(K).keys()].reduce((a, k) => a + Math.sqrt(abs2(fu, row, s) * abs2(fv, k * R + row, s)), 0) / K
    );
    for (const band of ["low", "mid", "high", "sub"] as const) {
      const idx = masks[band].flatMap((m, i) => (m ? [i] : []));
      const e = idx.map((i) => (1 - (pv[i] + 1e-6) / (pu[i] + 1e-6)) ** 2);
      const ec = idx.map((i) => (1 - (c[i] + 1e-6) / Math.sqrt(pu[i] * pv[i] + 1e-12)) ** 2);
      (want[`spectrum_error_${band}`] ??= []).push(Math.sqrt(e.reduce((a, b) => a + b, 0) / e.length));
      (want[`cross_error_${band}`] ??= []).push(Math.sqrt(ec.reduce((a, b) => a + b, 0) / ec.length));
    }
  }
  for (const [k, w] of Object.entries(want)) {
    const e = assertClose(k, got[k], w, { atol: 1e-5, rtol: 1e-3 });
    console.log(`${k}: max abs error vs float64 ${e.toExponential(2)}`);
  }
});
