/**
 * Row-wise kernels over the last axis: softmax, layer_norm and rms_norm, forward and backward.
 *
 * One workgroup per row; each invocation keeps its ceil(D/W) strided elements in registers so a row is read
 * from memory once per pass (these ops are bandwidth-bound); sums use a workgroup-memory tree. Rows beyond
 * 65535 spill into the grid's y dimension. Statistics (mean, rstd) are saved per row for the backward.
 */
import { f32 } from "./common.ts";
import type { Kernel } from "../engine/runtime.ts";

export type RowOp = "softmax" | "softmax_bwd" | "layer_norm" | "layer_norm_bwd" | "rms_norm" | "rms_norm_bwd";

export interface RowConfig {
  op: RowOp;
  rows: number;
  d: number;
  eps: number;
  /** layer_norm / rms_norm: elementwise weight (and bias for layer_norm) present. */
  affine: boolean;
}

export function rowWorkgroup(d: number): number {
  let w = 32;
  while (w < 256 && w * 4 < d) w *= 2;
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
const writtenIn = (c: RowConfig, nm: string) => WRITTEN.has(nm) || (!c.op.endsWith("_bwd") && (nm === "mu" || nm === "rs"));
const WRITTEN = new Set(["y", "dx"]);

export function rowKernel(c: RowConfig): Kernel {
  const W = rowWorkgroup(c.d);
  const V = Math.ceil(c.d / W);
  if (V > 64) throw new Error(`row op over ${c.d} elements exceeds the 16384 supported`);
  const names = rowBindings(c);
  const decls = names.map((nm, i) =>
    `@group(0) @binding(${i}) var<storage, ${writtenIn(c, nm) ? "read_write" : "read"}> ${nm}: array<f32>;`
  ).join("\n");
  const guard = (j: number) => (j * W + W <= c.d ? "true" : `(lid + ${j * W}u < ${c.d}u)`);
  const each = (f: (j: number, idx: string) => string) =>
    Array.from({ length: V }, (_, j) => `if (${guard(j)}) { ${f(j, `lid + ${j * W}u`)} }`).join("\n  ");
  const load = (arr: string, reg: string) => each((j, idx) => `${reg}[${j}] = ${arr}[base + ${idx}];`);
  const body = rowBody(c, { each, load });
  const code = `${decls}
var<workgroup> red: array<f32, ${W}>;
fn reduce_sum(v: f32, lid: u32) -> f32 {
  workgroupBarrier();
  red[lid] = v;
  workgroupBarrier();
  for (var s = ${W / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] = red[lid] + red[lid + s]; }
    workgroupBarrier();
  }
  return red[0];
}
fn reduce_max(v: f32, lid: u32) -> f32 {
  workgroupBarrier();
  red[lid] = v;
  workgroupBarrier();
  for (var s = ${W / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] = max(red[lid], red[lid + s]); }
    workgroupBarrier();
  }
  return red[0];
}
@compute @workgroup_size(${W})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= ${c.rows}u) { return; }
  let base = row * ${c.d}u;
  var xr: array<f32, ${V}>;
  var gr: array<f32, ${V}>;
  ${body}
}`;
  return { name: `${c.op}_${c.rows}x${c.d}_w${W}${c.affine ? "_affine" : ""}`, code };
}

interface Emit {
  each: (f: (j: number, idx: string) => string) => string;
  load: (arr: string, reg: string) => string;
}

function rowBody(c: RowConfig, e: Emit): string {
  const inv = f32(1 / c.d), eps = f32(c.eps);
  const wv = (idx: string) => (c.affine ? `w[${idx}]` : "1.0");
  switch (c.op) {
    case "softmax":
      return `${e.load("x", "xr")}
  var m = ${f32(-3.4028234663852886e38)};
  ${e.each((j) => `m = max(m, xr[${j}]);`)}
  m = reduce_max(m, lid);
  var s = 0.0;
  ${e.each((j) => `xr[${j}] = exp(xr[${j}] - m); s += xr[${j}];`)}
  s = 1.0 / reduce_sum(s, lid);
  ${e.each((j, idx) => `y[base + ${idx}] = xr[${j}] * s;`)}`;
    case "softmax_bwd":
      return `${e.load("y", "xr")}
  ${e.load("g", "gr")}
  var s = 0.0;
  ${e.each((j) => `s += xr[${j}] * gr[${j}];`)}
  s = reduce_sum(s, lid);
  ${e.each((j, idx) => `dx[base + ${idx}] = xr[${j}] * (gr[${j}] - s);`)}`;
    case "layer_norm":
    case "rms_norm": {
      const ln = c.op === "layer_norm";
      return `${e.load("x", "xr")}
  var mean = 0.0;
  ${ln ? `${e.each((j) => `mean += xr[${j}];`)}\n  mean = reduce_sum(mean, lid) * ${inv};` : ""}
  var ss = 0.0;
  ${e.each((j) => `let t = xr[${j}] - mean; ss += t * t;`)}
  let rstd = inverseSqrt(reduce_sum(ss, lid) * ${inv} + ${eps});
  ${e.each((j, idx) => `y[base + ${idx}] = (xr[${j}] - mean) * rstd * ${wv(idx)}${ln && c.affine ? ` + b[${idx}]` : ""};`)}
  if (lid == 0u) { ${ln ? "mu[row] = mean; " : ""}rs[row] = rstd; }`;
    }
    case "layer_norm_bwd":
    case "rms_norm_bwd": {
      const ln = c.op === "layer_norm_bwd";
      // dx = rstd · (ĝ − mean(ĝ) − x̂ · mean(ĝ x̂)), ĝ = g·w (rms_norm drops the mean(ĝ) term).
      return `${e.load("x", "xr")}
  ${e.load("g", "gr")}
  let mean = ${ln ? "mu[row]" : "0.0"};
  let rstd = rs[row];
  var sg = 0.0;
  var sgx = 0.0;
  ${e.each((j, idx) => `xr[${j}] = (xr[${j}] - mean) * rstd; gr[${j}] = gr[${j}] * ${wv(idx)}; sg += gr[${j}]; sgx += gr[${j}] * xr[${j}];`)}
  ${ln ? `sg = reduce_sum(sg, lid) * ${inv};` : "sg = 0.0;"}
  sgx = reduce_sum(sgx, lid) * ${inv};
  ${e.each((j, idx) => `dx[base + ${idx}] = rstd * (gr[${j}] - sg - xr[${j}] * sgx);`)}`;
    }
  }
}
