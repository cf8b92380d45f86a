/**
 * The engine's smallest real training run: a 2-layer MLP (SiLU) fitting y = Σ_j sin(0.4·(j+1)·x_j) on random
 * points of [-2, 2]^4 with Adam, cosine schedule, warmup and grad clipping; the loss is read back only every
 * `logEvery` steps (a readback costs ≥10 ms). `fitMlp` is the loop (the engine's learning, memory and
 * reproducibility tests run it); `runMlpDemo` (`deno task train mlp`) writes metrics.jsonl and config.json.
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
  pool,
  scope,
  silu,
  square,
  sub,
  Tensor,
  zeroGrad,
} from "../engine/index.ts";
import { writeTextAtomic } from "../engine/checkpoint.ts";

export interface MlpFit {
  seed: number;
  steps: number;
  lr: number;
  hidden: number;
  /** Training points (default 256), drawn from the seed's generator unless `x` (n × 4) is given. */
  points?: number;
  x?: Float32Array;
  warmup?: number;
  maxNorm?: number;
  logEvery?: number;
}

export interface MlpLog {
  step: number;
  loss: number;
  lr: number;
  /** GPU bytes in use after the step (a flat series means no leak). */
  bytesInUse: number;
  time_s: number;
}

/** Trains the MLP and returns the logged losses; a non-finite logged loss stops it with one line. */
export async function fitMlp(cfg: MlpFit, onLog?: (l: MlpLog) => void): Promise<MlpLog[]> {
  const din = 4, logEvery = cfg.logEvery ?? 100;
  const gen = new Generator(cfg.seed);
  let xs = cfg.x;
  if (!xs) {
    const x = scope(() => mul(gen.uniform([cfg.points ?? 256, din]), 4).keep());
    xs = (await x.read()).map((v) => v - 2);
    x.dispose();
  }
  const n = xs.length / din;
  const y = new Float32Array(n);
  for (let i = 0; i < n; i++) for (let j = 0; j < din; j++) y[i] += Math.sin(0.4 * (j + 1) * xs[i * din + j]);
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
  const logs: MlpLog[] = [];
  const t0 = performance.now();
  try {
    for (let step = 0; step < cfg.steps; step++) {
      const lr = cosineLr(step, cfg.steps, cfg.lr, { warmup: cfg.warmup ?? 20 });
      const loss = scope(() => {
        const l = mean(square(sub(linear(silu(linear(xt, w1, b1)), w2, b2), yt)));
        backward(l, undefined, { freeActivations: true });
        opt.step({ lr, gradNorm: gradNorm(params), maxNorm: cfg.maxNorm ?? 1 });
        zeroGrad(params);
        return step % logEvery === 0 || step === cfg.steps - 1 ? l.keep() : null;
      });
      if (!loss) continue;
      const value = await loss.item();
      loss.dispose();
      if (!Number.isFinite(value)) throw new Error(`loss became ${value} at step ${step}: lower --lr`);
      const entry = {
        step,
        loss: value,
        lr,
        bytesInUse: pool.stats.bytesInUse,
        time_s: (performance.now() - t0) / 1000,
      };
      logs.push(entry);
      onLog?.(entry);
    }
  } finally {
    for (const t of [...params, xt, yt]) t.dispose();
    opt.dispose();
  }
  return logs;
}

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
  await Deno.mkdir(cfg.out, { recursive: true });
  await writeTextAtomic(
    `${cfg.out}/config.json`,
    JSON.stringify({ kind: "mlp_demo", ...cfg }, null, 2) + "\n",
  );
  const t0 = performance.now();
  const logs = await fitMlp(cfg, (l) => onStep?.(l.step + 1, l.loss));
  await writeTextAtomic(
    `${cfg.out}/metrics.jsonl`,
    logs.map(({ step, loss, lr, time_s }) => JSON.stringify({ step, loss, lr, time_s })).join("\n") + "\n",
  );
  return {
    firstLoss: logs[0].loss,
    finalLoss: logs[logs.length - 1].loss,
    seconds: (performance.now() - t0) / 1000,
  };
}
