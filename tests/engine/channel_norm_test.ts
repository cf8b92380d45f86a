/**
 * channel_norm (method §1.4, LN_c): per pixel of a (B, C, H, W[, D]) map, normalise over the C channels with the
 * mean and the UNBIASED variance (÷ (C − 1)), eps 1e-5, no affine. Values and input gradients vs the float64
 * reference and its central differences, for pixel counts that are and are not multiples of 4 (vec4 and scalar
 * kernels), 2-D and 3-D maps, and channel means far from zero. Tolerances: forward 1e-4 abs + 1e-4 rel, gradient
 * 2e-3 abs + 3e-3 rel (as the last-axis norms in norm_test.ts). Max errors are printed.
 */
import { equal, throws } from "node:assert/strict";
import { Tensor } from "../../engine/index.ts";
import { channel_norm, reference } from "../../engine/ops/channel_norm.ts";
import { checkOp, gpuReady, randArray } from "../helpers.ts";

const FWD = { atol: 1e-4, rtol: 1e-4 };
const GRAD = { atol: 2e-3, rtol: 3e-3 };

const CASES: { claim: string; shape: number[]; lo: number; hi: number }[] = [
  { claim: "2-D map, 5 channels, 3×5 pixels (scalar path)", shape: [2, 5, 3, 5], lo: -2, hi: 2 },
  {
    claim: "2-D map, 7 channels, 4×6 pixels (vec4 path), mean far from zero",
    shape: [2, 7, 4, 6],
    lo: 40,
    hi: 44,
  },
  { claim: "3-D map, 3 channels, 2×3×3 pixels", shape: [1, 3, 2, 3, 3], lo: -1, hi: 3 },
  {
    claim: "3-D map, 2 channels (the smallest unbiased case), 2×2×4 pixels",
    shape: [2, 2, 2, 2, 4],
    lo: -1,
    hi: 1,
  },
];

for (const c of CASES) {
  Deno.test(`channel_norm: ${c.claim} — unbiased per-pixel normalisation and its gradient match float64`, async () => {
    await gpuReady();
    const n = c.shape.reduce((a, b) => a * b, 1);
    const r = await checkOp({
      label: `channel_norm ${c.shape.join("x")}`,
      inputs: [{ data: randArray(n, 21, c.lo, c.hi), shape: c.shape }],
      fn: ([x]) => channel_norm(x),
      ref: ([x]) => reference.channel_norm(x, c.shape),
      fwdTol: FWD,
      gradTol: GRAD,
      h: c.lo > 10 ? 1e-3 : 1e-4,
      maxProbes: 60,
    });
    console.log(
      `channel_norm ${c.shape.join("x")}: max error forward ${r.fwd.toExponential(2)}, gradient ${
        r.grad.toExponential(2)
      }`,
    );
  });
}

Deno.test("channel_norm: the variance is the unbiased one (two channels ±1 normalise to ±1/√2)", async () => {
  await gpuReady();
  // mean 0, Σ(x−μ)² = 2, unbiased var = 2 (biased would be 1): y = ±1/√(2 + 1e-5).
  const x = Tensor.fromData([1, -1, -1, 1], [1, 2, 1, 2]);
  const y = await channel_norm(x).read();
  const want = 1 / Math.sqrt(2 + 1e-5);
  [want, -want, -want, want].forEach((v, i) =>
    equal(Math.abs(y[i] - v) < 1e-6, true, `y[${i}] = ${y[i]}, want ${v}`)
  );
  x.dispose();
});

Deno.test("channel_norm: fewer than two channels or no spatial axis is rejected", async () => {
  await gpuReady();
  const t = (s: number[]) => Tensor.fromData(new Float32Array(s.reduce((a, b) => a * b, 1)), s);
  throws(() => channel_norm(t([2, 1, 4, 4])), /C ≥ 2/);
  throws(() => channel_norm(t([2, 3])), /spatial/);
});
