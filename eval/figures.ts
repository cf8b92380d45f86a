/**
 * PNG figures: panels of 2-D fields in a grid (rows × columns), each panel colour-mapped with its own or a shared
 * range. Used for truth / reconstruction / error per field. PNG encoding by fast-png, colours from `colormap`.
 */
import { encode } from "fast-png";
import colormap from "colormap";

export interface Panel {
  data: ArrayLike<number>;
  /** (H, W) */
  shape: [number, number];
  /** Colour range; default min/max of the data. */
  range?: [number, number];
  cmap?: "viridis" | "RdBu";
}

const LUTS = new Map<string, number[][]>();
function lut(name: string): number[][] {
  let l = LUTS.get(name);
  if (!l) {
    l = colormap({ colormap: name, nshades: 256, format: "rgba" }) as number[][];
    LUTS.set(name, l);
  }
  return l;
}

/** Render panels[r][c] into one RGBA image with `scale`× nearest-neighbour upsampling and 2-px gaps. */
export function renderGrid(
  panels: Panel[][],
  scale = 3,
): { data: Uint8Array; width: number; height: number } {
  const gap = 2;
  const cols = Math.max(...panels.map((r) => r.length));
  const ph = Math.max(...panels.flat().map((p) => p.shape[0])) * scale;
  const pw = Math.max(...panels.flat().map((p) => p.shape[1])) * scale;
  const width = cols * pw + (cols + 1) * gap, height = panels.length * ph + (panels.length + 1) * gap;
  const img = new Uint8Array(width * height * 4).fill(255);
  panels.forEach((row, r) =>
    row.forEach((p, c) => {
      const [h, w] = p.shape;
      let [lo, hi] = p.range ?? [Infinity, -Infinity];
      if (!p.range) {
        for (let i = 0; i < h * w; i++) {
          const v = p.data[i];
          if (Number.isFinite(v)) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
        }
      }
      const span = hi > lo ? hi - lo : 1;
      const colors = lut(p.cmap === "RdBu" ? "RdBu" : "viridis");
      const x0 = gap + c * (pw + gap), y0 = gap + r * (ph + gap);
      for (let y = 0; y < h * scale; y++) {
        for (let x = 0; x < w * scale; x++) {
          const v = p.data[Math.floor(y / scale) * w + Math.floor(x / scale)];
          const k = Number.isFinite(v) ? Math.max(0, Math.min(255, Math.round(((v - lo) / span) * 255))) : 0;
          const o = ((y0 + y) * width + x0 + x) * 4;
          const col = colors[k];
          img[o] = col[0];
          img[o + 1] = col[1];
          img[o + 2] = col[2];
          img[o + 3] = 255;
        }
      }
    })
  );
  return { data: img, width, height };
}

/** Write a grid of panels as a PNG (temp name, then rename). */
export async function writeGridPng(path: string, panels: Panel[][], scale = 3): Promise<void> {
  const { data, width, height } = renderGrid(panels, scale);
  const png = encode({ width, height, data, channels: 4, depth: 8 });
  const tmp = `${path}.tmp-${Deno.pid}`;
  await Deno.writeFile(tmp, png);
  await Deno.rename(tmp, path);
}

/**
 * Truth / reconstruction / error rows for each field (columns) of one sample (C, H, W): truth and reconstruction
 * share each field's range so they are comparable; the error is shown on a diverging map symmetric around 0.
 */
export async function writeReconstructionFigure(
  path: string,
  truth: Float32Array,
  recon: Float32Array,
  shape: [number, number, number],
) {
  const [C, H, W] = shape;
  const rows: Panel[][] = [[], [], []];
  for (let c = 0; c < C; c++) {
    const t = truth.subarray(c * H * W, (c + 1) * H * W), r = recon.subarray(c * H * W, (c + 1) * H * W);
    let lo = Infinity, hi = -Infinity, emax = 0;
    const err = new Float32Array(H * W);
    for (let i = 0; i < H * W; i++) {
      lo = Math.min(lo, t[i]);
      hi = Math.max(hi, t[i]);
      err[i] = r[i] - t[i];
      emax = Math.max(emax, Math.abs(err[i]));
    }
    rows[0].push({ data: t, shape: [H, W], range: [lo, hi] });
    rows[1].push({ data: r, shape: [H, W], range: [lo, hi] });
    rows[2].push({ data: err, shape: [H, W], range: [-emax || -1, emax || 1], cmap: "RdBu" });
  }
  await writeGridPng(path, rows);
}
