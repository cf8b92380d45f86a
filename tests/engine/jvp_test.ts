/**
 * Forward-mode derivatives (engine/jvp.ts and each op's `jvp` rule) and input-only reverse mode:
 * - every JVP rule against central differences of the op's float64 reference along a random tangent
 *   (h = 1e-4; tolerance 2e-5 abs + 1e-4 rel: float32 GPU vs float64 differences, measured ≤ 1.1e-6);
 * - the transposition identity ⟨J v, u⟩ = ⟨v, Jᵀ u⟩ between each op's JVP and its VJP on random v, u
 *   (|lhs − rhs| ≤ 1e-4 · Σ|terms|: both sides float32 on the GPU, summed in float64 here);
 * - the tiny autoencoder's decoder as a whole: transposition, and the JVP against central differences of the
 *   GPU decoder itself in float32;
 * - vjp w.r.t. inputs leaves parameter `.grad` alone, a pullback may be repeated, memory is given back, and an
 *   op without a forward-mode rule fails naming the op.
 * The op list is engine/jvp.ts's TAPE_OPS: an op listed there without a case here is a compile error, and an
 * op recorded during these tests but not listed there fails the last test.
 */
import assert from "node:assert/strict";
import * as E from "../../engine/index.ts";
import { type Tensor } from "../../engine/index.ts";
import { record, recordedOps } from "../../engine/autograd.ts";
import { jvp, TAPE_OPS, type TapeOp, vjp, vjpFn } from "../../engine/jvp.ts";
import { reference as elementwiseRef } from "../../engine/ops/elementwise.ts";
import { reference as shapeRef } from "../../engine/ops/shape.ts";
import { reference as reduceRef } from "../../engine/ops/reduce.ts";
import { reference as matmulRef } from "../../engine/ops/matmul.ts";
import { reference as normRef } from "../../engine/ops/norm.ts";
import { reference as channelNormRef } from "../../engine/ops/channel_norm.ts";
import { reference as convRef } from "../../engine/ops/conv.ts";
import { reference as modRef } from "../../engine/ops/modulation.ts";
import { Autoencoder } from "../../models/autoencoder.ts";
import { AE_PRESETS } from "../../models/autoencoder_config.ts";
import { assertClose, gpuReady, randArray, type Tol } from "../helpers.ts";

const JVP_TOL: Tol = { atol: 2e-5, rtol: 1e-4 };
const FWD_TOL: Tol = { atol: 1e-4, rtol: 1e-4 };
const TRANSPOSE_TOL = 1e-4;
const H = 1e-4;

interface Input {
  shape: number[];
  /** Values (default: uniform in [lo, hi)). */
  data?: Float64Array;
  lo?: number;
  hi?: number;
}

interface Case {
  inputs: Input[];
  fn: (xs: Tensor[]) => Tensor;
  ref: (xs: Float64Array[]) => Float64Array;
  /** Inputs that get a tangent (default all). */
  wrt?: number[];
}

const size = (s: number[]) => s.reduce((a, b) => a * b, 1);

function broadcastRef(f: (...v: number[]) => number, xs: Float64Array[], shapes: number[][]): Float64Array {
  const out = E.broadcastShapes(...shapes);
  const res = new Float64Array(size(out));
  for (let i = 0; i < res.length; i++) {
    let rem = i;
    const coords: number[] = [];
    for (let d = out.length - 1; d >= 0; d--) {
      coords[d] = rem % out[d];
      rem = Math.floor(rem / out[d]);
    }
    res[i] = f(...xs.map((x, k) => {
      const s = shapes[k], lead = out.length - s.length;
      let idx = 0;
      for (let d = 0; d < s.length; d++) idx = idx * s[d] + (s[d] === 1 ? 0 : coords[d + lead]);
      return x[idx];
    }));
  }
  return res;
}

/** Values at least `gap` away from 0 (kinks of abs/sign), in ±[gap, 1]. */
function awayFromZero(n: number, seed: number, gap = 0.1): Float64Array {
  return randArray(n, seed, -1, 1).map((v) =>
    Math.fround(Math.sign(v || 1) * (gap + (1 - gap) * Math.abs(v)))
  );
}

