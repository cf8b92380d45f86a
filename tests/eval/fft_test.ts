/**
 * eval/fft.ts and engine/ops/fft.ts: every route of the DFT (the matmul route, the FFT's workgroup-memory
 * kernel, its one-invocation-per-line kernel, and whatever this adapter's tables pick) against a float64 DFT
 * at power-of-two lengths (radix-2) and other lengths (the direct-DFT fallback), 1-D to 3-D; a sinusoid's
 * energy landing in its bin; Parseval under the orthonormal scaling. Max errors are printed.
 */
import assert from "node:assert/strict";
import { fftn, scope, Tensor } from "../../engine/index.ts";
import { dftn, powerSpectrum, reference } from "../../eval/fft.ts";
import { assertClose, gpuReady, randArray } from "../helpers.ts";

await gpuReady();

type Norm = "backward" | "ortho";
/** Each route by name: the table's choice, the matmul route, and the FFT with each of its two kernels forced. */
const ROUTES: Record<string, (x: Tensor, d: number, norm: Norm) => Tensor> = {
  table: (x, d, norm) => dftn(x, d, norm),
  matmul: (x, d, norm) => dftn(x, d, norm, "matmul"),
  fft_wg: (x, d, norm) => fftn(x, d, norm, 0),
  fft_line: (x, d, norm) => fftn(x, d, norm, 1024),
};

async function checkDft(shape: number[], d: number, norm: Norm) {
  const x = randArray(shape.reduce((a, b) => a * b, 1), shape.length * 100 + shape[shape.length - 1]);
  const want = reference.dftn(x, shape, d, norm);
  const S = shape.slice(shape.length - d).reduce((a, b) => a * b, 1);
  // float32 inputs and twiddles: error grows like √(Σ N_d)·ε·‖x‖ per output.
  const scale = norm === "ortho" ? 1 : Math.sqrt(S);
  for (const [route, f] of Object.entries(ROUTES)) {
    const got = await scope(() => f(Tensor.fromData(Float32Array.from(x), shape), d, norm).keep()).read();
    const label = `${route} ${JSON.stringify(shape)} d=${d} ${norm}`;
    const err = assertClose(label, got, want, { atol: 2e-5 * scale, rtol: 0 });
    console.log(`${label}: max abs error ${err.toExponential(2)}`);
  }
}

Deno.test("fft: every route matches a float64 DFT at lengths 8, 12, 16, 6, 64, 1, 2 (1-D, batched)", async () => {
  for (const n of [8, 12, 16, 6, 64, 1, 2]) await checkDft([3, n], 1, "backward");
});

Deno.test("fft: an axis the FFT kernels cannot hold takes the matmul route; forcing the FFT on it is refused", async () => {
  // 4096 complex values per line need 64 KiB of workgroup memory (the limit is 16 KiB or more, never that).
  const n = 4096, x = Tensor.fromData(Float32Array.from(randArray(n, 9)), [n]);
  const got = await scope(() => dftn(x, 1, "ortho").keep()).read();
  const xs = await x.read();
  for (const k of [0, 1, 7, 2049]) {
    let re = 0, im = 0;
    for (let j = 0; j < n; j++) {
      const a = (-2 * Math.PI * ((j * k) % n)) / n;
      re += xs[j] * Math.cos(a) / Math.sqrt(n);
      im += xs[j] * Math.sin(a) / Math.sqrt(n);
    }
    assertClose(`dftn 4096 bin ${k}`, [got[k], got[n + k]], [re, im], { atol: 2e-5, rtol: 0 });
  }
  assert.throws(() => scope(() => fftn(x, 1)), /does not fit/);
  assert.throws(
    () => scope(() => dftn(x, 1, "ortho", "fft")),
    /cannot hold/,
  );
  x.dispose();
});

Deno.test("fft: the 2-D DFT matches float64 at 16×12 and 8×8 (backward and ortho)", async () => {
  await checkDft([2, 16, 12], 2, "backward");
  await checkDft([8, 8], 2, "ortho");
  await checkDft([3, 2, 12, 16], 2, "ortho");
});

Deno.test("fft: the 3-D DFT matches float64 at 8×8×6 and 4×6×8", async () => {
  await checkDft([2, 8, 8, 6], 3, "ortho");
  await checkDft([4, 6, 8], 3, "backward");
});

for (const route of ["matmul", "fft"] as const) {
  Deno.test(`fft (${route}): a sinusoid's energy lands in its bin (±k) and Parseval holds (ortho)`, async () => {
    const H = 16, W = 12, kx = 3, ky = 2;
    const x = new Float32Array(H * W);
    for (let i = 0; i < H; i++) {
      for (let j = 0; j < W; j++) x[i * W + j] = Math.cos(2 * Math.PI * (kx * i / H + ky * j / W));
    }
    const p = await scope(() => powerSpectrum(Tensor.fromData(x, [H, W]), 2, "ortho", route).keep()).read();
    const total = p.reduce((a, b) => a + b, 0);
    const energy = x.reduce((a, b) => a + b * b, 0);
    const inBins = p[kx * W + ky] + p[(H - kx) * W + (W - ky)];
    console.log(
      `${route} sinusoid: ${(100 * inBins / total).toFixed(5)}% of power in (±${kx}, ±${ky}); Parseval ` +
        `rel. error ${Math.abs(total - energy) / energy}`,
    );
    assert.ok(
      Math.abs(p[kx * W + ky] - energy / 2) < 1e-4 * energy,
      `bin (${kx},${ky}) holds half the energy`,
    );
    assert.ok(inBins > (1 - 1e-6) * total, "all the power is in the two conjugate bins");
    const r = randArray(8 * 8 * 6, 5);
    const pr = await scope(() =>
      powerSpectrum(Tensor.fromData(Float32Array.from(r), [8, 8, 6]), 3, "ortho", route).keep()
    ).read();
    const er = r.reduce((a, b) => a + b * b, 0), tr = pr.reduce((a, b) => a + b, 0);
    console.log(`${route} Parseval 3-D random: rel. error ${(Math.abs(tr - er) / er).toExponential(2)}`);
    assert.ok(Math.abs(tr - er) < 1e-5 * er);
  });
}
