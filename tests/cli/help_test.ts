/**
 * Every command of the CLI answers `--help` with its usage (exit 0) and refuses one bad flag with a single
 * `error:` line and exit 1, before touching the GPU or any file: run as subprocesses, as a user would.
 */
import assert from "node:assert/strict";

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const o = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "cli/main.ts", ...args],
    stdout: "piped",
    stderr: "piped",
    env: { LOLA_QUIET: "1" },
  }).output();
  const d = new TextDecoder();
  return { code: o.code, out: d.decode(o.stdout), err: d.decode(o.stderr) };
}

const COMMANDS: [string[], RegExp, string[], RegExp][] = [
  [
    ["train"],
    /usage: deno task train \[options\]/,
    ["train", "--budget", "-3"],
    /--budget must be a positive number/,
  ],
  [
    ["train", "ae"],
    /usage: deno task train ae/,
    ["train", "ae", "--batch", "0"],
    /--batch must be a positive integer/,
  ],
  [
    ["train", "dm"],
    /usage: deno task train dm --ae RUN/,
    ["train", "dm", "--ae", "x", "--preset", "huge"],
    /--preset must be one of/,
  ],
  [
    ["train", "solver"],
    /train solver --pixel/,
    ["train", "solver", "--pixel", "--window", "x"],
    /--window must be a positive integer/,
  ],
  [
    ["train", "mlp"],
    /usage: deno task train mlp/,
    ["train", "mlp", "--seed", "abc"],
    /--seed must be a non-negative integer/,
  ],
  [["encode"], /usage: deno task encode/, ["encode", "--bogus"], /Unknown option '--bogus'/],
  [
    ["emulate"],
    /usage: deno task emulate/,
    ["emulate", "--members", "-2"],
    /--members must be a positive integer/,
  ],
  [
    ["eval"],
    /usage: deno task eval --ae RUN/,
    ["eval", "--ae", "x", "--dm", "y", "--steps", "1.5"],
    /--steps must be a positive integer/,
  ],
  [
    ["eval", "compare"],
    /usage: deno task eval compare PRED TRUTH/,
    ["eval", "compare", "a"],
    /takes two paths/,
  ],
  [["data", "info"], /deno task data info/, ["data", "info"], /PATH|path/],
  [["data", "stats"], /deno task data stats/, ["data", "stats", "--bogus", "x"], /Unknown option '--bogus'/],
  [["data", "euler"], /deno task data euler --out PATH/, [
    "data",
    "euler",
    "--out",
    "x",
    "--resolution",
    "-1",
  ], /--resolution must be/],
  [["bench"], /deno task bench/, ["bench", "--bogus"], /--bogus|Unknown option/],
];

for (const [helpArgs, usage, badArgs, message] of COMMANDS) {
  Deno.test(`cli: ${helpArgs.join(" ")} --help, and a bad flag is one error line`, async () => {
    const help = await cli([...helpArgs, "--help"]);
    assert.equal(help.code, 0, help.err);
    assert.match(help.out, usage);
    const bad = await cli(badArgs);
    assert.equal(bad.code, 1, `${badArgs.join(" ")}: exit ${bad.code}\n${bad.out}\n${bad.err}`);
    const lines = bad.err.trim().split("\n").filter((l) => l.trim());
    assert.equal(lines.length, 1, `more than one line: ${bad.err}`);
    assert.match(lines[0], /^error: /);
    assert.match(lines[0], message);
  });
}
