/**
 * Figures never crash on non-finite data (issue 16 item 1): NaN and ±Inf pixels are drawn in magenta, the
 * figure carries a legend row and a PNG comment saying so, and the finite pixels keep their colour range.
 */
import assert from "node:assert/strict";
import { decode } from "fast-png";
import { NON_FINITE_RGB, renderGrid, writeReconstructionFigure } from "../../eval/figures.ts";

const pixel = (
  img: { data: Uint8Array; width: number },
  x: number,
  y: number,
) => [...img.data.subarray((y * img.width + x) * 4, (y * img.width + x) * 4 + 3)];

Deno.test("figures: NaN/Inf pixels are magenta, with a legend row; finite pixels keep the finite range", () => {
  const data = Float32Array.from([0, 1, NaN, Infinity, -Infinity, 0.5]);
  const img = renderGrid([[{ data, shape: [2, 3] }]], 1);
  assert.equal(img.nonFinite, 3);
  const at = (i: number) => pixel(img, 2 + (i % 3), 2 + Math.floor(i / 3));
  for (const i of [2, 3, 4]) assert.deepEqual(at(i), [...NON_FINITE_RGB], `value ${data[i]}`);
  assert.deepEqual(at(0), [68, 1, 84], "min of the finite values is viridis' first colour");
  assert.notDeepEqual(at(1), [...NON_FINITE_RGB]);
  assert.ok(img.height > 2 * 2 + 3 * 1, "a legend row is added under the grid");
  const clean = renderGrid([[{ data: Float32Array.from([0, 1]), shape: [1, 2] }]], 1);
  assert.equal(clean.nonFinite, 0);
  assert.equal(clean.height, 1 + 2 * 2, "no legend row without non-finite values");
});

Deno.test("figures: a non-finite range, or a panel with no finite value, renders instead of crashing", () => {
  const nan = Float32Array.from([NaN, NaN]);
  const img = renderGrid([[{ data: nan, shape: [1, 2] }, {
    data: Float32Array.from([1, 2]),
    shape: [1, 2],
    range: [-Infinity, Infinity],
    cmap: "RdBu",
  }]], 1);
  assert.equal(img.nonFinite, 2);
});

Deno.test("figures: the reconstruction figure of a diverged model (NaN truth, Inf reconstruction) is written", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const truth = Float32Array.from([0, 1, NaN, 3, 4, 5, 6, 7]);
    const recon = Float32Array.from([0, Infinity, 2, 3, NaN, 5, 6, -Infinity]);
    const r = await writeReconstructionFigure(`${dir}/f.png`, truth, recon, [2, 2, 2]);
    assert.equal(r.nonFinite, 1 + 3 + 4, "truth 1, reconstruction 3, error 4");
    const png = decode(await Deno.readFile(`${dir}/f.png`));
    assert.match(png.text.Comment, /magenta pixels are non-finite values \(NaN or ±Inf\): 8/);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["f.png"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