const unaryCase = (op: keyof typeof elementwiseRef.unary, lo: number, hi: number): Case => ({
  inputs: [{ shape: [2, 3, 5], lo, hi }],
  fn: ([x]) => (E as unknown as Record<string, (x: Tensor) => Tensor>)[op](x),
  ref: ([x]) => x.map(elementwiseRef.unary[op]),
});

const binaryCase = (op: keyof typeof elementwiseRef.binary): Case => {
  const sa = [2, 3, 4], sb = [3, 1];
  return {
    inputs: [{ shape: sa, lo: 0.5, hi: 2 }, { shape: sb, lo: 0.5, hi: 2 }],
    fn: ([a, b]) => (E as unknown as Record<string, (a: Tensor, b: Tensor) => Tensor>)[op](a, b),
    ref: ([a, b]) => broadcastRef(elementwiseRef.binary[op], [a, b], [sa, sb]),
  };
};

/** maximum/minimum on equal shapes with every pair at least 0.1 apart (no tie within h). */
const extremumCase = (op: "maximum" | "minimum"): Case => {
  const a = randArray(24, 31), d = awayFromZero(24, 32, 0.1);
  return {
    inputs: [{ shape: [2, 3, 4], data: a }, {
      shape: [2, 3, 4],
      data: a.map((v, i) => Math.fround(v + d[i])),
    }],
    fn: ([x, y]) => E[op](x, y),
    ref: ([x, y]) => x.map((v, i) => elementwiseRef.binary[op](v, y[i])),
  };
};

const gatherRef = (
  x: Float64Array,
  inS: number[],
  outS: number[],
  perm: number[],
  off: number[],
  circ = false,
) => shapeRef.gather(x, inS, outS, perm, off, circ);

const identity = (n: number) => [...Array(n).keys()];

function padRef(x: Float64Array, s: number[], pads: [number, number][], mode: string, value: number) {
  const outS = s.map((d, i) => d + pads[i][0] + pads[i][1]), off = pads.map(([lo]) => -lo);
  const y = gatherRef(x, s, outS, identity(s.length), off, mode === "circular");
  if (mode === "circular") return y;
  const inside = gatherRef(new Float64Array(x.length).fill(1), s, outS, identity(s.length), off);
  return y.map((v, i) => v + value * (1 - inside[i]));
}

function concatRef(xs: Float64Array[], shapes: number[][], ax: number): Float64Array {
  const outer = size(shapes[0].slice(0, ax));
  const rows = shapes.map((s) => size(s.slice(ax)));
  const out = new Float64Array(xs.reduce((a, x) => a + x.length, 0));
  let k = 0;
  for (let o = 0; o < outer; o++) {
    xs.forEach((x, i) => {
      out.set(x.subarray(o * rows[i], (o + 1) * rows[i]), k);
      k += rows[i];
    });
  }
  return out;
}

function linearRef(x: Float64Array, xs: number[], w: Float64Array, ws: number[], b?: Float64Array) {
  const rows = x.length / xs[xs.length - 1];
  const y = matmulRef.matmul(x, [rows, xs[xs.length - 1]], w, ws, false, true);
  if (b) { for (let i = 0; i < y.length; i++) y[i] += b[i % ws[0]]; }
  return y;
}

const convCase = (n: 2 | 3, xs: number[], ws: number[], circular: boolean, bias = true): Case => ({
  inputs: [{ shape: xs }, { shape: ws, lo: -0.5, hi: 0.5 }, ...(bias ? [{ shape: [ws[0]] }] : [])],
  fn: ([x, w, b]) =>
    (n === 2 ? E.conv2d : E.conv3d)(x, w, b, { padding_mode: circular ? "circular" : "zeros" }),
  ref: ([x, w, b]) => convRef.conv(x, xs, w, ws, b ?? null, circular),
});

type RuleOp = { [K in TapeOp]: (typeof TAPE_OPS)[K] extends "rule" ? K : never }[TapeOp];

