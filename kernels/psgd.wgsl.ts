/**
 * PSGD-Kron kernels (spec/psgd.md §6): step control, momentum, the trust-region parameter update, leading-axis
 * mode products (written rotated), split-K Grams with the E/S epilogue, the lb normaliser, the triangular factor update, the blocked
 * triangular inverse, caches, balancing. Shapes, η and slots are baked in; per-step scalars (lr, weight decay,
 * clip norm) come from a uniform so one pipeline serves a whole run.
 *
 * Members: the factor-update kernels take `g` same-shape tensors stacked back to back (one dispatch for a group of
 * parameters; g = 1 is a single tensor). Member m's values start at m·(its size), its control pair at qctl[2m],
 * its normalisers at ell[m·K + slot] (K factors per member); invocation blocks never straddle two members.
 *
 * Guards: every kernel that writes optimizer state reads a flag from the GPU — `step[0]` (the global gradient
 * norm was finite) or `qctl[2m]` (that, and member m's ‖G‖ is finite and non-zero) — so a bad step is skipped
 * on the device and the host never waits.
 */
import { cachedKernel, f32, type Kernel, linearIndex, MAIN_BUILTINS, MATH_PRELUDE } from "./common.ts";

export const PSGD_WG = 64;
/** Threads of the single-workgroup kernels (normaliser, diagonal update, max-abs). */
export const PSGD_WG1 = 256;
/** Largest factor size handled by the own mode-product / Gram kernels; larger ones use the tiled matmul. */
export const PSGD_SMALL_D = 64;

/** Smallest normal f32 (spec §0 TINY), as an exact literal. */
const TINY = f32(2 ** -126);

/** Name suffix of a stacked-members kernel (empty for one tensor, so single-tensor names stay as they were). */
const members = (g: number, stride?: number) =>
  g > 1 ? `_g${g}${stride === undefined ? "" : `k${stride}`}` : "";

const head = (wg: number) =>
  `@compute @workgroup_size(${wg})\nfn main(${MAIN_BUILTINS}) {\n  ${linearIndex(wg)}`;

/**
 * counters = [t, skipped, β^t] (persistent), step = [go, clip scale, momentum weight w_t] (written here),
 * gn = [global grad norm]. w_t = (1−β)/(1−β^t) makes the stored EMA the debiased one (§1.1).
 */
function buildPsgdControlKernel(): Kernel {
  return {
    name: "psgd_control",
    code: `${MATH_PRELUDE}
struct Hyper { max_norm: f32, beta: f32, pad0: f32, pad1: f32 };
@group(0) @binding(0) var<storage, read_write> counters: array<f32>;
@group(0) @binding(1) var<storage, read_write> step: array<f32>;
@group(0) @binding(2) var<storage, read> gn: array<f32>;
@group(0) @binding(3) var<uniform> h: Hyper;
@compute @workgroup_size(1)
fn main() {
  let norm = gn[0];
  if (!isfinite_(norm)) {
    counters[1] = counters[1] + 1.0;
    step[0] = 0.0; step[1] = 0.0; step[2] = 0.0;
    return;
  }
  counters[0] = counters[0] + 1.0;
  let bp = counters[2] * h.beta;
  counters[2] = bp;
  var scale = 1.0;
  if (h.max_norm > 0.0) { scale = min(1.0, h.max_norm / (norm + 1e-6)); }
  step[0] = 1.0; step[1] = scale; step[2] = (1.0 - h.beta) / (1.0 - bp);
}`,
  };
}

/**
 * Elements per invocation of the elementwise kernels (momentum, apply, noise) on tensors of n values: 4 (vec4
 * loads and stores: on lavapipe each storage access is a loop over the SIMD lanes, so a quad costs what one
 * float did) when n % 4 = 0, else 1.
 */
export const psgdVec = (n: number): 1 | 4 => (n % 4 === 0 ? 4 : 1);

/** Invocations of an elementwise PSGD kernel over `total` values of tensors of n values each. */
export const psgdElementwise = (n: number, total = n): number => total / psgdVec(n);

const elem = (n: number) => (psgdVec(n) === 4 ? "vec4f" : "f32");

/** The momentum update's expression at i (shared by psgdMomentumKernel and psgdDiagStepKernel: same bits). */
const MOMENTUM = "m[i] + step[2] * (step[1] * g[i] - m[i])";

/**
 * The triangular step's new entry from the old one `q` and (E·Q)'s entry `acc`, with `c` = η/ℓ and `go` the
 * member's flag in scope, and `upper` the entry's "on or above the diagonal" condition: written once for the
 * "update" TriForm, the matmul epilogue and the fused small update, whose results must be the same bits.
 */
const triStep = (q: string, acc: string, upper: string) =>
  `select(0.0, select(${q}, ${q} - c * ${acc}, go), ${upper})`;

/**
 * WGSL summing split-K partials into `e` (of X1) and `t` (of X2) at `src` over `chunks` blocks of `outs`
 * values, in chunk order (the Gram finish and the fused small update share it, and so their bits). `chunks` is
 * a WGSL u32 expression.
 */
const partialSums = (chunks: string, outs: number) =>
  `var e = 0.0;
  var t = 0.0;
  for (var k = 0u; k < ${chunks}; k++) { e += X1[k * ${outs}u + src]; t += X2[k * ${outs}u + src]; }`;

/** The uniform words of `psgdSmallUpdateKernel`: slot, stride (u32) and η (f32). */
export function psgdSmallParams(slot: number, stride: number, eta: number): Uint32Array {
  const w = new Uint32Array([slot, stride, 0, 0]);
  new Float32Array(w.buffer)[2] = eta;
  return w;
}

/** m ← m + w_t·(s·g − m) where the step is live. */
function buildPsgdMomentumKernel(n: number, copyOut = false): Kernel {
  const v = psgdVec(n);
  // copyOut: also write the new m to u (binding 3: the member's range of a group's stacked u), and the old m
  // when the step is skipped, so u always equals m afterwards.
  const out = copyOut ? `@group(0) @binding(3) var<storage, read_write> u: array<${elem(n)}>;\n` : "";
  const body = copyOut
    ? `if (i >= ${n / v}u) { return; }
  if (step[0] == 0.0) {
    u[i] = m[i];
    return;
  }
  let mi = ${MOMENTUM};
  m[i] = mi;
  u[i] = mi;`
    : `if (i >= ${n / v}u || step[0] == 0.0) { return; }
  m[i] = ${MOMENTUM};`;
  return {
    name: `psgd_momentum_${n}${copyOut ? "_out" : ""}`,
    code: `@group(0) @binding(0) var<storage, read_write> m: array<${elem(n)}>;
@group(0) @binding(1) var<storage, read> g: array<${elem(n)}>;
@group(0) @binding(2) var<storage, read> step: array<f32>;
${out}${head(PSGD_WG)}
  ${body}
}`,
  };
}

