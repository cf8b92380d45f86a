/**
 * Axis reductions on a canonical (outer, R, inner) layout, as sum or max.
 *
 * Every invocation (inner > 1) or every workgroup (inner == 1) reduces a chunk of at most `chunk` elements of
 * R and writes one partial; when R is split into several chunks the caller reduces the (outer, chunks, inner)
 * partials again. Splitting keeps thousands of invocations busy when the output is small (a bias gradient, a
 * global norm), which is what makes a reduction bandwidth-bound. Both forms move vec4s when the layout allows
 * (four adjacent columns per invocation; four adjacent elements of a row per load). The row form's workgroup
 * is one GPU warp, reduced with one barrier and a fold of the partials from constant addresses: on lavapipe a
 * barrier is a coroutine switch of every 8-lane SIMD group and any non-constant load a per-lane loop, so a
 * 256-wide tree cost ~4 µs per row where this costs ~0.1.
 *
 * Also the global sum of squares of several tensors in one dispatch (`sumSquaresKernel`, the gradient norm):
 * each tensor is its own binding, each workgroup reduces one chunk of one tensor (chosen by workgroup id, so
 * the branch is uniform) into one partial, and `sumSqrtKernel` folds the partials. A per-tensor square, sum and
 * add cost three dispatches a parameter (~175 for the `default` solver) where these cost one per group of 31.
 */
import { cachedKernel, f32, type Kernel, MAIN_BUILTINS, workgroupBranches } from "./common.ts";

export type ReduceOp = "sum" | "max";

export interface ReduceConfig {
  op: ReduceOp;
  outer: number;
  r: number;
  inner: number;
  chunk: number;
}

export const ROW_WG = 32;
const COL_WG = 64;

function combine(op: ReduceOp, a: string, b: string) {
  return op === "sum" ? `${a} + ${b}` : `max(${a}, ${b})`;
}

function identity(op: ReduceOp) {
  return op === "sum" ? "0.0" : f32(-3.4028234663852886e38);
}

/** Chunks per row: ≥ 4096 partial reductions in flight, chunks ≥ 256 long, a multiple of 4 where R is. */
export function reduceChunks(c: Omit<ReduceConfig, "chunk">): number {
  const outputs = c.outer * c.inner;
  const want = Math.max(1, Math.ceil(4096 / outputs));
  const chunks = Math.max(1, Math.min(want, Math.ceil(c.r / 256)));
  // The caller splits R into ceil(R / chunks)-long chunks: nudge that length to a multiple of 4 (vec4 loads).
  const len4 = Math.ceil(Math.ceil(c.r / chunks) / 4) * 4;
  const chunks4 = Math.ceil(c.r / len4);
  return c.r % 4 === 0 && Math.ceil(c.r / chunks4) === len4 ? chunks4 : chunks;
}

/** Row form (one workgroup per chunk of a row) only pays off for long rows of contiguous data. */
export function useRowForm(c: Omit<ReduceConfig, "chunk">): boolean {
  return c.inner === 1 && c.r >= 256;
}

/** vec4 loads: whole rows and chunks start on 16-byte boundaries (row form), or 4 columns per invocation. */
function vec4(c: ReduceConfig): boolean {
  return useRowForm(c) ? c.r % 4 === 0 && c.chunk % 4 === 0 : c.inner % 4 === 0;
}

/** Total invocations to launch and the workgroup size (callers build a 2-D grid with grid1d). */
export function reduceLaunch(c: ReduceConfig): { invocations: number; wg: number } {
  const chunks = Math.ceil(c.r / c.chunk);
  if (useRowForm(c)) return { invocations: c.outer * chunks * ROW_WG, wg: ROW_WG };
  return { invocations: (c.outer * chunks * c.inner) / (vec4(c) ? 4 : 1), wg: COL_WG };
}

function buildReduceKernel(c: ReduceConfig): Kernel {
  const { op, r, inner, chunk } = c;
  const chunks = Math.ceil(r / chunk);
  const v = vec4(c);
  const t = v ? "vec4<f32>" : "f32";
  const name = `reduce_${op}_${c.outer}x${r}x${inner}_c${chunk}${v ? "_v4" : ""}`;
  const code = useRowForm(c) ? rowForm(c, chunks, v) : colForm(c, chunks, v);
  return { name, code: `@group(0) @binding(0) var<storage, read> x: array<${t}>;\n${code}` };
}

function rowForm(c: ReduceConfig, chunks: number, v: boolean): string {
  const { op, r, chunk } = c;
  const q = v ? 4 : 1;
  const lanes = v
    ? (op === "sum" ? "dot(acc, vec4<f32>(1.0))" : "max(max(acc.x, acc.y), max(acc.z, acc.w))")
    : "acc";
  // Only a 2-D grid (more than 65535 workgroups) overshoots; the check is otherwise left out because after it
  // lavapipe treats the rest as control flow and loses the uniform loads of the fold.
  const groups = c.outer * chunks;
  return `@group(0) @binding(1) var<storage, read_write> out: array<f32>;
var<workgroup> buf: array<f32, ${ROW_WG}>;
@compute @workgroup_size(${ROW_WG})
fn main(${MAIN_BUILTINS}, @builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3u) {
  let g = wid.x + wid.y * nwg.x;
  ${groups > 65535 ? `if (g >= ${groups}u) { return; }` : ""}
  let row = g / ${chunks}u;
  let c = g % ${chunks}u;
  let start = (row * ${r}u + c * ${chunk}u) / ${q}u;
  let n = min(${chunk}u, ${r}u - c * ${chunk}u) / ${q}u;
  var acc = ${v ? `vec4<f32>(${identity(op)})` : identity(op)};
  for (var j = lid; j < n; j += ${ROW_WG}u) { acc = ${combine(op, "acc", "x[start + j]")}; }
  buf[lid] = ${lanes};
  workgroupBarrier();
  var p = buf[0];
  ${laneFold(op)}
  if (lid == 0u) { out[row * ${chunks}u + c] = p; }
}`;
}