/** One or more cases per op with a forward-mode rule (a compile error for a rule op without one). */
const CASES: Record<RuleOp, Case[]> = {
  add: [binaryCase("add"), {
    inputs: [{ shape: [3, 4] }],
    fn: ([x]) => E.add(x, 1.5),
    ref: ([x]) => x.map((v) => v + 1.5),
  }],
  sub: [binaryCase("sub"), {
    inputs: [{ shape: [5] }],
    fn: ([x]) => E.sub(2, x),
    ref: ([x]) => x.map((v) => 2 - v),
  }],
  mul: [binaryCase("mul"), {
    inputs: [{ shape: [2, 3] }],
    fn: ([x]) => E.mul(x, x),
    ref: ([x]) => x.map((v) => v * v),
  }],
  div: [binaryCase("div"), {
    inputs: [{ shape: [6], lo: 0.5, hi: 2 }],
    fn: ([x]) => E.div(1, x),
    ref: ([x]) => x.map((v) => 1 / v),
  }],
  maximum: [extremumCase("maximum")],
  minimum: [extremumCase("minimum")],
  neg: [unaryCase("neg", -2, 2)],
  exp: [unaryCase("exp", -2, 2)],
  log: [unaryCase("log", 0.2, 3)],
  log1p: [unaryCase("log1p", -0.5, 3)],
  sqrt: [unaryCase("sqrt", 0.2, 3)],
  rsqrt: [unaryCase("rsqrt", 0.3, 3)],
  square: [unaryCase("square", -2, 2)],
  abs: [{ ...unaryCase("abs", -1, 1), inputs: [{ shape: [2, 3, 5], data: awayFromZero(30, 5) }] }],
  sign: [{ ...unaryCase("sign", -1, 1), inputs: [{ shape: [2, 3, 5], data: awayFromZero(30, 6) }] }],
  tanh: [unaryCase("tanh", -3, 3)],
  sigmoid: [unaryCase("sigmoid", -4, 4)],
  silu: [unaryCase("silu", -4, 4)],
  sin: [unaryCase("sin", -3, 3)],
  cos: [unaryCase("cos", -3, 3)],
  pow: [
    {
      inputs: [{ shape: [7], data: awayFromZero(7, 8) }],
      fn: ([x]) => E.pow(x, 3),
      ref: ([x]) => x.map((v) => v ** 3),
    },
    { inputs: [{ shape: [7], lo: 0.2, hi: 2 }], fn: ([x]) => E.pow(x, 0.5), ref: ([x]) => x.map(Math.sqrt) },
  ],
  clamp: [{
    inputs: [{
      shape: [12],
      data: randArray(12, 9, -2, 2).map((v) => Math.abs(Math.abs(v) - 1) < 0.05 ? v * 0.8 : v),
    }],
    fn: ([x]) => E.clamp(x, -1, 1),
    ref: ([x]) => x.map((v) => Math.min(Math.max(v, -1), 1)),
  }],
  where: [{
    inputs: [{ shape: [2, 3], data: Float64Array.from([1, 0, 0, 1, 1, 0]) }, { shape: [2, 3] }, {
      shape: [3],
    }],
    fn: ([c, a, b]) => E.where(c, a, b),
    ref: ([c, a, b]) => a.map((v, i) => (c[i] ? v : b[i % 3])),
    wrt: [1, 2],
  }, {
    inputs: [{ shape: [4], data: Float64Array.from([0, 1, 1, 0]) }, { shape: [4] }],
    fn: ([c, a]) => E.where(c, a, 0.5),
    ref: ([c, a]) => a.map((v, i) => (c[i] ? v : 0.5)),
    wrt: [1],
  }],
  sum: [{
    inputs: [{ shape: [2, 3, 4] }],
    fn: ([x]) => E.sum(x, [0, 2]),
    ref: ([x]) => reduceRef.reduce(x, [2, 3, 4], [0, 2], "sum"),
  }, {
    inputs: [{ shape: [2, 3, 4] }],
    fn: ([x]) => E.mean(x, 1, true),
    ref: ([x]) => reduceRef.reduce(x, [2, 3, 4], [1], "mean"),
  }, {
    inputs: [{ shape: [3, 5] }],
    fn: ([x]) => E.variance(x, 1),
    ref: ([x]) => reduceRef.reduce(x, [3, 5], [1], "var"),
  }],
  max: [{
    inputs: [{ shape: [2, 5, 3] }],
    fn: ([x]) => E.max(x, 1),
    ref: ([x]) => reduceRef.reduce(x, [2, 5, 3], [1], "max"),
  }],
  reshape: [{ inputs: [{ shape: [2, 3, 4] }], fn: ([x]) => E.reshape(x, [4, -1]), ref: ([x]) => x.slice() }],
  permute: [{
    inputs: [{ shape: [2, 3, 4] }],
    fn: ([x]) => E.permute(x, [2, 0, 1]),
    ref: ([x]) => gatherRef(x, [2, 3, 4], [4, 2, 3], [2, 0, 1], [0, 0, 0]),
  }],
  slice: [{
    inputs: [{ shape: [2, 5, 3] }],
    fn: ([x]) => E.slice(x, 1, 1, 4),
    ref: ([x]) => gatherRef(x, [2, 5, 3], [2, 3, 3], [0, 1, 2], [0, 1, 0]),
  }],
  concat: [{
    inputs: [{ shape: [2, 2, 3] }, { shape: [2, 1, 3] }, { shape: [2, 3, 3] }],
    fn: (xs) => E.concat(xs, 1),
    ref: (xs) => concatRef(xs, [[2, 2, 3], [2, 1, 3], [2, 3, 3]], 1),
    wrt: [0, 2],
  }],
  pad: [{
    inputs: [{ shape: [2, 3, 4] }],
    fn: ([x]) => E.pad(x, [[0, 0], [1, 2], [2, 1]], "constant", 0.5),
    ref: ([x]) => padRef(x, [2, 3, 4], [[0, 0], [1, 2], [2, 1]], "constant", 0.5),
  }, {
    inputs: [{ shape: [2, 3, 4] }],
    fn: ([x]) => E.pad(x, [[0, 0], [1, 1], [2, 1]], "circular"),
    ref: ([x]) => padRef(x, [2, 3, 4], [[0, 0], [1, 1], [2, 1]], "circular", 0),
  }],
  matmul: [{
    inputs: [{ shape: [2, 3, 4] }, { shape: [4, 5] }],
    fn: ([a, b]) => E.matmul(a, b),
    ref: ([a, b]) => matmulRef.matmul(a, [2, 3, 4], b, [4, 5]),
  }, {
    inputs: [{ shape: [2, 4, 3] }, { shape: [2, 5, 4] }],
    fn: ([a, b]) => E.matmul(a, b, true, true),
    ref: ([a, b]) => matmulRef.matmul(a, [2, 4, 3], b, [2, 5, 4], true, true),
  }],
  linear: [{
    inputs: [{ shape: [2, 3, 4] }, { shape: [5, 4] }, { shape: [5] }],
    fn: ([x, w, b]) => E.linear(x, w, b),
    ref: ([x, w, b]) => linearRef(x, [2, 3, 4], w, [5, 4], b),
  }, {
    inputs: [{ shape: [3, 4] }, { shape: [2, 4] }, { shape: [2] }],
    fn: ([x, w, b]) => E.linear(x, w, b),
    ref: ([x, w, b]) => linearRef(x, [3, 4], w, [2, 4], b),
    wrt: [0, 2],
  }],
  softmax: [{
    inputs: [{ shape: [3, 6], lo: -2, hi: 2 }],
    fn: ([x]) => E.softmax(x),
    ref: ([x]) => normRef.softmax(x, [3, 6]),
  }],
  layer_norm: [{
    inputs: [{ shape: [3, 8] }, { shape: [8] }, { shape: [8] }],
    fn: ([x, w, b]) => E.layer_norm(x, w, b),
    ref: ([x, w, b]) => normRef.layer_norm(x, [3, 8], w, b),
  }, {
    inputs: [{ shape: [2, 6] }],
    fn: ([x]) => E.layer_norm(x),
    ref: ([x]) => normRef.layer_norm(x, [2, 6]),
  }],
  rms_norm: [{
    inputs: [{ shape: [3, 8] }, { shape: [8] }],
    fn: ([x, w]) => E.rms_norm(x, w),
    ref: ([x, w]) => normRef.rms_norm(x, [3, 8], w),
  }],
  channel_norm: [{
    inputs: [{ shape: [2, 4, 3, 3] }],
    fn: ([x]) => E.channel_norm(x),
    ref: ([x]) => channelNormRef.channel_norm(x, [2, 4, 3, 3]),
  }, {
    inputs: [{ shape: [1, 3, 2, 2, 2] }],
    fn: ([x]) => E.channel_norm(x),
    ref: ([x]) => channelNormRef.channel_norm(x, [1, 3, 2, 2, 2]),
  }],
  modulate: [{
    inputs: [{ shape: [2, 3, 8] }, { shape: [2, 1, 8] }, { shape: [2, 1, 8] }],
    fn: ([x, a, b]) => E.modulate(x, a, b),
    ref: ([x, a, b]) => modRef.modulate(x, a, b, 8),
  }, {
    inputs: [{ shape: [2, 3, 5] }, { shape: [1, 1, 5] }, { shape: [1, 1, 5] }],
    fn: ([x, a, b]) => E.modulate(x, a, b),
    ref: ([x, a, b]) => modRef.modulate(x, a, b, 5),
  }],
  gate: [{
    inputs: [{ shape: [2, 3, 8] }, { shape: [2, 1, 8] }, { shape: [2, 3, 8] }],
    fn: ([x, g, r]) => E.gate(x, g, r),
    ref: ([x, g, r]) => modRef.gate(x, g, r, 8),
  }, {
    inputs: [{ shape: [2, 3, 5] }, { shape: [1, 1, 5] }, { shape: [2, 3, 5] }],
    fn: ([x, g, r]) => E.gate(x, g, r),
    ref: ([x, g, r]) => modRef.gate(x, g, r, 5),
  }],
  conv2d: [
    convCase(2, [2, 3, 5, 4], [4, 3, 3, 3], false),
    convCase(2, [1, 3, 4, 4], [2, 3, 3, 3], true),
    convCase(2, [1, 4, 3, 4], [3, 4, 1, 1], false, false),
  ],
  conv3d: [convCase(3, [1, 2, 3, 4, 4], [3, 2, 3, 3, 3], false)],
};

