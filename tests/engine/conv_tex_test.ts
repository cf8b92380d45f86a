/**
 * conv2d / conv3d through the texture passes (kernels/conv_tex.wgsl.ts, forced on whatever the adapter) against
 * the float64 reference: forward values and the input, weight and bias gradients vs central differences (the
 * input gradient is the forward pass with re-laid weights, the weight gradient its own split-row pass; each
 * case asserts all three take textures), zeros and circular padding, k = 3 and k = 1,
 * 2-D and 3-D, channel counts and widths off the tile. Shapes whose last axis is not a multiple of 4 are
 * declined. Tolerances as tests/engine/conv_test.ts: forward 2e-5 abs + 1e-5 rel, gradients 1e-4 + 1e-4.
 */
import assert from "node:assert/strict";
import {
  conv2d,
  conv3d,
  convTexConfig,
  convTexWgradConfig,
  reference,
  setConvTexture,
} from "../../engine/ops/conv.ts";
import { checkOp, gpuReady, randArray, withOverride } from "../helpers.ts";

await gpuReady();
const FWD = { atol: 2e-5, rtol: 1e-5 };
const GRAD = { atol: 1e-4, rtol: 1e-4 };
const numel = (s: number[]) => s.reduce((a, b) => a * b, 1);

async function checkConv(x: number[], cout: number, k: number, circular: boolean) {
  const n = x.length - 2, wShape = [cout, x[1], ...Array(n).fill(k)];
  const geom = { batch: x[0], cin: x[1], cout, spatial: x.slice(2), k, circular };
  const label = `${n === 2 ? "conv2d" : "conv3d"} ${x.join("x")}→${cout} k${k} ${
    circular ? "circular" : "zeros"
  }`;
  assert.ok(convTexConfig(geom, true), `${label}: forward takes the texture pass`);
  assert.ok(convTexConfig({ ...geom, cin: cout, cout: x[1] }, false), `${label}: so does the input gradient`);
  assert.ok(convTexWgradConfig(geom), `${label}: and the weight gradient`);
  const r = await checkOp({
    label,
    inputs: [
      { data: randArray(numel(x), 11, -1, 1), shape: x },
      { data: randArray(numel(wShape), 12, -1, 1), shape: wShape },
      { data: randArray(cout, 13, -1, 1), shape: [cout] },
    ],
    fn: ([tx, tw, tb]) =>
      (n === 2 ? conv2d : conv3d)(tx, tw, tb, { padding_mode: circular ? "circular" : "zeros" }),
    ref: ([rx, rw, rb]) => reference.conv(rx, x, rw, wShape, rb, circular),
    fwdTol: FWD,
    gradTol: GRAD,
    maxProbes: 48,
  });
  console.log(`${label}: max error forward ${r.fwd.toExponential(2)}, gradients ${r.grad.toExponential(2)}`);
}

const forced = (fn: () => void | Promise<void>) => withOverride(setConvTexture, true, fn);

Deno.test("conv (texture pass): 2-D zeros and circular, k 3 and 1, edges of both tile axes", async () => {
  await forced(async () => {
    await checkConv([2, 3, 5, 8], 5, 3, false); // 5 output channels: a partial channel tile
    await checkConv([1, 4, 3, 12], 9, 3, true); // 12 wide: a partial tile along x, wrapped halo texels
    await checkConv([2, 6, 4, 4], 3, 1, false); // k = 1: no halo
  });
});

Deno.test("conv (texture pass): 3-D circular and zeros", async () => {
  await forced(async () => {
    await checkConv([1, 2, 3, 4, 8], 3, 3, true);
    await checkConv([1, 3, 4, 3, 4], 2, 3, false);
  });
});

Deno.test("conv (texture pass): a last axis that is not a multiple of 4 is declined", async () => {
  await forced(() => {
    const geom = { batch: 1, cin: 4, cout: 4, spatial: [6, 10], k: 3, circular: false };
    assert.equal(convTexConfig(geom, false), null);
    assert.ok(convTexConfig({ ...geom, spatial: [6, 12] }, false));
  });
});
