/**
 * The checks the storage-kernel matmul tests (matmul_test.ts) and the texture-path tests (matmul_tex_test.ts)
 * share: op(A)·op(B) over layouts against the float64 reference, and linear / matmul gradients against float64
 * differences. Tolerances: forward atol 1e-4 + rtol 1e-4, gradients atol 1e-3 + rtol 1e-3.
 */
import { assertClose, checkOp, randArray } from "../helpers.ts";
import { linear, matmul, Tensor } from "../../engine/index.ts";
import { reference } from "../../engine/ops/matmul.ts";

export const FWD = { atol: 1e-4, rtol: 1e-4 };
export const GRAD = { atol: 1e-3, rtol: 1e-3 };

export function shapeOf(batch: number[], rows: number, cols: number, trans: boolean): number[] {
  return [...batch, ...(trans ? [cols, rows] : [rows, cols])];
}

/** [transA, transB] of every layout. */
export const ALL_LAYOUTS: [boolean, boolean][] = [[false, false], [true, false], [false, true], [true, true]];

const layoutName = (transA: boolean, transB: boolean) => `${transA ? "T" : "N"}${transB ? "T" : "N"}`;

/**
 * GPU op(A)·op(B) for each layout vs the reference (operands drawn with `seeds`); `expect` runs first for each
 * layout (the texture tests assert the path there). Returns the max error seen.
 */
export async function forwardLayouts(
  m: number,
  k: number,
  n: number,
  batchA: number[],
  batchB: number[],
  opts: {
    layouts?: [boolean, boolean][];
    seeds?: [number, number];
    expect?: (label: string, transA: boolean, transB: boolean) => void;
  } = {},
): Promise<number> {
  const [seedA, seedB] = opts.seeds ?? [11, 12];
  let worst = 0;
  for (const [transA, transB] of opts.layouts ?? ALL_LAYOUTS) {
    const as = shapeOf(batchA, m, k, transA), bs = shapeOf(batchB, k, n, transB);
    const label = `${m}x${k}x${n} ${layoutName(transA, transB)} batch ${batchA}|${batchB}`;
    opts.expect?.(label, transA, transB);
    const a = randArray(as.reduce((x, y) => x * y, 1), seedA),
      b = randArray(bs.reduce((x, y) => x * y, 1), seedB);
    const ta = Tensor.fromData(Float32Array.from(a), as), tb = Tensor.fromData(Float32Array.from(b), bs);
    const out = matmul(ta, tb, transA, transB);
    try {
      worst = Math.max(
        worst,
        assertClose(label, await out.read(), reference.matmul(a, as, b, bs, transA, transB), FWD),
      );
    } finally {
      [ta, tb, out].forEach((t) => t.dispose());
    }
  }
  return worst;
}

/** y = x Wᵀ + b on x (2, rows/2, inF): forward and the gradients of x, W and b. */
export async function checkLinear(rows: number, inF: number, outF: number): Promise<void> {
  const x = randArray(rows * inF, 1), w = randArray(outF * inF, 2), b = randArray(outF, 3);
  const r = await checkOp({
    label: `linear ${rows}x${inF}->${outF}`,
    inputs: [{ data: x, shape: [2, rows / 2, inF] }, { data: w, shape: [outF, inF] }, {
      data: b,
      shape: [outF],
    }],
    fn: ([tx, tw, tb]) => linear(tx, tw, tb),
    ref: ([rx, rw, rb]) => {
      const y = reference.matmul(rx, [rows, inF], rw, [outF, inF], false, true);
      for (let i = 0; i < y.length; i++) y[i] += rb[i % outF];
      return y;
    },
    fwdTol: FWD,
    gradTol: GRAD,
    maxProbes: 24,
  });
  console.log(
    `linear ${rows}x${inF}->${outF}: max abs error fwd ${r.fwd.toExponential(2)}, grad ${
      r.grad.toExponential(2)
    }`,
  );
}

/** Gradients of op(A)·op(B) (batch 2) through one layout. */
export async function checkMatmulGrad(transA: boolean, transB: boolean, [m, k, n]: number[]): Promise<void> {
  const as = shapeOf([2], m, k, transA), bs = shapeOf([2], k, n, transB);
  const r = await checkOp({
    label: `matmul grad ${layoutName(transA, transB)}`,
    inputs: [{ data: randArray(2 * m * k, 5), shape: as }, { data: randArray(2 * k * n, 6), shape: bs }],
    fn: ([ta, tb]) => matmul(ta, tb, transA, transB),
    ref: ([ra, rb]) => reference.matmul(ra, as, rb, bs, transA, transB),
    fwdTol: FWD,
    gradTol: GRAD,
    maxProbes: 16,
  });
  console.log(
    `${layoutName(transA, transB)}: max abs error fwd ${r.fwd.toExponential(2)}, grad ${
      r.grad.toExponential(2)
    }`,
  );
}
