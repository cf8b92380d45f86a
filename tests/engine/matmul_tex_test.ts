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
import { matmulRaw, reference } from "../../engine/ops/matmul.ts";
import {
  MATMUL_TEX_RULES,
  matmulTexTile,
  setMatmulTexture,
  type TexRule,
} from "../../engine/ops/matmul_tex.ts";
import { type MatmulTexConfig, matmulTexLaunch, TEX_WIDTH } from "../../kernels/matmul_tex.wgsl.ts";
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

Deno.test("matmul (textures): the launch covers every tile once, at least 4 workgroups, ≤ 65535 per axis", () => {
  const base = { transA: false, transB: false, bias: false, broadcastA: false, broadcastB: false };
  const cases: [Partial<MatmulTexConfig>, number][] = [
    [{ batch: 1, m: 64, n: 64, rm: 8, rn: 8 }, 16], // one 64×64 Gram: 64 tiles in 4 workgroups of 16
    [{ batch: 8, m: 64, n: 64, rm: 16, rn: 16 }, 32], // 8 × 16 tiles as one range
    [{ batch: 1, m: 4, n: 4, rm: 4, rn: 4 }, 8], // the smallest workgroup
    [{ batch: 32, m: 320, n: 32, rm: 16, rn: 16 }, 64],
    [{ batch: 4096, m: 1024, n: 1024, rm: 8, rn: 8 }, 64], // 2^26 tiles: folded onto y
  ];
  for (const [p, wg] of cases) {
    const c = { ...base, k: 4, ...p } as MatmulTexConfig;
    const total = c.batch * Math.ceil(c.m / c.rm) * Math.ceil(c.n / c.rn);
    const l = matmulTexLaunch(c);
    const label = JSON.stringify(p);
    assert.equal(l.wg, wg, `${label}: workgroup size`);
    assert.ok(l.grid[0] === l.x && l.x <= 65535 && l.grid[1] <= 65535, `${label}: grid ${l.grid}`);
    // Flat index gid.y·x·wg + gid.x reaches every tile, and every row of groups but the last is needed.
    assert.ok(l.x * l.grid[1] * l.wg >= total && l.x * (l.grid[1] - 1) * l.wg < total, `${label}: covers`);
    assert.ok(l.grid[0] * l.grid[1] >= Math.min(4, Math.ceil(total / 8)), `${label}: ≥ 4 workgroups`);
  }
});

Deno.test("matmul (textures): a triangular op(B) skips its zeros with no change to any bit", async () => {
  // PSGD's products: Xᵀ·Qᵀ (op(B) lower) and Xᵀ·Q⁻¹ (upper), Q upper with exact zeros below the diagonal;
  // batch 2 with sizes off both tile grids (n tiles straddle the diagonal).
  for (const rule of MATMUL_TEX_RULES.for("lavapipe")) {
    await forced(async () => {
      const [g, d, rest] = [2, 44, 36];
      const x = randArray(g * d * rest, 51);
      const q = randArray(g * d * d, 52).map((v, i) => (i % d >= Math.floor(i / d) % d ? v : 0));
      for (const [transB, tri] of [[true, "lower"], [false, "upper"]] as const) {
        const [full, skip] = scope(() => {
          const tx = Tensor.fromData(Float32Array.from(x), [g, d, rest]);
          const tq = Tensor.fromData(Float32Array.from(q), [g, d, d]);
          return [undefined, tri].map((t) => matmulRaw(tx, tq, true, transB, undefined, t).keep());
        });
        const want = reference.matmul(x, [g, d, rest], q, [g, d, d], true, transB);
        const [a, b] = [await full.read(), await skip.read()];
        full.dispose();
        skip.dispose();
        assertClose(`${tri} (${rule.rm}×${rule.rn})`, b, want, FWD);
        const diff = a.findIndex((v, i) => v !== b[i]);
        assert.equal(
          diff,
          -1,
          `${tri} (${rule.rm}×${rule.rn}): element ${diff} is ${b[diff]}, full ${a[diff]}`,
        );
      }
    }, rule);
  }
});

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
