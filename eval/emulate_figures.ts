/**
 * Figures of one emulated trajectory: a PNG strip (per field: truth / ensemble mean / one member / ensemble
 * spread at chosen lead times, with a title, field and row names, column lead times and colour bars with their
 * ranges) and a GIF animation of truth beside the emulation, frame by frame.
 *
 * Panels are colour-mapped by eval/figures.ts (renderGrid: its NaN/±Inf handling included); text is drawn with
 * jimp's bundled bitmap fonts (no system fonts needed), PNG encoded by fast-png, GIF by gifenc. Data are (T, C,
 * N1, …, ND) float32 in physical units; 3-D fields show their middle slice along the last axis.
 *
 * Guided rollouts (`observation`) get a note line under the title and their observation pattern drawn on the
 * truth panels: the observed pixels of subsampling as dots, the blocks of mean pooling as a grid.
 *
 * Invariant: files appear whole (temp name, then rename).
 */
import { pathToFileURL } from "node:url";
import { encode } from "fast-png";
import gifenc from "gifenc";
import { createJimp } from "@jimp/core";
import { methods as blit } from "@jimp/plugin-blit";
import { methods as print } from "@jimp/plugin-print";
import { SANS_10_BLACK, SANS_14_BLACK } from "@jimp/plugin-print/fonts";
import { loadFont } from "@jimp/plugin-print/load-font";
import { finiteRange, type Panel, renderGrid } from "./figures.ts";

/** jimp's core with text printing only (the full `jimp` package pins @types/node 16, which breaks `deno check`). */
const Jimp = createJimp({ plugins: [print, blit], formats: [] });
type Font = Awaited<ReturnType<typeof loadFont>>;
let fonts: Promise<{ small: Font; big: Font }> | null = null;

/** jimp's fonts by file URL: its loader fetches paths when it believes it runs in a worker, as under Deno. */
function loadFonts() {
  fonts ??= Promise.all([SANS_10_BLACK, SANS_14_BLACK].map((p) => loadFont(pathToFileURL(p).href)))
    .then(([small, big]) => ({ small, big }));
  return fonts;
}

export interface EmulationFigureData {
  /** (T, C, N1, …, ND) truth, physical units. */
  truth: Float32Array;
  /** K members, each (T, C, N1, …, ND). */
  members: Float32Array[];
  /** Channel names, C. */
  channels: string[];
  spatialShape: number[];
  /** Lead time of every frame, raw steps. */
  leadTimes: number[];
  /** Context frames c (frames < c are inputs, not predictions). */
  context: number;
  title: string;
  /** Guidance: the operator (drawn on the truth panels) and a note printed under the title. */
  observation?: { kind: "subsample" | "pool"; factor: number; note: string };
}

/**
 * The observation pattern over a panel of the truth at (x, y), `scale` px per grid cell: a dot (black rim, white
 * centre) on every observed pixel of subsampling (`x[::s, ::s]`; for 3-D only when the shown middle slice is an
 * observed one), the s×s block edges of pooling as dotted white lines.
 */
function drawObservation(
  cv: Canvas,
  d: EmulationFigureData,
  x: number,
  y: number,
  scale: number,
): void {
  const o = d.observation;
  if (!o) return;
  const [H, W] = d.spatialShape, s = o.factor;
  if (o.kind === "subsample") {
    if (d.spatialShape.length === 3 && Math.floor(d.spatialShape[2] / 2) % s !== 0) return;
    const r = Math.max(1, Math.floor(scale / 3));
    for (let i = 0; i < H; i += s) {
      for (let j = 0; j < W; j += s) {
        const cx = x + j * scale + Math.floor(scale / 2), cy = y + i * scale + Math.floor(scale / 2);
        for (let dy = -r; dy <= r; dy++) {
          for (let dx = -r; dx <= r; dx++) {
            const rim = Math.max(Math.abs(dx), Math.abs(dy)) === r;
            cv.pixel(cx + dx, cy + dy, rim ? [0, 0, 0] : [255, 255, 255], [x, y, W * scale, H * scale]);
          }
        }
      }
    }
    return;
  }
  for (let i = s; i < H; i += s) {
    for (let X = 0; X < W * scale; X += 2) {
      cv.pixel(x + X, y + i * scale, [255, 255, 255], [x, y, W * scale, H * scale]);
    }
  }
  for (let j = s; j < W; j += s) {
    for (let Y = 0; Y < H * scale; Y += 2) {
      cv.pixel(x + j * scale, y + Y, [255, 255, 255], [x, y, W * scale, H * scale]);
    }
  }
}

