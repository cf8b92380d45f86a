/**
 * Batched matmul C[b] = op(A[b]) · op(B[b]) (+ bias per column) reading A and B from rgba32float texture
 * arrays instead of storage buffers: the software adapters' fast path (engine/ops/matmul_tex.ts uploads the
 * operands and decides when it applies).
 *
 * Why textures: on lavapipe (Mesa 22.3) a storage or workgroup-memory load at a per-invocation address is a
 * runtime loop over the SIMD lanes that inserts each lane's value through a stack slot, a store-to-load
 * forwarding stall per lane and component; a texel fetch goes through the sampler's gather code, unrolled over
 * lanes with no stall. On the 2-core EPYC (Zen 1) of 2026-12-04 a 1024³ matmul runs at 15.3 GFLOP/s with 16×16
 * outputs per invocation from textures against 4.7 for the best storage-buffer tile (32×32).
 *
 * Layout and invariants:
 * - Each operand is flattened into one 2-D texture of TEX_WIDTH texels per row: float i of the operand's
 *   buffer (batch layers, rows, cols row-major) is component i % 4 of texel i / 4, at (x, y) = (texel %
 *   TEX_WIDTH, texel / TEX_WIDTH). So any shape uploads with one or two plain copies and no padding, provided
 *   every quad a kernel reads is aligned: K % 4 = 0 always, M % 4 = 0 when A is transposed, N % 4 = 0 when B
 *   is not (the caller's conditions).
 * - A is (M, K), or (K, M) when transposed; B is (K, N), or (N, K) when transposed; the layer of A (B) for
 *   batch z is z, or 0 when that operand is broadcast.
 * - Each invocation computes rm × rn outputs (rn and rm multiples of 4) in vec4 accumulators, 4 values of k
 *   per step. Invocations run over the flattened (batch, m tile, n tile) range so narrow outputs and small
 *   batches waste no lanes (`matmulTexLaunch`); the tiles past M or N read whatever follows (the texture
 *   covers `matmulTexTexels`) and are never stored.
 * - With `triB` each tile's k loop covers only op(B)'s triangle at its columns, and the tiles run n-major.
 * - With `softmaxGrad` the store is P∘(C − Δ) (see the config).
 */
import { cachedKernel, type Kernel } from "./common.ts";
import type { MatmulConfig } from "./matmul.wgsl.ts";

/** The storage kernels' problem (shape, transposes, bias) with broadcasting as flags and this kernel's tile. */
export type MatmulTexConfig = Omit<MatmulConfig, "tile" | "strideA" | "strideB"> & {
  /** The operand has one matrix for all batches (broadcast). */
  broadcastA: boolean;
  broadcastB: boolean;
  rm: number;
  rn: number;
  /** op(B) is triangular with exact zeros off its triangle (`Triangle`): each tile skips their k. */
  triB?: Triangle;
  /**
   * Store P∘(C − Δ[row]) instead of C: the softmax gradient of the dense attention's scores (dS from dP), with
   * P in C's layout and Δ one value per output row over all batches bound after C (binding 3, 4; no bias,
   * N % 4 = 0). Saves a pass that reads C and P and writes C again.
   */
  softmaxGrad?: boolean;
};

/**
 * Which triangle of op(B) (K×N) holds its nonzeros: "upper" B[k, n] = 0 for k > n, "lower" for k < n (PSGD's
 * triangular factors: half the multiply-adds of their mode products).
 */
export type Triangle = "upper" | "lower";

/** Texels per texture row (a power of two, so x and y are a mask and a shift). */
export const TEX_WIDTH = 4096;
export const MATMUL_TEX_WG = 64;

/**
 * WGSL `fn ld_<t>(i: u32) -> vec4f` per texture t: texel i of the flattened layout. Kernels call it per fetch
 * (`texelLoad`) instead of spelling the load out: shorter source, which is what pipeline creation pays for
 * (naga, then llvmpipe's JIT); llvmpipe inlines the calls.
 */
