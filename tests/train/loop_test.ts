/**
 * The shared training loop (train/loop.ts, train/run_dir.ts) on a one-parameter-vector task, so every claim runs
 * in seconds: a non-finite loss with finite gradients is a skipped step and a run of them stops with one line
 * naming the cause while the last good checkpoint stays; two runs cannot share a folder (a stale lock is taken
 * over); a resume with changed settings is refused or, with override, recorded; metrics rows written after the
 * checkpoint are dropped on resume and time_s continues; what an interrupted save left is cleaned up.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { Adam, add, mean, mul, square, sub, Tensor } from "../../engine/index.ts";
import { loadSafetensors } from "../../engine/checkpoint.ts";
import { Generator } from "../../engine/random.ts";
import { DivergenceError, type LoopConfig, runTraining, type TrainTask } from "../../train/loop.ts";
import { RunLockedError } from "../../train/run_dir.ts";
import { gpuReady } from "../helpers.ts";

/** Fits w·x ≈ y for 8 fixed x; `poison(epoch, step)` adds +Inf to the loss (its gradient stays finite). */
function task(
  o: { poison?: (e: number, k: number) => boolean; lr?: number; config?: Record<string, unknown> } = {},
) {
  const w = Tensor.parameter(new Float32Array([0.5, -0.25, 0.1, 0.3]), [4], "w");
  const opt = new Adam([w], { lr: o.lr ?? 0.05 });
  const gen = new Generator(1);
  const x = Float32Array.from({ length: 32 }, (_, i) => Math.sin(i));
  const t: TrainTask = {
    name: "toy",
    model: { parameters: () => [w], stateDict: () => ({ w }), gen },
    optimizer: opt,
    config: o.config ?? { lr: o.lr ?? 0.05, kind: "toy" },
    batchesPerEpoch: 4,
    describe: () => "toy task",
    loss: (e, k) => {
      const xs = Tensor.fromData(x, [8, 4]);
      const pred = mul(xs, w); // (8, 4)
      const l = mean(square(sub(pred, 1)));
      return o.poison?.(e, k) ? add(l, Tensor.fromData([Infinity], [1]).view([])) : l;
    },
    validate: () => Promise.resolve({ loss: 1, metrics: {}, summary: "toy" }),
  };
  return { task: t, w, dispose: () => (w.dispose(), opt.dispose()) };
}

const LOOP: LoopConfig = {
  epochs: 3,
  stepsPerEpoch: 4,
  lr: 0.05,
  maxNorm: 1,
  logEvery: 1,
  resume: false,
  keepBest: true,
};

async function metrics(dir: string) {
  return (await Deno.readTextFile(join(dir, "metrics.jsonl"))).trim().split("\n").map((l) => JSON.parse(l));
}