/** (H, W) slice of channel ch at frame t (3-D: the middle slice along the last axis). */
function plane(a: Float32Array, d: EmulationFigureData, t: number, ch: number): Float32Array {
  const C = d.channels.length, sp = d.spatialShape, S = sp.reduce((x, y) => x * y, 1);
  const base = (t * C + ch) * S;
  if (sp.length === 2) return a.subarray(base, base + S);
  const [H, W, D] = sp, k = Math.floor(D / 2), out = new Float32Array(H * W);
  for (let i = 0; i < H * W; i++) out[i] = a[base + i * D + k];
  return out;
}

/** Mean and spread √((K+1)/(K−1)·mean_k (v_k − v̄)²) (method §7) of the members at (t, ch); spread 0 when K = 1. */
function meanSpread(d: EmulationFigureData, t: number, ch: number): [Float32Array, Float32Array] {
  const ps = d.members.map((m) => plane(m, d, t, ch)), K = ps.length, n = ps[0].length;
  const mean = new Float32Array(n), spread = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (const p of ps) s += p[i];
    mean[i] = s / K;
    let v = 0;
    for (const p of ps) v += (p[i] - mean[i]) ** 2;
    spread[i] = K > 1 ? Math.sqrt(((K + 1) / (K - 1)) * (v / K)) : 0;
  }
  return [mean, spread];
}

/** Frames to show: up to `n` predicted frames (t ≥ c), evenly spaced, the last one included. */
export function pickFrames(T: number, c: number, n = 5): number[] {
  const m = T - c;
  if (m <= n) return Array.from({ length: m }, (_, i) => c + i);
  return Array.from({ length: n }, (_, i) => c + Math.round(((i + 1) * m) / n) - 1);
}

/** An RGBA canvas with text. */
class Canvas {
  readonly img: InstanceType<typeof Jimp>;
  constructor(readonly width: number, readonly height: number) {
    this.img = new Jimp({ width, height, color: 0xffffffff });
  }
  /** Colour-maps one panel (scale× nearest neighbour) at (x, y). */
  panel(p: Panel, x: number, y: number, scale: number) {
    const r = renderGrid([[p]], scale), data = this.img.bitmap.data;
    for (let j = 2; j < r.height - 2; j++) {
      for (let i = 2; i < r.width - 2; i++) {
        const X = x + i - 2, Y = y + j - 2;
        if (X < 0 || Y < 0 || X >= this.width || Y >= this.height) continue;
        const s = (j * r.width + i) * 4, o = (Y * this.width + X) * 4;
        for (let k = 0; k < 4; k++) data[o + k] = r.data[s + k];
      }
    }
  }
  /** One RGB pixel at (X, Y) if it lies inside the box [x, y, w, h] and the canvas. */
  pixel(X: number, Y: number, rgb: readonly number[], box: [number, number, number, number]) {
    const [x, y, w, h] = box;
    if (X < x || Y < y || X >= x + w || Y >= y + h || X >= this.width || Y >= this.height) return;
    const data = this.img.bitmap.data, o = (Y * this.width + X) * 4;
    data[o] = rgb[0];
    data[o + 1] = rgb[1];
    data[o + 2] = rgb[2];
    data[o + 3] = 255;
  }
  /** A vertical colour bar of height h with its range printed beside it. */
  bar(range: [number, number], cmap: Panel["cmap"], x: number, y: number, h: number, font: Font) {
    const data = new Float32Array(h * 8);
    for (let j = 0; j < h; j++) {
      data.fill(range[1] - ((range[1] - range[0]) * j) / Math.max(1, h - 1), j * 8, j * 8 + 8);
    }
    this.panel({ data, shape: [h, 8], range, cmap }, x, y, 1);
    this.text(fmt(range[1]), x + 10, y - 2, font);
    this.text(fmt(range[0]), x + 10, y + h - 10, font);
  }
  /** ASCII only: the bitmap fonts have no other glyphs. */
  text(s: string, x: number, y: number, font: Font) {
    this.img.print({
      font,
      x,
      y,
      text: s.replaceAll("·", "|").replaceAll("−", "-").replace(/[^\x20-\x7e]/g, "?"),
    });
  }
  rgba(): Uint8Array {
    const d = this.img.bitmap.data;
    return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
  }
}

