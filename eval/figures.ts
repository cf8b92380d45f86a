/**
 * PNG figures: panels of 2-D fields in a grid (rows × columns), each panel colour-mapped with its own or a shared
 * range. Used for truth / reconstruction / error per field. PNG encoding by fast-png, colours from `colormap`.
 *
 * Invariants: any input renders, NaN and ±Inf included (a diverging run must still get its figure). Ranges come
 * from the finite values only; non-finite pixels are drawn in NON_FINITE_RGB (magenta, in neither colour map),
 * and when there are any, a legend row "■ = NAN/INF" is added under the grid and the PNG's Comment text says so.
 */
import { encode } from "fast-png";
import colormap from "colormap";

export interface Panel {
  data: ArrayLike<number>;
  /** (H, W) */
  shape: [number, number];
  /** Colour range; default min/max of the finite data. A non-finite range falls back to that default. */
  range?: [number, number];
  cmap?: "viridis" | "RdBu";
}

/** The colour of NaN and ±Inf pixels: magenta, which neither viridis nor RdBu contains. */
export const NON_FINITE_RGB: readonly [number, number, number] = [255, 0, 255];
export const NON_FINITE_NOTE = "magenta pixels are non-finite values (NaN or ±Inf)";

const LUTS = new Map<string, number[][]>();
function lut(name: string): number[][] {
  let l = LUTS.get(name);
  if (!l) {
    l = colormap({ colormap: name, nshades: 256, format: "rgba" }) as number[][];
    LUTS.set(name, l);
  }
  return l;
}

/** min/max of the finite values; [0, 1] when there are none. */
export function finiteRange(data: ArrayLike<number>, n = data.length): [number, number] {
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < n; i++) {
    const v = data[i];
    if (Number.isFinite(v)) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
  }
  return lo <= hi ? [lo, hi] : [0, 1];
}

// 5×5 glyphs of the legend text, rows top to bottom.
const GLYPHS: Record<string, string[]> = {
  N: ["10001", "11001", "10101", "10011", "10001"],
  A: ["01110", "10001", "11111", "10001", "10001"],
  I: ["11111", "00100", "00100", "00100", "11111"],
  F: ["11111", "10000", "11110", "10000", "10000"],
  "/": ["00001", "00010", "00100", "01000", "10000"],
  "=": ["00000", "11111", "00000", "11111", "00000"],
  " ": ["00000", "00000", "00000", "00000", "00000"],
};
const LEGEND = " = NAN/INF";

/**
 * Render panels[r][c] into one RGBA image with `scale`× nearest-neighbour upsampling and 2-px gaps;
 * `nonFinite` counts the NaN/±Inf values drawn in NON_FINITE_RGB (a legend row is added when > 0).
 */
export function renderGrid(
  panels: Panel[][],
  scale = 3,
): { data: Uint8Array; width: number; height: number; nonFinite: number } {
  const gap = 2;
  const cols = Math.max(...panels.map((r) => r.length));
  const ph = Math.max(...panels.flat().map((p) => p.shape[0])) * scale;
  const pw = Math.max(...panels.flat().map((p) => p.shape[1])) * scale;
  let nonFinite = 0;
  for (const p of panels.flat()) {
    for (let i = 0; i < p.shape[0] * p.shape[1]; i++) if (!Number.isFinite(p.data[i])) nonFinite++;
  }
  const legendH = nonFinite > 0 ? 5 * scale + 2 * gap : 0;
  const gridW = cols * pw + (cols + 1) * gap;
  const width = Math.max(gridW, (LEGEND.length + 1) * 6 * scale + 2 * gap);
  const height = panels.length * ph + (panels.length + 1) * gap + legendH;
  const img = new Uint8Array(width * height * 4).fill(255);
  const put = (x: number, y: number, rgb: ArrayLike<number>) => {
    const o = (y * width + x) * 4;
    img[o] = rgb[0];
    img[o + 1] = rgb[1];
    img[o + 2] = rgb[2];
    img[o + 3] = 255;
  };
  panels.forEach((row, r) =>
    row.forEach((p, c) => {
      const [h, w] = p.shape;
      const given = p.range && Number.isFinite(p.range[0]) && Number.isFinite(p.range[1]);
      const [lo, hi] = given ? p.range! : finiteRange(p.data, h * w);
      const span = hi > lo ? hi - lo : 1;
      const colors = lut(p.cmap === "RdBu" ? "RdBu" : "viridis");
      const x0 = gap + c * (pw + gap), y0 = gap + r * (ph + gap);
      for (let y = 0; y < h * scale; y++) {
        for (let x = 0; x < w * scale; x++) {
          const v = p.data[Math.floor(y / scale) * w + Math.floor(x / scale)];
          if (!Number.isFinite(v)) put(x0 + x, y0 + y, NON_FINITE_RGB);
          else put(x0 + x, y0 + y, colors[Math.max(0, Math.min(255, Math.round(((v - lo) / span) * 255)))]);
        }
      }
    })
  );
  if (nonFinite > 0) drawLegend(put, gap, height - legendH + gap, scale);
  return { data: img, width, height, nonFinite };
}

