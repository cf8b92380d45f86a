/**
 * The benchmark runner: every benchmark file of bench/kernels/ is in the run (imported statically, so a broken
 * file fails the run instead of silently leaving the table), and `bench` is a command of cli/main.ts as its
 * usage says.
 */
import assert from "node:assert/strict";
import { allBenches } from "../../bench/main.ts";
import type { Bench } from "../../bench/types.ts";
import { main } from "../../cli/main.ts";

Deno.test("bench: every bench/kernels/*.ts file's benchmarks are in the run", async () => {
  const dir = new URL("../../bench/kernels/", import.meta.url);
  const all = new Set(allBenches());
  const missing: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (!e.isFile || !e.name.endsWith(".ts")) continue;
    const mod = await import(new URL(e.name, dir).href) as { benches?: Bench[] };
    if (!mod.benches) continue; // a helper module, not a benchmark file
    for (const b of mod.benches) if (!all.has(b)) missing.push(`${e.name}: ${b.kernel} ${b.shape}`);
  }
  assert.deepEqual(missing, [], `benchmarks not in bench/main.ts's run:\n${missing.join("\n")}`);
});

Deno.test("cli: bench is a command (`cli/main.ts bench --help` exits 0)", async () => {
  assert.equal(await main(["bench", "--help"]), 0);
});