export function texelLoaders(...textures: string[]): string {
  const mask = TEX_WIDTH - 1, shift = Math.log2(TEX_WIDTH);
  return textures.map((t) =>
    `fn ld_${t}(i: u32) -> vec4f { return textureLoad(${t}, vec2u(i & ${mask}u, i >> ${shift}u), 0); }`
  ).join("\n");
}

/** A call of `texelLoaders`' loader of texture `tex` at texel `texel`. */
export const texelLoad = (tex: string, texel: string) => `ld_${tex}(${texel})`;

/** The layout's alignment conditions (see the header): every quad a tile reads starts on a texel. */
export function matmulTexAligned(
  c: { m: number; n: number; k: number; transA: boolean; transB: boolean; rm?: number; rn?: number },
): boolean {
  const q = (x: number) => x % 4 === 0;
  return q(c.k) && (!c.transA || q(c.m)) && (c.transB || q(c.n)) && q(c.rm ?? 4) && q(c.rn ?? 4);
}

/**
 * The k range of the tile at column n0, per triangle: a product with an exact zero adds nothing, so skipping
 * those k changes no bit of the result (and rn, n0 and K are multiples of 4: the range stays on quads).
 */
function kRange(c: MatmulTexConfig): [string, string] {
  if (c.triB === "lower") return [`min(n0, ${c.k}u)`, `${c.k}u`];
  if (c.triB === "upper") return ["0u", `min(n0 + ${c.rn}u, ${c.k}u)`];
  return ["0u", `${c.k}u`];
}

function tiles(c: MatmulTexConfig): [number, number] {
  return [Math.ceil(c.m / c.rm), Math.ceil(c.n / c.rn)];
}

/** Most workgroups along one grid axis (WebGPU's default `maxComputeWorkgroupsPerDimension`). */
const MAX_GROUPS = 65535;

/**
 * The dispatch's shape: invocations per workgroup, workgroups along x, and the grid. All batches' tiles are
 * one flat range (a small output per batch leaves no lanes idle), folded onto y past MAX_GROUPS. llvmpipe runs
 * a workgroup on one thread, so a problem of few tiles takes smaller workgroups until it has 4 (else one core
 * does a 64×64 Gram alone).
 */
export function matmulTexLaunch(
  c: MatmulTexConfig,
): { wg: number; x: number; grid: [number, number, number] } {
  const [mt, nt] = tiles(c);
  const total = c.batch * mt * nt;
  let wg = MATMUL_TEX_WG;
  while (wg > 8 && total < 4 * wg) wg /= 2;
  const groups = Math.ceil(total / wg), x = Math.min(groups, MAX_GROUPS);
  return { wg, x, grid: [x, Math.ceil(groups / x), 1] };
}

export function matmulTexGrid(c: MatmulTexConfig): [number, number, number] {
  return matmulTexLaunch(c).grid;
}

/** Texels each operand's texture must hold: one past the highest texel any tile reads. */
export function matmulTexTexels(c: MatmulTexConfig): { a: number; b: number } {
  const [mt, nt] = tiles(c);
  const mPad = mt * c.rm, nPad = nt * c.rn, k4 = c.k / 4;
  const la = c.broadcastA ? 1 : c.batch, lb = c.broadcastB ? 1 : c.batch;
  return {
    a: c.transA ? ((la - 1) * c.k + c.k - 1) * (c.m / 4) + mPad / 4 : ((la - 1) * c.m + mPad - 1) * k4 + k4,
    b: c.transB ? ((lb - 1) * c.n + nPad - 1) * k4 + k4 : ((lb - 1) * c.k + c.k - 1) * (c.n / 4) + nPad / 4,
  };
}

