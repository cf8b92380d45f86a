/**
 * Convolution (stride 1, "same" padding with zeros or circular wrap, odd kernel k, 2-D or 3-D) as an implicit
 * GEMM, one generator for the three passes of conv training:
 *
 * - forward `y[b,o,p] = Σ_{r,t} A[r,t,o] · x[b, r, p + off(t)]` (+ bias[o]), and the input gradient, which is
 *   the same kernel run on g with the weights transposed and flipped (A is always the re-laid weight tensor
 *   written by `convWeightLayoutKernel`, so both passes read one layout: (r, tap, o) with o padded);
 * - weight gradient `dW[o,r,t] = Σ_{b,p} g[b,o,p] · x[b, r, p + off(t)]`, split-K over rows of pixels (each split
 *   writes a partial that the caller sums).
 *
 * Spatial axes are (H, W[, D]); the last axis is contiguous ("columns"), the one before it "rows", and the leading
 * axis of 3-D data the "lead" axis. Every invocation owns a register tile: rm output channels × ry rows × rn
 * columns (forward), or rm × rc channel pairs × all taps (weight gradient). A row segment of rn + k − 1 inputs is
 * loaded once and reused by every column tap and every output row it touches; weights are read as vec4 over
 * output channels.
 *
 * Two strategies per pass, picked by the per-adapter table in engine/ops/conv.ts:
 * - `stage: true` (GPUs): a workgroup cooperatively copies the input patch (halo and padding applied once, so the
 *   inner loop has no bounds checks) and the weight slab of `bk` reduction channels into workgroup memory;
 * - `stage: false` (CPU adapters): each invocation loads straight from storage, as vec4 along columns where the
 *   column count allows. On lavapipe every storage or workgroup load is a loop over the SIMD lanes (≈ 4 cycles a
 *   lane), so the number of load instructions per FMA decides the speed; staging only adds loads there.
 *
 * Invariants: all shapes, strides and tile sizes are baked-in constants; fixed-trip loops are unrolled (only the
 * reduction-channel, pixel-row and column-segment loops stay loops); any sizes work (edges guarded, padded
 * channels read zeros); the pipeline name encodes shape, padding and tile.
 * (Longer than most files: three passes × two strategies share the padding, row-segment and FMA emitters here.)
 */
import { cachedKernel, type Kernel } from "./common.ts";

export interface ConvGeom {
  batch: number;
  /** Reduction channels: C_in for the forward pass, C_out for the input gradient, C_in (of x) for dW. */
  cin: number;
  /** Output channels: C_out for the forward pass, C_in for the input gradient, C_out (of g) for dW. */
  cout: number;
  /** Spatial sizes (H, W) or (H, W, D); the last axis is contiguous. */
  spatial: readonly number[];
  /** Odd kernel size, the same along every axis. */
  k: number;
  circular: boolean;
}

/** Register and workgroup tiling of the forward / input-gradient kernel. */
export interface ConvTile {
  /** Workgroup-memory staging (GPUs) or direct loads (CPU adapters). */
  stage: boolean;
  /** Output channels per invocation (multiple of 4: weights are read as vec4 over output channels). */
  rm: number;
  /** Rows (second-to-last spatial axis) per invocation. */
  ry: number;
  /** Columns (last axis) per invocation; a multiple of 4 turns on vec4 loads when the column count allows. */
  rn: number;
  /** Direct: invocations per workgroup. */
  wg: number;
  /** Staged: invocations per workgroup along output channels, rows and columns. */
  tm: number;
  ty: number;
  tx: number;
  /** Staged: reduction channels copied to workgroup memory per step. */
  bk: number;
}

/** Tiling of the weight-gradient kernel. */
export interface WgradTile {
  stage: boolean;
  /** Output channels (of g) per invocation. */
  rm: number;
  /** Reduction channels (of x) per invocation. */
  rc: number;
  /** Columns per step (direct: vec4 when it and the column count are multiples of 4; staged: segment width). */
  rn: number;
  /** Direct: pixel rows per step (ry + k − 1 input rows serve ry rows of g); staged steps one row. */
  ry: number;
  /** Direct: invocations per workgroup. */
  wg: number;
  /** Staged: invocations per workgroup along output and reduction channels. */
  tm: number;
  tc: number;
}

export interface ConvConfig extends ConvGeom {
  tile: ConvTile;
  bias: boolean;
}

export interface WgradConfig extends ConvGeom {
  tile: WgradTile;
  /** Split-K factor: pixel rows are cut into this many ranges, each writing its own partial dW. */
  splits: number;
}

interface Dims {
  n: number;
  /** Sizes of the lead (1 for 2-D), row and column axes, and pixels per channel. */
  sz: number;
  sr: number;
  sl: number;
  p: number;
  /** Halo (k − 1) / 2, taps along the lead axis, taps in all. */
  h: number;
  kz: number;
  taps: number;
}

