/**
 * Batched matmul C[b] = op(A[b]) · op(B[b]) (+ bias per column), op = identity or transpose, all shapes and
 * strides baked in. One template, tiled in workgroup memory: a BM×BN output tile per workgroup, BK-deep
 * slabs of A and B staged per step, RM×RN outputs accumulated in registers per invocation.
 *
 * Invariants: any M, N, K (edges are guarded; out-of-range loads read 0); batch broadcasting is expressed by
 * batch strides of 0; the pipeline name encodes the tile config.
 */
import type { Kernel } from "../engine/runtime.ts";

export interface MatmulTile {
  bm: number;
  bn: number;
  bk: number;
  rm: number;
  rn: number;
}

export interface MatmulConfig {
  batch: number;
  m: number;
  n: number;
  k: number;
  transA: boolean;
  transB: boolean;
  /** Elements between consecutive batches of A and B (0 = broadcast). */
  strideA: number;
  strideB: number;
  bias: boolean;
  tile: MatmulTile;
}

export const DEFAULT_TILE: MatmulTile = { bm: 64, bn: 64, bk: 16, rm: 4, rn: 4 };

export function matmulGrid(c: MatmulConfig): [number, number, number] {
  return [Math.ceil(c.n / c.tile.bn), Math.ceil(c.m / c.tile.bm), c.batch];
}

export function matmulKernel(c: MatmulConfig): Kernel {
  const { m, n, k, transA, transB } = c;
  const { bm, bn, bk, rm, rn } = c.tile;
  const tx = bn / rn, ty = bm / rm, threads = tx * ty;
  const aIdx = (row: string, col: string) => (transA ? `(${col}) * ${m}u + (${row})` : `(${row}) * ${k}u + (${col})`);
  const bIdx = (row: string, col: string) => (transB ? `(${col}) * ${k}u + (${row})` : `(${row}) * ${n}u + (${col})`);
  const loadsA = (bm * bk) / threads, loadsB = (bk * bn) / threads;
  if (!Number.isInteger(loadsA) || !Number.isInteger(loadsB)) throw new Error("matmul tile does not divide evenly");
  // Consecutive invocations load consecutive addresses along the contiguous axis of each operand.
  const loadA = transA
    ? `let kk = e / ${bm}u; let mm = e % ${bm}u;`
    : `let mm = e / ${bk}u; let kk = e % ${bk}u;`;
  const loadB = transB
    ? `let nn = e / ${bk}u; let kk = e % ${bk}u;`
    : `let kk = e / ${bn}u; let nn = e % ${bn}u;`;
  const accInit = Array.from({ length: rm }, (_, i) => `var acc${i} = array<f32, ${rn}>(${Array(rn).fill("0.0").join(", ")});`);
  const inner: string[] = [];
  for (let i = 0; i < rm; i++) inner.push(`let a${i} = As[kk * ${bm}u + ty * ${rm}u + ${i}u];`);
  for (let j = 0; j < rn; j++) inner.push(`let b${j} = Bs[kk * ${bn}u + tx * ${rn}u + ${j}u];`);
  for (let i = 0; i < rm; i++) for (let j = 0; j < rn; j++) inner.push(`acc${i}[${j}] = fma(a${i}, b${j}, acc${i}[${j}]);`);
  const stores: string[] = [];
  for (let i = 0; i < rm; i++) {
    for (let j = 0; j < rn; j++) {
      stores.push(`{ let r = row0 + ${i}u; let cc = col0 + ${j}u; if (r < ${m}u && cc < ${n}u) { ` +
        `C[cbase + r * ${n}u + cc] = acc${i}[${j}]${c.bias ? " + bias[cc]" : ""}; } }`);
    }
  }
  const code = `@group(0) @binding(0) var<storage, read> A: array<f32>;
@group(0) @binding(1) var<storage, read> B: array<f32>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
${c.bias ? "@group(0) @binding(3) var<storage, read> bias: array<f32>;" : ""}
var<workgroup> As: array<f32, ${bm * bk}>;
var<workgroup> Bs: array<f32, ${bk * bn}>;
@compute @workgroup_size(${tx}, ${ty})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u,
        @builtin(local_invocation_index) li: u32) {
  let tx = lid.x; let ty = lid.y;
  let m0 = wid.y * ${bm}u; let n0 = wid.x * ${bn}u;
  let abase = wid.z * ${c.strideA}u; let bbase = wid.z * ${c.strideB}u; let cbase = wid.z * ${m * n}u;
  ${accInit.join("\n  ")}
  for (var k0 = 0u; k0 < ${k}u; k0 += ${bk}u) {
    for (var l = 0u; l < ${loadsA}u; l++) {
      let e = li + l * ${threads}u;
      ${loadA}
      let gm = m0 + mm; let gk = k0 + kk;
      As[kk * ${bm}u + mm] = select(0.0, A[abase + ${aIdx("gm", "gk")}], gm < ${m}u && gk < ${k}u);
    }
    for (var l = 0u; l < ${loadsB}u; l++) {
      let e = li + l * ${threads}u;
      ${loadB}
      let gn = n0 + nn; let gk = k0 + kk;
      Bs[kk * ${bn}u + nn] = select(0.0, B[bbase + ${bIdx("gk", "gn")}], gn < ${n}u && gk < ${k}u);
    }
    workgroupBarrier();
    for (var kk = 0u; kk < ${bk}u; kk++) {
      ${inner.join("\n      ")}
    }
    workgroupBarrier();
  }
  let row0 = m0 + ty * ${rm}u; let col0 = n0 + tx * ${rn}u;
  ${stores.join("\n  ")}
}`;
  const name = `matmul_f32_${bm}x${bn}x${bk}_t${rm}x${rn}_${transA ? "T" : "N"}${transB ? "T" : "N"}_${c.batch}x${m}x${n}x${k}`;
  return { name, code };
}