/**
 * The parameter update's WGSL shared by psgdApplyKernel and psgdDiagStepKernel: the clip f (trust region of
 * §3.5, or identity), the Hyper uniform, and `update` (a statement: p ← p·(1 − lr·wd) − lr·f(d) at i).
 */
function applyParts(n: number, clip: boolean): { decls: string; update: string } {
  const f = clip
    ? `fn clip_(d: f32) -> f32 {
  let y = clamp(d / 1.5, -1e30, 1e30);
  return clamp(1.5 * (0.9 * tanh_(y) + 0.1 * sign(y) * log1p_(abs(y))), -2.0, 2.0);
}`
    : `fn clip_(d: f32) -> f32 { return d; }`;
  const u = psgdVec(n) === 4 ? "vec4f(clip_(d.x), clip_(d.y), clip_(d.z), clip_(d.w))" : "clip_(d)";
  return {
    decls: `${MATH_PRELUDE}
${f}
struct Hyper { lr: f32, wd: f32, pad0: f32, pad1: f32 };`,
    update: `let u = ${u};
  p[i] = p[i] * (1.0 - h.lr * h.wd) - h.lr * u;`,
  };
}

/** p ← p·(1 − lr·wd) − lr·f(D), f the trust-region clip of §3.5 (or identity). */
function buildPsgdApplyKernel(n: number, clip: boolean): Kernel {
  const { decls, update } = applyParts(n, clip);
  return {
    name: `psgd_apply_${n}${clip ? "_tr" : ""}`,
    code: `${decls}
@group(0) @binding(0) var<storage, read_write> p: array<${elem(n)}>;
@group(0) @binding(1) var<storage, read> D: array<${elem(n)}>;
@group(0) @binding(2) var<storage, read> step: array<f32>;
@group(0) @binding(3) var<uniform> h: Hyper;
${head(PSGD_WG)}
  if (i >= ${n / psgdVec(n)}u || step[0] == 0.0) { return; }
  let d = D[i];
  ${update}
}`,
  };
}

/**
 * A tensor whose one factor is diagonal (1-D parameters), its whole step in one pass: the momentum of
 * psgdMomentumKernel, P·u = u ⊙ c (the "mul" mode product with the cache c) and psgdApplyKernel's update, with
 * their arithmetic, so the result is theirs bit for bit.
 */
function buildPsgdDiagStepKernel(n: number, clip: boolean): Kernel {
  const { decls, update } = applyParts(n, clip);
  return {
    name: `psgd_diag_step_${n}${clip ? "_tr" : ""}`,
    code: `${decls}
@group(0) @binding(0) var<storage, read_write> m: array<${elem(n)}>;
@group(0) @binding(1) var<storage, read> g: array<${elem(n)}>;
@group(0) @binding(2) var<storage, read> step: array<f32>;
@group(0) @binding(3) var<storage, read> c: array<${elem(n)}>;
@group(0) @binding(4) var<storage, read_write> p: array<${elem(n)}>;
@group(0) @binding(5) var<uniform> h: Hyper;
${head(PSGD_WG)}
  if (i >= ${n / psgdVec(n)}u || step[0] == 0.0) { return; }
  let mi = ${MOMENTUM};
  m[i] = mi;
  let d = mi * c[i];
  ${update}
}`,
  };
}

/**
 * Per-tensor update control from ss = ‖G‖² (summed here, one workgroup per member): qctl = [go, σ] with
 * σ = √ε32·‖G‖/N (1.4.3 damping, §2.3.1). With the zero-gradient guard (§5.2) the update is skipped unless ss
 * is finite and > 0. One dispatch instead of a square, a row sum and a control kernel; quads where n % 4 = 0.
 */
function buildPsgdUpdateControlKernel(n: number, guard: boolean, g = 1): Kernel {
  const cond = guard ? "step[0] != 0.0 && isfinite_(ss) && ss > 0.0" : "step[0] != 0.0";
  const v = psgdVec(n);
  return {
    name: `psgd_qctl_${n}${guard ? "_guard" : ""}${members(g)}`,
    code: `${MATH_PRELUDE}
@group(0) @binding(0) var<storage, read> x: array<${elem(n)}>;
@group(0) @binding(1) var<storage, read> step: array<f32>;
@group(0) @binding(2) var<storage, read_write> qctl: array<f32>;
${WG1_HEAD}
let o = wid.x * ${n / v}u;
var acc = ${v === 4 ? "vec4f(0.0)" : "0.0"};
for (var k = o + lid; k < o + ${n / v}u; k += ${PSGD_WG1}u) { acc = fma(x[k], x[k], acc); }
red[lid] = ${v === 4 ? "(acc.x + acc.y) + (acc.z + acc.w)" : "acc"};
${TREE((a, b) => `${a} + ${b}`)}
if (lid == 0u) {
  let ss = red[0];
  qctl[2u * wid.x] = select(0.0, 1.0, ${cond});
  qctl[2u * wid.x + 1u] = ${f32(Math.sqrt(2 ** -23))} * sqrt(ss) / ${f32(n)};
}
}`,
  };
}

/** out = x + σ·z (damping noise), σ per member. */
function buildPsgdNoiseKernel(n: number, g = 1): Kernel {
  const v = psgdVec(n);
  return {
    name: `psgd_noise_${n}${members(g)}`,
    code: `@group(0) @binding(0) var<storage, read> x: array<${elem(n)}>;
@group(0) @binding(1) var<storage, read> z: array<${elem(n)}>;
@group(0) @binding(2) var<storage, read> qctl: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<${elem(n)}>;
${head(PSGD_WG)}
  if (i >= ${(g * n) / v}u) { return; }
  out[i] = x[i] + qctl[2u * (i / ${n / v}u) + 1u] * z[i];
}`,
  };
}