Deno.test("loop: a non-finite loss is a skipped step; a run of them stops naming the cause and keeps the last good checkpoint", async () => {
  await gpuReady();
  const out = await Deno.makeTempDir();
  const t = task({ poison: (e) => e >= 1 });
  const lines: string[] = [];
  try {
    await assert.rejects(
      runTraining(t.task, out, { ...LOOP, maxConsecutiveSkips: 3 }, { onLog: (l) => lines.push(l) }),
      (e: Error) => {
        assert.ok(e instanceof DivergenceError);
        assert.match(e.message, /3 steps in a row had a non-finite loss/);
        assert.match(e.message, /learning rate \(it diverged after 4 good steps/);
        assert.match(e.message, /last good checkpoint/);
        return true;
      },
    );
    const wAfter = await t.w.read();
    const ck = await loadSafetensors(join(out, "checkpoint.safetensors"));
    assert.deepEqual(
      [...ck.tensors.get("w")!.data],
      [...wAfter],
      "skipped steps left the parameters untouched",
    );
    assert.equal(JSON.parse(ck.metadata.loop).epoch, 1, "the checkpoint is the one of the last good epoch");
    const model = await loadSafetensors(join(out, "model.safetensors"));
    assert.deepEqual(
      [...model.tensors.get("w")!.data],
      [...wAfter],
      "model and checkpoint come from one step",
    );
    assert.equal(ck.tensors.get("optim.loop.skipped")!.data[0], 0);
    const rows = await metrics(out);
    assert.ok(rows.some((r) => r.train_loss === null || !Number.isFinite(r.train_loss)));
  } finally {
    t.dispose();
  }
  // A run whose very first steps are non-finite blames the data.
  const out2 = await Deno.makeTempDir();
  const t2 = task({ poison: () => true });
  try {
    await assert.rejects(
      runTraining(t2.task, out2, { ...LOOP, maxConsecutiveSkips: 2 }),
      /likely cause: the data \(no step has had a finite loss/,
    );
  } finally {
    t2.dispose();
  }
});

Deno.test("loop: skipped steps of an epoch are said on the console and counted in metrics.jsonl", async () => {
  await gpuReady();
  const out = await Deno.makeTempDir();
  const t = task({ poison: (e, k) => e === 1 && k === 2 });
  const lines: string[] = [];
  try {
    await runTraining(t.task, out, LOOP, { onLog: (l) => lines.push(l) });
    assert.ok(lines.some((l) => /epoch 2\/3: .*1 steps skipped/.test(l)), lines.join("\n"));
    const ends = (await metrics(out)).filter((r) => "skipped_steps" in r);
    assert.deepEqual(ends.map((r) => r.skipped_steps), [0, 1, 0]);
    assert.deepEqual(ends.map((r) => r.skipped_steps_total), [0, 1, 1]);
  } finally {
    t.dispose();
  }
});

Deno.test("loop: a second run on the same folder fails at once; a stale lock is taken over", async () => {
  await gpuReady();
  const out = await Deno.makeTempDir();
  await Deno.writeTextFile(join(out, ".lock"), "1\n"); // PID 1 is alive
  const t = task();
  try {
    await assert.rejects(runTraining(t.task, out, LOOP), (e: Error) => {
      assert.ok(e instanceof RunLockedError);
      assert.match(e.message, /in use by another run \(PID 1/);
      return true;
    });
    assert.ok(!(await exists(join(out, "config.json"))), "nothing was written");
    await Deno.writeTextFile(join(out, ".lock"), "999999999\n");
    const lines: string[] = [];
    await runTraining(t.task, out, { ...LOOP, epochs: 1 }, { onLog: (l) => lines.push(l) });
    assert.ok(lines.some((l) => l.includes("stale lock")), lines.join("\n"));
    assert.ok(!(await exists(join(out, ".lock"))), "the lock is released at the end");
  } finally {
    t.dispose();
  }
  // Two concurrent runs: the second fails while the first holds the folder.
  const out2 = await Deno.makeTempDir();
  const a = task(), b = task();
  try {
    const first = runTraining(a.task, out2, LOOP);
    await assert.rejects(runTraining(b.task, out2, LOOP), RunLockedError);
    await first;
  } finally {
    a.dispose();
    b.dispose();
  }
});

async function exists(p: string) {
  try {
    await Deno.stat(p);
    return true;
  } catch {
    return false;
  }
}

Deno.test("loop: resume refuses changed settings, accepts them with override (recorded), drops metrics after the checkpoint", async () => {
  await gpuReady();
  const out = await Deno.makeTempDir();
  let steps = 0;
  const a = task();
  try {
    const r = await runTraining(a.task, out, LOOP, { onStep: () => steps++, shouldStop: () => steps >= 6 });
    assert.equal(r.stopped, true);
  } finally {
    a.dispose();
  }
  const before = await metrics(out);
  const lastTime = Math.max(...before.map((r) => r.time_s));
  // A SIGKILL after the checkpoint would leave rows beyond it.
  await Deno.writeTextFile(
    join(out, "metrics.jsonl"),
    JSON.stringify({ step: 7, train_loss: 9, time_s: 99 }) + "\n",
    {
      append: true,
    },
  );
  await Deno.writeTextFile(join(out, "checkpoint.safetensors.tmp-4242"), "half a file");
  await Deno.writeTextFile(join(out, "model.safetensors.pending"), "half a file");

  const lines: string[] = [];
  const changed = task({ lr: 0.01 });
  try {
    await assert.rejects(
      runTraining(changed.task, out, { ...LOOP, resume: true }, { onLog: (l) => lines.push(l) }),
      /trained with lr=0.05, not 0.01.*--override/,
    );
  } finally {
    changed.dispose();
  }
  assert.ok(lines.some((l) => l.includes("removed") && l.includes("tmp-4242")), lines.join("\n"));
  const c = task({ lr: 0.01 });
  try {
    const r = await runTraining(c.task, out, { ...LOOP, resume: true, override: true }, {
      onLog: (l) => lines.push(l),
    });
    assert.equal(r.epochsDone, 3);
  } finally {
    c.dispose();
  }
  assert.ok(lines.some((l) => l.includes("--override")), lines.join("\n"));
  assert.ok(lines.some((l) => l.includes("dropped 1 metrics rows")), lines.join("\n"));
  assert.ok(!(await exists(join(out, "model.safetensors.pending"))));
  const cfg = JSON.parse(await Deno.readTextFile(join(out, "config.json")));
  assert.equal(cfg.lr, 0.01);
  assert.deepEqual(cfg.overrides, [{ step: 6, changes: ["lr=0.05, not 0.01"] }]);
  const rows = await metrics(out);
  const stepRows = rows.filter((r) => "train_loss" in r).map((r) => r.step);
  assert.deepEqual(stepRows, [...new Set(stepRows)], "no step logged twice");
  assert.ok(!rows.some((r) => r.time_s === 99), "the killed run's row is gone");
  const after = rows.slice(before.length);
  assert.ok(after.every((r) => r.time_s >= lastTime), "time_s continues across the resume");
});

Deno.test("loop: a checkpoint from another stage is refused; best.safetensors follows the validation loss", async () => {
  await gpuReady();
  const out = await Deno.makeTempDir();
  const a = task();
  try {
    await runTraining(a.task, out, { ...LOOP, epochs: 1 });
  } finally {
    a.dispose();
  }
  assert.ok(await exists(join(out, "best.safetensors")));
  const b = task();
  try {
    await assert.rejects(
      runTraining({ ...b.task, name: "other" }, out, { ...LOOP, resume: true }),
      /lola-webgpu\/toy\/1 checkpoint, not a other run/,
    );
  } finally {
    b.dispose();
  }
});

Deno.test("loop: a time budget fixes the epochs from the measured step time; a resume keeps them", async () => {
  await gpuReady();
  const out = await Deno.makeTempDir();
  const lines: string[] = [];
  let steps = 0;
  const a = task();
  const cfg: LoopConfig = { ...LOOP, epochs: 1000, budgetSeconds: 0.6 };
  try {
    const r = await runTraining(a.task, out, cfg, {
      onLog: (l) => lines.push(l),
      onStep: () => steps++,
      shouldStop: () => steps >= 6,
    });
    assert.equal(r.stopped, true);
  } finally {
    a.dispose();
  }
  const m = lines.join("\n").match(
    // Either it fits, or one epoch (the least a run does) is said to exceed the budget.
    /measured [\d.]+ s per step: (\d+) epochs × 4 steps (fit the|\(the least a run does\) take ~[\d.]+ minutes, over the) 0\.0-minute budget/,
  );
  assert.ok(m, lines.join("\n"));
  const epochs = Number(m[1]);
  assert.ok(epochs >= 1 && epochs < 1000, `resolved ${epochs} epochs`);
  const b = task();
  try {
    const r = await runTraining(b.task, out, { ...cfg, resume: true });
    assert.equal(r.epochsDone, epochs, "the resumed run keeps the epochs resolved before the stop");
  } finally {
    b.dispose();
  }
});
