/**
 * Axis reductions on a canonical (outer, R, inner) layout, as sum or max.
 *
 * Every invocation (inner > 1) or every workgroup (inner == 1, tree reduction in workgroup memory) reduces a
 * chunk of at most `chunk` elements of R and writes one partial; when R is split into several chunks the caller
 * reduces the (outer, chunks, inner) partials again. Splitting keeps thousands of invocations busy when the
 * output is small (a bias gradient, a global norm), which is what makes a reduction bandwidth-bound.
 */
import { f32, MAIN_BUILTINS } from "./common.ts";
import type { Kernel } from "../engine/runtime.ts";

export type ReduceOp = "sum" | "max";

export interface ReduceConfig {
  op: ReduceOp;
  outer: number;
  r: number;
  inner: number;
  chunk: number;
}

export const ROW_WG = 256;
const COL_WG = 64;

function combine(op: ReduceOp, a: string, b: string) {
  return op === "sum" ? `${a} + ${b}` : `max(${a}, ${b})`;
}

function identity(op: ReduceOp) {
  return op === "sum" ? "0.0" : f32(-3.4028234663852886e38);
}

export function reduceChunks(c: Omit<ReduceConfig, "chunk">): number {
  const outputs = c.outer * c.inner;
  // Aim for >= 8k parallel partial reductions, never chunks shorter than 256 elements.
  const want = Math.max(1, Math.ceil(8192 / outputs));
  return Math.max(1, Math.min(want, Math.ceil(c.r / 256)));
}

/** Row form (one workgroup per chunk of a row) only pays off for long rows of contiguous data. */
export function useRowForm(c: Omit<ReduceConfig, "chunk">): boolean {
  return c.inner === 1 && c.r >= 256;
}

/** Total invocations to launch and the workgroup size (callers build a 2-D grid with grid1d). */
export function reduceLaunch(c: ReduceConfig): { invocations: number; wg: number } {
  const chunks = Math.ceil(c.r / c.chunk);
  if (useRowForm(c)) return { invocations: c.outer * chunks * ROW_WG, wg: ROW_WG };
  return { invocations: c.outer * chunks * c.inner, wg: COL_WG };
}

export function reduceKernel(c: ReduceConfig): Kernel {
  const { op, r, inner, chunk } = c;
  const chunks = Math.ceil(r / chunk);
  const name = `reduce_${op}_${c.outer}x${r}x${inner}_c${chunk}`;
  const head = `@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;`;
  if (useRowForm(c)) {
    const code = `${head}
var<workgroup> buf: array<f32, ${ROW_WG}>;
@compute @workgroup_size(${ROW_WG})
fn main(${MAIN_BUILTINS}, @builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3u) {
  let g = wid.x + wid.y * nwg.x;
  if (g >= ${c.outer * chunks}u) { return; }
  let row = g / ${chunks}u;
  let c = g % ${chunks}u;
  let start = row * ${r}u + c * ${chunk}u;
  let n = min(${chunk}u, ${r}u - c * ${chunk}u);
  var acc = ${identity(op)};
  for (var j = lid; j < n; j += ${ROW_WG}u) { acc = ${combine(op, "acc", "x[start + j]")}; }
  buf[lid] = acc;
  workgroupBarrier();
  for (var s = ${ROW_WG / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { buf[lid] = ${combine(op, "buf[lid]", "buf[lid + s]")}; }
    workgroupBarrier();
  }
  if (lid == 0u) { out[row * ${chunks}u + c] = buf[0]; }
}`;
    return { name, code };
  }
  const code = `${head}
@compute @workgroup_size(${COL_WG})
fn main(${MAIN_BUILTINS}) {
  let t = gid.x + gid.y * (nwg.x * ${COL_WG}u);
  if (t >= ${c.outer * chunks * inner}u) { return; }
  let j = t % ${inner}u;
  let c = (t / ${inner}u) % ${chunks}u;
  let o = t / ${chunks * inner}u;
  let n = min(${chunk}u, ${r}u - c * ${chunk}u);
  var p = o * ${r * inner}u + c * ${chunk * inner}u + j;
  var acc = ${identity(op)};
  for (var k = 0u; k < n; k++) { acc = ${combine(op, "acc", "x[p]")}; p += ${inner}u; }
  out[(o * ${chunks}u + c) * ${inner}u + j] = acc;
}`;
  return { name, code };
}
