/**
 * The texture path of matmul (engine/ops/matmul_tex.ts, forced on whatever the adapter) against the float64
 * reference of engine/ops/matmul.ts: every layout, batches broadcast on either side, bias, sizes off the tile
 * grid, operands longer than one texture row (two copies), both tile rules, the same-size textures reused by
 * consecutive calls, gradients through it, and the cases it declines (unaligned quads) still exact through the
 * storage kernels. Tolerances as tests/engine/matmul_test.ts: forward atol 1e-4 + rtol 1e-4, gradients 1e-3.
 */
import assert from "node:assert/strict";
import { assertClose, checkOp, gpuReady, randArray } from "../helpers.ts";
import { linear, matmul, scope, Tensor } from "../../engine/index.ts";
import { reference } from "../../engine/ops/matmul.ts";
import {
  MATMUL_TEX_RULES,
  matmulTexTile,
  setMatmulTexture,
  type TexRule,
} from "../../engine/ops/matmul_tex.ts";
import { TEX_WIDTH } from "../../kernels/matmul_tex.wgsl.ts";

await gpuReady();
const FWD = { atol: 1e-4, rtol: 1e-4 };
const GRAD = { atol: 1e-3, rtol: 1e-3 };

const shapeOf = (batch: number[], rows: number, cols: number, trans: boolean) => [
  ...batch,
  ...(trans ? [cols, rows] : [rows, cols]),
];

async function check(
  m: number,
  k: number,
  n: number,
  batchA: number[],
  batchB: number[],
  layouts: number[][],
) {
  let worst = 0;
  for (const [ta, tb] of layouts) {
    const transA = !!ta, transB = !!tb;
    const as = shapeOf(batchA, m, k, transA), bs = shapeOf(batchB, k, n, transB);
    const a = randArray(as.reduce((x, y) => x * y, 1), 31), b = randArray(bs.reduce((x, y) => x * y, 1), 32);
    const label = `${m}x${k}x${n} ${transA ? "T" : "N"}${transB ? "T" : "N"} batch ${batchA}|${batchB}`;
    assert.ok(
      matmulTexTile({ batch: 1, m, n, k, transA, transB, strideA: 0, strideB: 0 }),
      `${label} takes textures`,
    );
    const got = await scope(() =>
      matmul(
        Tensor.fromData(Float32Array.from(a), as),
        Tensor.fromData(Float32Array.from(b), bs),
        transA,
        transB,
      )
        .keep()
    ).read();
    worst = Math.max(worst, assertClose(label, got, reference.matmul(a, as, b, bs, transA, transB), FWD));
  }
  return worst;
}

const ALL = [[0, 0], [1, 0], [0, 1], [1, 1]];

async function forced(fn: () => Promise<void>, rule: TexRule | null = null) {
  setMatmulTexture(true, rule);
  try {
    await fn();
  } finally {
    setMatmulTexture(null);
  }
}

Deno.test("matmul (textures): every layout, sizes off the tile grid, batches broadcast either side", async () => {
  await forced(async () => {
    const e = Math.max(
      await check(36, 20, 44, [3], [3], ALL),
      await check(20, 8, 12, [2], [], ALL),
      await check(12, 12, 4, [], [2], ALL),
    );
    console.log(`max abs error ${e.toExponential(2)}`);
  });
});

Deno.test("matmul (textures): odd M (A not transposed) and odd N (B transposed) need no alignment", async () => {
  await forced(async () => {
    const e = await check(37, 16, 29, [2], [2], [[0, 1]]);
    console.log(`max abs error ${e.toExponential(2)}`);
  });
});

for (const rule of MATMUL_TEX_RULES.for("lavapipe")) {
  Deno.test(`matmul (textures, ${rule.rm}×${rule.rn} tile): operands over one texture row (two copies), reused textures`, async () => {
    await forced(async () => {
      // 2·68·260 floats = 8,840 texels > TEX_WIDTH: whole rows in one copy, the rest in a second.
      assert.ok(2 * 68 * 260 / 4 > TEX_WIDTH);
      const e = await check(68, 260, 124, [2], [2], [[0, 0], [1, 1]]);
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
    const [rows, inF, outF] = [24, 20, 12];
    const x = randArray(rows * inF, 1), w = randArray(outF * inF, 2), b = randArray(outF, 3);
    const r = await checkOp({
      label: `linear ${rows}x${inF}->${outF}`,
      inputs: [{ data: x, shape: [2, rows / 2, inF] }, { data: w, shape: [outF, inF] }, {
        data: b,
        shape: [outF],
      }],
      fn: ([tx, tw, tb]) => linear(tx, tw, tb),
      ref: ([rx, rw, rb]) => {
        const y = reference.matmul(rx, [rows, inF], rw, [outF, inF], false, true);
        for (let i = 0; i < y.length; i++) y[i] += rb[i % outF];
        return y;
      },
      fwdTol: FWD,
      gradTol: GRAD,
      maxProbes: 24,
    });
    // NN and TT: their backward products run the other two layouts.
    for (const [transA, transB] of [[false, false], [true, true]]) {
      const [m, k, n] = [12, 8, 20];
      const as = shapeOf([2], m, k, transA), bs = shapeOf([2], k, n, transB);
      const g = await checkOp({
        label: `matmul grad ${transA ? "T" : "N"}${transB ? "T" : "N"}`,
        inputs: [{ data: randArray(2 * m * k, 5), shape: as }, { data: randArray(2 * k * n, 6), shape: bs }],
        fn: ([ta, tb]) => matmul(ta, tb, transA, transB),
        ref: ([ra, rb]) => reference.matmul(ra, as, rb, bs, transA, transB),
        fwdTol: FWD,
        gradTol: GRAD,
        maxProbes: 16,
      });
      console.log(
        `matmul ${transA ? "T" : "N"}${transB ? "T" : "N"}: fwd ${g.fwd.toExponential(2)}, grad ${
          g.grad.toExponential(2)
        }`,
      );
    }
    console.log(`linear: max abs error fwd ${r.fwd.toExponential(2)}, grad ${r.grad.toExponential(2)}`);
  });
});
