/**
 * The texture path of matmul (engine/ops/matmul_tex.ts, forced on whatever the adapter) against the float64
 * reference of engine/ops/matmul.ts: every layout, batches broadcast on either side, bias, sizes off the tile
 * grid, operands longer than one texture row (two copies), both tile rules, the same-size textures reused by
 * consecutive calls, gradients through it, and the cases it declines (unaligned quads) still exact through the
 * storage kernels. Tolerances as tests/engine/matmul_test.ts: forward atol 1e-4 + rtol 1e-4, gradients 1e-3.
 */
import assert from "node:assert/strict";
import { assertClose, gpuReady, randArray, withOverride } from "../helpers.ts";
import { matmul, scope, Tensor } from "../../engine/index.ts";
import { reference } from "../../engine/ops/matmul.ts";
import {
  MATMUL_TEX_RULES,
  matmulTexTile,
  setMatmulTexture,
  type TexRule,
} from "../../engine/ops/matmul_tex.ts";
import { TEX_WIDTH } from "../../kernels/matmul_tex.wgsl.ts";
import { ALL_LAYOUTS, checkLinear, checkMatmulGrad, forwardLayouts, FWD, shapeOf } from "./matmul_checks.ts";

await gpuReady();
/** forwardLayouts on this file's operands, asserting that each layout takes textures. */
const check = (
  m: number,
  k: number,
  n: number,
  batchA: number[],
  batchB: number[],
  layouts: [boolean, boolean][],
) =>
  forwardLayouts(m, k, n, batchA, batchB, {
    layouts,
    seeds: [31, 32],
    expect: (label, transA, transB) =>
      assert.ok(
        matmulTexTile({ batch: 1, m, n, k, transA, transB, strideA: 0, strideB: 0 }),
        `${label} takes textures`,
      ),
  });

const forced = (fn: () => Promise<void>, rule: TexRule | null = null) =>
  withOverride((on: boolean | null) => setMatmulTexture(on, rule), true, fn);

Deno.test("matmul (textures): every layout, sizes off the tile grid, batches broadcast either side", async () => {
  await forced(async () => {
    const e = Math.max(
      await check(36, 20, 44, [3], [3], ALL_LAYOUTS),
      await check(20, 8, 12, [2], [], ALL_LAYOUTS),
      await check(12, 12, 4, [], [2], ALL_LAYOUTS),
    );
    console.log(`max abs error ${e.toExponential(2)}`);
  });
});

Deno.test("matmul (textures): odd M (A not transposed) and odd N (B transposed) need no alignment", async () => {
  await forced(async () => {
    const e = await check(37, 16, 29, [2], [2], [[false, true]]);
    console.log(`max abs error ${e.toExponential(2)}`);
  });
});

for (const rule of MATMUL_TEX_RULES.for("lavapipe")) {
  Deno.test(`matmul (textures, ${rule.rm}×${rule.rn} tile): operands over one texture row (two copies), reused textures`, async () => {
    await forced(async () => {
      // 2·68·260 floats = 8,840 texels > TEX_WIDTH: whole rows in one copy, the rest in a second.
      assert.ok(2 * 68 * 260 / 4 > TEX_WIDTH);
      const e = await check(68, 260, 124, [2], [2], [[false, false], [true, true]]);
      // Two calls of one size in one command stream, read afterwards: each sees its own operands.
      const [x1, x2, w] = [41, 42, 43].map((s) => randArray(64 * 64, s));
      const outs = scope(() => {
        const tw = Tensor.fromData(Float32Array.from(w), [64, 64]);
        return [x1, x2].map((x) => matmul(Tensor.fromData(Float32Array.from(x), [64, 64]), tw).keep());
      });
      for (const [i, x] of [x1, x2].entries()) {
        const want = reference.matmul(x, [64, 64], w, [64, 64], false, false);
        assertClose(`call ${i + 1}`, await outs[i].read(), want, FWD);
        outs[i].dispose();
      }
      console.log(`max abs error ${e.toExponential(2)}`);
    }, rule);
  });
}

Deno.test("matmul (textures): unaligned quads are declined and computed exactly by the storage kernels", async () => {
  await forced(async () => {
    const base = { batch: 1, strideA: 0, strideB: 0 };
    assert.equal(matmulTexTile({ ...base, m: 8, n: 8, k: 6, transA: false, transB: false }), null, "K % 4");
    assert.equal(
      matmulTexTile({ ...base, m: 7, n: 8, k: 8, transA: true, transB: false }),
      null,
      "M % 4 (Aᵀ)",
    );
    assert.equal(
      matmulTexTile({ ...base, m: 8, n: 7, k: 8, transA: false, transB: false }),
      null,
      "N % 4 (B)",
    );
    for (const [m, k, n, ta] of [[9, 6, 8, false], [7, 8, 12, true]] as const) {
      const as = shapeOf([], m, k, ta), bs = [k, n];
      const a = randArray(m * k, 1), b = randArray(k * n, 2);
      const got = await scope(() =>
        matmul(Tensor.fromData(Float32Array.from(a), as), Tensor.fromData(Float32Array.from(b), bs), ta)
          .keep()
      ).read();
      assertClose(`${m}x${k}x${n}`, got, reference.matmul(a, as, b, bs, ta, false), FWD);
    }
  });
});

Deno.test("linear and matmul (textures): forward and gradients against float64 differences", async () => {
  await forced(async () => {
    await checkLinear(24, 20, 12);
    // NN and TT: their backward products run the other two layouts.
    for (const [transA, transB] of [ALL_LAYOUTS[0], ALL_LAYOUTS[3]]) {
      await checkMatmulGrad(transA, transB, [12, 8, 20]);
    }
  });
});
