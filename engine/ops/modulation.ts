/**
 * The transformer block's broadcast affine maps as fused ops (kernels/modulation.wgsl.ts): `modulate`
 * (1 + a)·x + b (the adaLN-style modulation) and `gate` (x + g·r)/√(1 + g²) (the gated residual), with x, r
 * (B, ...rows, D) and a, b, g (B, 1…, D) or (1, 1…, D). The same values as the composed broadcast maps, in one
 * forward and one backward dispatch (plus a reduction of the column partials where the backward splits rows).
 * Float64 references below; JVPs composed from maps.
 */
import {
  MODULATION_WG,
  type ModulationConfig,
  modulationInvocations,
  modulationKernel,
} from "../../kernels/modulation.wgsl.ts";
import { adapterTable } from "../adapter.ts";
import { record } from "../autograd.ts";
import { gpu } from "../device.ts";
import { dispatch, grid1d } from "../runtime.ts";
import { shapeStr, Tensor } from "../tensor.ts";
import { add, div, map, mul, sqrt, sub, sumTo } from "./elementwise.ts";

/**
 * Backward invocations wanted before the rows split into chunks (each chunk one partial per column): a GPU
 * needs thousands in flight; lavapipe runs 16 lanes, and a split costs it a reduction dispatch (~0.1 ms).
 */
export const MODULATION_MIN_INVOCATIONS = adapterTable({ cpu: 0, default: 4096 });

let forcedChunks: number | null = null;

/** Force the backward's row chunks (tests: the split path on any adapter); null restores the table. */
export function setModulationChunks(chunks: number | null): void {
  forcedChunks = chunks;
}

function config(op: ModulationConfig["op"], x: Tensor, col: Tensor[]): Omit<ModulationConfig, "pass"> {
  const D = x.shape[x.ndim - 1], B = x.shape[0];
  for (const c of col) {
    const ok = c.ndim === x.ndim && c.shape[c.ndim - 1] === D && (c.shape[0] === B || c.shape[0] === 1) &&
      c.shape.slice(1, -1).every((s) => s === 1) && c.shape.join() === col[0].shape.join();
    if (!ok || x.ndim < 3) {
      throw new Error(
        `${op}: expected x (B, ..., D) and column operands (B or 1, 1, ..., D), got ${
          shapeStr(x.shape)
        } and ${col.map((t) => shapeStr(t.shape)).join(", ")}`,
      );
    }
  }
  const rows = x.size / (B * D), cols = D % 4 === 0 ? D / 4 : D;
  const want = forcedChunks ?? Math.ceil(MODULATION_MIN_INVOCATIONS.for(gpu().adapterKind) / (B * cols));
  const chunks = Math.max(1, Math.min(rows, want));
  return { op, batch: B, rows, width: D, shared: col[0].shape[0] === 1 && B > 1, chunks };
}

function run(c: ModulationConfig, ins: Tensor[], outs: Tensor[]): void {
  const grid = grid1d(modulationInvocations(c), MODULATION_WG);
  dispatch(modulationKernel(c), [...ins, ...outs].map((t) => t.buffer), grid);
}

/** (B, chunks, D) partials → the column operand's gradient (its own shape). */
function columnGrad(p: Tensor, like: Tensor): Tensor {
  const [B, chunks, D] = p.shape;
  const s = chunks === 1 && B === like.shape[0] ? p : sumTo(p, [like.shape[0], 1, D]);
  const out = s.view(like.shape);
  s.dispose();
  if (s !== p) p.dispose();
  return out;
}

/** (1 + a)·x + b, a and b broadcast over x's rows (and batches when their first axis is 1). */
export function modulate(x: Tensor, a: Tensor, b: Tensor): Tensor {
  const cfg = config("modulate", x, [a, b]);
  const y = Tensor.empty(x.shape);
  run({ ...cfg, chunks: 1, pass: "forward" }, [x, a, b], [y]);
  const cs = [cfg.batch, cfg.chunks, cfg.width];
  return record(y, "modulate", [x, a, b], (g) => {
    const dx = Tensor.empty(x.shape), pa = Tensor.empty(cs), pb = Tensor.empty(cs);
    run({ ...cfg, pass: "backward" }, [x, a, g], [dx, pa, pb]);
    return [dx, columnGrad(pa, a), columnGrad(pb, b)];
  }, ([tx, ta, tb]) => {
    // ẏ = (1 + a)·ẋ + ȧ·x + ḃ
    const terms = [tx && mul(add(a, 1), tx), ta && mul(ta, x), tb].filter((t): t is Tensor => !!t);
    if (!terms.length) return null;
    const s = terms.reduce((p, t) => add(p, t));
    return s.shape.join() === x.shape.join() ? s : map([s], "in0", "expand", x.shape);
  });
}

/** (x + g·r)/√(1 + g²), g broadcast over the rows of x and r (and batches when its first axis is 1). */
export function gate(x: Tensor, g: Tensor, r: Tensor): Tensor {
  if (r.shape.join() !== x.shape.join()) {
    throw new Error(`gate: x ${shapeStr(x.shape)} and r ${shapeStr(r.shape)} must have one shape`);
  }
  const cfg = config("gate", x, [g]);
  const y = Tensor.empty(x.shape);
  run({ ...cfg, chunks: 1, pass: "forward" }, [x, g, r], [y]);
  return record(y, "gate", [x, g, r], (gy) => {
    const dx = Tensor.empty(x.shape), dr = Tensor.empty(x.shape);
    const pg = Tensor.empty([cfg.batch, cfg.chunks, cfg.width]);
    run({ ...cfg, pass: "backward" }, [x, g, r, gy], [dx, dr, pg]);
    return [dx, columnGrad(pg, g), dr];
  }, ([tx, tg, tr]) => {
    // ẏ = (ẋ + g·ṙ)/s + ġ·(r − y·g/s)/s, s = √(1 + g²)
    const s = sqrt(add(mul(g, g), 1));
    const terms = [tx, tr && mul(g, tr), tg && mul(tg, sub(r, div(mul(y, g), s)))]
      .filter((t): t is Tensor => !!t);
    return terms.length ? div(terms.reduce((p, t) => add(p, t)), s) : null;
  });
}

/** Float64 references on flat arrays: x, r (B·rows·D), column operands (B·D, or D when shared). */
export const reference = {
  modulate(x: ArrayLike<number>, a: ArrayLike<number>, b: ArrayLike<number>, D: number): Float64Array {
    const per = x.length / (a.length / D);
    return Float64Array.from(x, (v, i) => {
      const c = Math.floor(i / per) * D + (i % D);
      return (1 + a[c]) * v + b[c];
    });
  },
  gate(x: ArrayLike<number>, g: ArrayLike<number>, r: ArrayLike<number>, D: number): Float64Array {
    const per = x.length / (g.length / D);
    return Float64Array.from(x, (v, i) => {
      const c = Math.floor(i / per) * D + (i % D);
      return (v + g[c] * r[i]) / Math.sqrt(1 + g[c] * g[c]);
    });
  },
};
