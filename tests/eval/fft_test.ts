/**
 * eval/fft.ts: the DFT-as-matmul against a float64 DFT at power-of-two and other lengths (1-D, 2-D, 3-D), a
 * sinusoid's energy landing in its bin, and Parseval under the orthonormal scaling. Max errors are printed.
 */
import assert from "node:assert/strict";
import { scope, Tensor } from "../../engine/index.ts";
import { dftn, powerSpectrum, reference } from "../../eval/fft.ts";
import { assertClose, gpuReady, randArray } from "../helpers.ts";

await gpuReady();

async function checkDft(shape: number[], d: number, norm: "backward" | "ortho") {
  const x = randArray(shape.reduce((a, b) => a * b, 1), shape.length * 100 + shape[shape.length - 1]);
  const want = reference.dftn(x, shape, d, norm);
  const got = await scope(() => dftn(Tensor.fromData(Float32Array.from(x), shape), d, norm).keep()).read();
  const S = shape.slice(shape.length - d).reduce((a, b) => a * b, 1);
  // float32 inputs and twiddles: error grows like √(Σ N_d)·ε·‖x‖ per output.
  const scale = norm === "ortho" ? 1 : Math.sqrt(S);
  const err = assertClose(`dftn ${shape} d=${d} ${norm}`, got, want, { atol: 2e-5 * scale, rtol: 0 });
  console.log(`dftn ${JSON.stringify(shape)} d=${d} ${norm}: max abs error ${err.toExponential(2)}`);
}

Deno.test("fft: the DFT matches a float64 DFT at lengths 8, 12, 16, 6 (1-D, batched)", async () => {
  for (const n of [8, 12, 16, 6]) await checkDft([3, n], 1, "backward");
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

Deno.test("fft: a sinusoid's energy lands in its bin (±k) and Parseval holds (ortho)", async () => {
  const H = 16, W = 12, kx = 3, ky = 2;
  const x = new Float32Array(H * W);
  for (let i = 0; i < H; i++) {
    for (let j = 0; j < W; j++) x[i * W + j] = Math.cos(2 * Math.PI * (kx * i / H + ky * j / W));
  }
  const p = await scope(() => powerSpectrum(Tensor.fromData(x, [H, W]), 2, "ortho").keep()).read();
  const total = p.reduce((a, b) => a + b, 0);
  const energy = x.reduce((a, b) => a + b * b, 0);
  const inBins = p[kx * W + ky] + p[(H - kx) * W + (W - ky)];
  console.log(
    `sinusoid: ${(100 * inBins / total).toFixed(5)}% of power in (±${kx}, ±${ky}); Parseval ` +
      `rel. error ${Math.abs(total - energy) / energy}`,
  );
  assert.ok(Math.abs(p[kx * W + ky] - energy / 2) < 1e-4 * energy, `bin (${kx},${ky}) holds half the energy`);
  assert.ok(inBins > (1 - 1e-6) * total, "all the power is in the two conjugate bins");
  const r = randArray(8 * 8 * 6, 5);
  const pr = await scope(() => powerSpectrum(Tensor.fromData(Float32Array.from(r), [8, 8, 6]), 3).keep())
    .read();
  const er = r.reduce((a, b) => a + b * b, 0), tr = pr.reduce((a, b) => a + b, 0);
  console.log(`Parseval 3-D random: rel. error ${(Math.abs(tr - er) / er).toExponential(2)}`);
  assert.ok(Math.abs(tr - er) < 1e-5 * er);
});