export interface ModeConfig {
  /** Each member viewed as [d, rest]: the product acts on the leading axis. */
  d: number;
  rest: number;
  /** "mm": Σ_j M[i,j] X[j]; "mmT": Σ_j M[j,i] X[j]; "mul"/"div": scale by v[i] or 1/v[i]. */
  op: "mm" | "mmT" | "mul" | "div";
  /** M is upper-triangular: skip its zero half. */
  upper: boolean;
  /** Stacked members, each with its own M (default 1). */
  g?: number;
  /**
   * Also move the first axis of `rest` (of this length) last: [d, L, R] → [R, d, L] instead of [L, R, d]
   * (default 1, no extra move).
   */
  lead?: number;
}

const ceil4 = (x: number) => Math.ceil(x / 4);

/** Invocations of psgdModeKernel: one per element (diagonal ops) or per 4 rows × 4 columns. */
export function modeInvocations(c: ModeConfig): number {
  const n = c.d * c.rest;
  return (c.g ?? 1) * (c.op === "mul" || c.op === "div" ? n : ceil4(c.d) * ceil4(c.rest));
}

/**
 * Y = X ×_0 M per member with X viewed as [d, rest], written as [rest, d] (the axis moves last; see
 * engine/optim/psgd_ops.ts leadProduct). Dense ops hold a 4×4 tile (4 rows of M × 4 columns of X) in registers
 * (16 FMAs per 8 loads); consecutive invocations take consecutive column blocks.
 */
function buildPsgdModeKernel(c: ModeConfig): Kernel {
  const { d, rest } = c;
  const g = c.g ?? 1;
  const n = d * rest;
  const L = c.lead ?? 1, R = rest / L;
  if (!Number.isInteger(R)) throw new Error(`psgdModeKernel: lead ${L} does not divide ${rest}`);
  const name = `psgd_mode_${c.op}${c.upper ? "_triu" : ""}_${d}x${rest}${members(g)}${L > 1 ? `_l${L}` : ""}`;
  // Output offset of (column cc of X, row rr of the product).
  const out = (cc: string, rr: string) =>
    L === 1 ? `${cc} * ${d}u + ${rr}` : `((${cc} % ${R}u) * ${d}u + ${rr}) * ${L}u + ${cc} / ${R}u`;
  const decls = `@group(0) @binding(0) var<storage, read> X: array<f32>;
@group(0) @binding(1) var<storage, read> M: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;`;
  if (c.op === "mul" || c.op === "div") {
    return {
      name,
      code: `${decls}
${head(PSGD_WG)}
  if (i >= ${g * n}u) { return; }
  let mem = i / ${n}u;
  let t = (i % ${n}u) / ${L}u;
  let r = t % ${d}u;
  let col = ${L === 1 ? `t / ${d}u` : `((i % ${n}u) % ${L}u) * ${R}u + t / ${d}u`};
  Y[i] = X[mem * ${n}u + r * ${rest}u + col] ${c.op === "mul" ? "*" : "/"} M[mem * ${d}u + r];
}`,
    };
  }
  const tc = ceil4(rest);
  const per = ceil4(d) * tc;
  const trans = c.op === "mmT";
  const [lo, hi] = !c.upper
    ? ["0u", `${d - 1}u`]
    : trans
    ? ["0u", `min(i0 + 3u, ${d - 1}u)`]
    : ["i0", `${d - 1}u`];
  const m = (r: string) => (trans ? `M[mo + j * ${d}u + ${r}]` : `M[mo + ${r} * ${d}u + j]`);
  const k4 = [0, 1, 2, 3];
  // Quads where every tile is whole: X rows load as vec4 when rest % 4 = 0; Y's 4 rows of a column are one
  // vec4 when d % 4 = 0, and d = 3's 4 columns × 3 rows are 12 contiguous floats (3 vec4s).
  const vecX = rest % 4 === 0;
  const vecY = vecX && L === 1 && (d % 4 === 0 || d === 3);
  const stores: string[] = [];
  if (vecY && d === 3) {
    const f = [0, 1, 2, 3].flatMap((q) => [0, 1, 2].map((r) => `y${r}[${q}]`));
    for (let v = 0; v < 3; v++) {
      stores.push(`Y[(xo + c0 * 3u) / 4u + ${v}u] = vec4f(${f.slice(4 * v, 4 * v + 4).join(", ")});`);
    }
  } else if (vecY) {
    for (const q of k4) {
      stores.push(
        `Y[(xo + (c0 + ${q}u) * ${d}u + i0) / 4u] = vec4f(y0[${q}], y1[${q}], y2[${q}], y3[${q}]);`,
      );
    }
  } else {
    for (const r of k4) {
      for (const q of k4) {
        stores.push(
          `if (i0 + ${r}u < ${d}u && c0 + ${q}u < ${rest}u) { Y[xo + ${
            out(`(c0 + ${q}u)`, `i0 + ${r}u`)
          }] = y${r}[${q}]; }`,
        );
      }
    }
  }
  const xv = vecX ? "X[(o + c0) / 4u]" : "vec4f(X[cb0 + o], X[cb1 + o], X[cb2 + o], X[cb3 + o])";
  return {
    name: `${name}${vecX ? "_v" : ""}${vecY ? "v" : ""}`,
    code: `@group(0) @binding(0) var<storage, read> X: array<${vecX ? "vec4f" : "f32"}>;
@group(0) @binding(1) var<storage, read> M: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<${vecY ? "vec4f" : "f32"}>;
${head(PSGD_WG)}
  if (i >= ${g * per}u) { return; }
  let xo = (i / ${per}u) * ${n}u;
  let mo = (i / ${per}u) * ${d * d}u;
  let li = i % ${per}u;
  let c0 = (li % ${tc}u) * 4u;
  let i0 = (li / ${tc}u) * 4u;
  ${k4.map((q) => `let cb${q} = min(c0 + ${q}u, ${rest - 1}u);`).join("\n  ")}
  ${k4.map((r) => `let ri${r} = min(i0 + ${r}u, ${d - 1}u);`).join("\n  ")}
  var y0 = vec4f(0.0);
  var y1 = vec4f(0.0);
  var y2 = vec4f(0.0);
  var y3 = vec4f(0.0);
  for (var j = ${lo}; j <= ${hi}; j++) {
    let o = xo + j * ${rest}u;
    let xv = ${xv};
    ${k4.map((r) => `y${r} = fma(vec4f(${m(`ri${r}`)}), xv, y${r});`).join("\n    ")}
  }
  ${stores.join("\n  ")}
}`,
  };
}

/** Address of column `col` (= p·b + q) of the mode unfolding at row 0. */
const colBase = (col: string, d: number, b: number) => `(${col} / ${b}u) * ${d * b}u + ${col} % ${b}u`;