const fmt = (
  v: number,
) => (Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-2) ? v.toExponential(1) : v.toPrecision(3));

async function writeAtomic(path: string, bytes: Uint8Array): Promise<void> {
  const tmp = `${path}.tmp-${Deno.pid}`;
  try {
    await Deno.writeFile(tmp, bytes);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

const ROWS = ["truth", "mean", "member 0", "spread"];
const PATTERN = {
  subsample: "dots mark the observed pixels",
  pool: "the grid marks the pooled blocks",
} as const;

/**
 * The strip: per field a block of 4 rows (truth, ensemble mean, member 0, spread) × the chosen frames, truth,
 * mean and member sharing the truth's range (one colour bar), the spread its own (second bar).
 */
export async function writeEmulationStrip(
  path: string,
  d: EmulationFigureData,
  frames?: number[],
): Promise<void> {
  const { small, big } = await loadFonts();
  const T = d.leadTimes.length, picks = frames ?? pickFrames(T, d.context);
  const [H, W] = d.spatialShape;
  const scale = Math.max(1, Math.floor(96 / Math.max(H, W))), ph = H * scale, pw = W * scale;
  const o = d.observation, note = o ? `${o.note}; ${PATTERN[o.kind]} on the truth` : "";
  const left = 64, top = note ? 40 : 24, gap = 4, head = 20, barW = 64;
  const blockH = head + ROWS.length * (ph + gap) + gap;
  const width = left + picks.length * (pw + gap) + barW;
  const cv = new Canvas(
    Math.max(width, 8 * d.title.length, 6 * note.length),
    top + head + d.channels.length * blockH,
  );
  cv.text(d.title, 4, 4, big);
  if (note) cv.text(note, 4, 22, small);
  picks.forEach((t, i) => cv.text(`lead ${d.leadTimes[t]}`, left + i * (pw + gap), top + 2, small));
  d.channels.forEach((name, ch) => {
    const y0 = top + head + ch * blockH;
    cv.text(name, 4, y0 + 2, big);
    const truth = picks.map((t) => plane(d.truth, d, t, ch));
    const ms = picks.map((t) => meanSpread(d, t, ch));
    const member = picks.map((t) => plane(d.members[0], d, t, ch));
    let [lo, hi] = finiteRange(Float32Array.from(truth.flatMap((a) => [...finiteRange(a)])));
    if (!(hi > lo)) [lo, hi] = [lo - 1, hi + 1];
    let smax = 0;
    for (const [, s] of ms) smax = Math.max(smax, finiteRange(s)[1]);
    const rows: [Float32Array[], [number, number], Panel["cmap"]][] = [
      [truth, [lo, hi], "viridis"],
      [ms.map((x) => x[0]), [lo, hi], "viridis"],
      [member, [lo, hi], "viridis"],
      [ms.map((x) => x[1]), [0, smax || 1], "viridis"],
    ];
    rows.forEach(([panels, range, cmap], r) => {
      const y = y0 + head + r * (ph + gap);
      cv.text(ROWS[r], 4, y + ph / 2 - 6, small);
      panels.forEach((data, i) => {
        cv.panel({ data, shape: [H, W], range, cmap }, left + i * (pw + gap), y, scale);
        if (r === 0) drawObservation(cv, d, left + i * (pw + gap), y, scale);
      });
    });
    const bx = left + picks.length * (pw + gap) + 2;
    cv.bar([lo, hi], "viridis", bx, y0 + head + 6, 3 * (ph + gap) - gap - 12, small);
    cv.bar([0, smax || 1], "viridis", bx, y0 + head + 3 * (ph + gap) + 6, ph - 12, small);
  });
  await writeAtomic(
    path,
    encode({ width: cv.width, height: cv.height, data: cv.rgba(), channels: 4, depth: 8 }),
  );
}

interface GifApi {
  GIFEncoder(): {
    writeFrame(index: Uint8Array, w: number, h: number, o: { palette: number[][]; delay: number }): void;
    finish(): void;
    bytes(): Uint8Array;
  };
  quantize(rgba: Uint8Array, n: number): number[][];
  applyPalette(rgba: Uint8Array, palette: number[][]): Uint8Array;
}

/**
 * The animation: every frame, per field a row of [truth | member 0 | ensemble mean], each field on the truth's
 * range over the whole trajectory; the frame's lead time in the title. `delay` ms per frame.
 */
export async function writeEmulationAnimation(
  path: string,
  d: EmulationFigureData,
  delay = 250,
): Promise<void> {
  const { small, big } = await loadFonts();
  const { GIFEncoder, quantize, applyPalette } = gifenc as unknown as GifApi;
  const T = d.leadTimes.length, [H, W] = d.spatialShape;
  const scale = Math.max(1, Math.floor(96 / Math.max(H, W))), ph = H * scale, pw = W * scale;
  const note = d.observation?.note, top = note ? 70 : 54;
  const left = 80, gap = 4, cols = ["truth", "member 0", "ensemble mean"];
  const ranges = d.channels.map((_, ch) => {
    const [lo, hi] = finiteRange(
      Float32Array.from(
        Array.from({ length: T }, (_, t) => [...finiteRange(plane(d.truth, d, t, ch))]).flat(),
      ),
    );
    return (hi > lo ? [lo, hi] : [lo - 1, hi + 1]) as [number, number];
  });
  const width = Math.max(left + cols.length * (pw + gap), 8 * d.title.length, 6 * (note?.length ?? 0));
  const gif = GIFEncoder();
  let palette: number[][] | null = null;
  for (let t = 0; t < T; t++) {
    const cv = new Canvas(width, top + d.channels.length * (ph + gap));
    cv.text(d.title, 4, 2, big);
    const kind = t < d.context ? "context" : "emulated";
    cv.text(`frame ${t} · lead ${d.leadTimes[t]} steps (${kind})`, 4, 20, small);
    if (note) cv.text(note, 4, 36, small);
    d.channels.forEach((name, ch) => {
      const y = top + ch * (ph + gap);
      cv.text(name, 4, y + ph / 2 - 6, small);
      const [mean] = meanSpread(d, t, ch);
      [plane(d.truth, d, t, ch), plane(d.members[0], d, t, ch), mean].forEach((data, i) => {
        cv.panel({ data, shape: [H, W], range: ranges[ch] }, left + i * (pw + gap), y, scale);
        if (i === 0 && t >= d.context) drawObservation(cv, d, left + i * (pw + gap), y, scale);
        if (ch === 0) cv.text(cols[i], left + i * (pw + gap), top - 16, small);
      });
    });
    const rgba = cv.rgba();
    palette ??= quantize(rgba, 256);
    gif.writeFrame(applyPalette(rgba, palette), cv.width, cv.height, { palette, delay });
  }
  gif.finish();
  await writeAtomic(path, gif.bytes());
}
