/**
 * What a training loop needs from an optimizer: encode one step (never a sync), report step counts, and save or
 * restore its state. `Adam` and `PSGDKron` both implement it, so the loop is written once for either.
 */
import type { Tensor } from "../tensor.ts";

export interface StepOptions {
  /** Learning rate for this step (e.g. from a schedule); defaults to the constructor's. */
  lr?: number;
  /** Global gradient norm, shape [1], from `gradNorm(params)`: non-finite → the step is skipped on the GPU. */
  gradNorm?: Tensor;
  /** Clip gradients to this global norm (needs gradNorm); 0 = no clipping. */
  maxNorm?: number;
}

export interface Optimizer {
  /** Encode one update of every parameter that has a gradient; never reads the GPU. */
  step(o?: StepOptions): void;
  /** [completed steps, skipped steps] (a sync: call only when logging). */
  stepCounts(): Promise<{ steps: number; skipped: number }>;
  /** Live state: tensors (not copies) and host numbers (counters, RNG positions). */
  stateDict(): Record<string, Tensor | number>;
  /** Restore from a state dict whose tensors may be host arrays (as read from a checkpoint). */
  loadStateDict(sd: Record<string, Tensor | ArrayLike<number> | number>): void;
  dispose(): void;
}