function buildMatmulTexKernel(c: MatmulTexConfig): Kernel {
  const { rm, rn, m: M, n: N, k: K } = c;
  if (!matmulTexAligned(c)) throw new Error(`matmul_tex: ${JSON.stringify(c)} reads unaligned quads`);
  if (c.softmaxGrad && (c.bias || N % 4 !== 0)) {
    throw new Error("matmul_tex: softmaxGrad needs N % 4 = 0, no bias");
  }
  const rn4 = rn / 4, rm4 = rm / 4, K4 = K / 4;
  const [mTiles, nTiles] = tiles(c);
  const launch = matmulTexLaunch(c), total = c.batch * mTiles * nTiles;
  const za = c.broadcastA ? "0u" : "z", zb = c.broadcastB ? "0u" : "z";
  const loads: string[] = [], fmas: string[] = [];
  // a(i, kk) = A[m0 + i, k + kk]; bvec(kk, j4) = B[k + kk, n0 + 4·j4 .. + 3].
  let a: (i: number, kk: number) => string;
  if (c.transA) {
    // (K, M) layout: texel (z·K + k)·M/4 + m/4 holds A[m..m+3, k].
    for (let kk = 0; kk < 4; kk++) {
      for (let i4 = 0; i4 < rm4; i4++) {
        loads.push(`let a${i4}_${kk} = ${texelLoad("ta", `abase + (k + ${kk}u) * ${c.m / 4}u + ${i4}u`)};`);
      }
    }
    a = (i, kk) => `a${Math.floor(i / 4)}_${kk}[${i % 4}]`;
  } else {
    // (M, K) layout: texel (z·M + m)·K/4 + k/4 holds A[m, k..k+3].
    for (let i = 0; i < rm; i++) loads.push(`let a${i} = ${texelLoad("ta", `abase + ${i * K4}u + k / 4u`)};`);
    a = (i, kk) => `a${i}[${kk}]`;
  }
  let bvec: (kk: number, j4: number) => string;
  if (c.transB) {
    // (N, K) layout: texel (z·N + n)·K/4 + k/4 holds B[k..k+3, n]; each column quad is built once per step.
    for (let j = 0; j < rn; j++) loads.push(`let b${j} = ${texelLoad("tb", `bbase + ${j * K4}u + k / 4u`)};`);
    for (let kk = 0; kk < 4; kk++) {
      for (let j4 = 0; j4 < rn4; j4++) {
        const quad = [0, 1, 2, 3].map((q) => `b${4 * j4 + q}[${kk}]`).join(", ");
        loads.push(`let bv${kk}_${j4} = vec4f(${quad});`);
      }
    }
    bvec = (kk, j4) => `bv${kk}_${j4}`;
  } else {
    // (K, N) layout: texel (z·K + k)·N/4 + n/4 holds B[k, n..n+3].
    for (let kk = 0; kk < 4; kk++) {
      for (let j4 = 0; j4 < rn4; j4++) {
        loads.push(`let b${kk}_${j4} = ${texelLoad("tb", `bbase + (k + ${kk}u) * ${c.n / 4}u + ${j4}u`)};`);
      }
    }
    bvec = (kk, j4) => `b${kk}_${j4}`;
  }
  for (let i = 0; i < rm; i++) {
    for (let j4 = 0; j4 < rn4; j4++) {
      let e = `c${i}_${j4}`;
      for (let kk = 0; kk < 4; kk++) e = `fma(vec4f(${a(i, kk)}), ${bvec(kk, j4)}, ${e})`;
      fmas.push(`c${i}_${j4} = ${e};`);
    }
  }
  // Quad stores when N % 4 = 0 (every quad of a row then starts on a 16-byte boundary): a storage store is a
  // per-lane loop here too, so one vec4 per lane costs what one f32 did.
  const vec = N % 4 === 0;
  const accs: string[] = [], full: string[] = [], edge: string[] = [];
  for (let i = 0; i < rm; i++) {
    for (let j4 = 0; j4 < rn4; j4++) {
      accs.push(`var c${i}_${j4} = vec4f(0.0);`);
      if (vec) {
        const idx = `(ob + (m0 + ${i}u) * ${N}u + n0) / 4u + ${j4}u`;
        const v = c.bias
          ? `c${i}_${j4} + bias[n0 / 4u + ${j4}u]`
          : c.softmaxGrad
          ? `pm[${idx}] * (c${i}_${j4} - rowv[z * ${M}u + m0 + ${i}u])`
          : `c${i}_${j4}`;
        const at = `o[${idx}]`;
        full.push(`${at} = ${v};`);
        edge.push(`if (m0 + ${i}u < ${M}u && n0 + ${4 * j4}u < ${N}u) { ${at} = ${v}; }`);
        continue;
      }
      for (let q = 0; q < 4; q++) {
        const j = 4 * j4 + q;
        const v = c.bias ? `c${i}_${j4}[${q}] + bias[n0 + ${j}u]` : `c${i}_${j4}[${q}]`;
        const at = `o[ob + (m0 + ${i}u) * ${N}u + n0 + ${j}u]`;
        full.push(`${at} = ${v};`);
        edge.push(`if (m0 + ${i}u < ${M}u && n0 + ${j}u < ${N}u) { ${at} = ${v}; }`);
      }
    }
  }
  const elem = vec ? "vec4f" : "f32";
  const softmaxGradBindings = c.softmaxGrad
    ? `\n@group(0) @binding(3) var<storage, read> pm: array<vec4f>;\n@group(0) @binding(4) var<storage, read> rowv: array<f32>;`
    : "";
  const [k0, k1] = kRange(c);
  // A triangular B gives each column tile its own loop length: lanes of a SIMD group then share n0 (tiles run
  // n-major) so that none waits on a longer neighbour.
  const [mOf, nOf] = c.triB
    ? [`tile % ${mTiles}u`, `tile / ${mTiles}u`]
    : [`tile / ${nTiles}u`, `tile % ${nTiles}u`];
  const abase = c.transA ? `${za} * ${(K * M) / 4}u + m0 / 4u` : `(${za} * ${M}u + m0) * ${K4}u`;
  const bbase = c.transB ? `(${zb} * ${N}u + n0) * ${K4}u` : `${zb} * ${(K * N) / 4}u + n0 / 4u`;
  const code = `@group(0) @binding(0) var ta: texture_2d<f32>;
@group(0) @binding(1) var tb: texture_2d<f32>;
@group(0) @binding(2) var<storage, read_write> o: array<${elem}>;
${c.bias ? `@group(0) @binding(3) var<storage, read> bias: array<${elem}>;` : ""}${softmaxGradBindings}
${texelLoaders("ta", "tb")}

@compute @workgroup_size(${launch.wg})
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let flat = gid.y * ${launch.x * launch.wg}u + gid.x;
  // Invocations past the last tile redo it (in range reads) and store nothing.
  let t = min(flat, ${total - 1}u);
  let z = t / ${mTiles * nTiles}u;
  let tile = t % ${mTiles * nTiles}u;
  let m0 = (${mOf}) * ${rm}u;
  let n0 = (${nOf}) * ${rn}u;
  let abase = ${abase};
  let bbase = ${bbase};
  let ob = z * ${M * N}u;
  ${accs.join("\n  ")}
  for (var k = ${k0}; k < ${k1}; k += 4u) {
    ${loads.join("\n    ")}
    ${fmas.join("\n    ")}
  }
  if (flat >= ${total}u) { return; }
  if (m0 + ${rm}u <= ${M}u && n0 + ${rn}u <= ${N}u) {
    ${full.join("\n    ")}
  } else {
    ${edge.join("\n    ")}
  }
}`;
  const layout = `${c.transA ? "T" : "N"}${c.transB ? "T" : "N"}`;
  const bc = `${c.broadcastA ? "a" : ""}${c.broadcastB ? "b" : ""}`;
  const name = `matmul_tex_${layout}_${c.batch}x${M}x${K}x${N}_t${rm}x${rn}${bc ? `_bc${bc}` : ""}${
    c.bias ? "_bias" : ""
  }${c.triB ? `_tri${c.triB[0].toUpperCase()}` : ""}${c.softmaxGrad ? "_dsoftmax" : ""}`;
  return { name, code };
}

// One Kernel object per arguments (kernels/common.ts cachedKernel).
export const matmulTexKernel = cachedKernel(buildMatmulTexKernel);