function colForm(c: ReduceConfig, chunks: number, v: boolean): string {
  const { op, r, inner, chunk } = c;
  const cols = v ? inner / 4 : inner;
  const t = v ? "vec4<f32>" : "f32";
  return `@group(0) @binding(1) var<storage, read_write> out: array<${t}>;
@compute @workgroup_size(${COL_WG})
fn main(${MAIN_BUILTINS}) {
  let t = gid.x + gid.y * (nwg.x * ${COL_WG}u);
  if (t >= ${c.outer * chunks * cols}u) { return; }
  let j = t % ${cols}u;
  let c = (t / ${cols}u) % ${chunks}u;
  let o = t / ${chunks * cols}u;
  let n = min(${chunk}u, ${r}u - c * ${chunk}u);
  var p = o * ${r * cols}u + c * ${chunk * cols}u + j;
  var acc = ${v ? `vec4<f32>(${identity(op)})` : identity(op)};
  for (var k = 0u; k < n; k++) { acc = ${combine(op, "acc", "x[p]")}; p += ${cols}u; }
  out[(o * ${chunks}u + c) * ${cols}u + j] = acc;
}`;
}

/** Elements of one tensor per workgroup of `sumSquaresKernel` (a multiple of 4). */
export const SUMSQ_CHUNK = 4096;

/** Workgroups (partials) `sumSquaresKernel` gives a tensor of `n` floats: one per chunk. */
const sumSquaresChunks = (n: number) => Math.ceil(n / SUMSQ_CHUNK);

/** Partials (workgroups) `sumSquaresKernel` writes for tensors of these sizes. */
export function sumSquaresPartials(sizes: readonly number[]): number {
  return sizes.reduce((a, n) => a + sumSquaresChunks(n), 0);
}

/** WGSL folding the workgroup's ROW_WG lane values `buf[1…]` into `p` (which starts at buf[0]). */
function laneFold(op: ReduceOp): string {
  return Array.from({ length: ROW_WG - 1 }, (_, i) => `p = ${combine(op, "p", `buf[${i + 1}u]`)};`).join(" ");
}

/**
 * out[base + w] = Σ x² over chunk w of the tensors x0, x1, … (bindings 0…k-1, `sizes` floats each; out is
 * binding k): tensor j's chunks are workgroups [W_j, W_j+1). vec4 loads where a size is a multiple of 4.
 */
function buildSumSquaresKernel(c: { sizes: readonly number[]; base: number }): Kernel {
  const k = c.sizes.length, total = sumSquaresPartials(c.sizes);
  const vec = (j: number) => c.sizes[j] % 4 === 0;
  const decls = c.sizes.map((_, j) =>
    `@group(0) @binding(${j}) var<storage, read> x${j}: array<${vec(j) ? "vec4<f32>" : "f32"}>;`
  );
  const branches = workgroupBranches(c.sizes.map(sumSquaresChunks), (j, w0) => {
    const q = vec(j) ? 4 : 1;
    const acc = vec(j) ? "acc = fma(e, e, acc);" : "acc.x = fma(e, e, acc.x);";
    return `    let c = g - ${w0}u;
    let start = c * ${SUMSQ_CHUNK / q}u;
    let n = min(${SUMSQ_CHUNK}u, ${c.sizes[j]}u - c * ${SUMSQ_CHUNK}u) / ${q}u;
    for (var i = lid; i < n; i += ${ROW_WG}u) { let e = x${j}[start + i]; ${acc} }`;
  });
  const code = `${decls.join("\n")}
@group(0) @binding(${k}) var<storage, read_write> out: array<f32>;
var<workgroup> buf: array<f32, ${ROW_WG}>;
@compute @workgroup_size(${ROW_WG})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let g = wid.x + wid.y * nwg.x;
  var acc = vec4<f32>(0.0);
  ${branches}
  buf[lid] = dot(acc, vec4<f32>(1.0));
  workgroupBarrier();
  var p = buf[0];
  ${laneFold("sum")}
  if (lid == 0u && g < ${total}u) { out[${c.base}u + g] = p; }
}`;
  return { name: `sum_squares_${k}x${total}`, code };
}

/** out[0] = √(Σ partials[0…count)) in one workgroup: the last pass of the gradient norm. */
function buildSumSqrtKernel(count: number): Kernel {
  return {
    name: `sum_sqrt_${count}`,
    code: `@group(0) @binding(0) var<storage, read> partials: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
var<workgroup> buf: array<f32, ${ROW_WG}>;
@compute @workgroup_size(${ROW_WG})
fn main(@builtin(local_invocation_index) lid: u32) {
  var acc = 0.0;
  for (var i = lid; i < ${count}u; i += ${ROW_WG}u) { acc += partials[i]; }
  buf[lid] = acc;
  workgroupBarrier();
  var p = buf[0];
  ${laneFold("sum")}
  if (lid == 0u) { out[0] = sqrt(p); }
}`,
  };
}

// One Kernel object per arguments (kernels/common.ts cachedKernel).
export const reduceKernel = cachedKernel(buildReduceKernel);
export const sumSquaresKernel = cachedKernel(buildSumSquaresKernel);
export const sumSqrtKernel = cachedKernel(buildSumSqrtKernel);
