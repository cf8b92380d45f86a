/** `deno task encode --ae RUN [--data PATH]`: write the latent cache of every split with a trained encoder. */
import { parseArgs } from "node:util";
import { ensureDefaultDataset } from "../data/default_dataset.ts";
import { encodeDataset } from "../models/encode.ts";
import { Progress } from "./progress.ts";

const HELP = `usage: deno task encode --ae RUN [--data PATH] [--out DIR] [--repeat N] [--batch N] [--seed S]

Encodes every trajectory of every split with the autoencoder trained in RUN (eval mode) into one HDF5 latent
cache per split: state (N, T, C_z, h, w[, d]) and label (N, D_θ). The train split is repeated N times (default 4)
with distinct random augmentations. Without --data: the built-in Euler dataset. Output: RUN/cache/<dataset>/.`;

export async function encodeCommand(args: string[]): Promise<number> {
  const { values: v } = parseArgs({
    args,
    options: {
      ae: { type: "string" },
      data: { type: "string" },
      out: { type: "string" },
      repeat: { type: "string", default: "4" },
      batch: { type: "string", default: "8" },
      seed: { type: "string", default: "0" },
      help: { type: "boolean", default: false },
    },
  });
  if (v.help) {
    console.log(HELP);
    return 0;
  }
  if (!v.ae) throw new Error("--ae RUN is required (a run directory written by `deno task train ae`)");
  const int = (k: string, s: string, min: number) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${k} must be an integer ≥ ${min}, got '${s}'`);
    return n;
  };
  const data = v.data ?? await ensureDefaultDataset();
  const bars = new Map<string, Progress>();
  const res = await encodeDataset({
    ae: v.ae,
    data,
    out: v.out,
    repeat: int("repeat", v.repeat, 1),
    batch: int("batch", v.batch, 1),
    seed: int("seed", v.seed, 0),
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
