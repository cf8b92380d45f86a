/**
 * Test harness shared by all op tests: seeded float64 inputs, GPU forward vs a float64 CPU reference, and GPU
 * backward vs central finite differences of that reference (so the numeric gradient is float64-accurate and
 * the only float32 error is the GPU's). Every failure message prints the max error and where it happened.
 */
import { backward, initDevice, mul, scope, sum, Tensor } from "../engine/index.ts";
import { hostRng } from "../engine/random.ts";

export async function gpuReady(): Promise<void> {
  Deno.env.set("LOLA_QUIET", "1");
  await initDevice();
}

/** Run `fn` with an engine override (`setConvTexture`, `setMatmulTile`, ...) set to `value`, then back to null. */
export async function withOverride<T>(
  set: (v: T | null) => void,
  value: T,
  fn: () => void | Promise<void>,
): Promise<void> {
  set(value);
  try {
    await fn();
  } finally {
    set(null);
  }
}

/** A tiny seeded PRNG for test inputs. */
export const rng = hostRng;

/** Random values in [lo, hi), float32-representable (so CPU and GPU see the same inputs). */
export function randArray(n: number, seed: number, lo = -1, hi = 1): Float64Array {
  const r = rng(seed);
  const a = new Float64Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.fround(lo + (hi - lo) * r());
  return a;
}

export interface Tol {
  atol: number;
  rtol: number;
}

/** Throws with the max error if any |got − want| > atol + rtol·|want|. */
export function assertClose(
  label: string,
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  tol: Tol,
): number {
  if (got.length !== want.length) throw new Error(`${label}: length ${got.length} != ${want.length}`);
  let worst = -1, worstExcess = -Infinity, maxAbs = 0;
  for (let i = 0; i < got.length; i++) {
    const err = Math.abs(got[i] - want[i]);
    const excess = Number.isNaN(err) ? Infinity : err - (tol.atol + tol.rtol * Math.abs(want[i]));
    if (!(err <= maxAbs)) maxAbs = Number.isNaN(err) ? Infinity : Math.max(maxAbs, err);
    if (excess > worstExcess) {
      worstExcess = excess;
      worst = i;
    }
  }
  if (worstExcess > 0) {
    throw new Error(
      `${label}: max abs error ${maxAbs.toExponential(3)}; worst at [${worst}]: got ${got[worst]}, want ${
        want[worst]
      } (atol ${tol.atol}, rtol ${tol.rtol})`,
    );
  }
  return maxAbs;
}

export interface GradCheck {
  label: string;
  inputs: { data: Float64Array; shape: number[] }[];
  /** GPU function of the input tensors. */
  fn: (xs: Tensor[]) => Tensor;
  /** Float64 reference of the same function. */
  ref: (xs: Float64Array[]) => Float64Array;
  fwdTol: Tol;
  gradTol: Tol;
  /** Finite-difference step (default 1e-4; the reference is float64). */
  h?: number;
  /** Check at most this many elements per input by finite differences (random subset). */
  maxProbes?: number;
  /** Indices of inputs to differentiate (default all). */
  wrt?: number[];
}

/**
 * Forward vs reference, then the gradient of L = Σ out·R (R random) vs central differences of the reference.
 * Returns the max forward and gradient errors.
 */
export async function checkOp(c: GradCheck): Promise<{ fwd: number; grad: number }> {
  const wrt = c.wrt ?? c.inputs.map((_, i) => i);
  const refOut = c.ref(c.inputs.map((x) => x.data));
  const R = randArray(refOut.length, 977, -1, 1);
  const leaves = c.inputs.map((x, i) =>
    Tensor.fromData(Float32Array.from(x.data), x.shape, { requiresGrad: wrt.includes(i), persistent: true })
  );
  let out: Tensor | undefined;
  try {
    const outData = scope(() => {
      // Kept before backward: freeActivations (on here, so that every op's backward is checked not to read a
      // tensor of the graph after its own node ran) would free it otherwise.
      const o = c.fn(leaves).keep();
      const loss = sum(mul(o, Tensor.fromData(Float32Array.from(R), o.shape)));
      backward(loss, undefined, { freeActivations: true });
      return o;
    });
    out = outData;
    const fwd = assertClose(`${c.label} forward`, await out.read(), refOut, c.fwdTol);
    let gradErr = 0;
    const h = c.h ?? 1e-4;
    const r = rng(4242);
    for (const i of wrt) {
      const got = await leaves[i].grad!.read();
      const n = c.inputs[i].data.length;
      const probes = c.maxProbes && c.maxProbes < n
        ? Array.from({ length: c.maxProbes }, () => Math.floor(r() * n))
        : [...Array(n).keys()];
      const want = probes.map((j) => {
        const xs = c.inputs.map((x) => x.data.slice());
        xs[i][j] += h;
        const fp = c.ref(xs);
        xs[i][j] -= 2 * h;
        const fm = c.ref(xs);
        let s = 0;
        for (let k = 0; k < fp.length; k++) s += (fp[k] - fm[k]) * R[k];
        return s / (2 * h);
      });
      const e = assertClose(`${c.label} d/dinput${i}`, probes.map((j) => got[j]), want, c.gradTol);
      gradErr = Math.max(gradErr, e);
    }
    return { fwd, grad: gradErr };
  } finally {
    out?.dispose();
    for (const l of leaves) {
      l.grad?.dispose();
      l.dispose();
    }
  }
}

/** Run `fn` with console.log and console.error captured (CLI tests): its result and what it printed. */
export async function captureConsole<T>(fn: () => Promise<T>): Promise<{ r: T; out: string; err: string }> {
  const out: string[] = [], err: string[] = [];
  const { log, error } = console;
  console.log = (...a: unknown[]) => out.push(a.join(" "));
  console.error = (...a: unknown[]) => err.push(a.join(" "));
  try {
    return { r: await fn(), out: out.join("\n"), err: err.join("\n") };
  } finally {
    console.log = log;
    console.error = error;
  }
}
