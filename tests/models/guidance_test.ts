/**
 * Guidance (method §8): the observation operators and their adjoints, GMRES against a dense float64 solve and
 * its 1-iteration closed form (host float64 and GPU float32), and MMPS on a tiny setting: guided samples fit
 * the observations where unguided ones do not.
 *
 * The tiny setting uses an untrained tiny denoiser (transformer `tiny`, seeded init) with the tiny autoencoder's
 * decoder (AE_PRESETS.tiny(5, 4)): training one takes minutes on lavapipe, and the claim under test — the guided
 * mean pulls every sample onto the observations, σ_y-consistently — needs the guidance machinery, not a good
 * prior. The truth is the decoder's image of a random latent window, so the observations are reachable.
 * The cost of a guided call against an unguided one at the `default` preset is measured by the last test,
 * which runs only with LOLA_BENCH_GUIDANCE=1 (≈ a minute on lavapipe).
 */
import assert from "node:assert/strict";
import * as E from "../../engine/index.ts";
import { type Tensor } from "../../engine/index.ts";
import { observationOperator, parseObservation } from "../../models/observe.ts";
import {
  denoiserMean,
  gmresGpu,
  gmresHost,
  guidedDenoiser,
  masked,
  observeFrames,
} from "../../models/guidance.ts";
import { Denoiser } from "../../models/diffusion.ts";
import { transformerPreset } from "../../models/transformer.ts";
import { Autoencoder } from "../../models/autoencoder.ts";
import { AE_PRESETS } from "../../models/autoencoder_config.ts";
import { sample } from "../../models/sampler.ts";
import { assertClose, gpuReady, randArray, rng } from "../helpers.ts";

const size = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
};

Deno.test("observe: subsample and pool match their definitions and ⟨A x, y⟩ = ⟨x, Aᵀ y⟩ = the VJP (2-D, 3-D)", async () => {
  await gpuReady();
  for (const xs of [[2, 3, 8, 4], [1, 2, 4, 4, 8]]) {
    for (const kind of ["subsample", "pool"] as const) {
      const op = observationOperator(kind, 2, 0.1);
      const ys = op.outShape(xs);
      const x = randArray(size(xs), 1), y = randArray(size(ys), 2);
      const kept = E.scope(() => {
        const xt = E.Tensor.fromData(x, xs), yt = E.Tensor.fromData(y, ys);
        const { out, grads } = E.vjp(([t]) => op.apply(t), [xt], yt);
        return [out, op.adjoint(yt, xs), grads[0]].map((t) => t.keep());
      });
      const [ax, aty, vjpY] = await Promise.all(kept.map((t) => t.read()));
      kept.forEach((t) => t.dispose());
      // Definition on the host: x[..., ::2, ::2(, ::2)] or the mean of each 2^N block.
      const n = xs.length - 2, want = new Float64Array(size(ys));
      for (let i = 0; i < x.length; i++) {
        let rem = i, o = 0, first = true;
        const c: number[] = [];
        for (let d = xs.length - 1; d >= 0; d--) (c[d] = rem % xs[d], rem = Math.floor(rem / xs[d]));
        for (let d = 0; d < xs.length; d++) {
          const q = d < 2 ? c[d] : Math.floor(c[d] / 2);
          if (d >= 2 && c[d] % 2) first = false;
          o = o * ys[d] + q;
        }
        if (kind === "pool") want[o] += x[i] / 2 ** n;
        else if (first) want[o] = x[i];
      }
      assertClose(`${kind} ${xs} apply`, ax, want, { atol: 1e-6, rtol: 1e-6 });
      assertClose(`${kind} ${xs} adjoint = vjp`, aty, vjpY, { atol: 1e-7, rtol: 1e-6 });
      const lhs = dot(ax, y), rhs = dot(x, aty);
      assert.ok(
        Math.abs(lhs - rhs) < 1e-5 * (1 + Math.abs(lhs)),
        `${kind} ${xs}: ⟨Ax,y⟩ ${lhs} ≠ ⟨x,Aᵀy⟩ ${rhs}`,
      );
    }
  }
  assert.equal(parseObservation("pool:8", 0.05).factor, 8);
  assert.throws(() => parseObservation("blur:3"), /subsample:N or pool:N/);
  assert.throws(() => observationOperator("pool", 3).outShape([1, 1, 8, 8]), /divisible by 3/);
});

/** A random SPD matrix Q diag(λ) Qᵀ with eigenvalues spread over [0.01, 10] (like σ_y² I + J Σ Jᵀ). */
function spd(n: number, seed: number): Float64Array {
  const r = rng(seed);
  const a = Float64Array.from({ length: n * n }, () => r() - 0.5);
  // Gram–Schmidt on the columns of a.
  const q = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    const v = Array.from({ length: n }, (_, i) => a[i * n + j]);
    for (let k = 0; k < j; k++) {
      let d = 0;
      for (let i = 0; i < n; i++) d += v[i] * q[i * n + k];
      for (let i = 0; i < n; i++) v[i] -= d * q[i * n + k];
    }
    const nv = Math.hypot(...v);
    for (let i = 0; i < n; i++) q[i * n + j] = v[i] / nv;
  }
  const lam = Array.from({ length: n }, (_, i) => 0.01 * 1000 ** (i / (n - 1)));
  const m = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += q[i * n + k] * lam[k] * q[j * n + k];
      m[i * n + j] = s;
    }
  }
  return m;
}

