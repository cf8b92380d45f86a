/** `deno task encode --ae RUN [--data PATH]`: write the latent cache of every split with a trained encoder. */
import { ensureDefaultDataset } from "../data/default_dataset.ts";
import { encodeDataset } from "../train/encode.ts";
import { nonNegativeInt, parseFlags, positiveInt, UsageError } from "./args.ts";
import { Progress } from "./progress.ts";

const HELP = `usage: deno task encode --ae RUN [--data PATH] [--out DIR] [--repeat N] [--batch N] [--seed S]

Encodes every trajectory of every split with the autoencoder trained in RUN (eval mode) into one HDF5 latent
cache per split: state (N, T, C_z, h, w[, d]) and label (N, D_θ). The train split is repeated N times (default 4)
with distinct random augmentations. Without --data: the built-in Euler dataset. Output: RUN/cache/<dataset>/.
Every split is checked before anything is written, and the caches appear only once all splits are encoded.`;

export async function encodeCommand(args: string[]): Promise<number> {
  const { values: v } = parseFlags(args, {
    ae: { type: "string" },
    data: { type: "string" },
    out: { type: "string" },
    repeat: { type: "string" },
    batch: { type: "string" },
    seed: { type: "string" },
    help: { type: "boolean", short: "h" },
  }, { command: "encode" });
  if (v.help) {
    console.log(HELP);
    return 0;
  }
  if (!v.ae) throw new UsageError("--ae RUN is required (a run directory written by `deno task train ae`)");
  const repeat = positiveInt("repeat", v.repeat, 4);
  const batch = positiveInt("batch", v.batch, 8);
  const seed = nonNegativeInt("seed", v.seed, 0);
  const data = v.data ?? await ensureDefaultDataset();
  const bars = new Map<string, Progress>();
  const res = await encodeDataset({
    ae: v.ae,
    data,
    out: v.out,
    repeat,
    batch,
    seed,
    onProgress: (split, done, total) => {
      if (!bars.has(split)) bars.set(split, new Progress(`encode ${split}`, total, "traj"));
      bars.get(split)!.update(done);
    },
  });
  for (const [split, r] of Object.entries(res)) {
    console.log(`${split}: ${r.trajectories} trajectories → ${r.path}`);
  }
  return 0;
}
