/**
 * Helpers shared by the kernel benchmark files: deterministic inputs and a case that owns persistent tensors.
 */
import { Tensor } from "../engine/index.ts";
import type { BenchCase } from "./types.ts";

/** A persistent tensor of the given shape filled with a cheap deterministic pattern in [-1, 1). */
export function input(shape: number[], seed = 1): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2 ** 31 - 1;
  }
  return Tensor.fromData(a, shape, { persistent: true });
}

/** A case whose `run` encodes `fn(...tensors)` and whose `dispose` frees the tensors. */
export function caseOf(tensors: Tensor[], fn: () => unknown): BenchCase {
  return {
    run: () => {
      fn();
    },
    dispose: () => tensors.forEach((t) => t.dispose()),
  };
}