function dims(g: ConvGeom): Dims {
  const n = g.spatial.length;
  if (n !== 2 && n !== 3) throw new Error(`conv: 2 or 3 spatial axes, got ${n}`);
  if (g.k < 1 || g.k % 2 !== 1) throw new Error(`conv: kernel size must be odd, got ${g.k}`);
  const sz = n === 3 ? g.spatial[0] : 1;
  const sr = g.spatial[n - 2], sl = g.spatial[n - 1];
  return { n, sz, sr, sl, p: sz * sr * sl, h: (g.k - 1) / 2, kz: n === 3 ? g.k : 1, taps: g.k ** n };
}

const ceilTo = (x: number, m: number) => Math.ceil(x / m) * m;

/** Vector width of column loads in the direct kernels: 4 when columns and the tile allow it. */
export function columnVector(sl: number, rn: number, h: number): 1 | 4 {
  return sl % 4 === 0 && rn % 4 === 0 && h <= 4 ? 4 : 1;
}

/** Padded sizes of the re-laid weights A[r, tap, o] a forward/input-gradient kernel expects. */
export function weightLayoutDims(c: ConvConfig): { rp: number; op: number } {
  const t = c.tile;
  return t.stage
    ? { rp: ceilTo(c.cin, t.bk), op: ceilTo(c.cout, t.tm * t.rm) }
    : { rp: c.cin, op: ceilTo(c.cout, t.rm) };
}

/** WGSL defining `name` (an in-range u32 index) and `nameV` (in range before wrapping/clamping). */
function coord(name: string, e: string, size: number, circular: boolean): string {
  if (circular) return `let ${name} = u32(((${e}) % ${size} + ${size}) % ${size});`;
  return `let ${name}S = ${e}; let ${name} = u32(clamp(${name}S, 0, ${size - 1})); ` +
    `let ${name}V = ${name}S >= 0 && ${name}S < ${size};`;
}

/** Conjunction of validity flags (circular padding has none). */
function all(conds: (string | null)[]): string | null {
  const c = conds.filter((x): x is string => !!x);
  return c.length ? c.join(" && ") : null;
}

function guarded(zero: string, load: string, cond: string | null): string {
  return cond ? `select(${zero}, ${load}, ${cond})` : load;
}

/**
 * Column coordinates of one row segment (direct kernels): definitions computed once per segment position, and
 * per segment value j (0 ≤ j < rn + k − 1, column x0 + j − h) a function giving its WGSL expression from a row
 * base index and row validity.
 */
function directColumns(sl: number, rn: number, h: number, vw: 1 | 4, circular: boolean, x0: string) {
  const defs: string[] = [];
  const len = rn + 2 * h;
  // Without a partial last tile, the tile's own columns are always in range: no wrap, clamp or select.
  const interior = (o: number) => sl % rn === 0 && o >= 0 && o < rn;
  const column = (name: string, o: number, at: string, size: number) => {
    if (interior(o)) return { def: `let ${name} = ${at} + ${o / (vw === 4 ? 4 : 1)}u;`, valid: null };
    return {
      def: coord(name, `i32(${at}) + ${o / (vw === 4 ? 4 : 1)}`, size, circular),
      valid: circular ? null : `${name}V`,
    };
  };
  if (vw === 4) {
    const nv = rn / 4, qlo = h > 0 ? -1 : 0, qhi = nv - 1 + (h > 0 ? 1 : 0);
    const qn = (q: number) => (q < 0 ? "cqm" : `cq${q}`);
    const cols = new Map<number, string | null>();
    for (let q = qlo; q <= qhi; q++) {
      const col = column(qn(q), 4 * q, `${x0} / 4u`, sl / 4);
      defs.push(col.def);
      cols.set(q, col.valid);
    }
    const loads = (arr: string, rb: string, rowV: string | null, tag: string) => {
      const lines: string[] = [];
      for (let q = qlo; q <= qhi; q++) {
        const cond = all([rowV, cols.get(q)!]);
        lines.push(
          `let ${tag}u${q < 0 ? "m" : q} = ${guarded("vec4<f32>()", `${arr}[${rb} + ${qn(q)}]`, cond)};`,
        );
      }
      const vals = Array.from({ length: len }, (_, j) => {
        const o = j - h, q = Math.floor(o / 4), comp = o - 4 * q;
        return `${tag}u${q < 0 ? "m" : q}[${comp}]`;
      });
      return { lines, vals };
    };
    return { defs, loads };
  }
  const valid: (string | null)[] = [];
  for (let j = 0; j < len; j++) {
    const col = column(`cc${j}`, j - h, x0, sl);
    defs.push(col.def);
    valid.push(col.valid);
  }
  const loads = (arr: string, rb: string, rowV: string | null, tag: string) => {
    const lines = Array.from({ length: len }, (_, j) => {
      const cond = all([rowV, valid[j]]);
      return `let ${tag}v${j} = ${guarded("0.0", `${arr}[${rb} + cc${j}]`, cond)};`;
    });
    return { lines, vals: Array.from({ length: len }, (_, j) => `${tag}v${j}`) };
  };
  return { defs, loads };
}

