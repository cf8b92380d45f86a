/**
 * Elementwise benchmarks on 16M elements (64 MiB per tensor): binary add and mul (2 reads + 1 write) and
 * silu (1 read + 1 write). Memory-bound: judged against the copy ceiling.
 */
import { add, mul, silu } from "../../engine/index.ts";
import type { Bench } from "../types.ts";
import { caseOf, input } from "../inputs.ts";

const N = 16 * 2 ** 20;

function binary(name: string, op: typeof add): Bench {
  return {
    kernel: name,
    shape: `${N / 2 ** 20}M`,
    flops: 0,
    bytes: 3 * 4 * N,
    setup: () => {
      const a = input([N], 1), b = input([N], 2);
      return caseOf([a, b], () => op(a, b));
    },
  };
}

export const benches: Bench[] = [
  binary("add", add),
  binary("mul", mul),
  {
    kernel: "silu",
    shape: `${N / 2 ** 20}M`,
    flops: 0,
    bytes: 2 * 4 * N,
    setup: () => {
      const x = input([N], 1);
      return caseOf([x], () => silu(x));
    },
  },
];
