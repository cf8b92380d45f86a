/**
 * Seeded, reproducible random tensors on the GPU (Philox-4x32-10, see kernels/random.wgsl.ts) and dropout.
 * A Generator hands each draw a fresh counter block (its call index), so the same seed and the same sequence
 * of draws give bit-identical tensors on every run; `philoxCpu` is the bit-exact host reference.
 */
import { randomKernel, RNG_WG } from "../kernels/random.wgsl.ts";
import { record } from "./autograd.ts";
import { dispatch, grid1d, releaseBuffer, uniformBuffer } from "./runtime.ts";
import { numel, type Shape, Tensor } from "./tensor.ts";
import { map, silu } from "./ops/elementwise.ts";
import { f32 } from "../kernels/common.ts";

export class Generator {
  private calls = 0;
  constructor(readonly seed: number) {}

  /** The counter block of the next draw (advances the generator). */
  nextCall(): number {
    return this.calls++;
  }

  get state(): { seed: number; calls: number } {
    return { seed: this.seed, calls: this.calls };
  }

  set state(s: { seed: number; calls: number }) {
    if (s.seed !== this.seed) throw new Error(`generator state is for seed ${s.seed}, not ${this.seed}`);
    this.calls = s.calls;
  }

  uniform(shape: Shape): Tensor {
    return draw(this, "uniform", shape);
  }

  normal(shape: Shape, mean = 0, std = 1): Tensor {
    const z = draw(this, "normal", shape);
    if (mean === 0 && std === 1) return z;
    const out = map([z], `in0 * ${f32(std)} + ${f32(mean)}`, "affine");
    z.dispose();
    return out;
  }
}

function keyWords(seed: number): [number, number] {
  return [seed >>> 0, Math.floor(seed / 2 ** 32) >>> 0];
}

function draw(gen: Generator, kind: "uniform" | "normal", shape: Shape): Tensor {
  const n = numel(shape);
  const out = Tensor.empty(shape);
  const call = gen.nextCall();
  const [k0, k1] = keyWords(gen.seed);
  const params = uniformBuffer(
    new Uint32Array([k0, k1, call >>> 0, Math.floor(call / 2 ** 32) >>> 0, n, 0, 0, 0]),
  );
  dispatch(randomKernel(kind, n % 4 === 0), [params, out.buffer], grid1d(Math.ceil(n / 4), RNG_WG));
  releaseBuffer(params);
  return out;
}

/** Inverted dropout: zero with probability p, scale survivors by 1/(1-p). Identity when !training or p = 0. */
export function dropout(x: Tensor, p: number, training: boolean, gen: Generator): Tensor {
  if (!training || p === 0) return x;
  if (p < 0 || p >= 1) throw new Error(`dropout probability must be in [0, 1), got ${p}`);
  const u = gen.uniform(x.shape);
  const expr = `select(0.0, in0 * ${f32(1 / (1 - p))}, in1 >= ${f32(p)})`;
  const y = map([x, u], expr, "dropout");
  return record(y, "dropout", [x], (g) => [map([g, u], expr, "dropout_bwd")]);
}

/**
 * dropout(silu(x)) in one pass each way (the transformer FFN's activation): the same values and the same draw
 * as the two ops, without silu(x) and its gradient written out and read back (two of five dispatches a block,
 * ~3.5 ms of a `default` solver block on lavapipe). Eval mode (or p = 0): silu(x).
 */
export function silu_dropout(x: Tensor, p: number, training: boolean, gen: Generator): Tensor {
  if (!training || p === 0) return silu(x);
  if (p < 0 || p >= 1) throw new Error(`dropout probability must be in [0, 1), got ${p}`);
  const u = gen.uniform(x.shape);
  const keep = (g: string, u: string) => `select(0.0, ${g} * ${f32(1 / (1 - p))}, ${u} >= ${f32(p)})`;
  const y = map([x, u], keep("(in0 * sigmoid_(in0))", "in1"), "silu_dropout");
  // d/dx silu = σ(x)·(1 + x·(1 − σ(x))), as the silu op's own backward.
  const dx = `${keep("in0", "in2")} * sigmoid_(in1) * (1.0 + in1 * (1.0 - sigmoid_(in1)))`;
  return record(y, "silu_dropout", [x], (g) => [map([g, x, u], dx, "silu_dropout_bwd")]);
}

function mulhilo(a: number, b: number): [number, number] {
  const p = BigInt(a >>> 0) * BigInt(b >>> 0);
  return [Number(p >> 32n) >>> 0, Number(p & 0xffffffffn) >>> 0];
}

/** Bit-exact CPU Philox-4x32-10 (reference for tests). */
export function philoxCpu(counter: [number, number, number, number], key: [number, number]): number[] {
  let [c0, c1, c2, c3] = counter;
  let [k0, k1] = key;
  for (let r = 0; r < 10; r++) {
    const [h0, l0] = mulhilo(0xD2511F53, c0);
    const [h1, l1] = mulhilo(0xCD9E8D57, c2);
    [c0, c1, c2, c3] = [(h1 ^ c1 ^ k0) >>> 0, l1, (h0 ^ c3 ^ k1) >>> 0, l0];
    k0 = (k0 + 0x9E3779B9) >>> 0;
    k1 = (k1 + 0xBB67AE85) >>> 0;
  }
  return [c0, c1, c2, c3];
}

/** CPU reference of `Generator.uniform` for the draw with call index `call`. */
export function uniformCpu(seed: number, call: number, n: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 4) {
    const w = philoxCpu([i / 4, call >>> 0, Math.floor(call / 2 ** 32) >>> 0, 0], keyWords(seed));
    for (let l = 0; l < 4 && i + l < n; l++) out[i + l] = (w[l] >>> 8) * 2 ** -24;
  }
  return out;
}

/** mulberry32: a small seeded host-side stream in [0, 1) (parameter initialisation, test inputs). */
export function hostRng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