/**
 * Coordinates of the lead (3-D) and row axes for input rows y0 − h … y0 − h + rows − 1 (direct kernels), and the
 * offset and validity of row r under lead tap dz. Rows in `interior` are known in range: no wrap, clamp or flag.
 */
function rowCoords(
  d: Dims,
  c: ConvGeom,
  z: string,
  y0: string,
  rows: number,
  interior: (r: number) => boolean,
) {
  const lines: string[] = [];
  if (d.n === 3) {
    for (let dz = 0; dz < d.kz; dz++) {
      lines.push(coord(`rz${dz}`, `i32(${z}) + ${dz - d.h}`, d.sz, c.circular));
    }
  }
  for (let r = 0; r < rows; r++) {
    lines.push(
      interior(r)
        ? `let ry${r} = ${y0} + ${r - d.h}u;`
        : coord(`ry${r}`, `i32(${y0}) + ${r - d.h}`, d.sr, c.circular),
    );
  }
  const row = (dz: number, r: number): { off: string; valid: string | null } => ({
    off: d.n === 3 ? `(rz${dz} * ${d.sr}u + ry${r}) * ${d.sl}u` : `ry${r} * ${d.sl}u`,
    valid: c.circular ? null : all([d.n === 3 ? `rz${dz}V` : null, interior(r) ? null : `ry${r}V`]),
  });
  return { lines, row };
}

const BIND_RO = (i: number, name: string, type: string) =>
  `@group(0) @binding(${i}) var<storage, read> ${name}: array<${type}>;`;
const BIND_RW = (i: number, name: string, type: string) =>
  `@group(0) @binding(${i}) var<storage, read_write> ${name}: array<${type}>;`;

function geomTag(c: ConvGeom): string {
  return `${c.batch}x${c.cin}x${c.cout}x${c.spatial.join("x")}_k${c.k}${c.circular ? "c" : "z"}`;
}

// ---------------------------------------------------------------------------------------------------------------
// Forward / input gradient

/** Workgroup grid of a forward / input-gradient dispatch. */
export function convGrid(c: ConvConfig, maxPerDim: number): [number, number, number] {
  const d = dims(c), t = c.tile;
  const { op } = weightLayoutDims(c);
  const groups = t.stage
    ? c.batch * d.sz * Math.ceil(d.sr / (t.ty * t.ry)) * Math.ceil(d.sl / (t.tx * t.rn))
    : Math.ceil(c.batch * d.sz * Math.ceil(d.sr / t.ry) * Math.ceil(d.sl / t.rn) / t.wg);
  const y = Math.ceil(groups / maxPerDim);
  return [Math.ceil(groups / y), y, op / (t.stage ? t.tm * t.rm : t.rm)];
}

/**
 * Bindings: x (B, cin, ...S), A (rp, taps, op) as vec4 over o, [bias (cout)], y (B, cout, ...S).
 * Output channels past cout, rows and columns past the edge are computed on clamped inputs and never stored.
 */
function buildConvKernel(c: ConvConfig): Kernel {
  const d = dims(c), t = c.tile;
  if (t.rm % 4 !== 0) throw new Error(`conv tile: rm must be a multiple of 4, got ${t.rm}`);
  const body = t.stage ? stagedForward(c, d) : directForward(c, d);
  const vw = t.stage ? 1 : columnVector(d.sl, t.rn, d.h);
  const xt = vw === 4 ? "vec4<f32>" : "f32";
  const decls = [BIND_RO(0, "X", xt), BIND_RO(1, "A", "vec4<f32>")];
  if (c.bias) decls.push(BIND_RO(2, "bias", "f32"));
  decls.push(BIND_RW(c.bias ? 3 : 2, "Y", xt));
  const tileTag = t.stage
    ? `s${t.tm}x${t.ty}x${t.tx}_r${t.rm}x${t.ry}x${t.rn}_k${t.bk}`
    : `d${t.wg}_r${t.rm}x${t.ry}x${t.rn}v${vw}`;
  return {
    name: `conv${d.n}d_${geomTag(c)}${c.bias ? "_b" : ""}_${tileTag}`,
    code: `${decls.join("\n")}\n${body}`,
  };
}

/** acc{m}_{yy}_{r} += A[tap, m] · v[r + dx] for every (yy, dx) that input row `row` of lead tap dz feeds. */
function forwardFmas(
  c: ConvGeom,
  t: ConvTile,
  row: number,
  dz: number,
  vals: string[],
  w: (tap: number, g: number) => string,
) {
  const out: string[] = [];
  for (let yy = 0; yy < t.ry; yy++) {
    const dy = row - yy;
    if (dy < 0 || dy >= c.k) continue;
    for (let dx = 0; dx < c.k; dx++) {
      const tap = (dz * c.k + dy) * c.k + dx;
      for (let g = 0; g < t.rm / 4; g++) {
        for (let mm = 0; mm < 4; mm++) {
          const m = g * 4 + mm;
          for (let r = 0; r < t.rn; r++) {
            out.push(`a${m}_${yy}_${r} = fma(${w(tap, g)}[${mm}], ${vals[r + dx]}, a${m}_${yy}_${r});`);
          }
        }
      }
    }
  }
  return out;
}

