/**
 * The command line: `deno task train` (the whole pipeline on the built-in dataset) and the stage commands.
 * Thin by design: each sub-command module parses flags, validates, calls the library and prints; errors
 * become one `error: ...` line on stderr and a non-zero exit.
 */
const USAGE = `usage: deno task <command> [options]   (or: deno run -A cli/main.ts <command> ...)

commands:
  train [ae|mlp]         train (with no stage: the autoencoder on the built-in dataset)
  encode --ae RUN        write the latent cache of every split with a trained autoencoder
  data info|stats|euler  describe a Well file/folder, compute stats.yaml, generate the built-in Euler dataset
  eval compare PRED TRUTH  metrics between two Well-format files (per field and lead time)
  emulate --ae RUN --dm RUN  roll an emulator out on real trajectories, write Well files and figures
  bench                  kernel benchmarks (deno task bench --help)

Every command accepts --help.`;

type Command = (args: string[]) => Promise<number>;

const COMMANDS: Record<string, () => Promise<Command>> = {
  train: async () => (await import("./train.ts")).trainCommand,
  data: async () => (await import("./data.ts")).dataCommand,
  encode: async () => (await import("./encode.ts")).encodeCommand,
  eval: async () => (await import("./eval.ts")).evalCommand,
  emulate: async () => (await import("./emulate.ts")).emulateCommand,
  bench: async () => (await import("../bench/main.ts")).benchCommand,
};

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === "--help" || cmd === "-h" || cmd === "help") {
    console.log(USAGE);
    return cmd ? 0 : 2;
  }
  const load = COMMANDS[cmd];
  if (!load) {
    console.error(`error: unknown command '${cmd}' (try --help)`);
    return 2;
  }
  try {
    return await (await load())(rest);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    console.error(`error: ${msg.split("\n")[0]}`);
    if (Deno.env.get("LOLA_DEBUG")) console.error(e);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
