/**
 * Reverse-mode autodiff: ops record a TapeNode on their output when an input requires grad; `backward` walks one
 * topological order in reverse and accumulates into `.grad` of the leaves.
 *
 * Invariants: leaf gradients are persistent tensors (they outlive the step's scope) and accumulate across
 * backward calls until `zeroGrad`; intermediate gradients are ordinary temporaries of the caller's scope.
 * A node's backward returns exactly one gradient (or null) per recorded input, checked here and named by op.
 * Backward closures encode GPU work: most compose other ops, but fused ops (attention, conv, the norms) dispatch
 * their own backward kernels, so forward mode has a rule per op (the `jvp` argument of `record`, written beside
 * the op's backward) rather than re-running these closures under another interpreter. The forward-mode and
 * input-only reverse-mode entry points (`jvp`, `vjp`, `vjpFn`) live in engine/jvp.ts; the sessions they open
 * are kept here because `record` consults them.
 */
import { nextTensorId, scope, type Shape, type TapeNode, Tensor } from "./tensor.ts";

let gradEnabled = true;

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Run `fn` without recording a tape (evaluation, optimizer updates). */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/**
 * Forward-mode rule of an op: the tangent of its output from the tangents of its inputs (aligned with the
 * recorded inputs; null = zero tangent). Returns null for a zero tangent. Runs with recording off, so it may
 * compose other ops freely.
 */
export type JvpRule = (tangents: (Tensor | null)[]) => Tensor | null;

/** An open forward-mode session (engine/jvp.ts): the tangent of every tensor that depends on its inputs. */
export interface ForwardSession {
  tangents: Map<Tensor, Tensor>;
}

/**
 * An input-only reverse-mode session (engine/jvp.ts): only ops with an input among `targets` or `recorded`
 * get a tape node, so parameters (which require grad) are treated as constants and never get a `.grad`.
 */
export interface ReverseSession {
  targets: Set<Tensor>;
  recorded: Set<Tensor>;
}

let forwardSession: ForwardSession | null = null;
let reverseSession: ReverseSession | null = null;
/** The session whose pullback is running: `needsGrad` answers for it. */
let pullingSession: ReverseSession | null = null;

/** Run `fn` with the given sessions (null closes one), restoring the previous ones after. */
export function withSessions<T>(
  s: { forward?: ForwardSession | null; reverse?: ReverseSession | null; pulling?: ReverseSession | null },
  grad: boolean,
  fn: () => T,
): T {
  const prev = [forwardSession, reverseSession, pullingSession, gradEnabled] as const;
  if (s.forward !== undefined) forwardSession = s.forward;
  if (s.reverse !== undefined) reverseSession = s.reverse;
  if (s.pulling !== undefined) pullingSession = s.pulling;
  gradEnabled = grad;
  try {
    return fn();
  } finally {
    [forwardSession, reverseSession, pullingSession, gradEnabled] = prev;
  }
}

/**
 * Whether a backward closure should compute the gradient of input `t`: `t.requiresGrad` for ordinary
 * backward; inside an input-only pullback, only for tensors on that session's tape (never parameters), so
 * weight gradients are not even computed.
 */
export function needsGrad(t: Tensor): boolean {
  const s = pullingSession;
  return s ? s.targets.has(t) || s.recorded.has(t) : t.requiresGrad;
}

/**
 * Attach a tape node to `out` if any input requires grad (and recording is on), and, inside a forward-mode
 * session, its tangent by the op's `jvp` rule. An op without a rule that a tangent reaches fails, naming the op.
 * Returns `out`.
 */
