/**
 * Elementwise ops with NumPy broadcasting: forward (one fused map kernel), backward (one fused map kernel per
 * input, summed back to the input's shape), forward-mode JVP (one fused map kernel) and the float64 CPU
 * reference, side by side in one table per arity.
 *
 * The JVP rules are generated from the same partial-derivative expressions as the backward (tinygrad / jax-js
 * style, one helper per family): for a unary map ẏ = f′(x)·ẋ is the backward's `dx` with the tangent in place of
 * g; for a binary map ẏ = ∂f/∂a·ȧ + ∂f/∂b·ḃ is `da` with ȧ for g plus `db` with ḃ for g. So every table row has
 * its rule, and the rule is checked against finite differences of the row's `ref` (tests/engine/jvp_test.ts).
 *
 * To add a unary op: one row in UNARY with its WGSL expression, its derivative (in `$g` = dL/dy, `$x` = input,
 * `$y` = output) and its float64 reference, its exported function, and its entry in ELEMENTWISE_OPS (a compile
 * error until added); tests/engine/elementwise_test.ts enumerates ELEMENTWISE_OPS and fails for an op it has
 * no input domain for.
 */
import { f32 } from "../../kernels/common.ts";
import { mapKernel, mapVectorWidth, mapWorkgroupSize } from "../../kernels/elementwise.wgsl.ts";
import { type JvpRule, record } from "../autograd.ts";
import { dispatch, grid1d } from "../runtime.ts";
import { numel, type Shape, shapeStr, Tensor } from "../tensor.ts";
import { sum } from "./reduce.ts";

export function broadcastShapes(...shapes: Shape[]): number[] {
  const nd = Math.max(...shapes.map((s) => s.length));
  const out: number[] = [];
  for (let d = 0; d < nd; d++) {
    let v = 1;
    for (const s of shapes) {
      const x = s[s.length - nd + d] ?? 1;
      if (x !== 1 && v !== 1 && x !== v) {
        throw new Error(`shapes ${shapes.map(shapeStr).join(" and ")} cannot be broadcast together`);
      }
      if (x !== 1) v = x;
    }
    out.push(v);
  }
  return out;
}

/** Raw fused map (no autodiff): out = expr(in0, in1, ...), broadcast to `outShape` (default: broadcast shape). */
export function map(inputs: Tensor[], expr: string, name: string, outShape?: Shape, into?: Tensor): Tensor {
  const shape = outShape ?? broadcastShapes(...inputs.map((t) => t.shape));
  const out = into ?? Tensor.empty(shape);
  const cfg = { name, expr, inShapes: inputs.map((t) => t.shape), outShape: shape };
  const k = mapKernel(cfg);
  dispatch(
    k,
    [...inputs.map((t) => t.buffer), out.buffer],
    grid1d(numel(shape) / mapVectorWidth(cfg), mapWorkgroupSize()),
  );
  return out;
}

/** Sum `g` over the axes along which `shape` was broadcast, so it matches `shape`. */
export function sumTo(g: Tensor, shape: Shape): Tensor {
  if (g.shape.join() === shape.join()) return g;
  const lead = g.ndim - shape.length;
  const axes: number[] = [];
  for (let d = 0; d < g.ndim; d++) {
    if (d < lead || (shape[d - lead] === 1 && g.shape[d] !== 1)) axes.push(d);
  }
  const s = sum(g, axes, false);
  const out = s.view(shape);
  s.dispose();
  return out;
}

type Operand = Tensor | number;

function lit(x: Operand, k: number): string {
  return typeof x === "number" ? f32(x) : `in${k}`;
}

interface BinaryDef {
  expr: string;
  /** dL/da and dL/db in `$g`, `$a`, `$b` (null: no gradient flows). */
  da: string | null;
  db: string | null;
  ref: (a: number, b: number) => number;
}

const BINARY = {
  add: { expr: "A + B", da: "$g", db: "$g", ref: (a, b) => a + b },
  sub: { expr: "A - B", da: "$g", db: "-$g", ref: (a, b) => a - b },
  mul: { expr: "A * B", da: "$g * $b", db: "$g * $a", ref: (a, b) => a * b },
  div: { expr: "A / B", da: "$g / $b", db: "-$g * $a / ($b * $b)", ref: (a, b) => a / b },
  maximum: {
    expr: "max(A, B)",
    da: "select(0.0, $g, $a >= $b)",
    db: "select($g, 0.0, $a >= $b)",
    ref: Math.max,
  },
  minimum: {
    expr: "min(A, B)",
    da: "select(0.0, $g, $a <= $b)",
    db: "select($g, 0.0, $a <= $b)",
    ref: Math.min,
  },
} satisfies Record<string, BinaryDef>;

export type BinaryOp = keyof typeof BINARY;