export interface GramConfig {
  a: number;
  d: number;
  b: number;
  /** Split of the a·b contracted columns. */
  chunks: number;
  /** Only the diagonal (SqSum_k), for diagonal factors. */
  diag: boolean;
  /** Stacked members, each with its own Grams (default 1). */
  g?: number;
}

/** Parallel partial sums per chunk: rows (diagonal) or upper 4×4 tiles of the d×d Gram. */
function gramUnits(d: number, diag: boolean): number {
  return diag ? d : ceil4(d) * ceil4(d);
}

/** Chunks so that ≥ 8k partial sums run in parallel, each at least 32 columns long. */
export function gramChunks(a: number, d: number, b: number, diag: boolean): number {
  const cols = a * b;
  const want = Math.max(1, Math.ceil(8192 / gramUnits(d, diag)));
  const len = Math.ceil(cols / Math.max(1, Math.min(want, Math.ceil(cols / 32))));
  return Math.ceil(cols / len);
}

export function gramInvocations(c: GramConfig): number {
  return (c.g ?? 1) * c.chunks * gramUnits(c.d, c.diag);
}

/**
 * Split-K partial Grams of A and B along one axis, already combined: pe = Σ A_i A_j − B_i B_j and
 * ps = Σ A_i A_j + B_i B_j, laid out [member, chunk, i, j] (every j ≥ i is written) or [member, chunk, i] when diag.
 * Dense: one 4×4 tile (tiles on or above the diagonal) per invocation, 32 FMAs per 16 loads.
 */
function buildPsgdGramKernel(c: GramConfig): Kernel {
  const { a, d, b, chunks } = c;
  const g = c.g ?? 1;
  const cols = a * b;
  const len = Math.ceil(cols / chunks);
  const units = gramUnits(d, c.diag);
  const name = `psgd_gram${c.diag ? "_diag" : ""}_${a}x${d}x${b}_c${chunks}${members(g)}`;
  const pre = `@group(0) @binding(0) var<storage, read> A: array<f32>;
@group(0) @binding(1) var<storage, read> B: array<f32>;
@group(0) @binding(2) var<storage, read_write> pe: array<f32>;
@group(0) @binding(3) var<storage, read_write> ps: array<f32>;
${head(PSGD_WG)}
  if (i >= ${g * chunks * units}u) { return; }
  let u = i % ${units}u;
  let c = (i / ${units}u) % ${chunks}u;
  let xo = (i / ${chunks * units}u) * ${a * d * b}u;
  let end = min(${cols}u, (c + 1u) * ${len}u);`;
  if (c.diag) {
    return {
      name,
      code: `${pre}
  var ta = 0.0;
  var tb = 0.0;
  for (var col = c * ${len}u; col < end; col++) {
    let o = xo + ${colBase("col", d, b)} + u * ${b}u;
    ta = fma(A[o], A[o], ta);
    tb = fma(B[o], B[o], tb);
  }
  pe[i] = ta - tb;
  ps[i] = ta + tb;
}`,
    };
  }
  const k4 = [0, 1, 2, 3];
  const t = ceil4(d);
  const load = (buf: string, v: string) => `vec4f(${k4.map((k) => `${buf}[o + ${v}${k}]`).join(", ")})`;
  const stores: string[] = [];
  for (const r of k4) {
    for (const s of k4) {
      stores.push(`if (r0 + ${r}u < ${d}u && s0 + ${s}u < ${d}u) {
    let w = (i / ${units}u) * ${d * d}u + (r0 + ${r}u) * ${d}u + s0 + ${s}u;
    pe[w] = ta${r}[${s}] - tb${r}[${s}];
    ps[w] = ta${r}[${s}] + tb${r}[${s}];
  }`);
    }
  }
  return {
    name,
    code: `${pre}
  let r0 = (u / ${t}u) * 4u;
  let s0 = (u % ${t}u) * 4u;
  if (s0 + 3u < r0) { return; }
  ${k4.map((k) => `let rr${k} = min(r0 + ${k}u, ${d - 1}u) * ${b}u;`).join("\n  ")}
  ${k4.map((k) => `let ss${k} = min(s0 + ${k}u, ${d - 1}u) * ${b}u;`).join("\n  ")}
  ${k4.map((k) => `var ta${k} = vec4f(0.0);\n  var tb${k} = vec4f(0.0);`).join("\n  ")}
  for (var col = c * ${len}u; col < end; col++) {
    let o = xo + ${colBase("col", d, b)};
    let ar = ${load("A", "rr")};
    let as_ = ${load("A", "ss")};
    let br = ${load("B", "rr")};
    let bs = ${load("B", "ss")};
    ${
      k4.map((k) =>
        `ta${k} = fma(vec4f(ar[${k}]), as_, ta${k});\n    tb${k} = fma(vec4f(br[${k}]), bs, tb${k});`
      ).join("\n    ")
    }
  }
  ${stores.join("\n  ")}
}`,
  };
}

/**
 * Epilogue: E = triu(T1 − T2), S = T1 + T2 (full, symmetric) from the split-K partials ("partials") or from two
 * full Grams T1, T2 ("grams"). Diagonal factors keep e = t1 − t2, s = t1 + t2 as vectors.
 */
function buildPsgdGramFinishKernel(
  c: { d: number; chunks: number; diag: boolean; from: "partials" | "grams"; g?: number },
): Kernel {
  const { d, chunks } = c;
  const g = c.g ?? 1;
  const outs = c.diag ? d : d * d;
  // li: the output within its member; inputs are [member, chunk, outs] partials or [member, d, d] Grams.
  const at = `let li = i % ${outs}u;
  let base = (i / ${outs}u) * ${c.from === "grams" ? outs : chunks * outs}u;`;
  let body: string;
  if (c.from === "grams") {
    body = `${at}
  let r = li / ${d}u; let s = li % ${d}u;
  let lo = base + min(r, s) * ${d}u + max(r, s);
  E[i] = select(0.0, X1[i] - X2[i], s >= r);
  S[i] = X1[lo] + X2[lo];`;
  } else {
    const src = c.diag ? "let src = base + li;" : `let r = li / ${d}u; let s = li % ${d}u;
  let src = base + min(r, s) * ${d}u + max(r, s);`;
    const eOut = c.diag ? "E[i] = e;" : "E[i] = select(0.0, e, s >= r);";
    body = `${at}
  ${src}
  ${partialSums(`${chunks}u`, outs)}
  ${eOut}
  S[i] = t;`;
  }
  return {
    name: `psgd_gram_finish_${c.from}${c.diag ? "_diag" : ""}_${d}_c${chunks}${members(g)}`,
    code: `@group(0) @binding(0) var<storage, read> X1: array<f32>;
@group(0) @binding(1) var<storage, read> X2: array<f32>;
@group(0) @binding(2) var<storage, read_write> E: array<f32>;
@group(0) @binding(3) var<storage, read_write> S: array<f32>;
${head(PSGD_WG)}
  if (i >= ${g * outs}u) { return; }
  ${body}
}`,
  };
}

