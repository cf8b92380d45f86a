/**
 * cli/args.ts (issue 15 "one of each", issue 16 item 11): negative numbers bind as values and are refused with
 * "must be positive"; a non-numeric seed is an error, not null; enums name their choices; parse errors point to
 * --help. And the commands that use it (data, encode) answer bad flags with one `error:` line.
 */
import assert from "node:assert/strict";
import { parseArgs } from "node:util";
import {
  intAtLeast,
  listOf,
  nonNegativeInt,
  oneOf,
  parseFlags,
  positiveInt,
  positiveNumber,
  UsageError,
} from "../../cli/args.ts";
import { dataCommand } from "../../cli/data.ts";
import { encodeCommand } from "../../cli/encode.ts";
import { captureConsole } from "../helpers.ts";

const opts = { lr: { type: "string" }, seed: { type: "string" }, n: { type: "string", short: "n" } } as const;
const usage = (re: RegExp) => (e: unknown) => e instanceof UsageError && re.test(e.message);

Deno.test("args: `--lr -1` binds -1 as the value (parseArgs alone calls it ambiguous) and is refused as not positive", () => {
  assert.throws(() => parseArgs({ args: ["--lr", "-1"], options: opts }), /ambiguous/);
  const { values } = parseFlags(["--lr", "-1", "-n", "-2.5e-3", "--seed=-4"], opts);
  assert.deepEqual({ ...values }, { lr: "-1", n: "-2.5e-3", seed: "-4" });
  assert.throws(() => positiveNumber("lr", values.lr), usage(/^--lr must be a positive number, got '-1'$/));
  assert.throws(
    () => nonNegativeInt("seed", values.seed),
    usage(/^--seed must be a non-negative integer, got '-4'$/),
  );
  assert.equal(positiveNumber("lr", "3e-4"), 3e-4);
});

Deno.test("args: a seed that is not a number is an error, never NaN or null", () => {
  for (const bad of ["abc", "", "1.5", "0x10", "Infinity", "1e400"]) {
    assert.throws(
      () => nonNegativeInt("seed", bad),
      usage(/^--seed must be a non-negative integer, got /),
      bad,
    );
  }
  assert.equal(nonNegativeInt("seed", "0"), 0);
  assert.equal(nonNegativeInt("seed", undefined, 7), 7, "absent: the default");
});

Deno.test("args: integers, numbers and choices say the rule and the value given", () => {
  assert.equal(positiveInt("batch", "8"), 8);
  assert.throws(() => positiveInt("batch", "0"), usage(/^--batch must be a positive integer, got '0'$/));
  assert.throws(() => positiveInt("batch", "2.5"), usage(/positive integer, got '2\.5'/));
  assert.throws(() => positiveInt("batch", undefined), usage(/^--batch is required/));
  assert.throws(
    () => intAtLeast("resolution", "4", 8),
    usage(/^--resolution must be an integer ≥ 8, got '4'$/),
  );
  assert.throws(() => positiveNumber("lr", "0"), usage(/positive number, got '0'/));
  assert.equal(oneOf("loss", "l1", ["vrmse", "l1"] as const), "l1");
  assert.throws(
    () => oneOf("loss", "mse", ["vrmse", "l1"] as const),
    usage(/^--loss must be one of vrmse, l1, got 'mse'$/),
  );
  assert.deepEqual(listOf("b", "open, periodic", ["periodic", "open"] as const, ["open"]), [
    "open",
    "periodic",
  ]);
  assert.throws(() => listOf("b", "open,wall", ["periodic", "open"] as const, []), usage(/got 'wall'/));
});

Deno.test("args: unknown flags and missing values become a UsageError pointing to --help", () => {
  assert.throws(
    () => parseFlags(["--nope"], opts, { command: "encode" }),
    usage(/Unknown option '--nope'.*encode --help/),
  );
  assert.throws(() => parseFlags(["--lr"], opts), usage(/--lr/));
  assert.throws(() => parseFlags(["x"], opts), usage(/Unexpected argument 'x'/));
  assert.deepEqual(parseFlags(["x", "--", "-1"], opts, { allowPositionals: true }).positionals, ["x", "-1"]);
});

async function run(cmd: (a: string[]) => Promise<number>, args: string[]) {
  const { r: code, err } = await captureConsole(() =>
    cmd(args).catch((e) => {
      console.error(`error: ${e.message}`);
      return 1;
    })
  );
  return { code, err };
}

Deno.test("args: data and encode answer negative and non-numeric values with one clear line", async () => {
  const e1 = await run(dataCommand, ["euler", "--out", "/nonexistent/x", "--seed", "-1"]);
  assert.equal(e1.code, 1);
  assert.equal(e1.err, "error: --seed must be a non-negative integer, got '-1'");
  const e2 = await run(dataCommand, ["euler", "--out", "/nonexistent/x", "--t-end", "-0.5"]);
  assert.equal(e2.err, "error: --t-end must be a positive number, got '-0.5'");
  const e3 = await run(encodeCommand, ["--ae", "/nonexistent", "--batch", "-2"]);
  assert.equal(e3.code, 1);
  assert.equal(e3.err, "error: --batch must be a positive integer, got '-2'");
  const e4 = await run(encodeCommand, ["--ae", "/nonexistent", "--seed", "abc"]);
  assert.equal(e4.err, "error: --seed must be a non-negative integer, got 'abc'");
});
