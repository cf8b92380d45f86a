/**
 * Row-wise kernels over the last axis: softmax, layer_norm and rms_norm, forward and backward.
 *
 * One workgroup per row; each invocation keeps its ceil(D/W) strided elements in registers (vec4s when D is a
 * multiple of 4) so a row is read from memory once; these ops are bandwidth-bound. Reductions are as few and
 * as cheap as the math allows: softmax needs a max and a sum, layer_norm a mean and a centred sum of squares
 * (the exact two-pass variance, from registers), the rest one (vec2) sum; each reduction is one barrier and a
 * fold of the partials from constant addresses (see reduceFn). Barriers are the expensive part on a CPU
 * adapter (a coroutine switch of every SIMD group: ~60 ns at W = 32, ~500 ns at 256 on lavapipe), so W is the
 * smallest width that keeps ≤ 8 vec4 per invocation, never below one GPU warp. Rows beyond 65535 spill into the
 * grid's y dimension. Statistics (mean, rstd) are saved per row for the backward.
 */
import { cachedKernel, f32, type Kernel } from "./common.ts";

export type RowOp = "softmax" | "softmax_bwd" | "layer_norm" | "layer_norm_bwd" | "rms_norm" | "rms_norm_bwd";

export interface RowConfig {
  op: RowOp;
  rows: number;
  d: number;
  eps: number;
  /** layer_norm / rms_norm: elementwise weight (and bias for layer_norm) present. */
  affine: boolean;
  /**
   * Rows per workgroup (default 1). With an affine op, weight and bias are loaded once and kept in registers
   * for all of them, so each element costs one load and one store like a copy (see rowsPerGroup()).
   */
  rowsPerGroup?: number;
}

/**
 * Rows per workgroup for a dispatch: 4 for affine ops over enough rows (weight/bias loads shared), else 1. The
 * rows are unrolled, not looped: inside a loop lavapipe treats the body as control flow and loses the uniform
 * loads of reduceFn.
 */
export function rowsPerGroup(op: RowOp, rows: number, affine: boolean): number {
  return affine && op !== "softmax" && op !== "softmax_bwd" && rows >= 64 ? 4 : 1;
}

export function rowWorkgroup(d: number): number {
  let w = 32;
  while (w < 256 && w * 32 < d) w *= 2;
  return w;
}

/** Bindings per op, in order (names used in the WGSL below). */
export function rowBindings(c: RowConfig): string[] {
  switch (c.op) {
    case "softmax":
      return ["x", "y"];
    case "softmax_bwd":
      return ["y", "g", "dx"];
    case "layer_norm":
      return c.affine ? ["x", "w", "b", "y", "mu", "rs"] : ["x", "y", "mu", "rs"];
    case "rms_norm":
      return c.affine ? ["x", "w", "y", "rs"] : ["x", "y", "rs"];
    case "layer_norm_bwd":
      return c.affine ? ["x", "w", "g", "mu", "rs", "dx"] : ["x", "g", "mu", "rs", "dx"];
    case "rms_norm_bwd":
      return c.affine ? ["x", "w", "g", "rs", "dx"] : ["x", "g", "rs", "dx"];
  }
}

/** Forward statistics are outputs there and inputs of the backward. */
const writtenIn = (c: RowConfig, nm: string) =>
  WRITTEN.has(nm) || (!c.op.endsWith("_bwd") && (nm === "mu" || nm === "rs"));
const WRITTEN = new Set(["y", "dx"]);
/** Per-row statistics: always scalar arrays. */
const STATS = new Set(["mu", "rs"]);

const LOWEST = f32(-3.4028234663852886e38);

/** How the generated body addresses a row: units are vec4s (D % 4 == 0) or scalars. */
interface Emit {
  /** `f(j, idx)` for each of the invocation's units, guarded where the last round is partial. */
  each: (f: (j: number, idx: string) => string) => string;
  load: (arr: string, reg: string) => string;
  /** Sum / max of one unit's lanes, and the number of values per unit. */
  hsum: (v: string) => string;
  hmax: (v: string) => string;
  lanes: number;
  /** WGSL type of a unit and a splat of a scalar to it. */
  t: string;
  splat: (s: string) => string;
}

