/**
 * Reverse-mode autodiff: ops record a TapeNode on their output when an input requires grad; `backward` walks one
 * topological order in reverse and accumulates into `.grad` of the leaves.
 *
 * Invariants: leaf gradients are persistent tensors (they outlive the step's scope) and accumulate across
 * backward calls until `zeroGrad`; intermediate gradients are ordinary temporaries of the caller's scope.
 * A node's backward returns exactly one gradient (or null) per recorded input, checked here and named by op.
 * Backward closures encode GPU work: most compose other ops, but fused ops (attention, conv, the norms) dispatch
 * their own backward kernels, so forward mode (JVP) will need a rule per op rather than
 * re-running these closures under another interpreter.
 */
import { type Shape, type TapeNode, Tensor } from "./tensor.ts";

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

/** Attach a tape node to `out` if any input requires grad (and recording is on). Returns `out`. */
export function record(
  out: Tensor,
  op: string,
  inputs: Tensor[],
  backward: (g: Tensor) => (Tensor | null)[],
): Tensor {
  if (gradEnabled && inputs.some((t) => t.requiresGrad)) {
    out.requiresGrad = true;
    out.node = { op, inputs, backward } satisfies TapeNode;
  }
  return out;
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
}

let gradOps: GradOps | null = null;
/** Installed by engine/ops to break the import cycle (ops depend on autograd, backward needs a few ops). */
export function installGradOps(ops: GradOps) {
  gradOps = ops;
}

/**
 * Accumulate d(root)/d(leaf) into every leaf's `.grad`. `gradient` defaults to ones (root is usually a scalar).
 * The tape is consumed: nodes are cleared so saved activations can be freed with their scope.
 */
export function backward(root: Tensor, gradient?: Tensor): void {
  const ops = gradOps!;
  if (!root.requiresGrad) {
    throw new Error("backward(): the tensor does not require grad (no parameter reached it)");
  }
  const grads = new Map<Tensor, Tensor>();
  grads.set(root, gradient ?? ops.ones(root.shape));
  const order = topoOrder(root);
  for (let i = order.length - 1; i >= 0; i--) {
    const t = order[i];
    const g = grads.get(t);
    grads.delete(t);
    if (!g) continue;
    if (!t.node) {
      accumulateLeaf(t, g, ops);
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
      if (!gx || !x.requiresGrad) continue;
      if (gx.shape.join() !== x.shape.join()) {
        throw new Error(`backward of ${node.op}: gradient shape (${gx.shape}) != input shape (${x.shape})`);
      }
      const prev = grads.get(x);
      grads.set(x, prev ? ops.add(prev, gx) : gx);
    }
    t.node = null;
  }
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
