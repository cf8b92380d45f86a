/**
 * softmax, layer_norm and rms_norm over the last axis vs float64 references, values and gradients (input,
 * weight, bias), for row lengths below, at and above one workgroup's width, scalar and vec4. Tolerances: forward 2e-5 abs +
 * 1e-4 rel, gradients 2e-3 abs + 3e-3 rel.
 */
import * as E from "../../engine/index.ts";
import { reference } from "../../engine/ops/norm.ts";
import { checkOp, gpuReady, randArray } from "../helpers.ts";

const FWD = { atol: 2e-5, rtol: 1e-4 };
const GRAD = { atol: 2e-3, rtol: 3e-3 };

// [2, 64] and [3, 1024]: row lengths that are multiples of 4 take the vec4 paths of the row kernels; [67, 40]
// and [66, 9] (≥ 64 rows, not a multiple of 4) the 4-rows-per-workgroup affine kernels with a partial last group.
for (const shape of [[5, 7], [3, 129], [2, 3, 1030], [2, 64], [3, 1024], [67, 40], [66, 9]]) {
  const n = shape.reduce((a, b) => a * b, 1);
  const d = shape[shape.length - 1];
  const tag = shape.join("x");
  Deno.test(`norm: softmax over ${tag} matches float64 (value and gradient)`, async () => {
    await gpuReady();
    await checkOp({
      label: `softmax ${tag}`,
      inputs: [{ data: randArray(n, 1, -3, 3), shape }],
      fn: ([x]) => E.softmax(x),
      ref: ([x]) => reference.softmax(x, shape),
      fwdTol: FWD,
      gradTol: GRAD,
      maxProbes: 40,
    });
  });
  Deno.test(`norm: layer_norm with weight and bias over ${tag} (x, weight, bias gradients)`, async () => {
    await gpuReady();
    await checkOp({
      label: `layer_norm ${tag}`,
      inputs: [
        { data: randArray(n, 2, -2, 3), shape },
        { data: randArray(d, 3, 0.5, 1.5), shape: [d] },
        { data: randArray(d, 4, -1, 1), shape: [d] },
      ],
      fn: ([x, w, b]) => E.layer_norm(x, w, b),
      ref: ([x, w, b]) => reference.layer_norm(x, shape, w, b),
      fwdTol: { atol: 1e-4, rtol: 1e-4 },
      gradTol: GRAD,
      maxProbes: 40,
    });
  });
  Deno.test(`norm: rms_norm with and without weight over ${tag}`, async () => {
    await gpuReady();
    await checkOp({
      label: `rms_norm ${tag}`,
      inputs: [{ data: randArray(n, 5, -2, 2), shape }, { data: randArray(d, 6, 0.5, 1.5), shape: [d] }],
      fn: ([x, w]) => E.rms_norm(x, w),
      ref: ([x, w]) => reference.rms_norm(x, shape, w),
      fwdTol: { atol: 1e-4, rtol: 1e-4 },
      gradTol: GRAD,
      maxProbes: 40,
    });
    await checkOp({
      label: `rms_norm plain ${tag}`,
      inputs: [{ data: randArray(n, 7, -2, 2), shape }],
      fn: ([x]) => E.rms_norm(x),
      ref: ([x]) => reference.rms_norm(x, shape),
      fwdTol: { atol: 1e-4, rtol: 1e-4 },
      gradTol: GRAD,
      maxProbes: 40,
    });
  });
}

Deno.test("norm: layer_norm without affine parameters", async () => {
  await gpuReady();
  const shape = [4, 33];
  await checkOp({
    label: "layer_norm plain",
    inputs: [{ data: randArray(132, 8, -2, 2), shape }],
    fn: ([x]) => E.layer_norm(x),
    ref: ([x]) => reference.layer_norm(x, shape),
    fwdTol: { atol: 1e-4, rtol: 1e-4 },
    gradTol: GRAD,
  });
});