const TREE = (op: (a: string, b: string) => string) =>
  `workgroupBarrier();
  for (var w = ${PSGD_WG1 / 2}u; w > 0u; w >>= 1u) {
    if (lid < w) { red[lid] = ${op("red[lid]", "red[lid + w]")}; }
    workgroupBarrier();
  }`;

const WG1_HEAD = `var<workgroup> red: array<f32, ${PSGD_WG1}>;
@compute @workgroup_size(${PSGD_WG1})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3u) {`;

/**
 * WGSL of lb(S) (§2.3, "lb") for one d×d S read through `S(e)` by a WG1 workgroup: μ = max|S|, j* = argmax
 * column norm of S/μ, y = Ŝᵀ Ŝ[:, j*] normalised, ℓ = μ‖Ŝ y‖; leaves `lb` = max(ℓ, TINY) (TINY when S = 0) in
 * every invocation. y is written and read back through `y(j)`, after `ySync` (the barrier its memory needs).
 */
function lbCode(d: number, S: (e: string) => string, y: (j: string) => string, ySync: string): string {
  const W = PSGD_WG1;
  return `var m = 0.0;
  for (var e = lid; e < ${d * d}u; e += ${W}u) { m = max(m, abs(${S("e")})); }
  red[lid] = m;
  ${TREE((a, b) => `max(${a}, ${b})`)}
  let mu = red[0];
  let inv = select(0.0, 1.0 / mu, mu > 0.0);
  workgroupBarrier();
  var best = -1.0;
  var bj = 0u;
  for (var j = lid; j < ${d}u; j += ${W}u) {
    var cs = 0.0;
    for (var r = 0u; r < ${d}u; r++) { let v = ${S(`r * ${d}u + j`)} * inv; cs = fma(v, v, cs); }
    if (cs > best) { best = cs; bj = j; }
  }
  red[lid] = best;
  arg[lid] = bj;
  workgroupBarrier();
  for (var w = ${W / 2}u; w > 0u; w >>= 1u) {
    if (lid < w) {
      let v2 = red[lid + w];
      let j2 = arg[lid + w];
      if (v2 > red[lid] || (v2 == red[lid] && j2 < arg[lid])) { red[lid] = v2; arg[lid] = j2; }
    }
    workgroupBarrier();
  }
  let js = arg[0];
  workgroupBarrier();
  var ny = 0.0;
  for (var j = lid; j < ${d}u; j += ${W}u) {
    var acc = 0.0;
    for (var r = 0u; r < ${d}u; r++) { acc = fma(${S(`r * ${d}u + j`)} * inv, ${
    S(`r * ${d}u + js`)
  } * inv, acc); }
    ${y("j")} = acc;
    ny = fma(acc, acc, ny);
  }
  red[lid] = ny;
  ${TREE((a, b) => `${a} + ${b}`)}
  let rn = 1.0 / sqrt(red[0]);
  ${ySync}
  workgroupBarrier();
  var nz = 0.0;
  for (var r = lid; r < ${d}u; r += ${W}u) {
    var acc = 0.0;
    for (var j = 0u; j < ${d}u; j++) { acc = fma(${S(`r * ${d}u + j`)} * inv, ${y("j")} * rn, acc); }
    nz = fma(acc, acc, nz);
  }
  workgroupBarrier();
  red[lid] = nz;
  ${TREE((a, b) => `${a} + ${b}`)}
  let lb = select(${TINY}, max(mu * sqrt(red[0]), ${TINY}), mu > 0.0);`;
}

/**
 * ℓ = max(lb(S), TINY) into ell[member·stride + slot] (§2.3). One workgroup per member (dispatch g); y lives in
 * the scratch buffer (d per member); `stride` is the members' factor count K.
 */
function buildPsgdNormKernel(c: { d: number; slot: number; g?: number; stride?: number }): Kernel {
  const { d } = c;
  const g = c.g ?? 1;
  const lb = lbCode(d, (e) => `S[so + ${e}]`, (j) => `y[yo + ${j}]`, "storageBarrier();");
  return {
    name: `psgd_lb_${d}_s${c.slot}${members(g, c.stride ?? 1)}`,
    code: `@group(0) @binding(0) var<storage, read> S: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> ell: array<f32>;
var<workgroup> arg: array<u32, ${PSGD_WG1}>;
${WG1_HEAD}
let so = wid.x * ${d * d}u;
let yo = wid.x * ${d}u;
${lb}
if (lid == 0u) { ell[wid.x * ${c.stride ?? 1}u + ${c.slot}u] = lb; }
}`,
  };
}

/**
 * Largest dense factor the fused small-factor update handles. Its S, E and Q would fit one workgroup's memory up
 * to 32, but creating the d = 32 pipeline costs 90–150 ms even from Mesa's warm cache (its loops of 32 are
 * unrolled), against ~30 ms for the separate kernels it replaces, on every fresh process (lavapipe, 2026-12-04).
 */
export const PSGD_FUSED_MAX_D = 16;

/**
 * The whole update of a small dense factor (d ≤ PSGD_FUSED_MAX_D) in one workgroup per member, from the Grams'
 * split-K partials: E = triu(T1 − T2) and S = T1 + T2 (the "partials" finish), ℓ = lb(S) into
 * ell[member·stride + slot], Q ← Q − (η/ℓ)·E·Q in place where the update is live (`psgdTriKernel` "update"), and
 * with `cache` the cache QᵀQ of the new Q where live ("cache"; not when balancing or the stale policy follow). Each sum runs in the separate kernels' order, so the
 * results are theirs bit for bit; the saving is four dispatches (and a copy) per factor. η, the slot and the
 * stride come from a uniform (binding 5: `psgdSmallParams`), so one pipeline per (d, split-K count, cache)
 * serves every factor of that size (22 pipelines at the `default` AE's first step before, 11 now). The split-K
 * count stays baked: read from the uniform as the loop bound, it made this kernel ~7 ms a dispatch on lavapipe
 * instead of well under 1 (measured 2026-12-04).
 */
