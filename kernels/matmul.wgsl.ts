/**
 * Batched matmul C[b] = op(A[b]) · op(B[b]) (+ bias per column), op = identity or transpose, all shapes and
 * strides baked in. Each invocation accumulates an rm×rn output block in registers (bm×bn per workgroup);
 * operands move as vec4 wherever the contiguous axis allows it. Two staging strategies:
 *
 * - "workgroup" (GPUs): bk-deep slabs of A and B are staged in workgroup memory per step, two barriers each.
 * - "register" (CPU adapters such as lavapipe): no workgroup memory and no barriers; every invocation reads
 *   its rm rows and rn columns straight from storage, bk values of k per step. On lavapipe every load that is
 *   not at a constant address is a loop over the 8 SIMD lanes (~40 x86 instructions per vec4, whether it hits
 *   storage or workgroup memory) while an FMA is one instruction, and a barrier is a coroutine switch: staging
 *   only adds work, and the FMAs per loaded value (rm·rn / (rm + rn)) decide the speed, so tiles are as big as
 *   compile time allows (32×32 per invocation: ~4 s to compile, ~3× the GFLOP/s of 4×8).
 *
 * Invariants: any M, N, K (out-of-range k reads 0; rows/columns past the edge are guarded, or in the register
 * kernel clamped so they repeat real ones); batch broadcasting is a batch stride of 0; fixed-trip loops are
 * unrolled here (Naga adds a counter to every loop); the pipeline name encodes the config. Two strategies in
 * one file (~460 lines) because they share the operand layout, the FMA emitters and the stores.
 */
import { cachedKernel, type Kernel } from "./common.ts";