function accDecls(...sizes: number[]): string[] {
  const out: string[] = [];
  const rec = (prefix: string, i: number) => {
    if (i === sizes.length) return void out.push(`var a${prefix} = 0.0;`);
    for (let j = 0; j < sizes[i]; j++) rec(`${prefix}${i ? "_" : ""}${j}`, i + 1);
  };
  rec("", 0);
  return out;
}

/** Store acc (+ bias) for output channel co (of the tile's m), row index, column x. */
function forwardStores(
  c: ConvConfig,
  d: Dims,
  t: ConvTile,
  vw: 1 | 4,
  co0: string,
  z: string,
  y0: string,
  x0: string,
) {
  const out: string[] = [];
  for (let m = 0; m < t.rm; m++) {
    const co = `${co0} + ${m}u`;
    const bias = c.bias ? ` + bias[min(${co}, ${c.cout - 1}u)]` : "";
    for (let yy = 0; yy < t.ry; yy++) {
      const rowOk = `${y0} + ${yy}u < ${d.sr}u && ${co} < ${c.cout}u`;
      const base = `((b * ${c.cout}u + ${co}) * ${d.p}u + (${
        d.n === 3 ? `${z} * ${d.sr}u + ` : ""
      }${y0} + ${yy}u) * ${d.sl}u + ${x0})`;
      if (vw === 4) {
        for (let q = 0; q < t.rn / 4; q++) {
          const v = [0, 1, 2, 3].map((l) => `a${m}_${yy}_${4 * q + l}`).join(", ");
          out.push(
            `if (${rowOk} && ${x0} + ${
              4 * q
            }u < ${d.sl}u) { Y[${base} / 4u + ${q}u] = vec4<f32>(${v})${bias}; }`,
          );
        }
      } else {
        for (let r = 0; r < t.rn; r++) {
          out.push(
            `if (${rowOk} && ${x0} + ${r}u < ${d.sl}u) { Y[${base} + ${r}u] = a${m}_${yy}_${r}${bias}; }`,
          );
        }
      }
    }
  }
  return out;
}

function directForward(c: ConvConfig, d: Dims): string {
  const t = c.tile;
  const vw = columnVector(d.sl, t.rn, d.h);
  const { op } = weightLayoutDims(c);
  const gy = Math.ceil(d.sr / t.ry), gx = Math.ceil(d.sl / t.rn);
  const perImage = d.sz * gy * gx, groups = c.batch * perImage;
  const rows = t.ry + c.k - 1;
  const cols = directColumns(d.sl, t.rn, d.h, vw, c.circular, "x0");
  // Without a partial last row tile, the tile's own rows are always in range.
  const rc = rowCoords(d, c, "z", "y0", rows, (r) => d.sr % t.ry === 0 && r >= d.h && r < d.h + t.ry);
  const body: string[] = [];
  for (let dz = 0; dz < d.kz; dz++) {
    body.push("{");
    // Weights of this lead tap: (k² taps) × (rm / 4) vec4, loaded once per reduction channel.
    for (let tp = 0; tp < c.k * c.k; tp++) {
      for (let g = 0; g < t.rm / 4; g++) {
        body.push(`let w${tp}_${g} = A[wb + ${(dz * c.k * c.k + tp) * (op / 4) + g}u];`);
      }
    }
    for (let r = 0; r < rows; r++) {
      const { off, valid } = rc.row(dz, r);
      const seg = cols.loads("X", `rb${dz}_${r}`, valid, `s${dz}_${r}`);
      body.push(`let rb${dz}_${r} = xb + ${vw === 4 ? `(${off}) / 4u` : off};`, ...seg.lines);
      body.push(...forwardFmas(c, t, r, dz, seg.vals, (tap, g) => `w${tap - dz * c.k * c.k}_${g}`));
    }
    body.push("}");
  }
  return `@compute @workgroup_size(${t.wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = (wid.x + wid.y * nwg.x) * ${t.wg}u + li;
  if (i >= ${groups}u) { return; }
  let co0 = wid.z * ${t.rm}u;
  let b = i / ${perImage}u;
  let rem = i % ${perImage}u;
  let z = rem / ${gy * gx}u;
  let y0 = ((rem / ${gx}u) % ${gy}u) * ${t.ry}u;
  let x0 = (rem % ${gx}u) * ${t.rn}u;
  ${rc.lines.join("\n  ")}
  ${cols.defs.join("\n  ")}
  ${accDecls(t.rm, t.ry, t.rn).join("\n  ")}
  for (var ci = 0u; ci < ${c.cin}u; ci++) {
    let xb = (b * ${c.cin}u + ci) * ${d.p / vw}u;
    let wb = ci * ${(d.taps * op) / 4}u + co0 / 4u;
    ${body.join("\n    ")}
  }
  ${forwardStores(c, d, t, vw, "co0", "z", "y0", "x0").join("\n  ")}
}`;
}