function buildRowKernel(c: RowConfig): Kernel {
  const W = rowWorkgroup(c.d);
  const vec = c.d % 4 === 0;
  const units = vec ? c.d / 4 : c.d;
  const V = Math.ceil(units / W);
  if (V * (vec ? 4 : 1) > 64) {
    throw new Error(`row op over ${c.d} elements exceeds the 16384 supported`);
  }
  const t = vec ? "vec4<f32>" : "f32";
  const decls = rowBindings(c).map((nm, i) => {
    const access = writtenIn(c, nm) ? "read_write" : "read";
    return `@group(0) @binding(${i}) var<storage, ${access}> ${nm}: array<${STATS.has(nm) ? "f32" : t}>;`;
  }).join("\n");
  const guard = (j: number) => (j * W + W <= units ? "" : `lid + ${j * W}u < ${units}u`);
  const each = (f: (j: number, idx: string) => string) =>
    Array.from({ length: V }, (_, j) => {
      const g = guard(j), s = f(j, `lid + ${j * W}u`);
      return g ? `if (${g}) { ${s} }` : s.includes("let ") ? `{ ${s} }` : s;
    }).join("\n  ");
  const e: Emit = {
    each,
    load: (arr, reg) => each((j, idx) => `${reg}[${j}] = ${arr}[base + ${idx}];`),
    hsum: (v) => (vec ? `dot(${v}, vec4<f32>(1.0))` : v),
    hmax: (v) => (vec ? `max(max(${v}.x, ${v}.y), max(${v}.z, ${v}.w))` : v),
    lanes: vec ? 4 : 1,
    t,
    splat: (s) => (vec ? `vec4<f32>(${s})` : s),
  };
  const { reductions, body } = rowBody(c, e);
  const region = W > 64 ? W + W / 8 : W;
  const R = c.rowsPerGroup ?? 1;
  let main: string;
  if (R === 1) {
    // Only dispatches of more than 65535 rows (a 2-D grid) overshoot; elsewhere the check is left out, because
    // after it lavapipe sees the rest of the kernel as control flow and loses the uniform loads of reduceFn.
    const check = c.rows > 65535 ? `if (row >= ${c.rows}u) { return; }` : "";
    main = `let row = wid.x + wid.y * nwg.x;
  ${check}
  let base = row * ${units}u;
  ${body}`;
  } else {
    // Rows past the end repeat the last row (identical values to the same addresses) instead of returning.
    // The barrier between rows keeps a fast invocation's next partials out of `red` until every invocation
    // has folded the previous ones.
    const params = ["w", ...(c.op === "layer_norm" ? ["b"] : [])];
    const pre = params.map((nm) => each((j, idx) => `${nm}r[${j}] = ${nm}[${idx}];`)).join("\n  ");
    const rows = Array.from({ length: R }, (_, r) =>
      `${r ? "workgroupBarrier();\n  " : ""}{
  let row = min(g0 + ${r}u, ${c.rows - 1}u);
  let base = row * ${units}u;
  ${body}
  }`);
    main = `let g0 = (wid.x + wid.y * nwg.x) * ${R}u;
  var wr: array<${t}, ${V}>;
  var br: array<${t}, ${V}>;
  ${pre}
  ${rows.join("\n  ")}`;
  }
  const code = `${decls}
var<workgroup> red: array<vec4<f32>, ${region * reductions.length}>;
${reductions.map((op, slot) => reduceFn(op, slot, W)).join("\n")}
@compute @workgroup_size(${W})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  var xr: array<${t}, ${V}>;
  var gr: array<${t}, ${V}>;
  ${main}
}`;
  const tag = `${vec ? "_v4" : ""}${c.affine ? "_affine" : ""}${R > 1 ? `_r${R}` : ""}`;
  return { name: `${c.op}_${c.rows}x${c.d}_w${W}${tag}`, code };
}

type Reduction = "sum" | "max";

/**
 * One workgroup reduction `reduce_{op}_{slot}(v)` (vec4 payloads, own region of `red`). Every invocation folds
 * the last partials itself from constant addresses: on a GPU those are broadcast reads, on lavapipe uniform
 * loads (one scalar load per SIMD group, where any other load is a per-lane loop), and it saves the barriers
 * of a tree. Past 64 partials, one radix-8 step comes first (one more barrier).
 */
function reduceFn(op: Reduction, slot: number, W: number): string {
  const f = (a: string, b: string) => (op === "sum" ? `${a} + ${b}` : `max(${a}, ${b})`);
  const o = slot * (W > 64 ? W + W / 8 : W);
  const n = W > 64 ? W / 8 : W, src = W > 64 ? o + W : o;
  const step = W > 64
    ? `if (lid < ${n}u) {
    var p = red[${o}u + lid * 8u];
    ${Array.from({ length: 7 }, (_, i) => `p = ${f("p", `red[${o}u + lid * 8u + ${i + 1}u]`)};`).join(" ")}
    red[${src}u + lid] = p;
  }
  workgroupBarrier();`
    : "";
  const fold = Array.from({ length: n - 1 }, (_, i) => `r = ${f("r", `red[${src + i + 1}u]`)};`).join(" ");
  return `fn reduce_${op}_${slot}(v: vec4<f32>, lid: u32) -> vec4<f32> {
  red[${o}u + lid] = v;
  workgroupBarrier();
  ${step}
  var r = red[${src}u];
  ${fold}
  return r;
}`;
}