/** A magenta swatch followed by " = NAN/INF" in black, 5·scale pixels tall, at (x0, y0). */
function drawLegend(
  put: (x: number, y: number, rgb: ArrayLike<number>) => void,
  x0: number,
  y0: number,
  s: number,
) {
  for (let y = 0; y < 5 * s; y++) for (let x = 0; x < 5 * s; x++) put(x0 + x, y0 + y, NON_FINITE_RGB);
  [...LEGEND].forEach((ch, k) => {
    const g = GLYPHS[ch];
    const gx = x0 + (k + 1) * 6 * s;
    for (let gy = 0; gy < 5; gy++) {
      for (let gxx = 0; gxx < 5; gxx++) {
        if (g[gy][gxx] !== "1") continue;
        for (let dy = 0; dy < s; dy++) {
          for (let dx = 0; dx < s; dx++) put(gx + gxx * s + dx, y0 + gy * s + dy, [0, 0, 0]);
        }
      }
    }
  });
}

/**
 * Write a grid of panels as a PNG (temp name, then rename). Returns the number of non-finite values drawn (in
 * magenta; the PNG's Comment says so), so a caller can report them.
 */
export async function writeGridPng(
  path: string,
  panels: Panel[][],
  scale = 3,
): Promise<{ nonFinite: number }> {
  const { data, width, height, nonFinite } = renderGrid(panels, scale);
  const text: Record<string, string> = nonFinite > 0 ? { Comment: `${NON_FINITE_NOTE}: ${nonFinite}` } : {};
  const png = encode({ width, height, data, channels: 4, depth: 8, text });
  const tmp = `${path}.tmp-${Deno.pid}`;
  try {
    await Deno.writeFile(tmp, png);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
  return { nonFinite };
}

/**
 * Truth / reconstruction / error rows for each field (columns) of one sample (C, H, W): truth and reconstruction
 * share each field's range (of the truth's finite values) so they are comparable; the error is shown on a
 * diverging map symmetric around 0. Non-finite values in any row are drawn in magenta (see renderGrid).
 */
export async function writeReconstructionFigure(
  path: string,
  truth: Float32Array,
  recon: Float32Array,
  shape: [number, number, number],
): Promise<{ nonFinite: number }> {
  const [C, H, W] = shape;
  const rows: Panel[][] = [[], [], []];
  for (let c = 0; c < C; c++) {
    const t = truth.subarray(c * H * W, (c + 1) * H * W), r = recon.subarray(c * H * W, (c + 1) * H * W);
    const [lo, hi] = finiteRange(t);
    const err = new Float32Array(H * W);
    let emax = 0;
    for (let i = 0; i < H * W; i++) {
      err[i] = r[i] - t[i];
      if (Number.isFinite(err[i])) emax = Math.max(emax, Math.abs(err[i]));
    }
    rows[0].push({ data: t, shape: [H, W], range: [lo, hi] });
    rows[1].push({ data: r, shape: [H, W], range: [lo, hi] });
    rows[2].push({ data: err, shape: [H, W], range: [-emax || -1, emax || 1], cmap: "RdBu" });
  }
  return await writeGridPng(path, rows);
}