const matvec = (m: Float64Array, v: Float64Array) => {
  const n = v.length;
  return Float64Array.from({ length: n }, (_, i) => dot(m.subarray(i * n, i * n + n), v));
};

/** Dense solve by Gaussian elimination with partial pivoting (float64). */
function solve(m: Float64Array, b: Float64Array): Float64Array {
  const n = b.length;
  const a = Array.from({ length: n }, (_, i) => [...m.subarray(i * n, i * n + n), b[i]]);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(a[r][c]) > Math.abs(a[p][c])) p = r;
    [a[c], a[p]] = [a[p], a[c]];
    for (let r = c + 1; r < n; r++) {
      const f = a[r][c] / a[c][c];
      for (let k = c; k <= n; k++) a[r][k] -= f * a[c][k];
    }
  }
  const x = new Float64Array(n);
  for (let r = n - 1; r >= 0; r--) {
    let s = a[r][n];
    for (let k = r + 1; k < n; k++) s -= a[r][k] * x[k];
    x[r] = s / a[r][r];
  }
  return x;
}

Deno.test("gmres: n iterations solve an n×n SPD system like a dense float64 solve; 1 iteration is the closed form", () => {
  const n = 6, m = spd(n, 7), b = randArray(n, 8);
  const want = solve(m, b);
  const got = gmresHost((v) => matvec(m, v), b, n);
  const err = Math.max(...got.map((x, i) => Math.abs(x - want[i])));
  console.log(`  GMRES(${n}) vs dense solve (κ = 1000): max error ${err.toExponential(2)}`);
  assert.ok(err < 1e-8 * Math.max(...want.map(Math.abs)), `GMRES(${n}) error ${err}`);
  // Residuals never grow with the iteration count (GMRES minimises ‖b − M w‖ over a growing space).
  const res = [1, 2, 3, 4, 5, 6].map((k) => {
    const w = gmresHost((v) => matvec(m, v), b, k), mw = matvec(m, w);
    return Math.hypot(...b.map((x, i) => x - mw[i]));
  });
  console.log(`  residual by iterations: ${res.map((r) => r.toExponential(2)).join(", ")}`);
  res.slice(1).forEach((r, k) => assert.ok(r <= res[k] * (1 + 1e-12), `residual grew at ${k + 2}: ${res}`));
  const mb = matvec(m, b), c = dot(mb, b) / dot(mb, mb);
  assertClose("GMRES(1) = b⟨Mb,b⟩/⟨Mb,Mb⟩", gmresHost((v) => matvec(m, v), b, 1), b.map((x) => x * c), {
    atol: 1e-14,
    rtol: 1e-12,
  });
});

Deno.test("gmres: the GPU batch (float32) matches the host float64 solve per batch entry", async () => {
  await gpuReady();
  const n = 6, m = spd(n, 9), b = randArray(2 * n, 10);
  for (const k of [1, 3, 6]) {
    const got = await E.scope(() => {
      const mt = E.Tensor.fromData(m, [n, n]);
      const M = (v: Tensor) => E.noGrad(() => E.matmul(v, mt, false, true)); // rows of v times Mᵀ = M
      return gmresGpu(M, E.Tensor.fromData(b, [2, n]), k).keep();
    }).read();
    for (let s = 0; s < 2; s++) {
      const bs = b.slice(s * n, s * n + n);
      const want = gmresHost((v) => matvec(m, v), bs, k);
      const scale = Math.max(...want.map(Math.abs));
      const e = assertClose(`GMRES(${k}) GPU entry ${s}`, got.slice(s * n, s * n + n), want, {
        atol: 5e-4 * scale,
        rtol: 0,
      });
      console.log(
        `  GMRES(${k}) entry ${s}: GPU vs host max error ${(e / scale).toExponential(2)} of max|w|`,
      );
    }
  }
});

/** Observation residual RMS in units of σ_y, per sample. */
async function residualRms(
  obs: (z: Tensor) => Tensor,
  z: Tensor,
  y: Tensor,
  noise: number,
): Promise<number[]> {
  const r = await E.scope(() => E.noGrad(() => E.sub(obs(z), y)).keep()).read();
  const per = r.length / z.shape[0];
  return Array.from({ length: z.shape[0] }, (_, b) => {
    const s = r.subarray(b * per, (b + 1) * per);
    return Math.sqrt(dot(s, s) / per) / noise;
  });
}