export function record(
  out: Tensor,
  op: string,
  inputs: Tensor[],
  backward: (g: Tensor) => (Tensor | null)[],
  jvp?: JvpRule,
): Tensor {
  if (!seen.has(op)) seen.set(op, !!jvp);
  const fs = forwardSession;
  if (fs && inputs.some((t) => fs.tangents.has(t))) pushTangent(fs, out, op, inputs, jvp);
  if (!gradEnabled) return out;
  const rs = reverseSession;
  const live = rs
    ? inputs.some((t) => rs.targets.has(t) || rs.recorded.has(t))
    : inputs.some((t) => t.requiresGrad);
  if (live) {
    out.requiresGrad = true;
    out.node = { op, inputs, backward } satisfies TapeNode;
    rs?.recorded.add(out);
  }
  return out;
}

const seen = new Map<string, boolean>();

/** Every op name `record` has been called with in this process, and whether it came with a JVP rule (tests). */
export function recordedOps(): ReadonlyMap<string, boolean> {
  return seen;
}

function pushTangent(fs: ForwardSession, out: Tensor, op: string, inputs: Tensor[], jvp?: JvpRule) {
  if (!jvp) {
    throw new Error(`jvp: op ${op} has no forward-mode rule (a tangent reached it)`);
  }
  const ts = inputs.map((t) => fs.tangents.get(t) ?? null);
  // The rule composes ops: no tape, no tangents of tangents.
  const t = withSessions({ forward: null, reverse: null, pulling: null }, false, () => jvp(ts));
  if (!t) return;
  if (t.shape.join() !== out.shape.join()) {
    throw new Error(`jvp of ${op}: tangent shape (${t.shape}) != output shape (${out.shape})`);
  }
  fs.tangents.set(out, t);
}

/** A view that shares storage but is cut from the tape. */
export function detach(t: Tensor): Tensor {
  return t.view(t.shape);
}

function topoOrder(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const seen = new Set<Tensor>();
  // Iterative DFS: transformer graphs are deep enough to overflow a recursive walk.
  const stack: [Tensor, number][] = [[root, 0]];
  seen.add(root);
  while (stack.length) {
    const top = stack[stack.length - 1];
    const [t, i] = top;
    const inputs = t.node?.inputs ?? [];
    if (i < inputs.length) {
      top[1]++;
      const c = inputs[i];
      if (c.requiresGrad && !seen.has(c)) {
        seen.add(c);
        stack.push([c, 0]);
      }
    } else {
      order.push(t);
      stack.pop();
    }
  }
  return order;
}

export interface GradOps {
  add(a: Tensor, b: Tensor): Tensor;
  addInPlace(dst: Tensor, src: Tensor): void;
  copy(src: Tensor, persistent: boolean): Tensor;
  ones(shape: Shape): Tensor;
  zeros(shape: Shape): Tensor;
}

let gradOps: GradOps | null = null;
/** Installed by engine/ops to break the import cycle (ops depend on autograd, backward needs a few ops). */
export function installGradOps(ops: GradOps) {
  gradOps = ops;
}

export interface BackwardOptions {
  /**
   * Dispose every intermediate tensor of the graph (not the root, not leaves) as soon as its own backward has
   * run, as PyTorch frees saved tensors when the graph is not retained: a training step's peak is then the
   * forward's activations plus a few gradients, not the forward and the whole backward. The caller must not
   * use those tensors afterwards (a use fails with "use of a disposed tensor"). Default false.
   */
  freeActivations?: boolean;
}

/**
 * Accumulate d(root)/d(leaf) into every leaf's `.grad`. `gradient` defaults to ones (root is usually a scalar).
 * The tape is consumed: nodes are cleared so saved activations can be freed with their scope. Each
 * intermediate gradient this call creates is disposed once consumed (by its node's backward, by a sum with
 * another, or by a leaf's accumulation), so gradients never pile up; `opts.freeActivations` frees the forward
 * tensors too.
 */
