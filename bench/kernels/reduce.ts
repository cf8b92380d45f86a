/** Reductions: row sums of (4096, 1024), column sums (a bias gradient) and a full sum of 16M elements. */
import { sum } from "../../engine/index.ts";
import type { Bench } from "../types.ts";
import { caseOf, input } from "../inputs.ts";

function red(shape: number[], axes: number | undefined, label: string): Bench {
  const n = shape.reduce((a, b) => a * b, 1);
  const outN = axes === undefined ? 1 : n / shape[axes];
  return {
    kernel: "sum",
    shape: label,
    flops: 0,
    bytes: 4 * (n + outN),
    setup: () => {
      const x = input(shape, 1);
      return caseOf([x], () => sum(x, axes));
    },
  };
}

export const benches: Bench[] = [
  red([4096, 1024], 1, "4096x1024 dim=-1"),
  red([4096, 1024], 0, "4096x1024 dim=0"),
  red([16 * 2 ** 20], undefined, "16M all"),
];
