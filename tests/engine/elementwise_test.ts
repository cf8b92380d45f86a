/**
 * Elementwise ops: forward vs the float64 reference table of engine/ops/elementwise.ts and backward vs
 * central differences, on random non-zero inputs in each op's domain, in both kernel forms (vec4 when the size
 * is a multiple of 4, broadcast-indexed otherwise). Tolerances: forward 1e-5 abs + 1e-5 rel (float32 rounding
 * of one transcendental), gradient 2e-3 abs + 2e-3 rel (float32 backward vs float64 differences).
 *
 * The ops come from the engine's own table (ELEMENTWISE_OPS), not a list kept here: an op added there without an
 * input domain below fails. Ops without a gradient are checked for exactly that: `sign` (derivative zero almost
 * everywhere, undefined at 0) passes no gradient (its input's .grad stays null); the comparison masks `gt`, `eq`
 * record no tape node at all (the mask never requires grad).
 */
import assert from "node:assert/strict";
import * as E from "../../engine/index.ts";
import {
  type BinaryOp,
  type CompareOp,
  ELEMENTWISE_OPS,
  reference,
  unaryHasGradient,
  type UnaryOp,
} from "../../engine/ops/elementwise.ts";
import { assertClose, checkOp, gpuReady, randArray } from "../helpers.ts";

const FWD = { atol: 1e-5, rtol: 1e-5 };
const GRAD = { atol: 2e-3, rtol: 2e-3 };

/** Each unary op's input domain (a compile error, and a failing test, for a table op missing here). */
const UNARY_DOMAIN: Record<UnaryOp, [number, number]> = {
  neg: [-2, 2],
  exp: [-2, 2],
  log: [0.2, 3],
  log1p: [-0.5, 3],
  sqrt: [0.2, 3],
  rsqrt: [0.3, 3],
  square: [-2, 2],
  abs: [-2, 2],
  sign: [-2, 2],
  tanh: [-3, 3],
  sigmoid: [-4, 4],
  silu: [-4, 4],
  sin: [-3, 3],
  cos: [-3, 3],
};
const UNARY = Object.keys(ELEMENTWISE_OPS.unary) as UnaryOp[];
const BINARY = Object.keys(ELEMENTWISE_OPS.binary) as BinaryOp[];
const COMPARE = Object.keys(ELEMENTWISE_OPS.compare) as CompareOp[];

Deno.test("elementwise: every op of the engine's table has a reference and an input domain here", () => {
  assert.deepEqual(Object.keys(reference.unary).sort(), [...UNARY].sort());
  assert.deepEqual(Object.keys(reference.binary).sort(), [...BINARY].sort());
  assert.deepEqual(Object.keys(reference.compare).sort(), [...COMPARE].sort());
  const missing = UNARY.filter((op) => !UNARY_DOMAIN[op]);
  assert.deepEqual(missing, [], `unary ops without a test domain: ${missing.join(", ")}`);
  // The ops the tests exercise are the engine's public ones.
  for (
    const [name, fn] of Object.entries({
      ...ELEMENTWISE_OPS.unary,
      ...ELEMENTWISE_OPS.binary,
      ...ELEMENTWISE_OPS.compare,
    })
  ) {
    assert.equal((E as Record<string, unknown>)[name], fn, `${name} is not the engine's exported op`);
  }
});

function refBroadcast(f: (...v: number[]) => number, xs: Float64Array[], shapes: number[][]): Float64Array {
  const out = E.broadcastShapes(...shapes);
  const n = out.reduce((a, b) => a * b, 1);
  const res = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const coords: number[] = [];
    let rem = i;
    for (let d = out.length - 1; d >= 0; d--) {
      coords[d] = rem % out[d];
      rem = Math.floor(rem / out[d]);
    }
    const vals = xs.map((x, k) => {
      const s = shapes[k];
      let idx = 0;
      for (let d = 0; d < s.length; d++) {
        idx = idx * s[d] + (s[d] === 1 ? 0 : coords[out.length - s.length + d]);
      }
      return x[idx];
    });
    res[i] = f(...vals);
  }
  return res;
}