function buildPsgdSmallUpdateKernel(c: { d: number; chunks: number; cache: boolean }): Kernel {
  const { d, chunks } = c;
  const W = PSGD_WG1, dd = d * d;
  if (d > PSGD_FUSED_MAX_D) throw new Error(`psgdSmallUpdateKernel: d ${d} > ${PSGD_FUSED_MAX_D}`);
  const lb = lbCode(d, (e) => `Sw[${e}]`, (j) => `yw[${j}]`, "");
  return {
    name: `psgd_small_update_${d}_c${chunks}${c.cache ? "_cache" : ""}`,
    code: `@group(0) @binding(0) var<storage, read> X1: array<f32>;
@group(0) @binding(1) var<storage, read> X2: array<f32>;
@group(0) @binding(2) var<storage, read_write> Q: array<f32>;
@group(0) @binding(3) var<storage, read> qctl: array<f32>;
@group(0) @binding(4) var<storage, read_write> ell: array<f32>;
struct SmallParams { slot: u32, stride: u32, eta: f32, pad: u32 };
@group(0) @binding(5) var<uniform> P: SmallParams;
${c.cache ? "@group(0) @binding(6) var<storage, read_write> C: array<f32>;" : ""}
var<workgroup> arg: array<u32, ${W}>;
var<workgroup> Sw: array<f32, ${dd}>;
var<workgroup> Ew: array<f32, ${dd}>;
var<workgroup> Qw: array<f32, ${dd}>;
var<workgroup> yw: array<f32, ${d}>;
${WG1_HEAD}
  let mem = wid.x;
  let qo = mem * ${dd}u;
  let base = mem * ${chunks * dd}u;
  for (var li = lid; li < ${dd}u; li += ${W}u) {
    let r = li / ${d}u; let s = li % ${d}u;
    let src = base + min(r, s) * ${d}u + max(r, s);
    ${partialSums(`${chunks}u`, dd)}
    Ew[li] = select(0.0, e, s >= r);
    Sw[li] = t;
    Qw[li] = Q[qo + li];
  }
  workgroupBarrier();
  ${lb}
  if (lid == 0u) { ell[mem * P.stride + P.slot] = lb; }
  // No early return: the barriers below need the whole workgroup (go is the same for all of it).
  let go = qctl[2u * mem] != 0.0;
  let c = P.eta / lb;
  // S is dead after lb: the new Q goes there (each entry from one invocation, E and Q only read).
  for (var li = lid; li < ${dd}u; li += ${W}u) {
    let r = li / ${d}u; let s = li % ${d}u;
    var acc = 0.0;
    for (var l = r; l <= s; l++) { acc = fma(Ew[r * ${d}u + l], Qw[l * ${d}u + s], acc); }
    let q = Qw[li];
    Sw[li] = ${triStep("q", "acc", "s >= r")};
  }
  workgroupBarrier();
  for (var li = lid; li < ${dd}u; li += ${W}u) {
    Q[qo + li] = Sw[li];
  }${
      c.cache
        ? `
  workgroupBarrier();
  for (var li = lid; li < ${dd}u; li += ${W}u) {
    let r = li / ${d}u; let s = li % ${d}u;
    var acc = 0.0;
    for (var l = 0u; l <= min(r, s); l++) { acc = fma(Sw[l * ${d}u + r], Sw[l * ${d}u + s], acc); }
    if (go) { C[qo + li] = acc; }
  }`
        : ""
    }
}`,
  };
}

/**
 * Diagonal factor: ℓ = max(max|s|, TINY), q ← q − (η/ℓ)·e⊙q (one workgroup per member); ℓ also goes to
 * ell[member·stride + slot].
 */
function buildPsgdDiagUpdateKernel(
  c: { d: number; eta: number; slot: number; g?: number; stride?: number },
): Kernel {
  const { d } = c;
  const W = PSGD_WG1;
  return {
    name: `psgd_diag_update_${d}_s${c.slot}${members(c.g ?? 1, c.stride ?? 1)}`,
    code: `@group(0) @binding(0) var<storage, read> e: array<f32>;
@group(0) @binding(1) var<storage, read> s: array<f32>;
@group(0) @binding(2) var<storage, read> qctl: array<f32>;
@group(0) @binding(3) var<storage, read_write> q: array<f32>;
@group(0) @binding(4) var<storage, read_write> ell: array<f32>;
${WG1_HEAD}
  let o = wid.x * ${d}u;
  var m = 0.0;
  for (var k = lid; k < ${d}u; k += ${W}u) { m = max(m, abs(s[o + k])); }
  red[lid] = m;
  ${TREE((a, b) => `max(${a}, ${b})`)}
  let l = max(red[0], ${TINY});
  if (lid == 0u) { ell[wid.x * ${c.stride ?? 1}u + ${c.slot}u] = l; }
  if (qctl[2u * wid.x] == 0.0) { return; }
  for (var k = o + lid; k < o + ${d}u; k += ${W}u) { q[k] = q[k] - (${f32(c.eta)} / l) * e[k] * q[k]; }
}`,
  };
}

/**
 * Blocked inverse of an upper-triangular d×d matrix (§6.6 option b), step 1: every diagonal block of `leaf`
 * rows is inverted by back substitution, one column per invocation; entries below the diagonal are zeroed.
 */
function buildPsgdTriInvLeafKernel(c: { d: number; leaf: number; g?: number }): Kernel {
  const { d, leaf } = c;
  const g = c.g ?? 1;
  return {
    name: `psgd_triinv_leaf_${d}_l${leaf}${members(g)}`,
    code: `@group(0) @binding(0) var<storage, read> Q: array<f32>;
@group(0) @binding(1) var<storage, read_write> X: array<f32>;
${head(PSGD_WG)}
if (i >= ${g * d}u) { return; }
let j = i % ${d}u;
let o = (i / ${d}u) * ${d * d}u;
let s = (j / ${leaf}u) * ${leaf}u;
for (var r = j + 1u; r < ${d}u; r++) { X[o + r * ${d}u + j] = 0.0; }
X[o + j * ${d}u + j] = 1.0 / Q[o + j * ${d}u + j];
for (var r = j; r > s; r--) {
  let row = r - 1u;
  var acc = 0.0;
  for (var l = row + 1u; l <= j; l++) { acc = fma(Q[o + row * ${d}u + l], X[o + l * ${d}u + j], acc); }
  X[o + row * ${d}u + j] = -acc / Q[o + row * ${d}u + row];
}
}`,
  };
}