export function backward(root: Tensor, gradient?: Tensor, opts: BackwardOptions = {}): void {
  const ops = gradOps!;
  if (!root.requiresGrad) {
    throw new Error("backward(): the tensor does not require grad (no parameter reached it)");
  }
  const firstId = nextTensorId();
  const grads = new Map<Tensor, Tensor>();
  // How many entries of `grads` hold each gradient: one backward may return the same tensor for several
  // inputs (add). A gradient this call made is disposed as soon as no entry holds it.
  const holders = new Map<Tensor, number>();
  const hold = (x: Tensor, g: Tensor) => {
    grads.set(x, g);
    holders.set(g, (holders.get(g) ?? 0) + 1);
  };
  const release = (g: Tensor) => {
    const n = holders.get(g)! - 1;
    if (n > 0) holders.set(g, n);
    else holders.delete(g);
  };
  const freeIfDone = (g: Tensor | null) => {
    if (g && !holders.has(g) && g.id >= firstId && !g.persistent) g.dispose();
  };
  hold(root, gradient ?? ops.ones(root.shape));
  const order = topoOrder(root);
  for (let i = order.length - 1; i >= 0; i--) {
    const t = order[i];
    const g = grads.get(t);
    if (!g) continue;
    grads.delete(t);
    release(g);
    if (!t.node) {
      // A gradient this call made that nothing else holds or views becomes the leaf's first .grad as is (a
      // parameter's is kept beyond the scope), instead of a copy of it (one dispatch a parameter a step).
      if (!t.grad && !holders.has(g) && g.id >= firstId && !g.persistent && !g.shared) {
        t.grad = t.persistent ? g.keep() : g;
        continue;
      }
      accumulateLeaf(t, g, ops);
      freeIfDone(g);
      continue;
    }
    const node = t.node;
    const inGrads = node.backward(g);
    if (inGrads.length !== node.inputs.length) {
      throw new Error(
        `backward of ${node.op} returned ${inGrads.length} gradients for ${node.inputs.length} inputs`,
      );
    }
    const consumed: (Tensor | null)[] = [g, ...inGrads];
    for (let j = 0; j < node.inputs.length; j++) {
      const x = node.inputs[j];
      const gx = inGrads[j];
      if (!gx || !x.requiresGrad) continue;
      if (gx.shape.join() !== x.shape.join()) {
        throw new Error(`backward of ${node.op}: gradient shape (${gx.shape}) != input shape (${x.shape})`);
      }
      const prev = grads.get(x);
      if (prev) {
        release(prev);
        consumed.push(prev);
        hold(x, ops.add(prev, gx));
      } else hold(x, gx);
    }
    // Checked after every input is placed: a tensor returned for two inputs is still held by the other.
    for (const c of consumed) freeIfDone(c);
    t.node = null;
    if (opts.freeActivations && t !== root && !t.persistent) t.dispose();
  }
}

/**
 * Pull `cotangent` (shape of `root`) back through a reverse session's tape to its targets. The tape is kept
 * (pull again with another cotangent); targets are treated as leaves even when they carry a node of another
 * session. Returns the gradient of each target in order (zeros where `root` does not depend on it).
 */