/** Build a fused gradient map from a template over named tensors/scalars. */
function gradMap(tpl: string, vars: Record<string, Operand>, name: string, outShape: Shape): Tensor {
  const inputs: Tensor[] = [];
  let expr = tpl;
  for (const [key, v] of Object.entries(vars)) {
    if (!expr.includes(`$${key}`)) continue;
    if (typeof v === "number") expr = expr.replaceAll(`$${key}`, `(${f32(v)})`);
    else {
      expr = expr.replaceAll(`$${key}`, `in${inputs.length}`);
      inputs.push(v);
    }
  }
  return map(inputs, expr, name, outShape);
}

function binary(op: BinaryOp, a: Operand, b: Operand): Tensor {
  const def: BinaryDef = BINARY[op];
  if (typeof a === "number" && typeof b === "number") {
    throw new Error(`${op}: at least one operand must be a tensor`);
  }
  const ins = [a, b].filter((x) => typeof x !== "number") as Tensor[];
  const ka = 0, kb = typeof a === "number" ? 0 : 1;
  const expr = def.expr.replace("A", lit(a, ka)).replace("B", lit(b, kb));
  const out = map(ins, expr, op);
  return record(out, op, ins, (g) => {
    const vars = { g, a, b };
    // An identity gradient ("$g": add's, sub's first) is g itself, not a copy; backward() lets several inputs
    // hold one tensor.
    const grad = (expr: string, x: Tensor, name: string) =>
      sumTo(expr === "$g" ? g : gradMap(expr, vars, name, g.shape), x.shape);
    const grads: (Tensor | null)[] = [];
    if (typeof a !== "number") grads.push(def.da ? grad(def.da, a, `${op}_da`) : null);
    if (typeof b !== "number") grads.push(def.db ? grad(def.db, b, `${op}_db`) : null);
    return grads;
  }, binaryJvp(op, def, a, b, out.shape));
}

/** ẏ = da[g := ȧ] + db[g := ḃ] as one map; tangents align with the tensor operands. */
function binaryJvp(op: string, def: BinaryDef, a: Operand, b: Operand, shape: Shape): JvpRule {
  return (ts) => {
    let k = 0;
    const u = typeof a === "number" ? null : ts[k++];
    const v = typeof b === "number" ? null : ts[k++];
    const terms: string[] = [];
    if (u && def.da) terms.push(def.da.replaceAll("$g", "$u"));
    if (v && def.db) terms.push(def.db.replaceAll("$g", "$v"));
    if (!terms.length) return null;
    const vars: Record<string, Operand> = { a, b, u: u ?? 0, v: v ?? 0 };
    return gradMap(terms.map((t) => `(${t})`).join(" + "), vars, `${op}_jvp`, shape);
  };
}

export const add = (a: Operand, b: Operand) => binary("add", a, b);
export const sub = (a: Operand, b: Operand) => binary("sub", a, b);
export const mul = (a: Operand, b: Operand) => binary("mul", a, b);
export const div = (a: Operand, b: Operand) => binary("div", a, b);
export const maximum = (a: Operand, b: Operand) => binary("maximum", a, b);
export const minimum = (a: Operand, b: Operand) => binary("minimum", a, b);

interface UnaryDef {
  expr: string;
  /** dL/dx in `$g`, `$x`, `$y` (null: zero gradient, e.g. sign). */
  dx: string | null;
  ref: (x: number) => number;
}

const sigmoid64 = (x: number) => 1 / (1 + Math.exp(-x));

const UNARY = {
  neg: { expr: "-X", dx: "-$g", ref: (x) => -x },
  exp: { expr: "exp(X)", dx: "$g * $y", ref: Math.exp },
  log: { expr: "log(X)", dx: "$g / $x", ref: Math.log },
  log1p: { expr: "log1p_(X)", dx: "$g / (1.0 + $x)", ref: Math.log1p },
  sqrt: { expr: "sqrt(X)", dx: "$g * 0.5 / $y", ref: Math.sqrt },
  rsqrt: { expr: "inverseSqrt(X)", dx: "-0.5 * $g * $y * $y * $y", ref: (x) => 1 / Math.sqrt(x) },
  square: { expr: "X * X", dx: "2.0 * $g * $x", ref: (x) => x * x },
  abs: { expr: "abs(X)", dx: "$g * sign($x)", ref: Math.abs },
  sign: { expr: "sign(X)", dx: null, ref: Math.sign },
  tanh: { expr: "tanh_(X)", dx: "$g * (1.0 - $y * $y)", ref: Math.tanh },
  sigmoid: { expr: "sigmoid_(X)", dx: "$g * $y * (1.0 - $y)", ref: sigmoid64 },
  silu: {
    expr: "X * sigmoid_(X)",
    dx: "$g * sigmoid_($x) * (1.0 + $x * (1.0 - sigmoid_($x)))",
    ref: (x) => x * sigmoid64(x),
  },
  sin: { expr: "sin(X)", dx: "$g * cos($x)", ref: Math.sin },
  cos: { expr: "cos(X)", dx: "-$g * sin($x)", ref: Math.cos },
} satisfies Record<string, UnaryDef>;