/** The op's reductions (in slot order) and its body: loads, local statistics, reductions, outputs. */
function rowBody(c: RowConfig, e: Emit): { reductions: Reduction[]; body: string } {
  const inv = f32(1 / c.d), eps = f32(c.eps);
  // With several rows per workgroup the weight and bias sit in registers (wr, br) loaded before the rows.
  const shared = (c.rowsPerGroup ?? 1) > 1;
  const wv = (j: number, idx: string) => (!c.affine ? "1.0" : shared ? `wr[${j}]` : `w[${idx}]`);
  const bv = (j: number, idx: string) => (shared ? `br[${j}]` : `b[${idx}]`);
  const v4 = (x: string, y = "0.0") => `vec4<f32>(${x}, ${y}, 0.0, 0.0)`;
  switch (c.op) {
    case "softmax":
      // Max, then Σexp: two plain reductions (folding online (max, Σ) pairs costs two exps per partial).
      return {
        reductions: ["max", "sum"],
        body: `${e.load("x", "xr")}
  var m = ${LOWEST};
  ${e.each((j) => `m = max(m, ${e.hmax(`xr[${j}]`)});`)}
  m = reduce_max_0(${v4("m")}, lid).x;
  var s = 0.0;
  ${e.each((j) => `xr[${j}] = exp(xr[${j}] - ${e.splat("m")}); s += ${e.hsum(`xr[${j}]`)};`)}
  let scale = 1.0 / reduce_sum_1(${v4("s")}, lid).x;
  ${e.each((j, idx) => `y[base + ${idx}] = xr[${j}] * ${e.splat("scale")};`)}`,
      };
    case "softmax_bwd":
      return {
        reductions: ["sum"],
        body: `${e.load("y", "xr")}
  ${e.load("g", "gr")}
  var s = 0.0;
  ${e.each((j) => `s += ${e.hsum(`xr[${j}] * gr[${j}]`)};`)}
  let tot = reduce_sum_0(${v4("s")}, lid).x;
  ${e.each((j, idx) => `dx[base + ${idx}] = xr[${j}] * (gr[${j}] - ${e.splat("tot")});`)}`,
      };
    case "layer_norm":
      // Mean, then the centred sum of squares, both from registers: the exact two-pass variance.
      return {
        reductions: ["sum", "sum"],
        body: `${e.load("x", "xr")}
  var sx = 0.0;
  ${e.each((j) => `sx += ${e.hsum(`xr[${j}]`)};`)}
  let mean = reduce_sum_0(${v4("sx")}, lid).x * ${inv};
  var ss = 0.0;
  ${e.each((j) => `xr[${j}] = xr[${j}] - ${e.splat("mean")}; ss += ${e.hsum(`xr[${j}] * xr[${j}]`)};`)}
  let rstd = inverseSqrt(reduce_sum_1(${v4("ss")}, lid).x * ${inv} + ${eps});
  ${
          e.each((j, idx) =>
            `y[base + ${idx}] = xr[${j}] * ${e.splat("rstd")} * ${wv(j, idx)}${
              c.affine ? ` + ${bv(j, idx)}` : ""
            };`
          )
        }
  if (lid == 0u) { mu[row] = mean; rs[row] = rstd; }`,
      };
    case "rms_norm":
      return {
        reductions: ["sum"],
        body: `${e.load("x", "xr")}
  var ss = 0.0;
  ${e.each((j) => `ss += ${e.hsum(`xr[${j}] * xr[${j}]`)};`)}
  let rstd = inverseSqrt(reduce_sum_0(${v4("ss")}, lid).x * ${inv} + ${eps});
  ${e.each((j, idx) => `y[base + ${idx}] = xr[${j}] * ${e.splat("rstd")} * ${wv(j, idx)};`)}
  if (lid == 0u) { rs[row] = rstd; }`,
      };
    case "layer_norm_bwd":
    case "rms_norm_bwd": {
      const ln = c.op === "layer_norm_bwd";
      // dx = rstd · (ĝ − mean(ĝ) − x̂ · mean(ĝ x̂)), ĝ = g·w (rms_norm drops the mean(ĝ) term).
      return {
        reductions: ["sum"],
        body: `${e.load("x", "xr")}
  ${e.load("g", "gr")}
  let mean = ${ln ? "mu[row]" : "0.0"};
  let rstd = rs[row];
  var sg = 0.0;
  var sgx = 0.0;
  ${
          e.each((j, idx) =>
            `xr[${j}] = (xr[${j}] - ${e.splat("mean")}) * ${e.splat("rstd")}; gr[${j}] = gr[${j}] * ${
              wv(j, idx)
            }; sg += ${e.hsum(`gr[${j}]`)}; sgx += ${e.hsum(`gr[${j}] * xr[${j}]`)};`
          )
        }
  let r = reduce_sum_0(${v4("sg", "sgx")}, lid) * ${inv};
  let mg = ${ln ? "r.x" : "0.0"};
  ${
          e.each((j, idx) =>
            `dx[base + ${idx}] = ${e.splat("rstd")} * (gr[${j}] - ${e.splat("mg")} - xr[${j}] * ${
              e.splat("r.y")
            });`
          )
        }`,
      };
    }
  }
}

// One Kernel object per arguments (kernels/common.ts cachedKernel).
export const rowKernel = cachedKernel(buildRowKernel);
