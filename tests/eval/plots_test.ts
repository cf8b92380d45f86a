/**
 * Line plots for the report: PNGs with a title, axes and a legend, drawn by Vega-Lite and rasterised by resvg.
 * Each test names the claim of `eval/plots.ts` it checks. Set LOLA_PLOTS_OUT=/some/dir to keep the PNGs for
 * looking at them; otherwise they go to a temp folder that is removed.
 */
import assert from "node:assert/strict";
import { decode } from "fast-png";
import { linePanelsPng, linePlotPng, PNG_SCALE, seriesColor, writePng } from "../../eval/plots.ts";

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** Width and height from the IHDR chunk, which must be the first chunk. */
function ihdr(png: Uint8Array): { width: number; height: number } {
  assert.deepEqual([...png.subarray(0, 8)], PNG_SIGNATURE, "PNG signature");
  assert.equal(new TextDecoder().decode(png.subarray(12, 16)), "IHDR");
  const dv = new DataView(png.buffer, png.byteOffset, png.byteLength);
  return { width: dv.getUint32(16), height: dv.getUint32(20) };
}

/** Decoded pixels: how many are not white, and how many are close to each given colour. */
function pixels(png: Uint8Array, colors: string[] = []) {
  const img = decode(png);
  const ch = img.channels;
  const want = colors.map((c) => [1, 3, 5].map((k) => parseInt(c.slice(k, k + 2), 16)));
  const near = colors.map(() => 0);
  let nonWhite = 0;
  for (let i = 0; i < img.width * img.height; i++) {
    const px = [0, 1, 2].map((k) => Number(img.data[i * ch + k]));
    if (px.some((v) => v < 250)) nonWhite++;
    want.forEach((w, j) => {
      if (w.every((v, k) => Math.abs(v - px[k]) <= 12)) near[j]++;
    });
  }
  return { width: img.width, height: img.height, nonWhite, near };
}

async function outDir(): Promise<{ dir: string; done: () => Promise<void> }> {
  const keep = Deno.env.get("LOLA_PLOTS_OUT");
  if (keep) return { dir: keep, done: async () => {} };
  const dir = await Deno.makeTempDir({ prefix: "plots_test_" });
  return { dir, done: () => Deno.remove(dir, { recursive: true }) };
}

const leadTimes = Array.from({ length: 40 }, (_, i) => i + 1);

Deno.test("plots: a 2-series plot is a non-blank PNG whose lines take each method's own colour", async () => {
  const t0 = performance.now();
  const png = await linePlotPng({
    title: "VRMSE vs lead time (run tiny, field density)",
    xLabel: "lead time (steps)",
    yLabel: "VRMSE",
    series: [
      { name: "diffusion", x: leadTimes, y: leadTimes.map((t) => 0.05 * Math.sqrt(t)) },
      { name: "latent solver", x: leadTimes, y: leadTimes.map((t) => 0.03 * t ** 0.8), dash: true },
    ],
  });
  const ms = performance.now() - t0;
  const { width, height } = ihdr(png);
  // The plot area is 400 × 250 CSS px; axes, title and legend add to it, all at PNG_SCALE.
  assert.ok(width > 400 * PNG_SCALE && width < 800 * PNG_SCALE, `width ${width}`);
  assert.ok(height > 250 * PNG_SCALE && height < 450 * PNG_SCALE, `height ${height}`);
  const px = pixels(png, [seriesColor("diffusion"), seriesColor("latent solver")]);
  assert.deepEqual([px.width, px.height], [width, height], "IHDR agrees with the decoded image");
  assert.ok(px.nonWhite > 0.02 * width * height, `non-white pixels ${px.nonWhite}`);
  for (const [j, n] of px.near.entries()) assert.ok(n > 200, `series ${j}: ${n} pixels of its colour`);
  const { dir, done } = await outDir();
  await writePng(`${dir}/plots_two_series.png`, png);
  assert.deepEqual([...(await Deno.readFile(`${dir}/plots_two_series.png`))], [...png]);
  await done();
  console.log(
    `linePlotPng: ${width}×${height} px, ${png.length} B, ${ms.toFixed(0)} ms (first call: WASM init)`,
  );
});

