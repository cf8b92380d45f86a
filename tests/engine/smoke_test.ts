import { checkOp, gpuReady, randArray } from "../helpers.ts";
import { matmul, reference } from "../../engine/ops/matmul.ts";

Deno.test("harness: matmul gradient check runs", async () => {
  await gpuReady();
  const a = randArray(5 * 7, 1), b = randArray(7 * 3, 2);
  const r = await checkOp({
    label: "matmul",
    inputs: [{ data: a, shape: [5, 7] }, { data: b, shape: [7, 3] }],
    fn: ([x, y]) => matmul(x, y),
    ref: ([x, y]) => reference.matmul(x, [5, 7], y, [7, 3]),
    fwdTol: { atol: 1e-5, rtol: 1e-5 },
    gradTol: { atol: 1e-4, rtol: 1e-3 },
  });
  console.log(r);
});
