/**
 * The fused broadcast maps of the transformer block (engine/ops/modulation.ts): `modulate` (1 + a)·x + b and
 * `gate` (x + g·r)/√(1 + g²), values and gradients of every input against the float64 reference and its
 * central differences, for per-batch and shared (1, 1, D) column operands, D a multiple of 4 (vec4) or not,
 * extra row axes, and the backward with its rows in one chunk or split into several (the partial sums then
 * reduced). Tolerances: forward 1e-5 abs + 1e-5 rel, gradient 2e-3 abs + 2e-3 rel (float32 vs float64 central
 * differences at h = 1e-3). Max errors are printed. Also: the fused ops give what the composed maps give.
 */
import { throws } from "node:assert/strict";
import * as E from "../../engine/index.ts";
import { reference, setModulationChunks } from "../../engine/ops/modulation.ts";
import { assertClose, checkOp, gpuReady, randArray } from "../helpers.ts";

const FWD = { atol: 1e-5, rtol: 1e-5 };
const GRAD = { atol: 2e-3, rtol: 2e-3 };
const numel = (s: number[]) => s.reduce((a, b) => a * b, 1);

const CASES: { claim: string; x: number[]; col: number[]; chunks: number | null }[] = [
  { claim: "per-batch columns, D 8 (vec4), rows in one chunk", x: [3, 5, 8], col: [3, 1, 8], chunks: 1 },
  {
    claim: "per-batch columns, D 8, rows split in 2 chunks of 3 and 2",
    x: [3, 5, 8],
    col: [3, 1, 8],
    chunks: 2,
  },
  { claim: "shared columns, D 6 (scalar), rows split in 4", x: [2, 7, 6], col: [1, 1, 6], chunks: 4 },
  { claim: "per-batch columns over 2 row axes, D 4", x: [2, 3, 2, 4], col: [2, 1, 1, 4], chunks: null },
  { claim: "shared columns, batch 1, D 5", x: [1, 4, 5], col: [1, 1, 5], chunks: 1 },
];

for (const c of CASES) {
  for (const op of ["modulate", "gate"] as const) {
    Deno.test(`${op}: ${c.claim} — values and every gradient match float64`, async () => {
      await gpuReady();
      const D = c.x[c.x.length - 1];
      const col = { data: randArray(numel(c.col), 7, -1.5, 1.5), shape: c.col };
      const inputs = op === "modulate"
        ? [{ data: randArray(numel(c.x), 5, -2, 2), shape: c.x }, col, {
          data: randArray(numel(c.col), 9),
          shape: c.col,
        }]
        : [{ data: randArray(numel(c.x), 5, -2, 2), shape: c.x }, col, {
          data: randArray(numel(c.x), 11, -2, 2),
          shape: c.x,
        }];
      setModulationChunks(c.chunks);
      try {
        const r = await checkOp({
          label: `${op} ${c.x.join("x")}`,
          inputs,
          fn: ([x, y, z]) => (op === "modulate" ? E.modulate(x, y, z) : E.gate(x, y, z)),
          ref: (
            [x, y, z],
          ) => (op === "modulate" ? reference.modulate(x, y, z, D) : reference.gate(x, y, z, D)),
          fwdTol: FWD,
          gradTol: GRAD,
          h: 1e-3,
        });
        console.log(
          `${op} ${c.x.join("x")}: max error forward ${r.fwd.toExponential(2)}, gradient ${
            r.grad.toExponential(2)
          }`,
        );
      } finally {
        setModulationChunks(null);
      }
    });
  }
}

Deno.test("modulate/gate: equal to the composed broadcast maps; mismatched shapes are refused", async () => {
  await gpuReady();
  const t = (s: number[], seed: number) =>
    E.Tensor.fromData(Float32Array.from(randArray(numel(s), seed, -2, 2)), s);
  const x = t([2, 6, 8], 1), a = t([2, 1, 8], 2), b = t([2, 1, 8], 3), r = t([2, 6, 8], 4);
  const fused = await E.modulate(x, a, b).read(), composed = await E.add(E.mul(E.add(a, 1), x), b).read();
  assertClose("modulate vs composed", fused, composed, { atol: 1e-6, rtol: 1e-6 });
  const g1 = await E.gate(x, a, r).read();
  const g2 = await E.div(E.add(x, E.mul(a, r)), E.sqrt(E.add(E.square(a), 1))).read();
  assertClose("gate vs composed", g1, g2, { atol: 1e-6, rtol: 1e-6 });
  throws(() => E.modulate(x, t([2, 6, 8], 5), b), /modulate: expected x \(B, \.\.\., D\)/);
  throws(() => E.gate(x, a, t([2, 6, 4], 6)), /gate: x \(2, 6, 8\) and r \(2, 6, 4\) must have one shape/);
});
