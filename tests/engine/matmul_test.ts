/**
 * matmul and linear against the float64 reference of engine/ops/matmul.ts, for every tile config the engine
 * can pick (DEFAULT_TILE and each row of MATMUL_TILES), whatever adapter runs the tests.
 *
 * Sizes are chosen to be awkward: odd sizes (scalar loads and stores), multiples of 4 that are not multiples of
 * any tile (vec4 paths with clamped edges), k with a tail after the last full k-step, batches with and without
 * broadcasting, both transposes, bias. A tile whose rule is restricted to vec4 problems is tested on those only
 * (its scalar form is never picked, and compiling it takes seconds). Tolerances: forward atol 1e-4 + rtol 1e-4
 * for |inputs| ≤ 1 and k ≤ 100 (float32 accumulation error is ~1e-6 here, an indexing bug is ~0.1); gradients
 * atol 1e-3 + rtol 1e-3 against central differences of the float64 reference. Last, an output larger than one
 * storage binding (split along the batch).
 */
import { assertClose, gpuReady, randArray } from "../helpers.ts";
import { gpu, matmul, Tensor } from "../../engine/index.ts";
import { MATMUL_TILES, setMatmulTile } from "../../engine/ops/matmul.ts";
import { DEFAULT_TILE, type MatmulTile, matmulTileName } from "../../kernels/matmul.wgsl.ts";
import { ALL_LAYOUTS, checkLinear, checkMatmulGrad, forwardLayouts, FWD } from "./matmul_checks.ts";

const TILES: { tile: MatmulTile; vec4Only: boolean }[] = [
  { tile: DEFAULT_TILE, vec4Only: false },
  ...MATMUL_TILES.values().flat().map((r) => ({ tile: r.tile, vec4Only: !!r.vec4 })),
].filter((t, i, all) => all.findIndex((u) => matmulTileName(u.tile) === matmulTileName(t.tile)) === i);

for (const { tile, vec4Only } of TILES) {
  const name = matmulTileName(tile);

  Deno.test(
    { name: `matmul[${name}]: odd sizes, every transpose, batched (scalar loads)`, ignore: vec4Only },
    async () => {
      await gpuReady();
      setMatmulTile(tile);
      try {
        const e = Math.max(
          await forwardLayouts(37, 29, 53, [3], [3]),
          await forwardLayouts(5, 7, 3, [], []),
        );
        console.log(`max abs error ${e.toExponential(2)}`);
      } finally {
        setMatmulTile(null);
      }
    },
  );

  Deno.test(`matmul[${name}]: multiples of 4 off the tile grid, k tail, broadcast batch (vec4 loads)`, async () => {
    await gpuReady();
    setMatmulTile(tile);
    try {
      const e = Math.max(
        await forwardLayouts(68, 44, 76, [2], []),
        await forwardLayouts(132, 36, 136, [], [2]),
        vec4Only ? 0 : await forwardLayouts(4, 4, 4, [], []),
      );
      console.log(`max abs error ${e.toExponential(2)}`);
    } finally {
      setMatmulTile(null);
    }
  });

  Deno.test(`linear[${name}]: y = x Wᵀ + b (vec4 and scalar outputs), gradients of x, W and b`, async () => {
    await gpuReady();
    setMatmulTile(tile);
    try {
      for (const [rows, inF, outF] of vec4Only ? [[2 * 35, 44, 76]] : [[2 * 35, 44, 76], [2 * 9, 29, 53]]) {
        await checkLinear(rows, inF, outF);
      }
    } finally {
      setMatmulTile(null);
    }
  });

  Deno.test(`matmul[${name}]: gradients through every transpose`, async () => {
    await gpuReady();
    setMatmulTile(tile);
    try {
      // NN and TT alone already run all four layouts (their backward products are NT, TN and TT).
      const layouts = vec4Only ? [ALL_LAYOUTS[0], ALL_LAYOUTS[3]] : ALL_LAYOUTS;
      for (const [transA, transB] of layouts) {
        await checkMatmulGrad(transA, transB, vec4Only ? [12, 8, 20] : [9, 13, 6]);
      }
    } finally {
      setMatmulTile(null);
    }
  });
}

Deno.test("matmul: an output over the storage-binding limit is split along the batch", async () => {
  await gpuReady();
  const limit = gpu().limits.maxStorageBufferBindingSize;
  if (limit > 2 ** 28) return console.log(`binding limit ${limit} B: too large to exercise here`);
  const [m, k, n] = [2048, 4, 2048];
  const batch = Math.floor(limit / (m * n * 4)) + 1; // one matrix more than fits one binding
  const a = randArray(batch * m * k, 21), b = randArray(batch * k * n, 22);
  const ta = Tensor.fromData(Float32Array.from(a), [batch, m, k]);
  const tb = Tensor.fromData(Float32Array.from(b), [batch, k, n]);
  const out = matmul(ta, tb);
  try {
    const got = await out.read();
    const picks = Array.from({ length: 4000 }, (_, s) => [s % batch, (s * 37) % m, (s * 101) % n]);
    const want = picks.map(([z, i, j]) => {
      let v = 0;
      for (let p = 0; p < k; p++) v += a[(z * m + i) * k + p] * b[(z * k + p) * n + j];
      return v;
    });
    const e = assertClose(
      `${batch}x${m}x${k}x${n}`,
      picks.map(([z, i, j]) => got[(z * m + i) * n + j]),
      want,
      FWD,
    );
    console.log(
      `${batch} batches, ${(out.byteSize / 2 ** 20).toFixed(0)} MiB output: max abs error ${
        e.toExponential(2)
      }`,
    );
  } finally {
    [ta, tb, out].forEach((t) => t.dispose());
  }
});