/** The d×d products of the factor algebra, on 4×4 output tiles held in registers (16 FMAs per 8 loads). */
export type TriForm =
  /** Qout = Q − (η/ℓ)·E·Q (E = triu(T1 − T2)); Q where the update is skipped; exact zeros below the diagonal. */
  | { kind: "update"; eta: number; slot: number }
  /** C = QᵀQ where the update is live. */
  | { kind: "cache" }
  /**
   * Triangular inverse, doubling level h (§6.6 option b): for each pair of inverted diagonal blocks Ai (rows
   * [g, g+h)) and Di (rows [g+h, g+2h)), X12 = −Ai·C·Di with C = Q[g:g+h, g+h:g+2h]; stage "inv0" writes
   * T = C·Di, stage "inv1" writes X12 = −Ai·T.
   */
  | { kind: "inv0"; h: number }
  | { kind: "inv1"; h: number };

export const TRI_TILE = 4;

/** Invocations of a TriForm kernel (one per 4×4 tile of each member). */
export function triInvocations(d: number, g = 1): number {
  return g * Math.ceil(d / TRI_TILE) ** 2;
}

interface TriParts {
  decls: string[];
  /** A(r, l) and B(l, s) as loads from the bound buffers. */
  a: (r: string, l: string) => string;
  b: (l: string, s: string) => string;
  lo: string;
  hi: string;
  prologue: string;
  epilogue: string;
}

/** The parts of one TriForm; every matrix access is offset by the member's `o`, its ℓ at ell[mem·stride + slot]. */
function triParts(d: number, f: TriForm, stride: number): TriParts {
  const rw = (k: number, n: string) => `@group(0) @binding(${k}) var<storage, read_write> ${n}: array<f32>;`;
  const ro = (k: number, n: string) => `@group(0) @binding(${k}) var<storage, read> ${n}: array<f32>;`;
  const last = `${d - 1}u`;
  const block = (h: number) =>
    `let g = (r0 / ${2 * h}u) * ${2 * h}u;
  let mid = g + ${h}u;
  if (r0 >= mid || s0 < mid || s0 >= g + ${2 * h}u) { return; }`;
  switch (f.kind) {
    case "update":
      return {
        decls: [ro(0, "Q"), ro(1, "E"), ro(2, "ell"), ro(3, "qctl"), rw(4, "Out")],
        a: (r, l) => `E[o + ${r} * ${d}u + ${l}]`,
        b: (l, s) => `Q[o + ${l} * ${d}u + ${s}]`,
        lo: "r0",
        hi: `min(s0 + 3u, ${last})`,
        prologue: `let c = ${f32(f.eta)} / ell[mem * ${stride}u + ${f.slot}u];
  let go = qctl[2u * mem] != 0.0;`,
        epilogue: `let q = Q[o + r * ${d}u + s];
    Out[o + r * ${d}u + s] = ${triStep("q", "acc", "s >= r")};`,
      };
    case "cache":
      return {
        decls: [ro(0, "Q"), ro(1, "qctl"), rw(2, "C")],
        a: (r, l) => `Q[o + ${l} * ${d}u + ${r}]`,
        b: (l, s) => `Q[o + ${l} * ${d}u + ${s}]`,
        lo: "0u",
        hi: `min(min(r0, s0) + 3u, ${last})`,
        prologue: `if (qctl[2u * mem] == 0.0) { return; }`,
        epilogue: `C[o + r * ${d}u + s] = acc;`,
      };
    case "inv0":
      return {
        decls: [ro(0, "Q"), rw(1, "X"), rw(2, "T")],
        a: (r, l) => `Q[o + ${r} * ${d}u + ${l}]`,
        b: (l, s) => `X[o + ${l} * ${d}u + ${s}]`,
        lo: "mid",
        hi: `min(s0 + 3u, ${last})`,
        prologue: block(f.h),
        epilogue: `T[o + r * ${d}u + s] = acc;`,
      };
    case "inv1":
      return {
        decls: [rw(0, "X"), rw(1, "T")],
        a: (r, l) => `X[o + ${r} * ${d}u + ${l}]`,
        b: (l, s) => `T[o + ${l} * ${d}u + ${s}]`,
        lo: "r0",
        hi: "mid - 1u",
        prologue: block(f.h),
        epilogue: `X[o + r * ${d}u + s] = -acc;`,
      };
  }
}

/**
 * Out[r, s] = epilogue(Σ_{l=lo..hi} A(r, l)·B(l, s)) over a 4×4 tile. The loop range is the union over the
 * tile; the extra terms are products with exact zeros of the triangular operands, so they change nothing.
 * Rows and columns past d are clamped for loading and never stored.
 */
function buildPsgdTriKernel(d: number, f: TriForm, g = 1, stride = 1): Kernel {
  if ((f.kind === "inv0" || f.kind === "inv1") && f.h % TRI_TILE !== 0) {
    throw new Error(`psgdTriKernel: block size ${f.h} is not a multiple of ${TRI_TILE}`);
  }
  const p = triParts(d, f, stride);
  const T = Math.ceil(d / TRI_TILE);
  const idx = [0, 1, 2, 3];
  const stores: string[] = [];
  for (const i of idx) {
    for (const j of idx) {
      stores.push(`if (r0 + ${i}u < ${d}u && s0 + ${j}u < ${d}u) {
  let r = r0 + ${i}u;
  let s = s0 + ${j}u;
  let acc = a${i}[${j}];
  ${p.epilogue}
}`);
    }
  }
  const tag = f.kind === "update" ? `_s${f.slot}` : f.kind === "cache" ? "" : `_h${f.h}`;
  return {
    name: `psgd_tri_${f.kind}_${d}${tag}${members(g, f.kind === "update" ? stride : undefined)}`,
    code: `${p.decls.join("\n")}
${head(PSGD_WG)}
if (i >= ${g * T * T}u) { return; }
let mem = i / ${T * T}u;
let o = mem * ${d * d}u;
let li = i % ${T * T}u;
let r0 = (li / ${T}u) * 4u;
let s0 = (li % ${T}u) * 4u;
${p.prologue}
${idx.map((k) => `let rr${k} = min(r0 + ${k}u, ${d - 1}u);`).join("\n  ")}
${idx.map((k) => `let ss${k} = min(s0 + ${k}u, ${d - 1}u);`).join("\n  ")}
var a0 = vec4f(0.0);
var a1 = vec4f(0.0);
var a2 = vec4f(0.0);
var a3 = vec4f(0.0);
for (var l = ${p.lo}; l <= ${p.hi}; l++) {
  let bv = vec4f(${idx.map((k) => p.b("l", `ss${k}`)).join(", ")});
  ${idx.map((k) => `a${k} = fma(vec4f(${p.a(`rr${k}`, "l")}), bv, a${k});`).join("\n    ")}
}
${stores.join("\n  ")}
}`,
  };
}