Deno.test("mmps: guided samples of a tiny emulator fit the observations within ~2σ_y, unguided ones do not", async () => {
  await gpuReady();
  const cz = 4, L = 3, B = 2, noise = 0.1;
  const den = new Denoiser(
    transformerPreset("tiny", { channels: cz, spatial: 2, labelDim: 0, kind: "denoiser" }),
    5,
  );
  const ae = new Autoencoder(AE_PRESETS.tiny(5, cz), 6);
  const shape = [B, cz, L, 4, 4]; // (B, C_z, L, h, w): frame 0 is context, frames 1..2 are generated
  const op = observationOperator("subsample", 8, noise); // 16×16 pixels → 2×2 per field: 20 values per frame
  const decode = (z: Tensor) => ae.decode(z, { training: false });
  const A = observeFrames(decode, (x) => op.apply(x), 1);
  const zTrue = E.Tensor.fromData(randArray(size(shape), 21, -1.5, 1.5), shape);
  const mask = E.Tensor.fromData([1, 0, 0], [1, 1, L, 1, 1]);
  const y = E.scope(() =>
    E.noGrad(() => {
      const clean = A(zTrue);
      return E.add(clean, E.mul(new E.Generator(3).normal(clean.shape), noise)).keep();
    })
  );
  const t0 = performance.now();
  const steps = 8;
  const unguided = E.scope(() =>
    sample(masked(denoiserMean(den, mask, null), mask, zTrue), shape, { steps, seed: 1 }).keep()
  );
  const plain = await residualRms(A, unguided, y, noise);
  const t1 = performance.now();
  const results: Record<string, number[]> = {};
  for (const iterations of [1, 2]) {
    const guided = E.scope(() =>
      sample(
        guidedDenoiser(den, { observe: A, y, noise, iterations, mask, context: zTrue, label: null }),
        shape,
        {
          steps,
          seed: 1,
        },
      ).keep()
    );
    results[iterations] = await residualRms(A, guided, y, noise);
    guided.dispose();
  }
  const t2 = performance.now();
  console.log(
    `  observation residual RMS / σ_y per sample — unguided: ${plain.map((v) => v.toFixed(2))}; ` +
      `MMPS GMRES(1): ${results[1].map((v) => v.toFixed(2))}; GMRES(2): ${
        results[2].map((v) => v.toFixed(2))
      }` +
      ` (${steps} AB3 steps; unguided ${((t1 - t0) / 1000).toFixed(1)} s, 2 guided runs ${
        ((t2 - t1) / 1000).toFixed(1)
      } s)`,
  );
  for (const v of [...results[1], ...results[2]]) assert.ok(v < 2, `guided residual ${v} σ_y ≥ 2 σ_y`);
  for (const v of plain) assert.ok(v > 2, `unguided residual ${v} σ_y already within 2 σ_y`);
  for (const p of [...den.parameters(), ...ae.parameters()]) {
    assert.equal(p.grad, null, "guidance wrote a .grad");
  }
  [unguided, zTrue, mask, y].forEach((t) => t.dispose());
  den.dispose();
  ae.dispose();
});

Deno.test({
  name: "mmps: cost of one guided denoiser call relative to an unguided one at the default preset",
  ignore: !Deno.env.get("LOLA_BENCH_GUIDANCE"),
  fn: async () => {
    await gpuReady();
    const cz = 16, L = 5, cp = 5;
    const den = new Denoiser(
      transformerPreset("default", { channels: cz, spatial: 2, labelDim: 0, kind: "denoiser" }),
    );
    const ae = new Autoencoder(AE_PRESETS.default(cp, cz), 1);
    const shape = [1, cz, L, 8, 8];
    const op = observationOperator("subsample", 8, 0.1);
    const A = observeFrames((z) => ae.decode(z, { training: false }), (x) => op.apply(x), 1);
    const z = E.Tensor.fromData(randArray(size(shape), 1), shape);
    const mask = E.Tensor.fromData([1, 0, 0, 0, 0], [1, 1, L, 1, 1]);
    const y = E.scope(() => E.noGrad(() => A(z)).keep());
    const plain = masked(denoiserMean(den, mask, null), mask, z);
    const time = async (f: () => void, reps: number) => {
      f();
      await E.sync();
      const t0 = performance.now();
      for (let i = 0; i < reps; i++) f();
      await E.sync();
      return (performance.now() - t0) / reps;
    };
    const tPlain = await time(() => E.scope(() => void E.noGrad(() => plain(z, 1, 2.0))), 3);
    const row: string[] = [`unguided ${tPlain.toFixed(0)} ms`];
    for (const iterations of [1, 2]) {
      const g = guidedDenoiser(den, { observe: A, y, noise: 0.1, iterations, mask, context: z, label: null });
      const tg = await time(() => E.scope(() => void E.noGrad(() => g(z, 1, 2.0))), 3);
      row.push(`GMRES(${iterations}) ${tg.toFixed(0)} ms = ${(tg / tPlain).toFixed(2)}×`);
    }
    const tDec = await time(() => E.scope(() => void E.noGrad(() => A(z))), 3);
    row.push(`A∘decoder forward alone ${tDec.toFixed(0)} ms`);
    console.log(
      `  default preset (16×8×8 latents, 5 frames, B 1, subsample:8 on 4 frames): ${row.join("; ")}`,
    );
    [z, mask, y].forEach((t) => t.dispose());
    den.dispose();
    ae.dispose();
  },
});