export interface MatmulTile {
  /** Outputs per workgroup (bm × bn) and per invocation (rm × rn); the workgroup is (bn/rn, bm/rm). */
  bm: number;
  bn: number;
  /** k per workgroup-memory slab ("workgroup") or per unrolled register step ("register"). */
  bk: number;
  rm: number;
  rn: number;
  /** Default "workgroup". */
  staging?: "workgroup" | "register";
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

/** A workgroup-memory tiled config suited to discrete and integrated GPUs (256 invocations, 4×4 each). */
export const DEFAULT_TILE: MatmulTile = { bm: 64, bn: 64, bk: 16, rm: 4, rn: 4, staging: "workgroup" };

export function matmulGrid(c: MatmulConfig): [number, number, number] {
  return [Math.ceil(c.n / c.tile.bn), Math.ceil(c.m / c.tile.bm), c.batch];
}

export function matmulTileName(t: MatmulTile): string {
  return `${t.bm}x${t.bn}x${t.bk}_t${t.rm}x${t.rn}${t.staging === "register" ? "_reg" : ""}`;
}

/** Which operands move as vec4: A and B along their contiguous axis, C along n. */
export interface Vec {
  a: boolean;
  b: boolean;
  c: boolean;
}

export function matmulVec4(c: MatmulConfig): Vec {
  const { m, n, k, tile: t } = c;
  const al = (x: number) => x % 4 === 0;
  return {
    // A's contiguous axis is k (N layout) or m (T layout); B's is n (N) or k (T).
    a: al(c.strideA) && (c.transA ? al(m) && al(t.rm) : al(k) && al(t.bk)),
    b: al(c.strideB) && (c.transB ? al(k) && al(t.bk) : al(n) && al(t.rn)),
    c: al(n) && al(t.rn),
  };
}

function validate(c: MatmulConfig): void {
  const { bm, bn, bk, rm, rn } = c.tile;
  const ok = [bm, bn, bk, rm, rn].every((x) => Number.isInteger(x) && x > 0) && bm % rm === 0 &&
    bn % rn === 0;
  if (!ok) throw new Error(`matmul tile ${matmulTileName(c.tile)} does not divide evenly`);
  if (c.tile.staging !== "register" && (rm % 4 !== 0 || rn % 4 !== 0 || bk % 4 !== 0)) {
    throw new Error(`workgroup-staged matmul tile ${matmulTileName(c.tile)} needs rm, rn, bk multiples of 4`);
  }
}

function buildMatmulKernel(c: MatmulConfig): Kernel {
  validate(c);
  const v = matmulVec4(c);
  const t = c.tile;
  const body = t.staging === "register" ? registerBody(c, v) : workgroupBody(c, v);
  const arr = (on: boolean) => (on ? "array<vec4<f32>>" : "array<f32>");
  const code = `@group(0) @binding(0) var<storage, read> A: ${arr(v.a)};
@group(0) @binding(1) var<storage, read> B: ${arr(v.b)};
@group(0) @binding(2) var<storage, read_write> C: ${arr(v.c)};
${c.bias ? `@group(0) @binding(3) var<storage, read> bias: ${arr(v.c)};` : ""}
${body}`;
  const layout = `${c.transA ? "T" : "N"}${c.transB ? "T" : "N"}`;
  const name = `matmul_f32_${matmulTileName(t)}_${layout}_${c.batch}x${c.m}x${c.n}x${c.k}`;
  return { name, code };
}

/** Accumulator declarations: vec4 along n (c{i}_{q}) when rn % 4 == 0, else scalars (c{i}_{j}). */
function accDecls(rm: number, rn: number): string {
  const out: string[] = [];
  for (let i = 0; i < rm; i++) {
    for (let j = 0; j < (rn % 4 === 0 ? rn / 4 : rn); j++) {
      out.push(`var c${i}_${j} = ${rn % 4 === 0 ? "vec4<f32>(0.0)" : "0.0"};`);
    }
  }
  return out.join(" ");
}

/** The FMAs of output row i at one kk (vec4 accumulators c{i}_{q} when rn % 4 == 0, else scalars c{i}_{j}). */
function rowFmas(
  i: number,
  kk: number,
  rn: number,
  a: (i: number, kk: number) => string,
  b: BExpr,
): string[] {
  if (rn % 4 === 0) {
    return Array.from(
      { length: rn / 4 },
      (_, q) => `c${i}_${q} = fma(vec4<f32>(${a(i, kk)}), ${b.vec4(kk, q)}, c${i}_${q});`,
    );
  }
  return Array.from(
    { length: rn },
    (_, j) => `c${i}_${j} = fma(${a(i, kk)}, ${b.scalar(kk, j)}, c${i}_${j});`,
  );
}

/** A load tagged with the first kk (k-major) or output row (row-major) that uses it. */
type Load = [at: number, line: string];

/**
 * k-major order (workgroup kernel): each kk's loads right before its FMAs, so only one k of operands is live
 * (measured on lavapipe: loads hoisted to the top of a 16-deep step ran 2.5× slower).
 */
function kMajor(
  kn: number,
  rm: number,
  rn: number,
  loads: Load[],
  a: (i: number, kk: number) => string,
  b: BExpr,
) {
  const out: string[] = [];
  for (let kk = 0; kk < kn; kk++) {
    for (const [at, line] of loads) if (at === kk) out.push(line);
    for (let i = 0; i < rm; i++) out.push(...rowFmas(i, kk, rn, a, b));
  }
  return out;
}

/**
 * Row-major order (register kernel): the step's B loads, then per output row its A loads and FMAs with kk
 * innermost, so each accumulator takes kn FMAs per visit. Where hundreds of accumulators live on the stack
 * (lavapipe) that divides their load/store traffic by kn (measured: 16×16 tiles 17.8 → 24.1 GFLOP/s).
 */
function rowMajor(
  kn: number,
  rm: number,
  rn: number,
  aLoads: Load[],
  bLoads: string[],
  a: (i: number, kk: number) => string,
  b: BExpr,
) {
  const out = [...bLoads];
  for (let i = 0; i < rm; i++) {
    for (const [at, line] of aLoads) if (at === i) out.push(line);
    const perK = Array.from({ length: kn }, (_, kk) => rowFmas(i, kk, rn, a, b));
    for (let x = 0; x < perK[0].length; x++) for (let kk = 0; kk < kn; kk++) out.push(perK[kk][x]);
  }
  return out;
}

interface BExpr {
  scalar: (kk: number, j: number) => string;
  vec4: (kk: number, q: number) => string;
}

/** Row and column coordinates of an invocation's block: `row(i)`, `col(j)` are WGSL u32 expressions. */
interface Coords {
  row: (i: number) => string;
  col: (j: number) => string;
}

/**
 * Stores of the invocation's rm×rn block, bias added per column. `guard` (workgroup kernel) skips stores past
 * the matrix edge. Without it (register kernel) the coordinates come clamped exactly as the loads were, so an
 * overhanging lane rewrites the last row/column group with bit-identical values and no store needs a branch
 * (on lavapipe each branch splits the SIMD group's exec mask and the block's straight-line code).
 */
function stores(c: MatmulConfig, v: Vec, at: Coords, guard: boolean): string {
  const { m, n } = c;
  const { bm, bn, rm, rn } = c.tile;
  const guarded = (r: string, cj: string, s: string) => {
    const g = guard
      ? [m % bm ? `${r} < ${m}u` : "", n % bn ? `${cj} < ${n}u` : ""].filter(Boolean).join(" && ")
      : "";
    return g ? `if (${g}) { ${s} }` : s;
  };
  const out: string[] = [];
  for (let i = 0; i < rm; i++) {
    const r = at.row(i);
    if (v.c) {
      for (let q = 0; q < rn / 4; q++) {
        const cq = at.col(4 * q);
        const val = `c${i}_${q}${c.bias ? ` + bias[(${cq}) / 4u]` : ""}`;
        out.push(guarded(r, cq, `C[cbase / 4u + (${r}) * ${n / 4}u + (${cq}) / 4u] = ${val};`));
      }
      continue;
    }
    for (let j = 0; j < rn; j++) {
      const cj = at.col(j);
      const acc = rn % 4 === 0 ? `c${i}_${j >> 2}[${j & 3}]` : `c${i}_${j}`;
      out.push(
        guarded(r, cj, `C[cbase + (${r}) * ${n}u + ${cj}] = ${acc}${c.bias ? ` + bias[${cj}]` : ""};`),
      );
    }
  }
  return out.join("\n  ");
}

// ---------------------------------------------------------------------------------------------------------
// "register": operands straight from storage.

/**
 * Clamped coordinates of the register kernel: rows/columns past the edge repeat the last row (or the last
 * group of 4 where that axis moves as vec4), so no load or store is guarded and no lane diverges. Columns
 * interleave across the workgroup's x lanes in vec4 groups (or singly), so a SIMD group's lanes touch
 * adjacent addresses of B and C.
 */
function registerCoords(c: MatmulConfig, v: Vec): Coords {
  const { m, n } = c;
  const { bm, bn, rn } = c.tile;
  const tx = bn / rn;
  const rowGroups = v.a && c.transA, colGroups = rn % 4 === 0 && n % 4 === 0;
  const raw = (j: number) => (rn % 4 === 0 ? `col0 + ${(j >> 2) * 4 * tx + (j & 3)}u` : `col0 + ${j * tx}u`);
  const row = (i: number) => {
    if (m % bm === 0) return `row0 + ${i}u`;
    return rowGroups ? `min(row0 + ${i & ~3}u, ${m - 4}u) + ${i & 3}u` : `min(row0 + ${i}u, ${m - 1}u)`;
  };
  const col = (j: number) => {
    if (n % bn === 0) return raw(j);
    return colGroups ? `min(${raw(j & ~3)}, ${n - 4}u) + ${j & 3}u` : `min(${raw(j)}, ${n - 1}u)`;
  };
  return { row, col };
}

/** Per-invocation operand bases (`pa*`, `pb*`, in units of the binding's element). */
function registerBases(c: MatmulConfig, v: Vec, at: Coords): string[] {
  const { k: K } = c;
  const { rm, rn } = c.tile;
  const out: string[] = [];
  for (let i = 0; i < rm; i += v.a && c.transA ? 4 : 1) {
    const idx = `abase + ${c.transA ? at.row(i) : `(${at.row(i)}) * ${K}u`}`;
    out.push(`let pa${i} = ${v.a ? `(${idx}) / 4u` : idx};`);
  }
  for (let j = 0; j < rn; j += v.b && !c.transB ? 4 : 1) {
    const idx = `bbase + ${c.transB ? `(${at.col(j)}) * ${K}u` : at.col(j)}`;
    out.push(`let pb${j} = ${v.b ? `(${idx}) / 4u` : idx};`);
  }
  return out;
}

/** Loads and FMAs for `kn` consecutive k starting at WGSL expression `k` (a multiple of 4 for vec4 along k). */
function registerStep(c: MatmulConfig, v: Vec, k: string, kn: number): string[] {
  const { m, n } = c;
  const { rm, rn } = c.tile;
  const aLoads: Load[] = [], bLoads: string[] = [];
  let a: (i: number, kk: number) => string;
  if (v.a && !c.transA) { // vec4 along k: a{i}_{kk/4}
    for (let i = 0; i < rm; i++) {
      for (let q = 0; q < kn / 4; q++) aLoads.push([i, `let a${i}_${q} = A[pa${i} + k4 + ${q}u];`]);
    }
    a = (i, kk) => `a${i}_${kk >> 2}[${kk & 3}]`;
  } else if (v.a) { // vec4 along m: a{kk}_{i/4}
    for (let kk = 0; kk < kn; kk++) {
      for (let q = 0; q < rm / 4; q++) {
        aLoads.push([4 * q, `let a${kk}_${q} = A[pa${4 * q} + ka + ${(kk * m) / 4}u];`]);
      }
    }
    a = (i, kk) => `a${kk}_${i >> 2}[${i & 3}]`;
  } else {
    for (let i = 0; i < rm; i++) {
      for (let kk = 0; kk < kn; kk++) {
        aLoads.push([i, `let a${i}_${kk} = A[pa${i} + ${c.transA ? `ka + ${kk * m}u` : `${k} + ${kk}u`}];`]);
      }
    }
    a = (i, kk) => `a${i}_${kk}`;
  }
  let b: BExpr;
  if (v.b && !c.transB) { // vec4 along n: b{kk}_{j/4}
    for (let kk = 0; kk < kn; kk++) {
      for (let q = 0; q < rn / 4; q++) {
        bLoads.push(`let b${kk}_${q} = B[pb${4 * q} + kb + ${(kk * n) / 4}u];`);
      }
    }
    b = { scalar: (kk, j) => `b${kk}_${j >> 2}[${j & 3}]`, vec4: (kk, q) => `b${kk}_${q}` };
  } else {
    const s = (kk: number, j: number) => (v.b ? `b${j}_${kk >> 2}[${kk & 3}]` : `b${j}_${kk}`);
    for (let j = 0; j < rn; j++) {
      if (v.b) { // vec4 along k: b{j}_{kk/4}
        for (let q = 0; q < kn / 4; q++) bLoads.push(`let b${j}_${q} = B[pb${j} + k4 + ${q}u];`);
        continue;
      }
      for (let kk = 0; kk < kn; kk++) {
        bLoads.push(`let b${j}_${kk} = B[pb${j} + ${c.transB ? `${k} + ${kk}u` : `kb + ${kk * n}u`}];`);
      }
    }
    b = { scalar: s, vec4: (kk, q) => `vec4<f32>(${[0, 1, 2, 3].map((x) => s(kk, 4 * q + x)).join(", ")})` };
  }
  // k offsets shared by the step's loads: along k in vec4s, and k whole rows of op(A)ᵀ / B.
  const head = [
    `let k4 = ${k} / 4u;`,
    `let ka = ${k} * ${v.a ? m / 4 : m}u;`,
    `let kb = ${k} * ${v.b ? n / 4 : n}u;`,
  ];
  const all = [...aLoads.map(([, l]) => l), ...bLoads];
  const used = head.filter((h) => all.some((l) => l.includes(h.slice(4, 6) + " ")));
  return [...used, ...rowMajor(kn, rm, rn, aLoads, bLoads, a, b)];
}

function registerBody(c: MatmulConfig, v: Vec): string {
  const { m, n, k: K } = c;
  const { bm, bn, bk, rm, rn } = c.tile;
  const tx = bn / rn, ty = bm / rm;
  const kMain = K - (K % bk);
  const loop = kMain > 0
    ? `for (var k = 0u; k < ${kMain}u; k += ${bk}u) {\n    ${registerStep(c, v, "k", bk).join("\n    ")}\n  }`
    : "";
  const tail = K % bk ? registerStep(c, v, `${kMain}u`, K % bk).join("\n  ") : "";
  const at = registerCoords(c, v);
  return `@compute @workgroup_size(${tx}, ${ty})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row0 = (wid.y * ${ty}u + lid.y) * ${rm}u; let col0 = wid.x * ${bn}u + lid.x * ${rn % 4 === 0 ? 4 : 1}u;
  let abase = wid.z * ${c.strideA}u; let bbase = wid.z * ${c.strideB}u; let cbase = wid.z * ${m * n}u;
  ${registerBases(c, v, at).join(" ")}
  ${accDecls(rm, rn)}
  ${loop}
  ${tail}
  ${stores(c, v, at, false)}
}`;
}

// ---------------------------------------------------------------------------------------------------------
// "workgroup": bk-deep slabs staged in workgroup memory, As as [k][m] and Bs as [k][n] (vec4 reads).

/** Cooperative loads of one slab into As (bm × bk) and Bs (bk × bn); zero outside the matrices. */
function stageSlab(c: MatmulConfig, v: Vec, threads: number): string[] {
  const { m, n, k: K } = c;
  const { bm, bn, bk } = c.tile;
  const out: string[] = [];
  const loop = (units: number, body: (e: string) => string) => {
    for (let l = 0; l < Math.ceil(units / threads); l++) {
      const e = `(li + ${l * threads}u)`;
      const s = body(e);
      out.push((l + 1) * threads > units ? `if (${e} < ${units}u) { ${s} }` : `{ ${s} }`);
    }
  };
  const guard = (conds: string[]) => conds.filter(Boolean).join(" && ");
  const guarded = (v: string, zero: string, g: string, load: string) =>
    g ? `var ${v} = ${zero}; if (${g}) { ${v} = ${load}; }` : `let ${v} = ${load};`;
  const kOk = (kx: string) => (K % bk ? `k0 + ${kx} < ${K}u` : "");
  const mOk = (mx: string) => (m % bm ? `m0 + ${mx} < ${m}u` : "");
  const nOk = (nx: string) => (n % bn ? `n0 + ${nx} < ${n}u` : "");
  const put = (arr: string, w: number, kk: string, x: string, val: string) =>
    `${arr}[(${kk}) * ${w / 4}u + (${x}) / 4u][(${x}) % 4u] = ${val};`;
  if (v.a && !c.transA) {
    loop(bm * bk / 4, (e) => {
      const g = guard([mOk("mm"), kOk("kq * 4u")]);
      const ld = `A[(abase + (m0 + mm) * ${K}u + k0) / 4u + kq]`;
      const st = [0, 1, 2, 3].map((x) => put("As", bm, `kq * 4u + ${x}u`, "mm", `v[${x}]`)).join(" ");
      return `let mm = ${e} / ${bk / 4}u; let kq = ${e} % ${bk / 4}u; ${
        guarded("v", "vec4<f32>(0.0)", g, ld)
      } ${st}`;
    });
  } else if (v.a) {
    loop(bk * bm / 4, (e) => {
      const g = guard([kOk("kk"), mOk("mq * 4u")]);
      const ld = `A[(abase + (k0 + kk) * ${m}u + m0) / 4u + mq]`;
      return `let kk = ${e} / ${bm / 4}u; let mq = ${e} % ${bm / 4}u; ${
        guarded("v", "vec4<f32>(0.0)", g, ld)
      } As[kk * ${bm / 4}u + mq] = v;`;
    });
  } else {
    loop(bm * bk, (e) => {
      const split = c.transA
        ? `let kk = ${e} / ${bm}u; let mm = ${e} % ${bm}u;`
        : `let mm = ${e} / ${bk}u; let kk = ${e} % ${bk}u;`;
      const idx = c.transA ? `(k0 + kk) * ${m}u + m0 + mm` : `(m0 + mm) * ${K}u + k0 + kk`;
      return `${split} ${guarded("x", "0.0", guard([mOk("mm"), kOk("kk")]), `A[abase + ${idx}]`)} ${
        put("As", bm, "kk", "mm", "x")
      }`;
    });
  }
  if (v.b && !c.transB) {
    loop(bk * bn / 4, (e) => {
      const g = guard([kOk("kk"), nOk("nq * 4u")]);
      const ld = `B[(bbase + (k0 + kk) * ${n}u + n0) / 4u + nq]`;
      return `let kk = ${e} / ${bn / 4}u; let nq = ${e} % ${bn / 4}u; ${
        guarded("v", "vec4<f32>(0.0)", g, ld)
      } Bs[kk * ${bn / 4}u + nq] = v;`;
    });
  } else if (v.b) {
    loop(bn * bk / 4, (e) => {
      const g = guard([nOk("nn"), kOk("kq * 4u")]);
      const ld = `B[(bbase + (n0 + nn) * ${K}u + k0) / 4u + kq]`;
      const st = [0, 1, 2, 3].map((x) => put("Bs", bn, `kq * 4u + ${x}u`, "nn", `v[${x}]`)).join(" ");
      return `let nn = ${e} / ${bk / 4}u; let kq = ${e} % ${bk / 4}u; ${
        guarded("v", "vec4<f32>(0.0)", g, ld)
      } ${st}`;
    });
  } else {
    loop(bk * bn, (e) => {
      const split = c.transB
        ? `let nn = ${e} / ${bk}u; let kk = ${e} % ${bk}u;`
        : `let kk = ${e} / ${bn}u; let nn = ${e} % ${bn}u;`;
      const idx = c.transB ? `(n0 + nn) * ${K}u + k0 + kk` : `(k0 + kk) * ${n}u + n0 + nn`;
      return `${split} ${guarded("x", "0.0", guard([nOk("nn"), kOk("kk")]), `B[bbase + ${idx}]`)} ${
        put("Bs", bn, "kk", "nn", "x")
      }`;
    });
  }
  return out;
}

function workgroupBody(c: MatmulConfig, v: Vec): string {
  const { m, n, k: K } = c;
  const { bm, bn, bk, rm, rn } = c.tile;
  const tx = bn / rn, ty = bm / rm, threads = tx * ty;
  const loads: Load[] = [];
  for (let kk = 0; kk < bk; kk++) {
    for (let q = 0; q < rm / 4; q++) {
      loads.push([kk, `let a${kk}_${q} = As[${(kk * bm) / 4}u + ty * ${rm / 4}u + ${q}u];`]);
    }
    for (let q = 0; q < rn / 4; q++) {
      loads.push([kk, `let b${kk}_${q} = Bs[${(kk * bn) / 4}u + tx * ${rn / 4}u + ${q}u];`]);
    }
  }
  const b: BExpr = { scalar: (kk, j) => `b${kk}_${j >> 2}[${j & 3}]`, vec4: (kk, q) => `b${kk}_${q}` };
  const inner = kMajor(bk, rm, rn, loads, (i, kk) => `a${kk}_${i >> 2}[${i & 3}]`, b);
  return `var<workgroup> As: array<vec4<f32>, ${(bk * bm) / 4}>;
var<workgroup> Bs: array<vec4<f32>, ${(bk * bn) / 4}>;
@compute @workgroup_size(${tx}, ${ty})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u,
        @builtin(local_invocation_index) li: u32) {
  let tx = lid.x; let ty = lid.y;
  let m0 = wid.y * ${bm}u; let n0 = wid.x * ${bn}u;
  let abase = wid.z * ${c.strideA}u; let bbase = wid.z * ${c.strideB}u; let cbase = wid.z * ${m * n}u;
  ${accDecls(rm, rn)}
  for (var k0 = 0u; k0 < ${K}u; k0 += ${bk}u) {
    ${stageSlab(c, v, threads).join("\n    ")}
    workgroupBarrier();
    ${inner.join("\n    ")}
    workgroupBarrier();
  }
  let row0 = m0 + ty * ${rm}u; let col0 = n0 + tx * ${rn}u;
  ${stores(c, v, { row: (i) => `row0 + ${i}u`, col: (j) => `col0 + ${j}u` }, true)}
}`;
}

// One Kernel object per arguments (kernels/common.ts cachedKernel).
export const matmulKernel = cachedKernel(buildMatmulKernel);
