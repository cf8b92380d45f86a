/**
 * Reductions (sum, mean, max, var) and shape ops (reshape, permute, slice, concat, pad) against float64
 * references, with gradients vs central differences. Sizes are awkward on purpose (primes, rows longer than a
 * workgroup so the chunked two-pass reduction runs). Tolerances: forward 1e-4 abs + 1e-5 rel (float32 sums of
 * up to ~10^4 terms), gradients 2e-3 abs + 2e-3 rel.
 */
import * as E from "../../engine/index.ts";
import { reference as R } from "../../engine/ops/reduce.ts";
import { reference as S } from "../../engine/ops/shape.ts";
import { checkOp, gpuReady, randArray } from "../helpers.ts";

const FWD = { atol: 1e-4, rtol: 1e-5 };
const GRAD = { atol: 2e-3, rtol: 2e-3 };

const cases: [number[], number[] | undefined, boolean][] = [
  [[5, 7, 3], [1], false],
  [[5, 7, 3], [0, 2], true],
  [[3, 1031], [1], false],
  [[2, 3, 5, 7], [1, 3], false],
  [[6, 11], undefined, false],
  [[4099, 3], [0], true],
  // Multiples of 4 along the reduced / kept axis: the vec4 row and column kernels.
  [[4, 1024], [1], false],
  [[1024, 8], [0], false],
];

for (const [shape, axes, keepdim] of cases) {
  const n = shape.reduce((a, b) => a * b, 1);
  const tag = `${shape.join("x")} axes ${axes ?? "all"}${keepdim ? " keepdim" : ""}`;
  for (const op of ["sum", "mean", "max", "var"] as const) {
    Deno.test(`reduce: ${op} over ${tag} matches float64 (value and gradient)`, async () => {
      await gpuReady();
      const fn = { sum: E.sum, mean: E.mean, max: E.max, var: E.variance }[op];
      await checkOp({
        label: `${op} ${tag}`,
        inputs: [{ data: randArray(n, n + op.length, -2, 2), shape }],
        fn: ([x]) => fn(x, axes, keepdim),
        ref: ([x]) => R.reduce(x, shape, axes ?? shape.map((_, i) => i), op),
        fwdTol: FWD,
        gradTol: GRAD,
        maxProbes: 40,
      });
    });
  }
}

Deno.test("reduce: unbiased vs biased variance follows the correction argument", async () => {
  await gpuReady();
  const shape = [4, 9];
  await checkOp({
    label: "var biased",
    inputs: [{ data: randArray(36, 3), shape }],
    fn: ([x]) => E.variance(x, 1, false, 0),
    ref: ([x]) => R.reduce(x, shape, [1], "var", 0),
    fwdTol: FWD,
    gradTol: GRAD,
  });
});

Deno.test("shape: permute, transpose and reshape move values like torch (and gradients back)", async () => {
  await gpuReady();
  const shape = [2, 3, 5, 7];
  const x = randArray(210, 1);
  for (const perm of [[3, 1, 0, 2], [0, 2, 1, 3], [1, 0, 3, 2]]) {
    await checkOp({
      label: `permute ${perm}`,
      inputs: [{ data: x, shape }],
      fn: ([t]) => E.mul(E.permute(t, perm), E.permute(t, perm)),
      ref: ([t]) => S.gather(t, shape, perm.map((p) => shape[p]), perm, [0, 0, 0, 0]).map((v) => v * v),
      fwdTol: FWD,
      gradTol: GRAD,
      maxProbes: 30,
    });
  }
  await checkOp({
    label: "reshape",
    inputs: [{ data: x, shape }],
    fn: ([t]) => E.square(E.reshape(t, [6, -1])),
    ref: ([t]) => t.map((v) => v * v),
    fwdTol: FWD,
    gradTol: GRAD,
    maxProbes: 30,
  });
});

Deno.test("shape: slice and constant pad are adjoint (values and gradients)", async () => {
  await gpuReady();
  const shape = [3, 10, 7];
  const x = randArray(210, 2);
  await checkOp({
    label: "slice",
    inputs: [{ data: x, shape }],
    fn: ([t]) => E.square(E.slice(t, 1, 2, 9)),
    ref: ([t]) => S.gather(t, shape, [3, 7, 7], [0, 1, 2], [0, 2, 0]).map((v) => v * v),
    fwdTol: FWD,
    gradTol: GRAD,
    maxProbes: 40,
  });
  await checkOp({
    label: "pad constant",
    inputs: [{ data: x, shape }],
    fn: ([t]) => E.square(E.add(E.pad(t, [[0, 0], [1, 2], [3, 1]], "constant", 0), 0.5)),
    ref: ([t]) => S.gather(t, shape, [3, 13, 11], [0, 1, 2], [0, -1, -3]).map((v) => (v + 0.5) ** 2),
    fwdTol: FWD,
    gradTol: GRAD,
    maxProbes: 40,
  });
});

Deno.test("shape: circular pad wraps like torch.nn.functional.pad(mode='circular'), gradient sums the wraps", async () => {
  await gpuReady();
  const shape = [2, 5, 6];
  const x = randArray(60, 3);
  await checkOp({
    label: "pad circular",
    inputs: [{ data: x, shape }],
    fn: ([t]) => E.square(E.pad(t, [[0, 0], [2, 1], [1, 3]], "circular")),
    ref: ([t]) => S.gather(t, shape, [2, 8, 10], [0, 1, 2], [0, -2, -1], true).map((v) => v * v),
    fwdTol: FWD,
    gradTol: GRAD,
  });
});

Deno.test("shape: concat along a middle axis (values, and each input's gradient is its slice)", async () => {
  await gpuReady();
  const a = randArray(2 * 3 * 4, 4), b = randArray(2 * 5 * 4, 5);
  await checkOp({
    label: "concat",
    inputs: [{ data: a, shape: [2, 3, 4] }, { data: b, shape: [2, 5, 4] }],
    fn: ([x, y]) => E.square(E.concat([x, y, x], 1)),
    ref: ([x, y]) => {
      const out = new Float64Array(2 * 11 * 4);
      for (let i = 0; i < 2; i++) {
        for (let j = 0; j < 11; j++) {
          for (let k = 0; k < 4; k++) {
            const v = j < 3
              ? x[(i * 3 + j) * 4 + k]
              : j < 8
              ? y[(i * 5 + j - 3) * 4 + k]
              : x[(i * 3 + j - 8) * 4 + k];
            out[(i * 11 + j) * 4 + k] = v * v;
          }
        }
      }
      return out;
    },
    fwdTol: FWD,
    gradTol: GRAD,
  });
});