/** Unrolled cooperative copy: `count` items over `threads` invocations, `item(e)` WGSL for item index `e`. */
function cooperative(count: number, threads: number, item: (e: string) => string): string[] {
  const out: string[] = [];
  for (let s = 0; s < count; s += threads) {
    const guard = s + threads <= count ? "" : `if (li + ${s}u < ${count}u) `;
    out.push(`${guard}{ let e = li + ${s}u; ${item("e")} }`);
  }
  return out;
}

/** WGSL reading input element (ci, lead zz, row yy, column xx) (signed i32 coordinates) with padding applied. */
function paddedLoad(
  d: Dims,
  c: ConvGeom,
  arr: string,
  chanBase: string,
  zz: string,
  yy: string,
  xx: string,
  extra: string | null,
) {
  const lines = [
    coord("pz", zz, d.sz, c.circular),
    coord("py", yy, d.sr, c.circular),
    coord("px", xx, d.sl, c.circular),
  ];
  const cond = all([extra, c.circular ? null : `${d.n === 3 ? "pzV && " : ""}pyV && pxV`]);
  const load = `${arr}[${chanBase} + (${d.n === 3 ? `pz * ${d.sr}u + ` : ""}py) * ${d.sl}u + px]`;
  return { lines: d.n === 3 ? lines : lines.slice(1), value: guarded("0.0", load, cond) };
}

function stagedForward(c: ConvConfig, d: Dims): string {
  const t = c.tile;
  const { rp, op } = weightLayoutDims(c);
  const threads = t.tm * t.ty * t.tx, bm = t.tm * t.rm, br = t.ty * t.ry, bc = t.tx * t.rn;
  const pr = br + c.k - 1, pc = bc + c.k - 1, plane = d.kz * pr * pc;
  const tilesY = Math.ceil(d.sr / br), tilesX = Math.ceil(d.sl / bc), perImage = d.sz * tilesY * tilesX;
  const patch = cooperative(t.bk * plane, threads, (e) => {
    const ld = paddedLoad(
      d,
      c,
      "X",
      `(b * ${c.cin}u + min(cr, ${c.cin - 1}u)) * ${d.p}u`,
      `i32(z) + i32((${e} / ${pr * pc}u) % ${d.kz}u) - ${d.h}`,
      `i32(y0) + i32((${e} / ${pc}u) % ${pr}u) - ${d.h}`,
      `i32(x0) + i32(${e} % ${pc}u) - ${d.h}`,
      `cr < ${c.cin}u`,
    );
    return `let cr = kc + ${e} / ${plane}u; ${ld.lines.join(" ")} XS[${e}] = ${ld.value};`;
  });
  const wslab = cooperative(
    t.bk * d.taps * (bm / 4),
    threads,
    (e) =>
      `WS[${e}] = A[(kc + ${e} / ${d.taps * (bm / 4)}u) * ${(d.taps * op) / 4}u + ((${e} / ${
        bm / 4
      }u) % ${d.taps}u) * ${op / 4}u + co0 / 4u + ${e} % ${bm / 4}u];`,
  );
  // One reduction channel of the staged slab per iteration: the body (k^N taps × the register tile) is large,
  // so the loop counter costs nothing and the shader stays bk times smaller than an unrolled one.
  const compute: string[] = [];
  const k2 = c.k * c.k;
  for (let dz = 0; dz < d.kz; dz++) {
    // This lead tap's k² weight vec4s, read from workgroup memory once and reused by every row below.
    compute.push("{");
    for (let tp = 0; tp < k2; tp++) {
      for (let g = 0; g < t.rm / 4; g++) {
        compute.push(`let w${tp}_${g} = WS[wc + ${(dz * k2 + tp) * (bm / 4) + g}u];`);
      }
    }
    for (let r = 0; r < t.ry + c.k - 1; r++) {
      const vals = Array.from({ length: t.rn + c.k - 1 }, (_, j) => `v${r}_${j}`);
      vals.forEach((v, j) => compute.push(`let ${v} = XS[xc + ${(dz * pr + r) * pc + j}u];`));
      compute.push(...forwardFmas(c, t, r, dz, vals, (tap, g) => `w${tap - dz * k2}_${g}`));
    }
    compute.push("}");
  }
  return `var<workgroup> XS: array<f32, ${t.bk * plane}>;
var<workgroup> WS: array<vec4<f32>, ${t.bk * d.taps * (bm / 4)}>;
@compute @workgroup_size(${threads})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let tile = wid.x + wid.y * nwg.x;
  let live = tile < ${c.batch * perImage}u;
  let tl = min(tile, ${c.batch * perImage - 1}u);
  let co0 = wid.z * ${bm}u;
  let b = tl / ${perImage}u;
  let rem = tl % ${perImage}u;
  let z = rem / ${tilesY * tilesX}u;
  let y0 = ((rem / ${tilesX}u) % ${tilesY}u) * ${br}u;
  let x0 = (rem % ${tilesX}u) * ${bc}u;
  let tm = li / ${t.ty * t.tx}u;
  let ty = (li / ${t.tx}u) % ${t.ty}u;
  let tx = li % ${t.tx}u;
  ${accDecls(t.rm, t.ry, t.rn).join("\n  ")}
  for (var kc = 0u; kc < ${rp}u; kc += ${t.bk}u) {
    ${patch.join("\n    ")}
    ${wslab.join("\n    ")}
    workgroupBarrier();
    for (var cc = 0u; cc < ${t.bk}u; cc++) {
      let xc = cc * ${plane}u + ty * ${t.ry * pc}u + tx * ${t.rn}u;
      let wc = cc * ${d.taps * (bm / 4)}u + tm * ${t.rm / 4}u;
      ${compute.join("\n      ")}
    }
    workgroupBarrier();
  }
  if (!live) { return; }
  let co = co0 + tm * ${t.rm}u;
  let ys = y0 + ty * ${t.ry}u;
  let xs = x0 + tx * ${t.rn}u;
  ${forwardStores(c, d, t, 1, "co", "z", "ys", "xs").join("\n  ")}
}`;
}