function inputData(c: Case, seed: number): Float64Array[] {
  return c.inputs.map((x, i) => x.data ?? randArray(size(x.shape), seed + 17 * i, x.lo ?? -1, x.hi ?? 1));
}

/** JVP vs finite differences of the reference and ⟨J v, u⟩ vs ⟨v, Jᵀ u⟩; returns the max errors. */
async function checkCase(label: string, c: Case, seed: number) {
  const data = inputData(c, seed);
  const wrt = c.wrt ?? c.inputs.map((_, i) => i);
  const v = c.inputs.map((x, i) => (wrt.includes(i) ? randArray(size(x.shape), seed + 101 + i) : null));
  const want0 = c.ref(data);
  const u = randArray(want0.length, seed + 211);
  const leaves = c.inputs.map((x, i) => E.Tensor.fromData(Float32Array.from(data[i]), x.shape));
  const kept = E.scope(() => {
    const tangents = v.map((t, i) => (t ? E.Tensor.fromData(Float32Array.from(t), c.inputs[i].shape) : null));
    const { out, tangentOut } = jvp(c.fn, leaves, tangents);
    const { grads } = vjp(c.fn, leaves, E.Tensor.fromData(Float32Array.from(u), out.shape));
    return [out, tangentOut, ...grads].map((t) => t.keep());
  });
  try {
    const [out, jv, ...grads] = await Promise.all(kept.map((t) => t.read()));
    const fwd = assertClose(`${label} forward`, out, want0, FWD_TOL);
    const plus = c.ref(data.map((x, i) => (v[i] ? x.map((e, k) => e + H * v[i]![k]) : x)));
    const minus = c.ref(data.map((x, i) => (v[i] ? x.map((e, k) => e - H * v[i]![k]) : x)));
    const fd = plus.map((p, k) => (p - minus[k]) / (2 * H));
    const jvpErr = assertClose(`${label} jvp vs finite differences`, jv, fd, JVP_TOL);
    let lhs = 0, rhs = 0, scale = 0;
    for (let k = 0; k < jv.length; k++) {
      lhs += jv[k] * u[k];
      scale += Math.abs(jv[k] * u[k]);
    }
    wrt.forEach((i) => {
      for (let k = 0; k < grads[i].length; k++) {
        rhs += v[i]![k] * grads[i][k];
        scale += Math.abs(v[i]![k] * grads[i][k]);
      }
    });
    const tErr = Math.abs(lhs - rhs) / Math.max(scale, 1e-30);
    if (!(tErr <= TRANSPOSE_TOL)) {
      throw new Error(`${label}: ⟨Jv, u⟩ = ${lhs} but ⟨v, Jᵀu⟩ = ${rhs} (relative ${tErr.toExponential(2)})`);
    }
    return { fwd, jvp: jvpErr, transpose: tErr };
  } finally {
    kept.forEach((t) => t.dispose());
    leaves.forEach((t) => t.dispose());
  }
}