Deno.test("plots: 3 panels with log axes and a NaN render, one shared legend, no crash", async () => {
  const k = Array.from({ length: 32 }, (_, i) => i + 1);
  const spectrum = (a: number, slope: number) => k.map((x) => a * x ** slope);
  const withNaN = spectrum(2, -3);
  withNaN[10] = NaN;
  withNaN[20] = Infinity;
  const fields = ["density", "pressure", "momentum x"];
  const panels = fields.map((field, f) => ({
    title: field,
    xLabel: "wavenumber k",
    yLabel: "power",
    logX: true,
    logY: true,
    series: [
      { name: "truth", x: k, y: spectrum(1, -5 / 3 - f) },
      { name: "diffusion", x: k, y: f === 1 ? withNaN : spectrum(1.2, -5 / 3 - f) },
      { name: "latent solver", x: k, y: spectrum(0.5, -2.5 - f).map((v, i) => (i > 25 ? 0 : v)) },
      { name: "autoencoder", x: k, y: spectrum(0.9, -5 / 3 - f), dash: true },
    ],
  }));
  for (let rep = 0; rep < 2; rep++) {
    const t0 = performance.now();
    const png = await linePanelsPng("Power spectra at lead time 10 (run tiny)", panels);
    const ms = performance.now() - t0;
    const { width, height } = ihdr(png);
    assert.ok(width > 3 * 280 * PNG_SCALE, `three panels side by side: width ${width}`);
    assert.ok(height > 180 * PNG_SCALE && height < 2 * 180 * PNG_SCALE, `one row: height ${height}`);
    const px = pixels(png, ["truth", "diffusion", "latent solver", "autoencoder"].map(seriesColor));
    assert.ok(px.nonWhite > 0.02 * width * height, `non-white pixels ${px.nonWhite}`);
    for (const [j, n] of px.near.entries()) assert.ok(n > 100, `series ${j}: ${n} pixels of its colour`);
    if (rep === 0) {
      const { dir, done } = await outDir();
      await writePng(`${dir}/plots_three_panels.png`, png);
      await done();
    }
    console.log(`linePanelsPng: ${width}×${height} px, ${png.length} B, ${ms.toFixed(0)} ms`);
  }
});

Deno.test("plots: a series with no plottable point (all NaN, or ≤ 0 on a log axis) still renders", async () => {
  const png = await linePlotPng({
    title: "diverged run",
    xLabel: "lead time",
    yLabel: "VRMSE",
    logY: true,
    series: [
      { name: "pixel solver", x: [1, 2, 3], y: [NaN, NaN, -Infinity] },
      { name: "diffusion", x: [1, 2, 3], y: [0, -1, 0] },
    ],
  });
  assert.ok(ihdr(png).width > 0);
  await assert.rejects(
    () => linePlotPng({ title: "t", xLabel: "x", yLabel: "y", series: [{ name: "a", x: [1, 2], y: [1] }] }),
    /2 x and 1 y values/,
  );
});

Deno.test("plots: a series' colour depends only on its name; known methods have fixed, distinct colours", () => {
  assert.equal(seriesColor("diffusion"), seriesColor("Diffusion"));
  assert.equal(seriesColor("some new method"), seriesColor("some new method"));
  const methods = ["truth", "diffusion", "latent solver", "pixel solver", "autoencoder"].map(seriesColor);
  assert.equal(new Set(methods).size, methods.length);
});

Deno.test("plots: writePng replaces the file atomically and leaves no temp file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "plots_write_" });
  const path = `${dir}/sub/figure.png`;
  await writePng(path, new Uint8Array([1, 2, 3]));
  await writePng(path, new Uint8Array([4, 5]));
  assert.deepEqual([...(await Deno.readFile(path))], [4, 5]);
  const names = [...Deno.readDirSync(`${dir}/sub`)].map((e) => e.name);
  assert.deepEqual(names, ["figure.png"]);
  await Deno.remove(dir, { recursive: true });
});