// ---------------------------------------------------------------------------------------------------------------
// Weight gradient

/** Row tiles of a weight-gradient pass: ry pixel rows (1 when staged) of one (batch, lead) plane each. */
export function wgradRowTiles(c: Omit<WgradConfig, "splits">): number {
  const d = dims(c);
  return c.batch * d.sz * Math.ceil(d.sr / (c.tile.stage ? 1 : c.tile.ry));
}

export function wgradGrid(c: WgradConfig): [number, number, number] {
  const t = c.tile;
  if (t.stage) return [Math.ceil(c.cout / (t.tm * t.rm)), Math.ceil(c.cin / (t.tc * t.rc)), c.splits];
  return [Math.ceil(Math.ceil(c.cin / t.rc) / t.wg), Math.ceil(c.cout / t.rm), c.splits];
}

/**
 * Bindings: x (B, cin, ...S), g (B, cout, ...S), partial (splits, cout, cin, taps).
 * Each invocation owns rm × rc channel pairs × all taps and sums them over its split's pixel rows.
 */
function buildWgradKernel(c: WgradConfig): Kernel {
  const d = dims(c), t = c.tile;
  const vw = t.stage ? 1 : columnVector(d.sl, t.rn, d.h);
  const xt = vw === 4 ? "vec4<f32>" : "f32";
  const decls = [BIND_RO(0, "X", xt), BIND_RO(1, "G", xt), BIND_RW(2, "P", "f32")];
  const body = t.stage ? stagedWgrad(c, d) : directWgrad(c, d, vw);
  const tileTag = t.stage
    ? `s${t.tm}x${t.tc}_r${t.rm}x${t.rc}x${t.rn}`
    : `d${t.wg}_r${t.rm}x${t.rc}x${t.ry}x${t.rn}v${vw}`;
  return {
    name: `conv${d.n}d_wgrad_${geomTag(c)}_x${c.splits}_${tileTag}`,
    code: `${decls.join("\n")}\n${body}`,
  };
}

/** acc{m}_{c}_{tap} += g[m][r] · v[r + dx] for the input row (dz, dy) of reduction channel c. */
function wgradFmas(
  c: ConvGeom,
  rn: number,
  rm: number,
  ch: number,
  dz: number,
  dy: number,
  vals: string[],
  gv: (m: number, r: number) => string,
) {
  const out: string[] = [];
  // Columns outermost: consecutive FMAs update different accumulators instead of one long dependent chain.
  for (let r = 0; r < rn; r++) {
    for (let dx = 0; dx < c.k; dx++) {
      const tap = (dz * c.k + dy) * c.k + dx;
      for (let m = 0; m < rm; m++) {
        out.push(`a${m}_${ch}_${tap} = fma(${gv(m, r)}, ${vals[r + dx]}, a${m}_${ch}_${tap});`);
      }
    }
  }
  return out;
}

function wgradStores(c: WgradConfig, d: Dims, rm: number, rc: number, co0: string, ci0: string): string[] {
  const out: string[] = [];
  for (let m = 0; m < rm; m++) {
    for (let ch = 0; ch < rc; ch++) {
      const row = `((s * ${c.cout}u + ${co0} + ${m}u) * ${c.cin}u + ${ci0} + ${ch}u) * ${d.taps}u`;
      const stores = Array.from({ length: d.taps }, (_, tap) => `P[${row} + ${tap}u] = a${m}_${ch}_${tap};`);
      out.push(`if (${co0} + ${m}u < ${c.cout}u && ${ci0} + ${ch}u < ${c.cin}u) { ${stores.join(" ")} }`);
    }
  }
  return out;
}

/** Loop header over this split's row tiles of `ry` rows: defines b, z and the first row y. */
function wgradRowLoop(c: WgradConfig, d: Dims, ry: number): string {
  const total = wgradRowTiles(c), per = Math.ceil(total / c.splits), gy = Math.ceil(d.sr / ry);
  return `for (var rr = s * ${per}u; rr < min(${total}u, s * ${per}u + ${per}u); rr++) {
    let b = rr / ${d.sz * gy}u;
    let z = (rr / ${gy}u) % ${d.sz}u;
    let y = (rr % ${gy}u) * ${ry}u;`;
}