for (const [op, cases] of Object.entries(CASES) as [RuleOp, Case[]][]) {
  Deno.test(`jvp: ${op} matches finite differences of its float64 reference and transposes to its vjp`, async () => {
    await gpuReady();
    for (const [k, c] of cases.entries()) {
      const e = await checkCase(`${op}#${k}`, c, 1000 + 7 * k);
      console.log(
        `  ${op}#${k}: jvp max err ${e.jvp.toExponential(2)}, ⟨Jv,u⟩−⟨v,Jᵀu⟩ rel ${
          e.transpose.toExponential(2)
        }`,
      );
    }
  });
}

Deno.test("jvp: an op without a forward-mode rule fails naming the op; the fused attention is reverse-only", async () => {
  await gpuReady();
  const x = E.Tensor.fromData([1, 2, 3, 4], [4]);
  E.scope(() => {
    const t = E.Tensor.fromData([1, 0, 0, 0], [4]);
    assert.throws(
      () => jvp(([a]) => record(E.copy(a), "no_rule_op", [a], (g) => [g]), [x], [t]),
      /op no_rule_op has no forward-mode rule/,
    );
    // attention: qkv (1, 2, 3·16) with 1 head of dim 16, θ (2 axes, 8), coords (2 tokens, 2 axes).
    const qkv = E.Tensor.fromData(randArray(96, 3), [1, 2, 48]);
    const theta = E.Tensor.fromData(randArray(16, 4), [2, 8]),
      coords = E.Tensor.fromData([0, 0, 0, 1], [2, 2]);
    assert.throws(
      () => jvp(([q]) => E.attention(q, theta, coords, { heads: 1 }), [qkv], [E.zeros([1, 2, 48])]),
      /op attention has no forward-mode rule/,
    );
  });
  x.dispose();
  assert.equal(TAPE_OPS.attention.startsWith("none"), true);
});

