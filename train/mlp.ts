/**
 * The engine's smallest real training run: a 2-layer MLP (SiLU) fitting y = Σ_j sin(0.4·(j+1)·x_j) on 256
 * random points of [-2, 2]^4 with Adam, cosine schedule, warmup and grad clipping; the loss is read back only
 * every `logEvery` steps (a readback costs ≥10 ms). Writes metrics.jsonl and config.json atomically.
 */
import {
  Adam,
  backward,
  cosineLr,
  Generator,
  gradNorm,
  initDevice,
  linear,
  mean,
  mul,
  scope,
  silu,
  square,
  sub,
  Tensor,
  zeroGrad,
} from "../engine/index.ts";
import { writeTextAtomic } from "../engine/checkpoint.ts";

export interface MlpDemoConfig {
  steps: number;
  lr: number;
  hidden: number;
  seed: number;
  out: string;
  logEvery?: number;
}

export async function runMlpDemo(cfg: MlpDemoConfig, onStep?: (step: number, loss?: number) => void) {
  await initDevice();
  const n = 256, din = 4, logEvery = cfg.logEvery ?? 100;
  const gen = new Generator(cfg.seed);
  const x = scope(() => mul(gen.uniform([n, din]), 4).keep());
  const xs = await x.read();
  const y = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < din; j++) {
      xs[i * din + j] -= 2;
      y[i] += Math.sin(0.4 * (j + 1) * xs[i * din + j]);
    }
  }
  x.dispose();
  const xt = Tensor.fromData(xs, [n, din], { persistent: true });
  const yt = Tensor.fromData(y, [n, 1], { persistent: true });
  const init = (shape: number[], std: number) => scope(() => mul(gen.normal(shape), std).keep());
  const params = [
    init([cfg.hidden, din], 0.5),
    init([cfg.hidden], 0.1),
    init([1, cfg.hidden], 1 / Math.sqrt(cfg.hidden)),
    init([1], 0.1),
  ];
  const [w1, b1, w2, b2] = params;
  for (const p of params) p.requiresGrad = true;
  const opt = new Adam(params, { lr: cfg.lr });
  await Deno.mkdir(cfg.out, { recursive: true });
  await writeTextAtomic(
    `${cfg.out}/config.json`,
    JSON.stringify({ kind: "mlp_demo", ...cfg }, null, 2) + "\n",
  );
  const lines: string[] = [];
  const t0 = performance.now();
  let firstLoss = NaN, finalLoss = NaN;
  for (let step = 0; step < cfg.steps; step++) {
    const lr = cosineLr(step, cfg.steps, cfg.lr, { warmup: 20 });
    const loss = scope(() => {
      const l = mean(square(sub(linear(silu(linear(xt, w1, b1)), w2, b2), yt)));
      backward(l);
      opt.step({ lr, gradNorm: gradNorm(params), maxNorm: 1 });
      zeroGrad(params);
      return step % logEvery === 0 || step === cfg.steps - 1 ? l.keep() : null;
    });
    let value: number | undefined;
    if (loss) {
      value = await loss.item();
      loss.dispose();
      if (!Number.isFinite(value)) throw new Error(`loss became ${value} at step ${step}: lower --lr`);
      if (Number.isNaN(firstLoss)) firstLoss = value;
      finalLoss = value;
      lines.push(JSON.stringify({ step, loss: value, lr, time_s: (performance.now() - t0) / 1000 }));
    }
    onStep?.(step + 1, value);
  }
  await writeTextAtomic(`${cfg.out}/metrics.jsonl`, lines.join("\n") + "\n");
  for (const t of [...params, xt, yt]) t.dispose();
  opt.dispose();
  return { firstLoss, finalLoss, seconds: (performance.now() - t0) / 1000 };
}