for (const name of UNARY.filter(unaryHasGradient)) {
  const fn = ELEMENTWISE_OPS.unary[name], [lo, hi] = UNARY_DOMAIN[name] ?? [NaN, NaN];
  for (const shape of [[3, 37], [8, 20]]) {
    Deno.test(`elementwise: ${name} forward and backward match float64 on ${shape.join("x")}`, async () => {
      await gpuReady();
      const n = shape[0] * shape[1];
      // Keep |x| away from 0 where the derivative has a kink (abs).
      const data = randArray(n, 100 + name.length, lo, hi).map((
        v,
      ) => (name === "abs" && Math.abs(v) < 0.05 ? 0.5 : v));
      await checkOp({
        label: name,
        inputs: [{ data, shape }],
        fn: ([x]) => fn(x),
        ref: ([x]) => x.map(reference.unary[name]),
        fwdTol: FWD,
        gradTol: GRAD,
      });
    });
  }
}

for (const p of [3, -1, 0.5, 1.5]) {
  Deno.test(`elementwise: pow(x, ${p}) forward and backward (integer powers keep the sign of x)`, async () => {
    await gpuReady();
    const data = Number.isInteger(p)
      ? randArray(45, 5, 0.3, 2).map((v, i) => (i % 2 ? -v : v))
      : randArray(45, 5, 0.3, 2);
    await checkOp({
      label: `pow${p}`,
      inputs: [{ data, shape: [5, 9] }],
      fn: ([x]) => E.pow(x, p),
      ref: ([x]) => x.map((v) => Math.pow(v, p)),
      fwdTol: FWD,
      gradTol: GRAD,
    });
  });
}

for (const name of BINARY) {
  const fn = ELEMENTWISE_OPS.binary[name];
  for (const [sa, sb] of [[[5, 1, 7], [3, 1]], [[4, 6], [4, 6]], [[2, 3, 5], [5]]]) {
    Deno.test(`elementwise: ${name} broadcasts ${sa.join("x")} with ${sb.join("x")} (forward, both gradients)`, async () => {
      await gpuReady();
      const na = sa.reduce((x, y) => x * y, 1), nb = sb.reduce((x, y) => x * y, 1);
      const a = randArray(na, 21, 0.5, 2), b = randArray(nb, 22, 0.5, 2).map((v) => v + 0.013); // no ties
      await checkOp({
        label: name,
        inputs: [{ data: a, shape: sa }, { data: b, shape: sb }],
        fn: ([x, y]) => fn(x, y),
        ref: ([x, y]) => refBroadcast(reference.binary[name], [x, y], [sa, sb]),
        fwdTol: FWD,
        gradTol: GRAD,
      });
    });
  }
}

for (const name of UNARY.filter((op) => !unaryHasGradient(op))) {
  Deno.test(`elementwise: ${name} forward matches float64 (zeros included) and passes no gradient`, async () => {
    await gpuReady();
    const [lo, hi] = UNARY_DOMAIN[name] ?? [NaN, NaN];
    const data = randArray(37, 300 + name.length, lo, hi).map((v, i) => (i % 5 ? v : 0));
    const x = E.Tensor.fromData(Float32Array.from(data), [37], { requiresGrad: true, persistent: true });
    try {
      const got = await E.scope(() => {
        const y = ELEMENTWISE_OPS.unary[name](x);
        E.backward(E.sum(E.add(y, x)));
        return y.keep();
      }).read();
      const err = assertClose(`${name} forward`, got, data.map(reference.unary[name]), FWD);
      console.log(`${name}: forward max error ${err.toExponential(2)}`);
      // Only the `+ x` path reaches x: the op itself contributed nothing (not NaN, not a stray value).
      assertClose(`${name} gradient`, await x.grad!.read(), new Float64Array(37).fill(1), {
        atol: 0,
        rtol: 0,
      });
    } finally {
      x.grad?.dispose();
      x.dispose();
    }
  });
}