/**
 * The "update" TriForm's epilogue for a product T = E·Q formed elsewhere (matmul): Qout = Q − (η/ℓ)·T where
 * the update is live, Q where skipped, exact zeros below the diagonal; the same expression as psgdTriKernel's.
 */
function buildPsgdTriEpilogueKernel(
  c: { d: number; eta: number; slot: number; g: number; stride: number },
): Kernel {
  const { d } = c;
  return {
    name: `psgd_tri_epilogue_${d}_s${c.slot}${members(c.g, c.stride)}`,
    code: `@group(0) @binding(0) var<storage, read> Q: array<f32>;
@group(0) @binding(1) var<storage, read> T: array<f32>;
@group(0) @binding(2) var<storage, read> ell: array<f32>;
@group(0) @binding(3) var<storage, read> qctl: array<f32>;
@group(0) @binding(4) var<storage, read_write> Out: array<f32>;
${head(PSGD_WG)}
  if (i >= ${c.g * d * d}u) { return; }
  let mem = i / ${d * d}u;
  let li = i % ${d * d}u;
  let c = ${f32(c.eta)} / ell[mem * ${c.stride}u + ${c.slot}u];
  let go = qctl[2u * mem] != 0.0;
  let q = Q[i];
  Out[i] = ${triStep("q", "T[i]", `li % ${d}u >= li / ${d}u`)};
}`,
  };
}

/** dst ← src for the members (n values each) whose update was live. */
function buildPsgdLiveCopyKernel(n: number, g: number): Kernel {
  return {
    name: `psgd_live_copy_${n}${members(g)}`,
    code: `@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read> qctl: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
${head(PSGD_WG)}
  if (i >= ${g * n}u || qctl[2u * (i / ${n}u)] == 0.0) { return; }
  dst[i] = src[i];
}`,
  };
}

/** Diagonal cache refresh c = q², where the update was live. */
function buildPsgdDiagCacheKernel(d: number, g = 1): Kernel {
  return {
    name: `psgd_cache_diag_${d}${members(g)}`,
    code: `@group(0) @binding(0) var<storage, read> Q: array<f32>;
@group(0) @binding(1) var<storage, read> qctl: array<f32>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
${head(PSGD_WG)}
if (i >= ${g * d}u || qctl[2u * (i / ${d}u)] == 0.0) { return; }
C[i] = Q[i] * Q[i];
}`,
  };
}

/** out[member·stride + slot] = max|x| over each member's n values (one workgroup per member). */
function buildPsgdAbsMaxKernel(c: { n: number; slot: number; g?: number; stride?: number }): Kernel {
  return {
    name: `psgd_absmax_${c.n}_s${c.slot}${members(c.g ?? 1, c.stride ?? 1)}`,
    code: `@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
${WG1_HEAD}
var m = 0.0;
let o = wid.x * ${c.n}u;
for (var k = o + lid; k < o + ${c.n}u; k += ${PSGD_WG1}u) { m = max(m, abs(x[k])); }
red[lid] = m;
${TREE((a, b) => `max(${a}, ${b})`)}
if (lid == 0u) { out[wid.x * ${c.stride ?? 1}u + ${c.slot}u] = red[0]; }
}`,
  };
}

/**
 * Balancing (§2.3.5): Q_k ← Q_k·γ/n_k with γ the geometric mean of the K max-abs values n (per member, whose
 * K values start at norms[member·K]).
 */
function buildPsgdBalanceKernel(c: { n: number; factors: number; slot: number; g?: number }): Kernel {
  const g = c.g ?? 1;
  const logs = Array.from({ length: c.factors }, (_, k) => `log(norms[nb + ${k}u])`).join(" + ");
  return {
    name: `psgd_balance_${c.n}_k${c.factors}_s${c.slot}${members(g)}`,
    code: `@group(0) @binding(0) var<storage, read_write> q: array<f32>;
@group(0) @binding(1) var<storage, read> norms: array<f32>;
@group(0) @binding(2) var<storage, read> qctl: array<f32>;
${head(PSGD_WG)}
let mem = i / ${c.n}u;
if (i >= ${g * c.n}u || qctl[2u * mem] == 0.0) { return; }
let nb = mem * ${c.factors}u;
let gm = exp((${logs}) / ${f32(c.factors)});
q[i] = q[i] * (gm / norms[nb + ${c.slot}u]);
}`,
  };
}

// One Kernel object per arguments (kernels/common.ts cachedKernel).
export const psgdControlKernel = cachedKernel(buildPsgdControlKernel);
export const psgdMomentumKernel = cachedKernel(buildPsgdMomentumKernel);
export const psgdApplyKernel = cachedKernel(buildPsgdApplyKernel);
export const psgdDiagStepKernel = cachedKernel(buildPsgdDiagStepKernel);
export const psgdUpdateControlKernel = cachedKernel(buildPsgdUpdateControlKernel);
export const psgdNoiseKernel = cachedKernel(buildPsgdNoiseKernel);
export const psgdModeKernel = cachedKernel(buildPsgdModeKernel);
export const psgdGramKernel = cachedKernel(buildPsgdGramKernel);
export const psgdGramFinishKernel = cachedKernel(buildPsgdGramFinishKernel);
export const psgdNormKernel = cachedKernel(buildPsgdNormKernel);
export const psgdSmallUpdateKernel = cachedKernel(buildPsgdSmallUpdateKernel);
export const psgdDiagUpdateKernel = cachedKernel(buildPsgdDiagUpdateKernel);
export const psgdTriInvLeafKernel = cachedKernel(buildPsgdTriInvLeafKernel);
export const psgdTriKernel = cachedKernel(buildPsgdTriKernel);
export const psgdTriEpilogueKernel = cachedKernel(buildPsgdTriEpilogueKernel);
export const psgdLiveCopyKernel = cachedKernel(buildPsgdLiveCopyKernel);
export const psgdDiagCacheKernel = cachedKernel(buildPsgdDiagCacheKernel);
export const psgdAbsMaxKernel = cachedKernel(buildPsgdAbsMaxKernel);
export const psgdBalanceKernel = cachedKernel(buildPsgdBalanceKernel);