function directWgrad(c: WgradConfig, d: Dims, vw: 1 | 4): string {
  const t = c.tile;
  const nseg = Math.ceil(d.sl / t.rn), rowTail = d.sr % t.ry !== 0, colTail = d.sl % t.rn !== 0;
  const cols = directColumns(d.sl, t.rn, d.h, vw, c.circular, "x0");
  const rows = t.ry + c.k - 1;
  const rc = rowCoords(d, c, "z", "y", rows, (r) => !rowTail && r >= d.h && r < d.h + t.ry);
  const seg: string[] = [];
  // g over the tile: ry × rm × rn values, zero past the last row or column so tail pixels add nothing.
  for (let yy = 0; yy < t.ry; yy++) {
    const gRow = rowTail ? `min(y + ${yy}u, ${d.sr - 1}u)` : `y + ${yy}u`;
    const rowOk = rowTail ? `y + ${yy}u < ${d.sr}u` : null;
    for (let m = 0; m < t.rm; m++) {
      const base = `(b * ${c.cout}u + com${m}) * ${d.p / vw}u + (zrow + ${gRow}) * ${d.sl / vw}u`;
      for (let q = 0; q < t.rn / vw; q++) {
        const col = vw === 4 ? `x0 / 4u + ${q}u` : `x0 + ${q}u`;
        const idx = colTail ? `min(${col}, ${d.sl / vw - 1}u)` : col;
        const ok = all([rowOk, colTail ? `x0 + ${vw * q}u < ${d.sl}u` : null]);
        seg.push(
          `let g${yy}_${m}_${q} = ${guarded(vw === 4 ? "vec4<f32>()" : "0.0", `G[${base} + ${idx}]`, ok)};`,
        );
      }
    }
  }
  const gv = (yy: number) => (m: number, r: number) =>
    vw === 4 ? `g${yy}_${m}_${r >> 2}[${r & 3}]` : `g${yy}_${m}_${r}`;
  for (let ch = 0; ch < t.rc; ch++) {
    seg.push(`let xb${ch} = (b * ${c.cin}u + cim${ch}) * ${d.p / vw}u;`);
    for (let dz = 0; dz < d.kz; dz++) {
      for (let r = 0; r < rows; r++) {
        const { off, valid } = rc.row(dz, r);
        const ld = cols.loads(
          "X",
          `xb${ch} + ${vw === 4 ? `(${off}) / 4u` : off}`,
          valid,
          `s${ch}_${dz}_${r}`,
        );
        seg.push(...ld.lines);
        for (let yy = 0; yy < t.ry; yy++) {
          const dy = r - yy;
          if (dy >= 0 && dy < c.k) seg.push(...wgradFmas(c, t.rn, t.rm, ch, dz, dy, ld.vals, gv(yy)));
        }
      }
    }
  }
  const clampCh = [
    ...Array.from({ length: t.rm }, (_, m) => `let com${m} = min(co0 + ${m}u, ${c.cout - 1}u);`),
    ...Array.from({ length: t.rc }, (_, ch) => `let cim${ch} = min(ci0 + ${ch}u, ${c.cin - 1}u);`),
  ];
  return `@compute @workgroup_size(${t.wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  let cb = wid.x * ${t.wg}u + li;
  if (cb >= ${Math.ceil(c.cin / t.rc)}u) { return; }
  let ci0 = cb * ${t.rc}u;
  let co0 = wid.y * ${t.rm}u;
  let s = wid.z;
  ${clampCh.join("\n  ")}
  ${accDecls(t.rm, t.rc, d.taps).join("\n  ")}
  ${wgradRowLoop(c, d, t.ry)}
    let zrow = z * ${d.sr}u;
    ${rc.lines.join("\n    ")}
    for (var sx = 0u; sx < ${nseg}u; sx++) {
      let x0 = sx * ${t.rn}u;
      ${cols.defs.join("\n      ")}
      ${seg.join("\n      ")}
    }
  }
  ${wgradStores(c, d, t.rm, t.rc, "co0", "ci0").join("\n  ")}
}`;
}