export type UnaryOp = keyof typeof UNARY;

/** False for ops whose derivative is zero almost everywhere (sign): backward passes no gradient (null). */
export function unaryHasGradient(op: UnaryOp): boolean {
  return (UNARY[op] as UnaryDef).dx !== null;
}

/** Backward: g·f′(x); JVP: ẋ·f′(x), the same expression with the tangent for g (null dx: zero tangent). */
function unary(op: string, x: Tensor, def: UnaryDef = UNARY[op as UnaryOp]): Tensor {
  const y = map([x], def.expr.replaceAll("X", "in0"), op);
  return record(
    y,
    op,
    [x],
    (g) => [def.dx ? gradMap(def.dx, { g, x, y }, `${op}_dx`, x.shape) : null],
    ([t]) => def.dx ? gradMap(def.dx, { g: t!, x, y }, `${op}_jvp`, x.shape) : null,
  );
}

export const neg = (x: Tensor) => unary("neg", x);
export const exp = (x: Tensor) => unary("exp", x);
export const log = (x: Tensor) => unary("log", x);
export const log1p = (x: Tensor) => unary("log1p", x);
export const sqrt = (x: Tensor) => unary("sqrt", x);
export const rsqrt = (x: Tensor) => unary("rsqrt", x);
export const square = (x: Tensor) => unary("square", x);
export const abs = (x: Tensor) => unary("abs", x);
export const sign = (x: Tensor) => unary("sign", x);
export const tanh = (x: Tensor) => unary("tanh", x);
export const sigmoid = (x: Tensor) => unary("sigmoid", x);
export const silu = (x: Tensor) => unary("silu", x);
export const sin = (x: Tensor) => unary("sin", x);
export const cos = (x: Tensor) => unary("cos", x);

function powDef(p: number): UnaryDef {
  // WGSL pow() is undefined for x < 0; integer exponents keep the sign like torch.pow.
  const isInt = Number.isInteger(p);
  const odd = isInt && Math.abs(p) % 2 === 1;
  const base = `pow(abs(X), ${f32(p)})`;
  const expr = !isInt ? `pow(X, ${f32(p)})` : odd ? `sign(X) * ${base}` : base;
  const dbase = `pow(abs($x), ${f32(p - 1)})`;
  const deriv = p === 1 ? "1.0" : !isInt ? `pow($x, ${f32(p - 1)})` : odd ? dbase : `sign($x) * ${dbase}`;
  return { expr, dx: `$g * ${f32(p)} * ${deriv}`, ref: (x) => Math.pow(x, p) };
}

/** x ** p for a scalar exponent. */
export function pow(x: Tensor, p: number): Tensor {
  if (p === 2) return square(x);
  return unary(`pow`, x, powDef(p));
}

/** Clamp into [lo, hi]; the gradient passes where lo < x < hi (like torch.clamp, ties pass). */
export function clamp(x: Tensor, lo = -Infinity, hi = Infinity): Tensor {
  const l = Number.isFinite(lo) ? f32(lo) : "-3.4e38";
  const h = Number.isFinite(hi) ? f32(hi) : "3.4e38";
  const def: UnaryDef = {
    expr: `clamp(X, ${l}, ${h})`,
    dx: `select(0.0, $g, $x >= ${l} && $x <= ${h})`,
    ref: (v) => Math.min(Math.max(v, lo), hi),
  };
  return unary("clamp", x, def);
}

/** cond ? a : b elementwise (cond is non-zero for true; no gradient to cond). */
export function where(cond: Tensor, a: Operand, b: Operand): Tensor {
  const ins: Tensor[] = [cond];
  const la = typeof a === "number" ? f32(a) : `in${ins.push(a) - 1}`;
  const lb = typeof b === "number" ? f32(b) : `in${ins.push(b) - 1}`;
  const out = map(ins, `select(${lb}, ${la}, in0 != 0.0)`, "where");
  return record(out, "where", ins, (g) => {
    const grads: (Tensor | null)[] = [null];
    if (typeof a !== "number") {
      grads.push(sumTo(map([cond, g], "select(0.0, in1, in0 != 0.0)", "where_da"), a.shape));
    }
    if (typeof b !== "number") {
      grads.push(sumTo(map([cond, g], "select(in1, 0.0, in0 != 0.0)", "where_db"), b.shape));
    }
    return grads;
  }, (ts) => {
    // ẏ = cond ? ȧ : ḃ (no tangent through cond).
    let k = 1;
    const u = typeof a === "number" ? null : ts[k++];
    const v = typeof b === "number" ? null : ts[k++];
    if (!u && !v) return null;
    const tin: Tensor[] = [cond];
    const lu = u ? `in${tin.push(u) - 1}` : "0.0", lv = v ? `in${tin.push(v) - 1}` : "0.0";
    return map(tin, `select(${lv}, ${lu}, in0 != 0.0)`, "where_jvp", out.shape);
  });
}