for (const name of COMPARE) {
  Deno.test(`elementwise: ${name} masks match float64 (ties, scalar and broadcast operands) and record no gradient`, async () => {
    await gpuReady();
    // Small integers, so ties (where gt is 0 and eq is 1) are frequent.
    const a = randArray(24, 60, -2, 2).map(Math.round), b = randArray(6, 61, -2, 2).map(Math.round);
    const ta = E.Tensor.fromData(Float32Array.from(a), [4, 6], { requiresGrad: true, persistent: true });
    const tb = E.Tensor.fromData(Float32Array.from(b), [6], { persistent: true });
    const ref = reference.compare[name];
    try {
      for (
        const [label, other, want] of [
          ["tensor", tb, a.map((v, i) => ref(v, b[i % 6]))],
          ["scalar", 1, a.map((v) => ref(v, 1))],
        ] as const
      ) {
        const mask = ELEMENTWISE_OPS.compare[name](ta, other);
        try {
          assert.equal(mask.requiresGrad, false, `${name} mask requires grad`);
          assert.equal(mask.node, null, `${name} recorded a tape node`);
          assertClose(`${name} (${label})`, await mask.read(), want, { atol: 0, rtol: 0 });
        } finally {
          mask.dispose();
        }
      }
    } finally {
      ta.dispose();
      tb.dispose();
    }
  });
}

Deno.test("elementwise: scalar operands, clamp and where", async () => {
  await gpuReady();
  const shape = [7, 11];
  const x = randArray(77, 9, -2, 2).map((v) => (Math.abs(Math.abs(v) - 1) < 0.02 ? 0.3 : v));
  const c = randArray(77, 10, -1, 1).map((v) => (v > 0 ? 1 : 0));
  await checkOp({
    label: "scalar ops",
    inputs: [{ data: x, shape }],
    fn: ([t]) => E.add(E.mul(E.sub(2, t), 3), E.div(t, 4)),
    ref: ([t]) => t.map((v) => (2 - v) * 3 + v / 4),
    fwdTol: FWD,
    gradTol: GRAD,
  });
  await checkOp({
    label: "clamp",
    inputs: [{ data: x, shape }],
    fn: ([t]) => E.clamp(t, -1, 1),
    ref: ([t]) => t.map((v) => Math.min(Math.max(v, -1), 1)),
    fwdTol: FWD,
    gradTol: GRAD,
  });
  const y = randArray(11, 12, -3, 3);
  await checkOp({
    label: "where",
    inputs: [{ data: c, shape }, { data: x, shape }, { data: y, shape: [11] }],
    fn: ([m, a, b]) => E.where(m, a, b),
    ref: ([m, a, b]) => m.map((v, i) => (v !== 0 ? a[i] : b[i % 11])),
    fwdTol: FWD,
    gradTol: GRAD,
    wrt: [1, 2],
  });
});

Deno.test("elementwise: map with 11 inputs substitutes in1 and in10 separately (vec4 and indexed forms)", async () => {
  await gpuReady();
  for (const n of [8, 7]) {
    const data = Array.from({ length: 11 }, (_, k) => randArray(n, 40 + k, -2, 2));
    const ts = data.map((d) => E.Tensor.fromData(Float32Array.from(d), [n], { persistent: true }));
    try {
      const expr = Array.from({ length: 11 }, (_, k) => `in${k} * ${k + 1}.0`).join(" + ");
      const got = await E.scope(() => E.map(ts, expr, "sum11").keep()).read();
      for (let i = 0; i < n; i++) {
        const want = data.reduce((a, d, k) => a + d[i] * (k + 1), 0);
        if (Math.abs(got[i] - want) > 1e-4 * (1 + Math.abs(want))) {
          throw new Error(`map of 11 inputs (n=${n}) at ${i}: got ${got[i]}, want ${want}`);
        }
      }
    } finally {
      ts.forEach((t) => t.dispose());
    }
  }
});
