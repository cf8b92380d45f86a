/**
 * `deno task train`: training entry points. `train mlp` is the engine's smallest real training demo (a 2-layer
 * MLP fitting a smooth 4-D function with Adam, cosine schedule, clipping); it writes runs/<name>/metrics.jsonl.
 */
import { parseArgs } from "node:util";
import { runMlpDemo } from "../models/mlp_demo.ts";
import { Progress } from "./progress.ts";

const HELP = `usage: deno task train mlp [--steps N] [--lr X] [--hidden N] [--seed S] [--out runs/NAME]

Trains a 2-layer MLP regression with Adam on the GPU (a smoke test of the engine on this machine) and writes
metrics.jsonl (one JSON object per logged step) and config.json under --out.`;

export async function trainCommand(args: string[]): Promise<number> {
  const stage = args[0] && !args[0].startsWith("-") ? args.shift()! : "mlp";
  if (stage !== "mlp") throw new Error(`unknown training stage '${stage}' (available: mlp)`);
  const { values } = parseArgs({
    args,
    options: {
      steps: { type: "string", default: "2000" },
      lr: { type: "string", default: "0.02" },
      hidden: { type: "string", default: "64" },
      seed: { type: "string", default: "0" },
      out: { type: "string", default: "runs/mlp" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const num = (k: string, v: string) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0 && k !== "seed") {
      throw new Error(`--${k} must be a positive number, got '${v}'`);
    }
    return n;
  };
  const cfg = {
    steps: num("steps", values.steps),
    lr: num("lr", values.lr),
    hidden: num("hidden", values.hidden),
    seed: num("seed", values.seed),
    out: values.out,
  };
  const bar = new Progress("train mlp", cfg.steps, "step");
  const res = await runMlpDemo(
    cfg,
    (step, loss) => bar.update(step, loss === undefined ? "" : `loss ${loss.toExponential(3)}`),
  );
  console.log(
    `loss ${res.firstLoss.toExponential(3)} → ${res.finalLoss.toExponential(3)} in ${
      res.seconds.toFixed(1)
    } s`,
  );
  console.log(`wrote ${cfg.out}/metrics.jsonl and ${cfg.out}/config.json`);
  return 0;
}
