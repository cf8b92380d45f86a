/**
 * The small-scale version of the paper's Table 4 on the built-in dataset: validation MAE and VRMSE of the
 * `default` autoencoder after fixed step counts for (1) Adam without identity init, (2) Adam with it, (3) PSGD
 * with it. Same seed, data order and step budget for all three. Prints a Markdown table and writes JSON.
 *
 *   deno run -A bench/ae_table4.ts [--steps-per-epoch 32] [--epochs 4] [--out runs/table4]
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { initDevice } from "../engine/index.ts";
import { ensureDefaultDataset } from "../data/default_dataset.ts";
import { type TrainAeConfig, trainAutoencoder } from "../train/ae.ts";

const { values: v } = parseArgs({
  args: Deno.args,
  options: {
    "steps-per-epoch": { type: "string", default: "32" },
    epochs: { type: "string", default: "4" },
    out: { type: "string", default: "runs/table4" },
    "adam-lr": { type: "string", default: "1e-3" },
    "psgd-lr": { type: "string", default: "3e-4" },
  },
});
await initDevice();
const data = await ensureDefaultDataset();
const runs: [string, Partial<TrainAeConfig>][] = [
  ["Adam, default init", { optimizer: "adam", identityInit: false, lr: Number(v["adam-lr"]) }],
  ["Adam, identity init", { optimizer: "adam", identityInit: true, lr: Number(v["adam-lr"]) }],
  ["PSGD, identity init", { optimizer: "psgd", identityInit: true, lr: Number(v["psgd-lr"]) }],
];
const rows: {
  name: string;
  curve: { epoch: number; step: number; mae: number; vrmse: number }[];
  seconds: number;
}[] = [];
for (const [i, [name, over]] of runs.entries()) {
  const out = join(v.out, `run${i}`);
  await Deno.remove(out, { recursive: true }).catch(() => {});
  const curve: { epoch: number; step: number; mae: number; vrmse: number }[] = [];
  const cfg: TrainAeConfig = {
    preset: "default",
    data,
    latentChannels: 16,
    epochs: Number(v.epochs),
    stepsPerEpoch: Number(v["steps-per-epoch"]),
    batch: 8,
    lr: 1e-3,
    optimizer: "adam",
    loss: "vrmse",
    seed: 0,
    out,
    identityInit: true,
    validBatches: 4,
    logEvery: 1000,
    maxNorm: 1,
    resume: false,
    ...over,
  };
  const res = await trainAutoencoder(cfg, {
    onLog: (line) => {
      const m = line.match(/^epoch (\d+): valid VRMSE ([\d.]+)/);
      if (m) console.error(`${name}: ${line}`);
    },
  });
  const lines = (await Deno.readTextFile(join(out, "metrics.jsonl"))).trim().split("\n").map((l) =>
    JSON.parse(l)
  );
  for (const l of lines) {
    if (l.valid_vrmse) {
      curve.push({ epoch: l.epoch + 1, step: l.step, mae: l.valid_vrmse.mae, vrmse: l.valid_vrmse.mean });
    }
  }
  rows.push({ name, curve, seconds: res.seconds });
}
const steps = rows[0].curve.map((c) => c.step);
console.log(
  `| run | ${steps.map((s) => `MAE @${s}`).join(" | ")} | VRMSE @${steps[steps.length - 1]} | time |`,
);
console.log(`|---|${steps.map(() => "---|").join("")}---|---|`);
for (const r of rows) {
  console.log(
    `| ${r.name} | ${r.curve.map((c) => c.mae.toFixed(4)).join(" | ")} | ${
      r.curve[r.curve.length - 1].vrmse.toFixed(4)
    } | ${r.seconds.toFixed(0)} s |`,
  );
}
await Deno.writeTextFile(join(v.out, "table4.json"), JSON.stringify(rows, null, 2) + "\n");
