/**
 * The one parameter-table system of every model: a pure list of named tensors with shapes and initialisers
 * (`ParamSpec`, in reference state-dict order, so counting allocates nothing), the host initialisers of method
 * §1.5 and §2.5 drawn from one seeded stream, and `ParamTable`, which owns the GPU tensors (parameters(),
 * stateDict(), dispose()) for the autoencoder, the transformer and the wrappers built on it.
 *
 * Invariant: the stream is consumed in spec order, one uniform per entry of a uniform or pseudo-identity tensor,
 * two uniforms per normal draw (Box–Muller), so the same seed gives the same weights on every machine.
 */
import { Tensor } from "../engine/index.ts";
import { hostRng } from "../engine/random.ts";

export type Init =
  /** U(±bound)·scale: torch's default for Linear/Conv weights and biases (bound 1/√fan_in). */
  | { kind: "uniform"; bound: number; scale?: number }
  /** 0.01·U(±bound) + E with E[o, o mod C_in, centre] = 1 (method §1.5's near-identity convolutions). */
  | { kind: "pseudo_identity"; bound: number; cin: number }
  | { kind: "zeros" }
  | { kind: "normal"; std: number }
  /** Learned RoPE directions Θ (axes, D/2): per slot an amplitude 100^(−U(0,1)) times a unit Gaussian direction. */
  | { kind: "rope" };

export interface ParamSpec {
  name: string;
  shape: number[];
  init: Init;
}

export const numel = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** Total number of parameters of a table (method §12's counts), from the specs alone. */
export function countSpecs(specs: readonly ParamSpec[]): number {
  return specs.reduce((s, p) => s + numel(p.shape), 0);
}

export interface HostRand {
  /** Uniform in [0, 1). */
  u(): number;
  /** Standard normal (Box–Muller over two uniforms). */
  normal(): number;
}

export function hostRand(seed: number): HostRand {
  const u = hostRng(seed);
  return { u, normal: () => Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u()) };
}

/** Host values of one parameter per its initialiser. */
export function initValues(spec: ParamSpec, rand: HostRand): Float32Array {
  const n = numel(spec.shape);
  const out = new Float32Array(n);
  const init = spec.init;
  switch (init.kind) {
    case "zeros":
      return out;
    case "uniform":
    case "pseudo_identity": {
      const scale = init.kind === "uniform" ? init.scale ?? 1 : 0.01;
      for (let i = 0; i < n; i++) out[i] = scale * init.bound * (2 * rand.u() - 1);
      if (init.kind === "pseudo_identity") {
        // E[o, o mod C_in, centre] = 1: passes (and cyclically repeats) the input channels.
        const [cout, cin] = spec.shape;
        const taps = n / (cout * cin), centre = (taps - 1) / 2;
        for (let o = 0; o < cout; o++) out[(o * cin + (o % cin)) * taps + centre] += 1;
      }
      return out;
    }
    case "normal":
      for (let i = 0; i < n; i++) out[i] = init.std * rand.normal();
      return out;
    case "rope": {
      const [axes, half] = spec.shape;
      for (let j = 0; j < half; j++) {
        const v = Array.from({ length: axes }, () => rand.normal());
        const amp = Math.pow(100, -rand.u()) / (Math.hypot(...v) || 1);
        for (let a = 0; a < axes; a++) out[a * half + j] = amp * v[a];
      }
      return out;
    }
  }
}

/** The GPU tensors of a parameter table, created from the specs with a seeded stream. */
export class ParamTable {
  readonly params = new Map<string, Tensor>();

  constructor(specs: readonly ParamSpec[], seed: number, readonly owner = "model") {
    const rand = hostRand(seed);
    for (const spec of specs) {
      this.params.set(spec.name, Tensor.parameter(initValues(spec, rand), spec.shape, spec.name));
    }
  }

  get(name: string): Tensor {
    const t = this.params.get(name);
    if (!t) throw new Error(`${this.owner} has no parameter ${name}`);
    return t;
  }

  parameters(): Tensor[] {
    return [...this.params.values()];
  }

  stateDict(): Record<string, Tensor> {
    return Object.fromEntries(this.params);
  }

  dispose(): void {
    for (const t of this.params.values()) {
      t.grad?.dispose();
      t.dispose();
    }
  }
}