Deno.test("vjp: gradients w.r.t. inputs only (parameter .grad untouched), a repeatable pullback, no leak", async () => {
  await gpuReady();
  const w = E.Tensor.parameter(randArray(6, 5), [3, 2], "w");
  const x = E.Tensor.fromData(randArray(4, 6), [2, 2]);
  const f = ([a]: Tensor[]) => E.sum(E.square(E.linear(a, w)));
  const before = E.pool.stats.bytesInUse;
  const [g1, g2, gb] = E.scope(() => {
    const p = E.noGrad(() => vjpFn(f, [x])); // records even under noGrad (the sampler runs under it)
    const first = p.pullback(E.Tensor.fromData([1], p.out.shape));
    const second = p.pullback(E.Tensor.fromData([2], p.out.shape));
    // The ordinary backward with x requiring grad, for comparison.
    const xg = E.Tensor.fromData(randArray(4, 6), [2, 2], { requiresGrad: true });
    E.backward(f([xg]));
    const ref = E.copy(xg.grad!);
    return [first[0], second[0], ref].map((t) => t.keep());
  });
  assert.equal(w.grad !== null, true, "the ordinary backward reached w");
  w.grad!.dispose();
  w.grad = null;
  E.scope(() => void vjp(f, [x], E.Tensor.fromData([1], [])));
  assert.equal(w.grad, null, "vjp touched a parameter's .grad");
  const [a, b, r] = await Promise.all([g1, g2, gb].map((t) => t.read()));
  assertClose("vjp vs backward", a, r, { atol: 1e-6, rtol: 1e-5 });
  assertClose("second pullback = 2 × first", b, a.map((v) => 2 * v), { atol: 1e-6, rtol: 1e-5 });
  [g1, g2, gb].forEach((t) => t.dispose());
  assert.equal(E.pool.stats.bytesInUse, before, "vjp/jvp leaked GPU memory");
  w.dispose();
  x.dispose();
});

