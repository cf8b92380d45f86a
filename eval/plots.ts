/**
 * Labelled line plots as PNG for the evaluation report: VRMSE or spread–skill against lead time, power spectra
 * against wavenumber, one line per method, with a title, axis titles, ticks and a legend naming each series.
 *
 * Drawn by Vega-Lite (spec → Vega → headless `View.toSVG()`, no canvas or DOM needed) and rasterised by resvg
 * (WASM build, no native addon). resvg-wasm loads no system fonts, so the DejaVu Sans TTFs are read from the
 * `dejavu-fonts-ttf` npm package; the static import of its package.json below puts that package in the module
 * graph, so `deno install` or the first run fetches it and `import.meta.resolve` yields a file URL.
 *
 * Invariants:
 * - Non-finite points (NaN, ±Inf, and values ≤ 0 on a log axis) never crash: they draw a gap in their line
 *   (Vega-Lite's `break-paths`), and they are left out of the axis domains.
 * - A series' colour depends on its name only (`seriesColor`), so "diffusion" is the same blue in every figure.
 * - `width`/`height` are the plot area in CSS pixels, as in Vega-Lite; axes, legend and title add to it, and
 *   the PNG has PNG_SCALE device pixels per CSS pixel.
 */
import * as vega from "vega";
import { compile, type TopLevelSpec } from "vega-lite";
import { initWasm, Resvg } from "@resvg/resvg-wasm";
import "dejavu-fonts-ttf/package.json" with { type: "json" };
import { dirname } from "node:path";

export interface LineSeries {
  name: string;
  x: number[];
  y: number[];
  dash?: boolean;
}

export interface LinePlot {
  title: string;
  xLabel: string;
  yLabel: string;
  series: LineSeries[];
  logX?: boolean;
  logY?: boolean;
  /** Plot area in CSS pixels (default 400 × 250; 280 × 180 per panel in `linePanelsPng`). */
  width?: number;
  height?: number;
}

export type LinePanel = Omit<LinePlot, "title"> & { title: string };

/** Device pixels per CSS pixel of the PNG: 2 keeps 11 px tick labels readable in a report. */
export const PNG_SCALE = 2;

const FONT = "DejaVu Sans";
const FONT_FILES = ["DejaVuSans.ttf", "DejaVuSans-Bold.ttf"];

/** Fixed colours for the methods the report compares; other names hash onto the Tableau-10 palette. */
const METHOD_COLORS: Record<string, string> = {
  "truth": "#222222",
  "ground truth": "#222222",
  "diffusion": "#4c78a8",
  "latent solver": "#f58518",
  "pixel solver": "#54a24b",
  "autoencoder": "#b279a2",
};
const PALETTE = [
  "#4c78a8",
  "#f58518",
  "#e45756",
  "#72b7b2",
  "#54a24b",
  "#eeca3b",
  "#b279a2",
  "#ff9da6",
  "#9d755d",
  "#bab0ac",
];

/** The colour of a series by name (case-insensitive): fixed for known methods, else an FNV-1a hash. */
export function seriesColor(name: string): string {
  const key = name.trim().toLowerCase();
  if (key in METHOD_COLORS) return METHOD_COLORS[key];
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  return PALETTE[(h >>> 0) % PALETTE.length];
}

/** Distinct series (first occurrence wins for `dash`) and their colours; a hash collision inside one figure
 * moves the later name to the first unused palette colour, so lines in one figure stay distinguishable. */
function seriesStyles(series: LineSeries[]): { names: string[]; colors: string[]; dashes: number[][] } {
  const names: string[] = [], colors: string[] = [], dashes: number[][] = [];
  for (const s of series) {
    if (names.includes(s.name)) continue;
    let c = seriesColor(s.name);
    if (colors.includes(c)) c = PALETTE.find((p) => !colors.includes(p)) ?? c;
    names.push(s.name);
    colors.push(c);
    dashes.push(s.dash ? [6, 4] : [1, 0]);
  }
  return { names, colors, dashes };
}

interface Row {
  series: string;
  i: number;
  x: number | null;
  y: number | null;
}

/** One row per point; an unplottable point becomes nulls, which Vega-Lite turns into a gap. */
function rows(p: LinePlot): Row[] {
  const out: Row[] = [];
  const ok = (v: number, log?: boolean) => Number.isFinite(v) && (!log || v > 0);
  for (const s of p.series) {
    if (s.x.length !== s.y.length) {
      throw new Error(`plot "${p.title}": series "${s.name}" has ${s.x.length} x and ${s.y.length} y values`);
    }
    for (let i = 0; i < s.x.length; i++) {
      const good = ok(s.x[i], p.logX) && ok(s.y[i], p.logY);
      out.push({ series: s.name, i, x: good ? s.x[i] : null, y: good ? s.y[i] : null });
    }
  }
  return out;
}

/** Axis of a quantitative channel. On a log axis spanning ≥ 3 decades, ticks and grid lines go on powers of
 * ten only (at most ~8 of them), labelled 0.01 … 1000 or 1e-7: Vega's default would put a grid line on every
 * minor tick, which reads as grey bands over many decades, and print 1e-6 as 0.000001. */
