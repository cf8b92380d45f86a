/**
 * Reconstruction losses of method §1.6, per sample b and field c over all pixels:
 * VRMSE r_bc = sqrt(mean((x̂−x)²) / (var_unbiased(x) + eps)) averaged over (b, c) (the reference default,
 * eps 1e-2), VMSE (the paper's text: the same without the square root), and L1.
 */
import { abs, add, div, mean, reshape, sqrt, square, sub, type Tensor, variance } from "../engine/index.ts";

export type LossName = "vrmse" | "vmse" | "l1";

/** (B, C, ...) → (B, C) per-field normalised squared error. */
function normalisedMse(pred: Tensor, target: Tensor, eps: number): Tensor {
  const [b, c] = target.shape;
  const p = target.size / (b * c);
  const t3 = reshape(target, [b, c, p]);
  const mse = mean(square(sub(reshape(pred, [b, c, p]), t3)), 2); // (B, C)
  return div(mse, add(variance(t3, 2), eps)); // (B, C)
}

/** Per-field VRMSE (B, C), not averaged: also the validation metric. */
export function vrmsePerField(pred: Tensor, target: Tensor, eps = 1e-2): Tensor {
  return sqrt(normalisedMse(pred, target, eps));
}

export function reconstructionLoss(name: LossName, pred: Tensor, target: Tensor, eps = 1e-2): Tensor {
  if (pred.shape.join() !== target.shape.join()) {
    throw new Error(`loss: prediction (${pred.shape}) and target (${target.shape}) differ`);
  }
  switch (name) {
    case "vrmse":
      return mean(vrmsePerField(pred, target, eps));
    case "vmse":
      return mean(normalisedMse(pred, target, eps));
    case "l1":
      return mean(abs(sub(pred, target)));
  }
}
