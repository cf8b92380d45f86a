/**
 * Forward-mode derivatives (Jacobian–vector products) and the reverse mode of a function of chosen inputs
 * (vector–Jacobian products), for guidance (method §8: MMPS needs J_A through the decoder and J_Dᵀ through the
 * denoiser).
 *
 * - `jvp(f, inputs, tangents)` runs f once with every op also pushing its input tangents through its forward-mode
 *   rule (the `jvp` argument of `record`, in each op's file beside its backward). No tape is recorded.
 * - `vjpFn(f, inputs)` runs f once, taping only what depends on `inputs` (parameters are constants: their `.grad`
 *   is never touched and weight gradients are not computed), and returns a pullback that may be called many
 *   times (the tape is kept until the caller's scope ends). `vjp(f, inputs, cotangent)` is the one-shot form.
 *
 * Memory: everything lives in the caller's scope. `jvp` and `vjp` free their intermediates (activations,
 * intermediate tangents or gradients) before returning; `vjpFn` keeps the forward's activations for its
 * pullbacks, and each pullback frees its intermediate gradients.
 *
 * TAPE_OPS lists every op name the library records, with its forward-mode status; tests/engine/jvp_test.ts
 * enumerates it and fails for an op without a case (and, at run time, for an op recorded but not listed).
 */
import {
  type ForwardSession,
  pullback as pullbackSession,
  type ReverseSession,
  withSessions,
} from "./autograd.ts";
import { zeros } from "./ops/elementwise.ts";
import { scope, shapeStr, Tensor } from "./tensor.ts";

export type Fn = (xs: Tensor[]) => Tensor;

function checkAligned(what: string, inputs: Tensor[], others: (Tensor | null)[]) {
  if (others.length !== inputs.length) {
    throw new Error(`${what}: ${others.length} tangents for ${inputs.length} inputs`);
  }
  others.forEach((t, i) => {
    if (t && t.shape.join() !== inputs[i].shape.join()) {
      throw new Error(`${what}: tangent ${i} is ${shapeStr(t.shape)}, input is ${shapeStr(inputs[i].shape)}`);
    }
  });
}

/**
 * f(inputs) and its directional derivative J_f(inputs)·tangents (null tangent = zero). Both are temporaries of
 * the caller's scope; f's intermediates are freed. An op without a forward-mode rule that a tangent reaches
 * throws, naming the op. No tape is recorded (parameters get no `.grad`).
 */
export function jvp(
  f: Fn,
  inputs: Tensor[],
  tangents: (Tensor | null)[],
): { out: Tensor; tangentOut: Tensor } {
  checkAligned("jvp", inputs, tangents);
  return scope(() => {
    const fs: ForwardSession = { tangents: new Map() };
    inputs.forEach((x, i) => {
      const t = tangents[i];
      if (t) fs.tangents.set(x, t);
    });
    return withSessions({ forward: fs, reverse: null, pulling: null }, false, () => {
      const out = f(inputs);
      return { out, tangentOut: fs.tangents.get(out) ?? zeros(out.shape) };
    });
  });
}

export interface Pullback {
  /** f(inputs), on a tape of its own. */
  out: Tensor;
  /** (∂out/∂inputs)ᵀ·cotangent for every input (zeros where out does not depend on one); may be called again. */
  pullback(cotangent: Tensor): Tensor[];
}

/**
 * f(inputs) and a pullback w.r.t. `inputs` only: parameters inside f are constants (no `.grad`, no weight
 * gradients computed). Records even under `noGrad` (the sampler runs under it). The activations f saves stay
 * alive in the caller's scope for later pullbacks.
 */
export function vjpFn(f: Fn, inputs: Tensor[]): Pullback {
  const s: ReverseSession = { targets: new Set(inputs), recorded: new Set() };
  const out = withSessions({ reverse: s, pulling: null }, true, () => f(inputs));
  return {
    out,
    pullback: (cotangent) => scope(() => pullbackSession(s, out, cotangent, inputs)),
  };
}

/** f(inputs) and (∂f/∂inputs)ᵀ·cotangent w.r.t. the inputs only; f's intermediates are freed. */
export function vjp(f: Fn, inputs: Tensor[], cotangent: Tensor): { out: Tensor; grads: Tensor[] } {
  return scope(() => {
    const p = vjpFn(f, inputs);
    return { out: p.out, grads: p.pullback(cotangent) };
  });
}

/**
 * Every op name recorded on the tape by engine/ (the `op` of `record`), with its forward-mode status: "rule"
 * where its file gives a JVP rule, else why not. Composite functions (mean, variance, transpose, space_to_depth,
 * depth_to_space, pixel_(un)shuffle) record their parts and need no entry.
 */
export const TAPE_OPS = {
  add: "rule",
  sub: "rule",
  mul: "rule",
  div: "rule",
  maximum: "rule",
  minimum: "rule",
  neg: "rule",
  exp: "rule",
  log: "rule",
  log1p: "rule",
  sqrt: "rule",
  rsqrt: "rule",
  square: "rule",
  abs: "rule",
  sign: "rule",
  tanh: "rule",
  sigmoid: "rule",
  silu: "rule",
  sin: "rule",
  cos: "rule",
  pow: "rule",
  clamp: "rule",
  where: "rule",
  sum: "rule",
  max: "rule",
  reshape: "rule",
  permute: "rule",
  slice: "rule",
  concat: "rule",
  pad: "rule",
  matmul: "rule",
  linear: "rule",
  softmax: "rule",
  layer_norm: "rule",
  rms_norm: "rule",
  channel_norm: "rule",
  modulate: "rule",
  gate: "rule",
  conv2d: "rule",
  conv3d: "rule",
  attention:
    "none: the transformer's fused attention is only differentiated in reverse mode (MMPS needs the " +
    "denoiser's VJP, forward mode only through the decoder)",
  dropout:
    "none in training mode (engine/random.ts); in eval mode dropout is the identity and records nothing",
  silu_dropout: "none in training mode, as dropout; in eval mode it is silu (and records silu)",
} as const;

export type TapeOp = keyof typeof TAPE_OPS;
