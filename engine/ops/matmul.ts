/**
 * matmul (batched, either operand transposed, batch dims broadcast) and linear (PyTorch layout W: (out, in)).
 * Forward: the tiled kernel of kernels/matmul.wgsl.ts with the tile chosen per adapter and problem size
 * (MATMUL_TILES); backward: two more matmuls with the transposes folded into the kernel's indexing (never
 * materialised); JVP (bilinear): op(ȧ)·op(b) + op(a)·op(ḃ), for linear ẋWᵀ + xẆᵀ + ḃ; float64 reference below.
 */
import { dispatchMatmulTex } from "./matmul_tex.ts";
import type { Triangle } from "../../kernels/matmul_tex.wgsl.ts";
import {
  DEFAULT_TILE,
  type MatmulConfig,
  matmulGrid,
  matmulKernel,
  type MatmulTile,
  matmulVec4,
} from "../../kernels/matmul.wgsl.ts";
import { type AdapterKind, type AdapterTable, adapterTable } from "../adapter.ts";
import { needsGrad, record } from "../autograd.ts";
import { gpu } from "../device.ts";
import { dispatch } from "../runtime.ts";
import { type Shape, shapeStr, Tensor } from "../tensor.ts";
import { add, broadcastShapes, map, sumTo } from "./elementwise.ts";
import { sum } from "./reduce.ts";

export interface TileRule {
  tile: MatmulTile;
  /** Only for products of at least this many multiply-adds (batch·m·n·k): big register tiles take ~1 s to compile. */
  minWork?: number;
  /** Only when A, B and C all move as vec4 (scalar loads make a big tile's code, and its compile, 4× longer). */
  vec4?: boolean;
  /** Only when the grid's padding wastes at most this fraction of the work (default 0.25). */
  maxWaste?: number;
  /** Only for outputs at most this many columns wide. */
  maxN?: number;
  /** Where the numbers came from. */
  note: string;
}

/**
 * Tile rules for software adapters, filled from `deno run -A bench/sweep_matmul.ts` on lavapipe (SwiftShader
 * shares its cost model: loads are per-lane loops): the first rule whose conditions match wins; a problem none
 * of them fit gets DEFAULT_TILE. GFLOP/s figures are wall-clock on a quiet moment of the machine.
 */
const CPU_RULES: readonly TileRule[] = [
  {
    // lavapipe: every load is a per-lane loop of ~40 x86 instructions per vec4 while an FMA is one, so the
    // register tile is as big as compile time allows: 32×32 per invocation compiles in ~4 s (Mesa caches it on
    // disk); 64×32 is ~10% faster but takes ~13 s.
    tile: { bm: 128, bn: 256, bk: 4, rm: 32, rn: 32, staging: "register" },
    minWork: 2 ** 28,
    vec4: true,
    note: "sweep_matmul 2026-11-28, GFLOP/s (FMA ceiling ~87): 1024³ 30.2, 4096×256×768 28.6, ×768×256 19-24",
  },
  {
    tile: { bm: 128, bn: 128, bk: 4, rm: 16, rn: 16, staging: "register" },
    minWork: 2 ** 21,
    vec4: true,
    note: "sweep_matmul 2026-11-28: 1024³ 24.3, 4096×256×768 23.6 GFLOP/s; compiles in ~0.6 s",
  },
  {
    // Narrow outputs (N = 32 or 64: attention's P·V, dS·K, dSᵀ·Q at head dim 32/64), which the square tiles
    // above pad 2-4×.
    tile: { bm: 128, bn: 32, bk: 4, rm: 16, rn: 4, staging: "register" },
    maxN: 64,
    note:
      "sweep_matmul 2026-11-29 at 10240×320×32: NN 11.7, TN 10.9 GFLOP/s (64×64 t8×8: 7.5, 6.9); compiles in 0.2 s",
  },
  {
    tile: { bm: 64, bn: 64, bk: 4, rm: 8, rn: 8, staging: "register" },
    maxWaste: Infinity,
    note: "small or odd shapes: compiles in ~0.2 s (1024³ 15.1 GFLOP/s; DEFAULT_TILE does 6.6 here)",
  },
];

