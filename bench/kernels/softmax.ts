/** softmax over the last axis of (4096, 1024): one read, one write; judged against the copy ceiling. */
import { softmax } from "../../engine/index.ts";
import type { Bench } from "../types.ts";
import { caseOf, input } from "../inputs.ts";

const R = 4096, D = 1024;

export const benches: Bench[] = [{
  kernel: "softmax",
  shape: `${R}x${D}`,
  flops: 0,
  bytes: 2 * 4 * R * D,
  setup: () => {
    const x = input([R, D], 1);
    return caseOf([x], () => softmax(x));
  },
}];