Deno.test("jvp/vjp: the tiny autoencoder's decoder transposes and matches float32 finite differences", async () => {
  await gpuReady();
  const ae = new Autoencoder(AE_PRESETS.tiny(5, 4), 3);
  const zShape = [1, 4, 4, 4];
  const z = E.Tensor.fromData(randArray(size(zShape), 11), zShape);
  const dec = ([t]: Tensor[]) => ae.decode(t, { training: false });
  const h = 1e-2;
  const t0 = performance.now();
  const [jv, vjpZ, fdT, out] = E.scope(() => {
    const v = E.Tensor.fromData(randArray(size(zShape), 12), zShape);
    const { out, tangentOut } = jvp(dec, [z], [v]);
    const u = E.Tensor.fromData(randArray(out.size, 13), out.shape);
    const { grads } = vjp(dec, [z], u);
    const fd = E.noGrad(() =>
      E.mul(E.sub(dec([E.add(z, E.mul(v, h))]), dec([E.sub(z, E.mul(v, h))])), 1 / (2 * h))
    );
    return [tangentOut, grads[0], fd, out].map((t) => t.keep());
  });
  const [jvD, gD, fdD, outD] = await Promise.all([jv, vjpZ, fdT, out].map((t) => t.read()));
  const ms = performance.now() - t0;
  const v = randArray(size(zShape), 12), u = randArray(outD.length, 13);
  let lhs = 0, rhs = 0, scale = 0;
  jvD.forEach((x, k) => {
    lhs += x * u[k];
    scale += Math.abs(x * u[k]);
  });
  gD.forEach((g, k) => {
    rhs += g * v[k];
    scale += Math.abs(g * v[k]);
  });
  const tErr = Math.abs(lhs - rhs) / scale;
  const jmax = jvD.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
  let fdErr = 0;
  jvD.forEach((x, k) => (fdErr = Math.max(fdErr, Math.abs(x - fdD[k]))));
  console.log(
    `  decoder (1,4,4,4)→${JSON.stringify(out.shape)}: ⟨Jv,u⟩ ${lhs.toFixed(5)} vs ⟨v,Jᵀu⟩ ${
      rhs.toFixed(5)
    } ` +
      `(rel ${tErr.toExponential(2)}); |Jv − FD| max ${fdErr.toExponential(2)} of max|Jv| ${
        jmax.toFixed(3)
      } ` +
      `(${(fdErr / jmax).toExponential(2)}); ${ms.toFixed(0)} ms`,
  );
  assert.ok(tErr < 1e-4, `decoder transposition error ${tErr}`);
  // float32 central differences with h = 1e-2: rounding ~1e-7·|y|/h plus truncation O(h²).
  assert.ok(fdErr < 1e-3 * jmax, `decoder JVP vs finite differences: ${fdErr} (max |Jv| ${jmax})`);
  for (const p of ae.parameters()) assert.equal(p.grad, null, `${p.name} got a gradient`);
  [jv, vjpZ, fdT, out, z].forEach((t) => t.dispose());
  ae.dispose();
});

Deno.test("jvp: every op recorded in this run is listed in TAPE_OPS", () => {
  const unlisted = [...recordedOps().keys()].filter((op) => !(op in TAPE_OPS) && op !== "no_rule_op");
  assert.deepEqual(unlisted, [], `ops recorded without a TAPE_OPS entry: ${unlisted.join(", ")}`);
});