/**
 * Per-adapter rules (engine/adapter.ts): software adapters get CPU_RULES; GPUs and unknown adapters have no
 * rules yet, so every problem gets DEFAULT_TILE (workgroup-memory tiling).
 */
export const MATMUL_TILES: AdapterTable<readonly TileRule[]> = adapterTable({ cpu: CPU_RULES, default: [] });

let forced: MatmulTile | null = null;

/** Force one tile for every matmul (tests and sweeps); `null` goes back to the table. */
export function setMatmulTile(tile: MatmulTile | null): void {
  forced = tile;
}

/** The problem a tile is chosen for (the kernel config without the tile). */
export type MatmulProblem = Omit<MatmulConfig, "tile">;

function fits(rule: TileRule, p: MatmulProblem): boolean {
  const t = rule.tile;
  if (p.batch * p.m * p.n * p.k < (rule.minWork ?? 0) || p.n > (rule.maxN ?? Infinity)) return false;
  const v = matmulVec4({ ...p, tile: t });
  if (rule.vec4 && !(v.a && v.b && v.c)) return false;
  const padded = Math.ceil(p.m / t.bm) * t.bm * Math.ceil(p.n / t.bn) * t.bn;
  return padded <= (1 + (rule.maxWaste ?? 0.25)) * p.m * p.n;
}

/** The tile for a problem on this adapter, or on `kind` (without a problem: the adapter's first rule). */
export function matmulTile(problem?: MatmulProblem, kind: AdapterKind = gpu().adapterKind): MatmulTile {
  if (forced) return forced;
  const rules = MATMUL_TILES.for(kind);
  if (!problem) return rules[0]?.tile ?? DEFAULT_TILE;
  return rules.find((r) => fits(r, problem))?.tile ?? DEFAULT_TILE;
}

function dims(t: Tensor, trans: boolean): [number, number] {
  const r = t.shape[t.ndim - 2], c = t.shape[t.ndim - 1];
  return trans ? [c, r] : [r, c];
}

/** The problem and output shape of op(a)·op(b), with the checks every matmul makes. */
function problemOf(a: Tensor, b: Tensor, transA: boolean, transB: boolean, bias: boolean) {
  if (a.ndim < 2 || b.ndim < 2) {
    throw new Error(`matmul needs ≥2-d operands, got ${shapeStr(a.shape)} and ${shapeStr(b.shape)}`);
  }
  const [m, ka] = dims(a, transA), [kb, n] = dims(b, transB);
  if (ka !== kb) {
    throw new Error(
      `matmul: inner dims differ: ${shapeStr(a.shape)}${transA ? "ᵀ" : ""} · ${shapeStr(b.shape)}${
        transB ? "ᵀ" : ""
      }`,
    );
  }
  const batchA = a.shape.slice(0, -2), batchB = b.shape.slice(0, -2);
  const batchShape = broadcastShapes(batchA, batchB);
  const batch = batchShape.reduce((x, y) => x * y, 1);
  const nA = batchA.reduce((x, y) => x * y, 1), nB = batchB.reduce((x, y) => x * y, 1);
  // Broadcasting is supported when a side is either full-batch or a single matrix.
  if ((nA !== batch && nA !== 1) || (nB !== batch && nB !== 1)) {
    throw new Error(`matmul: batch dims ${shapeStr(batchA)} and ${shapeStr(batchB)} need expanding first`);
  }
  const problem: MatmulProblem = {
    batch,
    m,
    n,
    k: ka,
    transA,
    transB,
    strideA: nA === 1 ? 0 : m * ka,
    strideB: nB === 1 ? 0 : ka * n,
    bias,
  };
  return { problem, outShape: [...batchShape, m, n] };
}

/**
 * Raw matmul (no autodiff) with an optional bias added per output column. `triB`: op(b) has exact zeros off
 * that triangle (PSGD's factors), which the texture path skips; the storage kernels multiply them (same result).
 */
