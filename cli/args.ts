/**
 * The one flag parser and the validators of every command: `parseFlags` wraps node:util's parseArgs so that a
 * negative number after a flag (`--lr -1`) binds as that flag's value and is then refused by the validator with
 * a message that says what is allowed, instead of parseArgs' "argument is ambiguous"; the validators turn flag
 * strings into numbers or choices, or throw a one-line UsageError naming the flag, the rule and the value given.
 */
import { parseArgs, type ParseArgsConfig } from "node:util";

/** A bad flag or argument; the CLI prints `error: <message>` and exits 1. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message.replace(/\s*\n\s*/g, " "));
    this.name = "UsageError";
  }
}

const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const NEGATIVE_NUMBER = /^-(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^-Infinity$|^-inf$/i;

type Options = NonNullable<ParseArgsConfig["options"]>;

/**
 * `--name -1` → `--name=-1` when `name` takes a string value and the next argument is a negative number, so a
 * negative value reaches the validator (parseArgs alone refuses it as ambiguous). Short flags too (`-n -1`).
 */
export function bindNegativeNumbers(args: string[], options: Options): string[] {
  const takesValue = (tok: string): string | null => {
    if (tok.startsWith("--") && !tok.includes("=")) {
      const name = tok.slice(2);
      return options[name]?.type === "string" ? `--${name}` : null;
    }
    if (/^-[A-Za-z]$/.test(tok)) {
      const e = Object.entries(options).find(([, o]) => o.short === tok[1]);
      return e && e[1].type === "string" ? `--${e[0]}` : null;
    }
    return null;
  };
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--") {
      out.push(...args.slice(i));
      break;
    }
    const flag = takesValue(args[i]);
    if (flag && i + 1 < args.length && NEGATIVE_NUMBER.test(args[i + 1])) {
      out.push(`${flag}=${args[++i]}`);
    } else out.push(args[i]);
  }
  return out;
}

/**
 * parseArgs (strict) over `args` with negative numbers bound as values; its errors (unknown flag, missing value,
 * unexpected argument) become a UsageError that points to `--help` (of `command` when given).
 */
export function parseFlags<T extends Options>(
  args: string[],
  options: T,
  opts: { allowPositionals?: boolean; command?: string } = {},
) {
  try {
    return parseArgs({
      args: bindNegativeNumbers(args, options),
      options,
      allowPositionals: opts.allowPositionals ?? false,
      strict: true,
    });
  } catch (e) {
    if (e instanceof TypeError && "code" in e && String(e.code).startsWith("ERR_PARSE_ARGS")) {
      throw new UsageError(`${e.message} (see \`deno task ${opts.command ?? "<command>"} --help\`)`);
    }
    throw e;
  }
}

function parseNumber(name: string, value: string, what: string): number {
  const n = NUMBER.test(value.trim()) ? Number(value) : NaN;
  if (!Number.isFinite(n)) throw new UsageError(`--${name} must be ${what}, got '${value}'`);
  return n;
}

function orFallback(name: string, value: string | undefined, fallback: number | undefined): number | string {
  if (value !== undefined) return value;
  if (fallback === undefined) throw new UsageError(`--${name} is required (see --help)`);
  return fallback;
}

/** An integer ≥ `min`; `fallback` when the flag is absent (required when no fallback is given). */
export function intAtLeast(name: string, value: string | undefined, min: number, fallback?: number): number {
  const v = orFallback(name, value, fallback);
  if (typeof v === "number") return v;
  const what = min === 1
    ? "a positive integer"
    : min === 0
    ? "a non-negative integer"
    : `an integer ≥ ${min}`;
  const n = parseNumber(name, v, what);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`--${name} must be ${what}, got '${value}'`);
  return n;
}

/** An integer ≥ 1 (batch sizes, step counts, …). */
export function positiveInt(name: string, value: string | undefined, fallback?: number): number {
  return intAtLeast(name, value, 1, fallback);
}

/** An integer ≥ 0 (seeds, counts that may be zero). */
export function nonNegativeInt(name: string, value: string | undefined, fallback?: number): number {
  return intAtLeast(name, value, 0, fallback);
}

/** A finite number > 0 (learning rates, times). */
export function positiveNumber(name: string, value: string | undefined, fallback?: number): number {
  const v = orFallback(name, value, fallback);
  if (typeof v === "number") return v;
  const n = parseNumber(name, v, "a positive number");
  if (!(n > 0)) throw new UsageError(`--${name} must be a positive number, got '${value}'`);
  return n;
}

/** One of `choices`; `fallback` when the flag is absent. */
export function oneOf<C extends string>(
  name: string,
  value: string | undefined,
  choices: readonly C[],
  fallback?: C,
): C {
  if (value === undefined) {
    if (fallback === undefined) throw new UsageError(`--${name} is required: one of ${choices.join(", ")}`);
    return fallback;
  }
  if (!(choices as readonly string[]).includes(value)) {
    throw new UsageError(`--${name} must be one of ${choices.join(", ")}, got '${value}'`);
  }
  return value as C;
}

/** A comma-separated list whose every item is one of `choices`. */
export function listOf<C extends string>(
  name: string,
  value: string | undefined,
  choices: readonly C[],
  fallback: readonly C[],
): C[] {
  if (value === undefined) return [...fallback];
  const items = value.split(",").map((s) => s.trim());
  for (const x of items) {
    if (!(choices as readonly string[]).includes(x)) {
      throw new UsageError(`--${name} takes ${choices.join(" and/or ")} (comma-separated), got '${x}'`);
    }
  }
  return items as C[];
}
