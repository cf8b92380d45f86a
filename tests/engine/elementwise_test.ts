/**
 * Elementwise ops: forward vs the float64 reference table of engine/ops/elementwise.ts and backward vs
 * central differences, on random non-zero inputs in each op's domain, in both kernel forms (vec4 when the size
 * is a multiple of 4, broadcast-indexed otherwise). Tolerances: forward 1e-5 abs + 1e-5 rel (float32 rounding
 * of one transcendental), gradient 2e-3 abs + 2e-3 rel (float32 backward vs float64 differences).
 */
import * as E from "../../engine/index.ts";
import { reference } from "../../engine/ops/elementwise.ts";
import { checkOp, gpuReady, randArray } from "../helpers.ts";

const FWD = { atol: 1e-5, rtol: 1e-5 };
const GRAD = { atol: 2e-3, rtol: 2e-3 };

type Unary = (x: E.Tensor) => E.Tensor;
const UNARY: [string, Unary, [number, number]][] = [
  ["neg", E.neg, [-2, 2]],
  ["exp", E.exp, [-2, 2]],
  ["log", E.log, [0.2, 3]],
  ["log1p", E.log1p, [-0.5, 3]],
  ["sqrt", E.sqrt, [0.2, 3]],
  ["rsqrt", E.rsqrt, [0.3, 3]],
  ["square", E.square, [-2, 2]],
  ["abs", E.abs, [-2, 2]],
  ["tanh", E.tanh, [-3, 3]],
  ["sigmoid", E.sigmoid, [-4, 4]],
  ["silu", E.silu, [-4, 4]],
  ["sin", E.sin, [-3, 3]],
  ["cos", E.cos, [-3, 3]],
];

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

for (const [name, fn, [lo, hi]] of UNARY) {
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

const BINARY: [string, (a: E.Tensor, b: E.Tensor) => E.Tensor][] = [
  ["add", E.add],
  ["sub", E.sub],
  ["mul", E.mul],
  ["div", E.div],
  ["maximum", E.maximum],
  ["minimum", E.minimum],
];

for (const [name, fn] of BINARY) {
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