export function matmulRaw(
  a: Tensor,
  b: Tensor,
  transA: boolean,
  transB: boolean,
  bias?: Tensor,
  triB?: Triangle,
): Tensor {
  const { problem, outShape } = problemOf(a, b, transA, transB, !!bias);
  const out = Tensor.empty(outShape);
  // Software adapters read operands from textures where they can (matmul_tex.ts); a forced tile means a test
  // or sweep wants the storage-buffer kernels.
  if (forced || !dispatchMatmulTex(problem, a, b, out, bias, triB)) {
    dispatchMatmul({ ...problem, tile: matmulTile(problem) }, [a, b, out], bias);
  }
  return out;
}

/**
 * P∘(op(a)·op(b) − Δ) with Δ one value per output row over all batches, in one texture-path dispatch (the
 * dense attention's dS from dO·Vᵀ), or null where that path does not apply: the caller then takes the product
 * and its own row pass.
 */
export function matmulSoftmaxGrad(
  a: Tensor,
  b: Tensor,
  transA: boolean,
  transB: boolean,
  p: Tensor,
  delta: Tensor,
): Tensor | null {
  const { problem, outShape } = problemOf(a, b, transA, transB, false);
  if (forced || p.shape.join() !== outShape.join() || delta.size !== problem.batch * problem.m) return null;
  const out = Tensor.empty(outShape);
  if (dispatchMatmulTex(problem, a, b, out, undefined, undefined, { p, delta })) return out;
  out.dispose();
  return null;
}

/**
 * Encode one matmul. Where an operand is over the adapter's storage-binding limit, the batch is split into
 * chunks that each bind their slices by offset (chunk starts stay on the offset alignment); a single matrix
 * over the limit is an error.
 */
function dispatchMatmul(cfg: MatmulConfig, [a, b, out]: Tensor[], bias?: Tensor): void {
  const { maxStorageBufferBindingSize: limit, minStorageBufferOffsetAlignment: align } = gpu().limits;
  const tensors = [a, b, out];
  const per = [cfg.strideA * 4, cfg.strideB * 4, cfg.m * cfg.n * 4]; // bytes per batch item; 0 = broadcast
  let chunk = cfg.batch;
  if (Math.max(...tensors.map((t) => t.byteSize)) > limit) {
    for (let i = 0; i < 3; i++) {
      if (per[i] === 0 && tensors[i].byteSize > limit) chunk = 0;
      else if (per[i] > 0) chunk = Math.min(chunk, Math.floor(limit / per[i]));
    }
    while (chunk > 0 && per.some((p) => (chunk * p) % align !== 0)) chunk--;
    if (chunk < 1) {
      throw new Error(
        `matmul: an operand of ${shapeStr(a.shape)} · ${
          shapeStr(b.shape)
        } is over this adapter's ${limit} B ` +
          "storage binding and the batch cannot be split to fit",
      );
    }
  }
  for (let z0 = 0; z0 < cfg.batch; z0 += chunk) {
    const c = { ...cfg, batch: Math.min(chunk, cfg.batch - z0) };
    const bindings = tensors.map((t, i) =>
      per[i] === 0
        ? { buffer: t.buffer, size: t.byteSize }
        : { buffer: t.buffer, offset: z0 * per[i], size: c.batch * per[i] }
    );
    if (bias) bindings.push({ buffer: bias.buffer, size: bias.byteSize });
    dispatch(matmulKernel(c), bindings, matmulGrid(c));
  }
}

/** op(a) @ op(b) with autodiff. */
export function matmul(a: Tensor, b: Tensor, transA = false, transB = false): Tensor {
  const out = matmulRaw(a, b, transA, transB);
  return record(out, "matmul", [a, b], (g) => {
    const ga = !transA
      ? (transB ? matmulRaw(g, b, false, false) : matmulRaw(g, b, false, true))
      : (transB ? matmulRaw(b, g, true, true) : matmulRaw(b, g, false, true));
    const gb = !transB
      ? (transA ? matmulRaw(a, g, false, false) : matmulRaw(a, g, true, false))
      : (transA ? matmulRaw(g, a, true, true) : matmulRaw(g, a, true, false));
    return [needsGrad(a) ? sumTo(ga, a.shape) : null, needsGrad(b) ? sumTo(gb, b.shape) : null];
  }, ([ta, tb]) => {
    const terms = [ta && matmulRaw(ta, b, transA, transB), tb && matmulRaw(a, tb, transA, transB)];
    return sumTerms(terms);
  });
}