export function pullback(s: ReverseSession, root: Tensor, cotangent: Tensor, targets: Tensor[]): Tensor[] {
  const ops = gradOps!;
  if (cotangent.shape.join() !== root.shape.join()) {
    throw new Error(`vjp: cotangent shape (${cotangent.shape}) != output shape (${root.shape})`);
  }
  const live = (t: Tensor) => s.targets.has(t) || s.recorded.has(t);
  const order: Tensor[] = [];
  const seen = new Set<Tensor>([root]);
  const stack: [Tensor, number][] = [[root, 0]];
  while (stack.length) {
    const top = stack[stack.length - 1];
    const [t, i] = top;
    const inputs = !s.targets.has(t) && s.recorded.has(t) ? t.node?.inputs ?? [] : [];
    if (i < inputs.length) {
      top[1]++;
      const c = inputs[i];
      if (live(c) && !seen.has(c)) {
        seen.add(c);
        stack.push([c, 0]);
      }
    } else {
      order.push(t);
      stack.pop();
    }
  }
  const grads = new Map<Tensor, Tensor>([[root, cotangent]]);
  const result = new Map<Tensor, Tensor>();
  withSessions({ pulling: s, forward: null, reverse: null }, false, () => {
    for (let i = order.length - 1; i >= 0; i--) {
      const t = order[i];
      const g = grads.get(t);
      grads.delete(t);
      if (!g) continue;
      if (s.targets.has(t) || !t.node || !s.recorded.has(t)) {
        result.set(t, g);
        continue;
      }
      const node = t.node;
      const inGrads = node.backward(g);
      if (inGrads.length !== node.inputs.length) {
        throw new Error(
          `backward of ${node.op} returned ${inGrads.length} gradients for ${node.inputs.length} inputs`,
        );
      }
      for (let j = 0; j < node.inputs.length; j++) {
        const x = node.inputs[j];
        const gx = inGrads[j];
        if (!gx || !live(x)) continue;
        if (gx.shape.join() !== x.shape.join()) {
          throw new Error(`backward of ${node.op}: gradient shape (${gx.shape}) != input shape (${x.shape})`);
        }
        const prev = grads.get(x);
        grads.set(x, prev ? ops.add(prev, gx) : gx);
      }
    }
  });
  // Each gradient is the caller's own: not the cotangent it passed, not one tensor for two targets (an
  // identity backward such as add's hands its input on).
  const given = new Set<Tensor>([cotangent]);
  return targets.map((x) => {
    const r = result.get(x);
    if (!r) return ops.zeros(x.shape);
    const own = given.has(r) ? ops.copy(r, false) : r;
    given.add(r);
    return own;
  });
}

function accumulateLeaf(t: Tensor, g: Tensor, ops: GradOps) {
  if (t.grad) ops.addInPlace(t.grad, g);
  else t.grad = ops.copy(g, t.persistent);
}

/** Drop the leaves' gradients (their buffers go back to the pool). */
export function zeroGrad(params: Iterable<Tensor>): void {
  for (const p of params) {
    p.grad?.dispose();
    p.grad = null;
  }
}

/** What a recomputed function draws from (its generators are rewound for the recomputation). */
export interface Rewindable {
  state: { seed: number; calls: number };
}

/**
 * Activation checkpointing (torch.utils.checkpoint.checkpoint): run `fn(inputs)` without keeping its
 * intermediates, record one node, and in the backward run `fn` again on detached copies of the inputs to get
 * their gradients and the gradients of the parameters it uses (accumulated into their `.grad` directly). A
 * block's activation memory becomes its output alone, for one more forward in the backward. `fn` must be a
 * function of `inputs`, its parameters and the generators in `gens` only (they are rewound so dropout draws the
 * same masks). Outside a gradient-recording context, and inside forward-mode or input-only sessions, it is
 * plain `fn(inputs)`, as when no input requires grad.
 */
export function checkpoint(fn: (xs: Tensor[]) => Tensor, inputs: Tensor[], gens: Rewindable[] = []): Tensor {
  if (!gradEnabled || forwardSession || reverseSession || !inputs.some((x) => x.requiresGrad)) {
    return fn(inputs);
  }
  const drawn = gens.map((g) => g.state);
  const out = scope(() => noGrad(() => fn(inputs)));
  return record(out, "checkpoint", inputs, (g) => {
    const after = gens.map((x) => x.state);
    gens.forEach((x, i) => (x.state = drawn[i]));
    const xs = inputs.map((x) => {
      const d = detach(x);
      d.requiresGrad = x.requiresGrad;
      return d;
    });
    try {
      // In its own scope: what the recomputation saves outside the tape (norm statistics, dropout masks) goes
      // before the next block is recomputed, not at the end of the step.
      return scope(() => {
        const y = withSessions({ forward: null, reverse: null, pulling: null }, true, () => fn(xs));
        if (y.requiresGrad) backward(y, g, { freeActivations: true });
        return xs.map((d) => d.grad);
      });
    } finally {
      gens.forEach((x, i) => (x.state = after[i]));
      for (const d of xs) d.dispose();
    }
  });
}
