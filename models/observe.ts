/**
 * Observation operators of guidance (method §8) in standardized pixel space: `y = A(x) + σ_y·η`, Σ_y = σ_y² I.
 * A keeps every s-th pixel (2-D) or voxel (3-D) starting at 0 (`x[..., ::s, ::s]`), or mean-pools s×s(×s)
 * blocks. Both are linear and composed from engine ops (reshape, slice, mean), so their JVP (A itself) and VJP
 * come from the engine's rules; `adjoint` is the explicit Aᵀ (zero-filled scatter, or the block broadcast / s^N),
 * tested against the VJP and by ⟨A x, y⟩ = ⟨x, Aᵀ y⟩.
 *
 * Shapes: x (B, C, H, W[, D]) with every spatial size divisible by s → y (B, C, H/s, W/s[, D/s]).
 */
import { add, type Generator, map, mean, mul, pad, reshape, slice, type Tensor } from "../engine/index.ts";

export type ObservationKind = "subsample" | "pool";

export interface ObservationOperator {
  kind: ObservationKind;
  /** s: the stride of subsampling or the pooling window per spatial axis. */
  factor: number;
  /** σ_y, the standard deviation of the observation noise (Σ_y = σ_y² I). */
  noise: number;
  /** A x. */
  apply(x: Tensor): Tensor;
  /** Aᵀ y for a state of shape `xShape`. */
  adjoint(y: Tensor, xShape: readonly number[]): Tensor;
  /** The shape of A x. */
  outShape(xShape: readonly number[]): number[];
}

/** (B, C, S₀, …) → (B, C, S₀/s, s, S₁/s, s, …). */
function blocks(shape: readonly number[], s: number): number[] {
  const [b, c, ...sp] = shape;
  return [b, c, ...sp.flatMap((d) => [d / s, s])];
}

function check(shape: readonly number[], s: number, what: string) {
  const sp = shape.slice(2);
  if ((sp.length !== 2 && sp.length !== 3) || !Number.isInteger(s) || s < 1 || sp.some((d) => d % s)) {
    throw new Error(
      `${what}: need (B, C, H, W[, D]) with every spatial size divisible by ${s}, got (${shape})`,
    );
  }
}

/** The subsampling (`x[..., ::s, ::s]`) or mean-pooling operator with factor s and noise σ_y (default 0.1, §8). */
export function observationOperator(kind: ObservationKind, factor: number, noise = 0.1): ObservationOperator {
  if (kind !== "subsample" && kind !== "pool") {
    throw new Error(`unknown observation "${kind}" (subsample, pool)`);
  }
  if (!(noise >= 0)) throw new Error(`observation noise must be ≥ 0, got ${noise}`);
  const s = factor;
  const outShape = (xs: readonly number[]) => {
    check(xs, s, kind);
    return [xs[0], xs[1], ...xs.slice(2).map((d) => d / s)];
  };
  const subAxes = (n: number) => Array.from({ length: n }, (_, i) => 3 + 2 * i);
  return {
    kind,
    factor,
    noise,
    outShape,
    apply(x) {
      const out = outShape(x.shape);
      let h = reshape(x, blocks(x.shape, s)); // (B, C, S₀/s, s, …)
      const axes = subAxes(x.ndim - 2);
      if (kind === "pool") return reshape(mean(h, axes), out);
      for (const a of axes) h = slice(h, a, 0, 1); // (B, C, S₀/s, 1, …)
      return reshape(h, out);
    },
    adjoint(y, xShape) {
      const out = outShape(xShape);
      if (y.shape.join() !== out.join()) throw new Error(`${kind} adjoint: y is (${y.shape}), want (${out})`);
      const n = xShape.length - 2;
      const one = [y.shape[0], y.shape[1], ...out.slice(2).flatMap((d) => [d, 1])];
      const yb = reshape(y, one); // (B, C, S₀/s, 1, …)
      if (kind === "pool") {
        return reshape(map([yb], `in0 * ${1 / s ** n}`, "pool_adjoint", blocks(xShape, s)), [...xShape]);
      }
      const pads = one.map((_, i) => (subAxes(n).includes(i) ? [0, s - 1] : [0, 0]) as [number, number]);
      return reshape(pad(yb, pads), [...xShape]);
    },
  };
}

/** "subsample:32" or "pool:8" (the CLI's --observe) → an operator with noise σ_y. */
export function parseObservation(spec: string, noise = 0.1): ObservationOperator {
  const m = /^(subsample|pool):(\d+)$/.exec(spec.trim());
  if (!m) throw new Error(`observation "${spec}" is not subsample:N or pool:N`);
  return observationOperator(m[1] as ObservationKind, Number(m[2]), noise);
}

/** Noisy observations y = A x + σ_y·η, η ~ N(0, I) from `gen`. */
export function observe(op: ObservationOperator, x: Tensor, gen: Generator): Tensor {
  const clean = op.apply(x);
  return op.noise === 0 ? clean : add(clean, mul(gen.normal(clean.shape), op.noise));
}
