/** What a training loop needs from an optimizer (Adam and PSGD-Kron both provide it). */
import type { StepOptions } from "../engine/optim/adam.ts";
import type { Tensor } from "../engine/tensor.ts";

export interface Optimizer {
  step(o?: StepOptions): void;
  /** Live state: tensors (not copies) and host numbers (counters, RNG positions). */
  stateDict(): Record<string, Tensor | number>;
  /** Restore from a state dict whose tensors may be host arrays (as read from a checkpoint). */
  loadStateDict(sd: Record<string, Tensor | ArrayLike<number> | number>): void;
  dispose(): void;
}