function axis(title: string, values: (number | null)[], log?: boolean) {
  if (!log) return { title };
  let lo = Infinity, hi = -Infinity;
  for (const v of values) if (v !== null) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
  const [a, b] = [Math.floor(Math.log10(lo)), Math.ceil(Math.log10(hi))];
  if (!(b - a >= 3)) return { title, format: "~g" };
  const step = Math.ceil((b - a) / 8);
  const ticks = Array.from({ length: Math.floor((b - a) / step) + 1 }, (_, i) => Number(`1e${a + i * step}`));
  const labelExpr = "datum.value >= 0.01 && datum.value <= 1000 ? format(datum.value, '~g') : " +
    "format(datum.value, '.0e')";
  return { title, values: ticks, labelExpr };
}

/** The Vega-Lite unit spec of one panel; `styles` is shared by all panels of a figure. */
function unitSpec(p: LinePlot, styles: ReturnType<typeof seriesStyles>, size: [number, number]) {
  const legend = { title: null, symbolType: "stroke", symbolStrokeWidth: 2.5, symbolSize: 300 };
  const data = rows(p);
  return {
    title: p.title,
    width: p.width ?? size[0],
    height: p.height ?? size[1],
    data: { values: data },
    mark: { type: "line", strokeWidth: 2, invalid: "break-paths-filter-domains" },
    encoding: {
      x: {
        field: "x",
        type: "quantitative",
        axis: axis(p.xLabel, data.map((r) => r.x), p.logX),
        // The independent variable spans exactly its data: a "nice" log domain would stretch 1…32 to 1…100.
        scale: p.logX ? { type: "log", nice: false } : { zero: false, nice: false },
      },
      y: {
        field: "y",
        type: "quantitative",
        axis: axis(p.yLabel, data.map((r) => r.y), p.logY),
        scale: p.logY ? { type: "log" } : { zero: false },
      },
      color: {
        field: "series",
        type: "nominal",
        scale: { domain: styles.names, range: styles.colors },
        legend,
      },
      strokeDash: {
        field: "series",
        type: "nominal",
        scale: { domain: styles.names, range: styles.dashes },
        legend,
      },
      order: { field: "i", type: "quantitative" },
    },
  };
}

const CONFIG = {
  font: FONT,
  background: "white",
  title: { fontSize: 14, subtitleFontSize: 12 },
  axis: { labelFontSize: 11, titleFontSize: 12, titleFontWeight: "bold" },
  legend: { labelFontSize: 12, labelLimit: 300 },
};

let resvgReady: Promise<Uint8Array[]> | undefined;

/** Instantiates resvg's WASM once and reads the fonts once (both cached for the process). */
function initResvg(): Promise<Uint8Array[]> {
  resvgReady ??= (async () => {
    const file = (spec: string) => {
      const url = import.meta.resolve(spec);
      if (!url.startsWith("file:")) {
        throw new Error(`plots: ${spec} resolved to ${url}, not a file; run \`deno install\` first`);
      }
      return Deno.readFile(new URL(url));
    };
    await initWasm(await file("@resvg/resvg-wasm/index_bg.wasm"));
    return await Promise.all(FONT_FILES.map((f) => file(`dejavu-fonts-ttf/ttf/${f}`)));
  })();
  return resvgReady;
}

/** Vega-Lite spec → SVG (headless Vega view) → PNG (resvg). */
async function renderPng(spec: TopLevelSpec): Promise<Uint8Array> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: "none" });
  let svg: string;
  try {
    svg = await view.toSVG();
  } finally {
    view.finalize();
  }
  const fontBuffers = await initResvg();
  const resvg = new Resvg(svg, {
    background: "white",
    fitTo: { mode: "zoom", value: PNG_SCALE },
    font: { fontBuffers, loadSystemFonts: false, defaultFontFamily: FONT, sansSerifFamily: FONT },
  });
  try {
    const image = resvg.render();
    const png = image.asPng();
    image.free();
    return png;
  } finally {
    resvg.free();
  }
}

/** One plot: a line per series, a legend naming them, log axes where asked. */
export async function linePlotPng(p: LinePlot): Promise<Uint8Array> {
  const spec = { ...unitSpec(p, seriesStyles(p.series), [400, 250]), config: CONFIG };
  return await renderPng(spec as TopLevelSpec);
}

/** Small multiples: one panel per entry (e.g. one per field), shared legend, one overall title. */
export async function linePanelsPng(
  title: string,
  panels: LinePanel[],
  columns = Math.min(panels.length, 3),
): Promise<Uint8Array> {
  const styles = seriesStyles(panels.flatMap((p) => p.series));
  const spec = {
    title: { text: title, fontSize: 16, anchor: "middle" },
    columns: Math.max(1, columns),
    concat: panels.map((p) => unitSpec(p, styles, [280, 180])),
    resolve: { scale: { color: "shared", strokeDash: "shared" }, legend: { color: "shared" } },
    config: CONFIG,
  };
  return await renderPng(spec as TopLevelSpec);
}

/** Writes `png` to `path` atomically (a temp file in the same folder, then rename); creates the folder. */
export async function writePng(path: string, png: Uint8Array): Promise<void> {
  await Deno.mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.${Deno.pid}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  try {
    await Deno.writeFile(tmp, png);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}