function stagedWgrad(c: WgradConfig, d: Dims): string {
  const t = c.tile;
  const threads = t.tm * t.tc, bm = t.tm * t.rm, bcc = t.tc * t.rc, sw = t.rn + c.k - 1;
  const nseg = Math.ceil(d.sl / t.rn), xplane = d.kz * c.k * sw;
  const gcopy = cooperative(bm * t.rn, threads, (e) => {
    const co = `co0 + ${e} / ${t.rn}u`, col = `x0 + ${e} % ${t.rn}u`;
    return `GS[${e}] = select(0.0, G[(b * ${c.cout}u + min(${co}, ${
      c.cout - 1
    }u)) * ${d.p}u + grow + min(${col}, ${d.sl - 1}u)], ` +
      `${co} < ${c.cout}u && ${col} < ${d.sl}u);`;
  });
  const xcopy = cooperative(bcc * xplane, threads, (e) => {
    const ci = `ci0 + ${e} / ${xplane}u`;
    const ld = paddedLoad(
      d,
      c,
      "X",
      `(b * ${c.cin}u + min(${ci}, ${c.cin - 1}u)) * ${d.p}u`,
      `i32(z) + i32((${e} / ${c.k * sw}u) % ${d.kz}u) - ${d.h}`,
      `i32(y) + i32((${e} / ${sw}u) % ${c.k}u) - ${d.h}`,
      `i32(x0) + i32(${e} % ${sw}u) - ${d.h}`,
      `${ci} < ${c.cin}u`,
    );
    return `${ld.lines.join(" ")} XS[${e}] = ${ld.value};`;
  });
  const compute: string[] = [];
  for (let m = 0; m < t.rm; m++) {
    for (let r = 0; r < t.rn; r++) {
      compute.push(`let g${m}_${r} = GS[(tm * ${t.rm}u + ${m}u) * ${t.rn}u + ${r}u];`);
    }
  }
  for (let ch = 0; ch < t.rc; ch++) {
    for (let dz = 0; dz < d.kz; dz++) {
      for (let dy = 0; dy < c.k; dy++) {
        const base = `(tc * ${t.rc}u + ${ch}u) * ${xplane}u + ${(dz * c.k + dy) * sw}u`;
        const vals = Array.from({ length: sw }, (_, j) => `v${ch}_${dz}_${dy}_${j}`);
        vals.forEach((v, j) => compute.push(`let ${v} = XS[${base} + ${j}u];`));
        compute.push(...wgradFmas(c, t.rn, t.rm, ch, dz, dy, vals, (m, r) => `g${m}_${r}`));
      }
    }
  }
  return `var<workgroup> GS: array<f32, ${bm * t.rn}>;
var<workgroup> XS: array<f32, ${bcc * xplane}>;
@compute @workgroup_size(${threads})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  let co0 = wid.x * ${bm}u;
  let ci0 = wid.y * ${bcc}u;
  let s = wid.z;
  let tm = li / ${t.tc}u;
  let tc = li % ${t.tc}u;
  ${accDecls(t.rm, t.rc, d.taps).join("\n  ")}
  ${wgradRowLoop(c, d, 1)}
    let grow = ${d.n === 3 ? `(z * ${d.sr}u + y)` : "y"} * ${d.sl}u;
    for (var sx = 0u; sx < ${nseg}u; sx++) {
      let x0 = sx * ${t.rn}u;
      ${gcopy.join("\n      ")}
      ${xcopy.join("\n      ")}
      workgroupBarrier();
      ${compute.join("\n      ")}
      workgroupBarrier();
    }
  }
  ${wgradStores(c, d, t.rm, t.rc, "co0 + tm * " + t.rm + "u", "ci0 + tc * " + t.rc + "u").join("\n  ")}
}`;
}

// ---------------------------------------------------------------------------------------------------------------
// Weight re-layout

export interface WeightLayoutConfig {
  /** Weight (cout, cin, taps) as stored (PyTorch layout). */
  cout: number;
  cin: number;
  taps: number;
  /** forward: A[r = ci, t, o = co]; input_grad: A[r = co, t, o = ci] with taps reversed (the adjoint). */
  pass: "forward" | "input_grad";
  rp: number;
  op: number;
}

export const LAYOUT_WG = 256;

/** Bindings: W (cout, cin, taps), A (rp, taps, op); zeros in the padding. */
function buildConvWeightLayoutKernel(c: WeightLayoutConfig): Kernel {
  const n = c.rp * c.taps * c.op;
  const fwd = c.pass === "forward";
  const [rMax, oMax] = fwd ? [c.cin, c.cout] : [c.cout, c.cin];
  const src = fwd
    ? `(o * ${c.cin}u + r) * ${c.taps}u + t`
    : `(r * ${c.cin}u + o) * ${c.taps}u + ${c.taps - 1}u - t`;
  const code = `@group(0) @binding(0) var<storage, read> W: array<f32>;
@group(0) @binding(1) var<storage, read_write> A: array<f32>;
@compute @workgroup_size(${LAYOUT_WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * ${LAYOUT_WG}u;
  if (i >= ${n}u) { return; }
  let o = i % ${c.op}u;
  let t = (i / ${c.op}u) % ${c.taps}u;
  let r = i / ${c.op * c.taps}u;
  let ok = r < ${rMax}u && o < ${oMax}u;
  A[i] = select(0.0, W[select(0u, ${src}, ok)], ok);
}`;
  return { name: `conv_wlayout_${c.pass}_${c.cout}x${c.cin}x${c.taps}_to_${c.rp}x${c.op}`, code };
}

// One Kernel object per arguments (kernels/common.ts cachedKernel).
export const convKernel = cachedKernel(buildConvKernel);
export const wgradKernel = cachedKernel(buildWgradKernel);
export const convWeightLayoutKernel = cachedKernel(buildConvWeightLayoutKernel);
