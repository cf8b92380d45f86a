/**
 * space_to_depth / depth_to_space (method §1.2–1.3): output channel c·2^N + sub-position with the sub-position
 * row-major over (dy, dx) or (dz, dy, dx), checked on index-encoded inputs against explicit formulas; exact round
 * trips both ways; the 2-D case equals torch's pixel_unshuffle / pixel_shuffle order; gradients flow back
 * through the permutation exactly (forward and gradient tolerance 0: it only moves values).
 */
import { deepEqual, throws } from "node:assert/strict";
import { Tensor } from "../../engine/index.ts";
import {
  depth_to_space,
  pixel_shuffle,
  pixel_unshuffle,
  reference,
  space_to_depth,
} from "../../engine/ops/space_to_depth.ts";
import { checkOp, gpuReady, randArray } from "../helpers.ts";

const iota = (n: number) => Float32Array.from({ length: n }, (_, i) => i);

Deno.test("space_to_depth 2-D: out[b, c·4 + dy·2 + dx, i, j] = x[b, c, 2i + dy, 2j + dx]", async () => {
  await gpuReady();
  const [B, C, H, W] = [2, 3, 4, 6];
  const x = Tensor.fromData(iota(B * C * H * W), [B, C, H, W]);
  const y = space_to_depth(x);
  deepEqual(y.shape, [B, C * 4, H / 2, W / 2]);
  const got = await y.read();
  const want: number[] = [];
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < C; c++) {
      for (let dy = 0; dy < 2; dy++) {
        for (let dx = 0; dx < 2; dx++) {
          for (let i = 0; i < H / 2; i++) {
            for (let j = 0; j < W / 2; j++) want.push(((b * C + c) * H + 2 * i + dy) * W + 2 * j + dx);
          }
        }
      }
    }
  }
  deepEqual([...got], want);
  deepEqual([...(await pixel_unshuffle(x, 2).read())], want, "pixel_unshuffle is the same order");
  [x, y].forEach((t) => t.dispose());
});

Deno.test("space_to_depth 3-D: out[b, c·8 + dz·4 + dy·2 + dx, i, j, l] = x[b, c, 2i + dz, 2j + dy, 2l + dx]", async () => {
  await gpuReady();
  const shape = [1, 2, 4, 2, 6];
  const n = shape.reduce((a, b) => a * b, 1);
  const x = Tensor.fromData(iota(n), shape);
  const got = await space_to_depth(x).read();
  const [, C, H, W, D] = shape;
  const want: number[] = [];
  for (let c = 0; c < C; c++) {
    for (let q = 0; q < 8; q++) {
      const [dz, dy, dx] = [q >> 2, (q >> 1) & 1, q & 1];
      for (let i = 0; i < H / 2; i++) {
        for (let j = 0; j < W / 2; j++) {
          for (let l = 0; l < D / 2; l++) want.push(((c * H + 2 * i + dz) * W + 2 * j + dy) * D + 2 * l + dx);
        }
      }
    }
  }
  deepEqual([...got], want);
  deepEqual(
    [...got],
    [...reference.space_to_depth(Float64Array.from(iota(n)), shape)],
    "float64 reference agrees",
  );
  x.dispose();
});

Deno.test("depth_to_space inverts space_to_depth exactly (2-D and 3-D, both orders)", async () => {
  await gpuReady();
  for (const shape of [[2, 3, 6, 4], [1, 2, 2, 4, 6]]) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = Float32Array.from(randArray(n, 5));
    const x = Tensor.fromData(data, shape);
    deepEqual([...(await depth_to_space(space_to_depth(x)).read())], [...data], `round trip ${shape}`);
    const z = space_to_depth(x);
    deepEqual(
      [...(await space_to_depth(depth_to_space(z)).read())],
      [...(await z.read())],
      `inverse round trip ${shape}`,
    );
    if (shape.length === 4) deepEqual([...(await pixel_shuffle(pixel_unshuffle(x, 2), 2).read())], [...data]);
    [x, z].forEach((t) => t.dispose());
  }
});

Deno.test("space_to_depth / depth_to_space: gradients are the inverse permutation", async () => {
  await gpuReady();
  for (const shape of [[2, 3, 4, 6], [1, 2, 2, 4, 2]]) {
    const n = shape.reduce((a, b) => a * b, 1);
    const exact = { atol: 0, rtol: 0 };
    const r = await checkOp({
      label: `space_to_depth ${shape}`,
      inputs: [{ data: randArray(n, 7), shape }],
      fn: ([x]) => space_to_depth(x),
      ref: ([x]) => reference.space_to_depth(x, shape),
      fwdTol: exact,
      gradTol: { atol: 1e-9, rtol: 1e-9 },
    });
    console.log(
      `space_to_depth ${shape.join("x")}: max error forward ${r.fwd}, gradient ${r.grad.toExponential(2)}`,
    );
    const inner = shape.slice(2).map((s) => s / 2);
    const dShape = [shape[0], shape[1] * 2 ** inner.length, ...inner];
    await checkOp({
      label: `depth_to_space ${dShape}`,
      inputs: [{ data: randArray(n, 8), shape: dShape }],
      fn: ([x]) => space_to_depth(depth_to_space(x)),
      ref: ([x]) => x.slice(),
      fwdTol: exact,
      gradTol: { atol: 1e-9, rtol: 1e-9 },
    });
  }
});

Deno.test("space_to_depth / depth_to_space: sizes that do not divide are rejected", async () => {
  await gpuReady();
  const t = (s: number[]) => Tensor.fromData(new Float32Array(s.reduce((a, b) => a * b, 1)), s);
  throws(() => space_to_depth(t([1, 2, 5, 4])), /divisible/);
  throws(() => depth_to_space(t([1, 6, 2, 2])), /C·2\^N/);
  throws(() => pixel_unshuffle(t([1, 2, 4, 4, 4]), 2), /pixel_unshuffle/);
});