interface CompareDef {
  /** WGSL comparison of `A` and `B`. */
  cond: string;
  ref: (a: number, b: number) => number;
}

const COMPARE = {
  gt: { cond: "A > B", ref: (a, b) => (a > b ? 1 : 0) },
  eq: { cond: "A == B", ref: (a, b) => (a === b ? 1 : 0) },
} satisfies Record<string, CompareDef>;

export type CompareOp = keyof typeof COMPARE;

/**
 * Comparison masks (1.0 / 0.0). Their derivative is zero wherever it exists, so they record no tape node: the
 * mask never requires grad and no gradient reaches `a` or `b` through it.
 */
function compare(op: CompareOp, a: Tensor, b: Operand): Tensor {
  const cond = COMPARE[op].cond.replace("A", "in0").replace("B", lit(b, 1));
  return map(typeof b === "number" ? [a] : [a, b], `select(0.0, 1.0, ${cond})`, op);
}

export const gt = (a: Tensor, b: Operand) => compare("gt", a, b);
export const eq = (a: Tensor, b: Operand) => compare("eq", a, b);

type UnaryFn = (x: Tensor) => Tensor;
type BinaryFn = (a: Operand, b: Operand) => Tensor;
type CompareFn = (a: Tensor, b: Operand) => Tensor;

/**
 * Every table op by name with its public function. Tests enumerate this (with `reference` below), so an op added
 * to a table is tested or its test fails; `satisfies` makes a table row without an entry here a compile error.
 */
export const ELEMENTWISE_OPS = {
  unary: {
    neg,
    exp,
    log,
    log1p,
    sqrt,
    rsqrt,
    square,
    abs,
    sign,
    tanh,
    sigmoid,
    silu,
    sin,
    cos,
  } satisfies Record<UnaryOp, UnaryFn>,
  binary: { add, sub, mul, div, maximum, minimum } satisfies Record<BinaryOp, BinaryFn>,
  compare: { gt, eq } satisfies Record<CompareOp, CompareFn>,
};

/** A tensor filled with `value`. */
export function full(shape: Shape, value: number): Tensor {
  return map([], f32(value), "fill", shape);
}

export const zeros = (shape: Shape) => full(shape, 0);
export const ones = (shape: Shape) => full(shape, 1);

/** Copy (no autodiff), optionally into a persistent tensor. */
export function copy(x: Tensor, persistent = false): Tensor {
  const out = persistent ? Tensor.empty(x.shape, { persistent }) : null;
  return map([x], "in0", "copy", x.shape, out ?? undefined);
}

/** dst = expr(dst, ...others) in place (no autodiff): gradient accumulation and optimizer updates. */
export function mapInPlace(dst: Tensor, others: Tensor[], expr: string, name: string): void {
  const cfg = {
    name,
    expr,
    inShapes: [dst.shape, ...others.map((t) => t.shape)],
    outShape: dst.shape,
    inplace: true,
  };
  dispatch(
    mapKernel(cfg),
    [dst, ...others].map((t) => t.buffer),
    grid1d(dst.size / mapVectorWidth(cfg), mapWorkgroupSize()),
  );
}

/** dst += src in place (no autodiff). */
export function addInPlace(dst: Tensor, src: Tensor): void {
  if (dst.shape.join() !== src.shape.join()) {
    throw new Error(`addInPlace: ${shapeStr(dst.shape)} vs ${shapeStr(src.shape)}`);
  }
  mapInPlace(dst, [src], "in0 + in1", "acc");
}

/** Float64 CPU references for the tables above (used by tests). */
export const reference = {
  unary: Object.fromEntries(Object.entries(UNARY).map(([k, v]) => [k, v.ref])) as Record<
    UnaryOp,
    (x: number) => number
  >,
  binary: Object.fromEntries(Object.entries(BINARY).map(([k, v]) => [k, v.ref])) as Record<
    BinaryOp,
    (a: number, b: number) => number
  >,
  compare: Object.fromEntries(Object.entries(COMPARE).map(([k, v]) => [k, v.ref])) as Record<
    CompareOp,
    (a: number, b: number) => number
  >,
  pow: (x: number, p: number) => Math.pow(x, p),
};