/** Σ of the non-null terms (null when all are null: a zero tangent). */
function sumTerms(terms: (Tensor | null)[]): Tensor | null {
  const ts = terms.filter((t): t is Tensor => t !== null);
  return ts.length ? ts.slice(1).reduce((acc, t) => add(acc, t), ts[0]) : null;
}

/** y = x Wᵀ + b over the last axis; W is (out_features, in_features) as in torch.nn.Linear. */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor): Tensor {
  const inF = x.shape[x.ndim - 1];
  if (weight.ndim !== 2 || weight.shape[1] !== inF) {
    throw new Error(`linear: weight ${shapeStr(weight.shape)} does not take inputs ${shapeStr(x.shape)}`);
  }
  const rows = x.size / inF;
  const x2 = x.view([rows, inF]);
  const y2 = matmulRaw(x2, weight, false, true, bias);
  const y = y2.view([...x.shape.slice(0, -1), weight.shape[0]]);
  x2.dispose();
  y2.dispose();
  const inputs = bias ? [x, weight, bias] : [x, weight];
  /** u Vᵀ (+ c) over the last axis, no autodiff. */
  const lin = (u: Tensor, v: Tensor, c?: Tensor) => {
    const u2 = u.view([rows, inF]);
    const out = matmulRaw(u2, v, false, true, c).view(y.shape);
    u2.dispose();
    return out;
  };
  return record(y, "linear", inputs, (g) => {
    // Views are disposed here, not at scope end: a live view keeps its storage, and backward frees g (and, with
    // freeActivations, x) as soon as this returns.
    const g2 = g.view([rows, weight.shape[0]]);
    let gx: Tensor | null = null;
    if (needsGrad(x)) {
      const gx2 = matmulRaw(g2, weight, false, false);
      gx = gx2.view(x.shape);
      gx2.dispose();
    }
    const xv = x.view([rows, inF]);
    const gw = needsGrad(weight) ? matmulRaw(g2, xv, true, false) : null;
    const gb = bias && needsGrad(bias) ? sum(g2, 0) : null;
    g2.dispose();
    xv.dispose();
    return bias ? [gx, gw, gb] : [gx, gw];
  }, ([tx, tw, tb]) => {
    // ẏ = ẋWᵀ + xẆᵀ + ḃ, the bias tangent folded into the second matmul when there is one.
    const viaW = tw ? lin(x, tw, tb ?? undefined) : tb ? map([tb], "in0", "linear_jvp_bias", y.shape) : null;
    return sumTerms([tx && lin(tx, weight), viaW]);
  });
}

/** Float64 reference: (batch, m, k) · (batch, k, n) with explicit transposes and batch broadcasting. */
export const reference = {
  matmul(a: Float64Array, aShape: Shape, b: Float64Array, bShape: Shape, transA = false, transB = false) {
    const ar = aShape[aShape.length - 2], ac = aShape[aShape.length - 1];
    const br = bShape[bShape.length - 2], bc = bShape[bShape.length - 1];
    const [m, k] = transA ? [ac, ar] : [ar, ac];
    const n = transB ? br : bc;
    const nA = a.length / (ar * ac), nB = b.length / (br * bc), batch = Math.max(nA, nB);
    const out = new Float64Array(batch * m * n);
    for (let z = 0; z < batch; z++) {
      const ao = (nA === 1 ? 0 : z) * ar * ac, bo = (nB === 1 ? 0 : z) * br * bc;
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) {
          let s = 0;
          for (let p = 0; p < k; p++) {
            s += a[ao + (transA ? p * ac + i : i * ac + p)] * b[bo + (transB ? j * bc + p : p * bc + j)];
          }
          out[z * m * n + i * n + j] = s;
        }
      }
    }
    return out;
  },
};
