/**
 * The one training loop of every stage (method §9): a stage supplies a `TrainTask` (model, optimizer, the loss
 * of step k of epoch e, a validation) and the loop owns the rest: the learning rate lr·(1 + cos(π e/E))/2 per
 * epoch, global-norm clipping, non-finite steps skipped on the GPU (a non-finite loss counts as one), the loss read
 * back every `logEvery` steps, validation each epoch, checkpoints (`checkpoint`, `model`, and `best` for the
 * emulators), `config.json`, `metrics.jsonl`, progress, stop requests (Ctrl-C, SIGTERM) and exact resume.
 *
 * Invariants:
 * - Nothing syncs inside a step: skip decisions and the skip counters live on the GPU; the host reads them with
 *   the loss every `logEvery` steps, and stops the run after `maxConsecutiveSkips` skipped steps in a row,
 *   keeping the last good checkpoint.
 * - Resume is exact to the bit when the task's loss is a pure function of (epoch, step) and of the model's
 *   generator, whose counter is checkpointed: data order, augmentations, masks, noise and dropout all are.
 * - A resumed run with settings that change results is refused, listing them, unless `override` is set; then the
 *   change is recorded in config.json under `overrides`.
 */
import { backward, gradNorm, map, mapInPlace, pool, scope, Tensor, zeroGrad } from "../engine/index.ts";
import { loadInto, loadSafetensors, writeTextAtomic } from "../engine/checkpoint.ts";
import type { Generator } from "../engine/random.ts";
import type { Optimizer } from "../engine/optim/optimizer.ts";
import { configChanges, RunDir } from "./run_dir.ts";

export interface TrainModel {
  parameters(): Tensor[];
  stateDict(): Record<string, Tensor>;
  readonly gen: Generator;
}

export interface Validation {
  /** The number `best.safetensors` minimises. */
  loss: number;
  /** Logged in metrics.jsonl. */
  metrics: Record<string, unknown>;
  /** One console line. */
  summary: string;
}

export interface TrainTask {
  /** Checkpoint format tag, e.g. "ae", "dm". */
  readonly name: string;
  readonly model: TrainModel;
  readonly optimizer: Optimizer;
  /** The resolved configuration of the stage (written to config.json, compared on resume). */
  readonly config: Record<string, unknown>;
  /** Windows (or frames) per pass over the data at this batch size. */
  readonly batchesPerEpoch: number;
  /** One line said at the start (model size, data). */
  describe(): string;
  /** The scalar training loss of step `step` of epoch `epoch` (called inside a scope; no readback). */
  loss(epoch: number, step: number): Tensor;
  validate?(epoch: number): Promise<Validation | null>;
  /** The reference state dict for model.safetensors (default: the model's). Returned tensors are disposed. */
  exportExtras?(): Record<string, Tensor>;
  /** Extra metadata for model.safetensors (e.g. the model config). */
  modelMetadata?(): Record<string, string>;
}

export interface LoopConfig {
  /** Epochs E; with `budgetSeconds`, the most epochs the budget may resolve to. */
  epochs: number;
  /**
   * Time budget of the run: E is chosen from the step time measured on the first steps of epoch 0 (whose
   * learning rate does not depend on E), so the stage fits the budget on any adapter. Stored in the checkpoint.
   */
  budgetSeconds?: number;
  stepsPerEpoch: number;
  lr: number;
  maxNorm: number;
  logEvery: number;
  resume: boolean;
  /** Accept changed settings on resume (recorded in config.json). */
  override?: boolean;
  /** Write best.safetensors at the lowest validation loss. */
  keepBest: boolean;
  /** Stop after this many skipped steps in a row (checked when the loss is read). */
  maxConsecutiveSkips?: number;
}

export interface LoopEvents {
  onStep?: (done: number, total: number, info: string) => void;
  onLog?: (line: string) => void;
  /** Polled between steps: true → save a checkpoint and stop. */
  shouldStop?: () => boolean;
}

export interface LoopResult {
  stopped: boolean;
  epochsDone: number;
  lastValidation: Validation | null;
  bestLoss: number | null;
  seconds: number;
  steps: number;
}

export class DivergenceError extends Error {
  override name = "DivergenceError";
}

/** lr·(1 + cos(π e/E))/2, constant within epoch e (method §9). */
export function epochLr(lr: number, epoch: number, epochs: number): number {
  return (lr * (1 + Math.cos((Math.PI * epoch) / epochs))) / 2;
}

interface LoopState {
  epoch: number;
  stepInEpoch: number;
  globalStep: number;
  genCalls: number;
  /** Seconds of training before this process (time_s continues across resumes). */
  elapsed: number;
  bestLoss: number | null;
  /** Steps that completed with a finite loss and gradient, as of the last readback. */
  goodSteps: number;
  /** E, once known (budget runs resolve it during epoch 0). */
  epochs: number | null;
}

const CKPT = "checkpoint.safetensors";

function prefixed(p: string, o: Record<string, Tensor>): Record<string, Tensor> {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [p + k, v]));
}

/** Runs (or resumes) `task` in the run folder `out`. The folder is locked for the run's duration. */
export async function runTraining(
  task: TrainTask,
  out: string,
  cfg: LoopConfig,
  ev: LoopEvents = {},
): Promise<LoopResult> {
  const log = ev.onLog ?? (() => {});
  const dir = RunDir.open(out, log);
  const { model, optimizer: opt } = task;
  const params = model.parameters();
  // [total skipped, consecutive skipped] on the GPU.
  const skipped = Tensor.fromData([0], [1], { persistent: true });
  const consecutive = Tensor.fromData([0], [1], { persistent: true });
  const state: LoopState = {
    epoch: 0,
    stepInEpoch: 0,
    globalStep: 0,
    genCalls: 0,
    elapsed: 0,
    bestLoss: null,
    goodSteps: 0,
    epochs: cfg.budgetSeconds ? null : cfg.epochs,
  };
  const stateTensors = () => ({ "loop.skipped": skipped, "loop.consecutive": consecutive });
  let config: Record<string, unknown> = { ...task.config };

  try {
    if (cfg.resume) {
      config = await resume(dir, task, cfg, state, stateTensors(), log);
    } else {
      if (dir.has(CKPT)) {
        throw new Error(
          `${dir.file(CKPT)} exists: pass --resume to continue that run, or choose another --out`,
        );
      }
      await writeTextAtomic(dir.file("config.json"), JSON.stringify(config, null, 2) + "\n");
      dir.startMetrics();
    }
    model.gen.state = { seed: model.gen.seed, calls: state.genCalls };

    const save = async (best = false) => {
      state.genCalls = model.gen.state.calls;
      const tensors: Record<string, Tensor> = { ...stateTensors() };
      const scalars: Record<string, number> = {};
      for (const [k, v] of Object.entries(opt.stateDict())) {
        if (typeof v === "number") scalars[k] = v;
        else tensors[k] = v;
      }
      const meta = {
        config: JSON.stringify(config),
        loop: JSON.stringify(state),
        optim_scalars: JSON.stringify(scalars),
        format: `lola-webgpu/${task.name}/1`,
      };
      const extras = task.exportExtras?.() ?? {};
      try {
        const ref = { tensors: { ...model.stateDict(), ...extras }, metadata: task.modelMetadata?.() ?? {} };
        const files = [
          { name: "model.safetensors", ...ref },
          { name: CKPT, tensors: { ...model.stateDict(), ...prefixed("optim.", tensors) }, metadata: meta },
        ];
        if (best) files.unshift({ name: "best.safetensors", ...ref });
        await dir.saveTogether(files);
      } finally {
        for (const t of Object.values(extras)) t.dispose();
      }
    };

    const total = () => (state.epochs ?? cfg.epochs) * cfg.stepsPerEpoch;
    const probe = { start: null as number | null, steps: 0 };
    const chooseEpochs = (perStep: number) => {
      const fit = Math.floor((cfg.budgetSeconds! * 0.9) / (perStep * cfg.stepsPerEpoch));
      state.epochs = Math.max(1, Math.min(cfg.epochs, fit));
      const budget = `${(cfg.budgetSeconds! / 60).toFixed(1)}-minute budget`;
      const plan = `${state.epochs} epochs × ${cfg.stepsPerEpoch} steps`;
      log(
        `measured ${perStep.toFixed(3)} s per step: ` +
          (fit >= 1
            ? `${plan} fit the ${budget}`
            : `${plan} (the least a run does) take ~${
              ((perStep * cfg.stepsPerEpoch) / 60).toFixed(1)
            } minutes, over the ${budget}`),
      );
    };
    const t0 = performance.now() - state.elapsed * 1000;
    const seconds = () => (performance.now() - t0) / 1000;
    let lastValidation: Validation | null = null;
    let stopped = false;
    const maxSkips = cfg.maxConsecutiveSkips ?? 16;
    log(task.describe());

    while (state.epoch < (state.epochs ?? cfg.epochs)) {
      // Epoch 0's learning rate is lr whatever E is, so a budget run may fix E during it.
      const lr = epochLr(cfg.lr, state.epoch, state.epochs ?? cfg.epochs);
      let lossSum = 0, lossCount = 0;
      const skippedBefore = (await skipped.read())[0];
      for (; state.stepInEpoch < cfg.stepsPerEpoch; state.stepInEpoch++) {
        if (ev.shouldStop?.()) {
          stopped = true;
          break;
        }
        const k = state.stepInEpoch;
        const logNow = state.globalStep % cfg.logEvery === 0 || k === cfg.stepsPerEpoch - 1;
        const loss = scope(() => {
          const l = task.loss(state.epoch, k);
          // The step reads nothing of the graph but the loss: activations go as soon as their backward ran.
          backward(l, undefined, { freeActivations: true });
          // A non-finite loss poisons the norm, so the optimizer skips the step like a non-finite gradient.
          const gn = map(
            [gradNorm(params), l.view([1])],
            "select(abs(in1) + in0, in0, isfinite_(in1))",
            "loss_gate",
          );
          mapInPlace(skipped, [gn], "in0 + select(1.0, 0.0, isfinite_(in1))", "count_skipped");
          mapInPlace(consecutive, [gn], "select(in0 + 1.0, 0.0, isfinite_(in1))", "count_consecutive");
          opt.step({ lr, gradNorm: gn, maxNorm: cfg.maxNorm });
          zeroGrad(params);
          return logNow ? l.keep() : null;
        });
        state.globalStep++;
        if (state.epochs === null) {
          // Time the steps after the first one this process runs (it pays for compiling the pipelines).
          await consecutive.read();
          const now = performance.now();
          if (probe.start === null) probe.start = now;
          else if (++probe.steps === 3 || k === cfg.stepsPerEpoch - 1) {
            chooseEpochs((now - probe.start) / 1000 / probe.steps);
          }
        }
        let info = `epoch ${state.epoch + 1}/${state.epochs ?? "?"}`;
        if (loss) {
          const v = await loss.item();
          loss.dispose();
          const [run, all] = [(await consecutive.read())[0], (await skipped.read())[0]];
          state.goodSteps = state.globalStep - all;
          if (Number.isFinite(v)) {
            lossSum += v;
            lossCount++;
          }
          dir.appendMetrics({
            step: state.globalStep,
            epoch: state.epoch,
            lr,
            train_loss: v,
            time_s: seconds(),
          });
          info += ` loss ${v.toPrecision(4)}`;
          if (run >= maxSkips) {
            const cause = state.goodSteps === 0
              ? "the data (no step has had a finite loss: look for huge or non-finite values with " +
                "`deno task data info PATH --check`)"
              : "the learning rate (it diverged after " + state.goodSteps + " good steps: lower --lr)";
            throw new DivergenceError(
              `training stopped at step ${state.globalStep}: ${run} steps in a row had a non-finite loss or ` +
                `gradient (last loss ${v}); likely cause: ${cause}; the last good checkpoint in ${out} is kept`,
            );
          }
        }
        ev.onStep?.(state.globalStep, total(), info);
      }
      if (stopped) break;
      if (state.epochs === null) chooseEpochs(seconds() / Math.max(1, state.globalStep)); // a 1-step epoch
      const nSkipped = (await skipped.read())[0];
      lastValidation = (await task.validate?.(state.epoch)) ?? null;
      const improved = lastValidation !== null && Number.isFinite(lastValidation.loss) &&
        (state.bestLoss === null || lastValidation.loss < state.bestLoss);
      if (improved) state.bestLoss = lastValidation!.loss;
      dir.appendMetrics({
        step: state.globalStep,
        epoch: state.epoch,
        lr,
        train_loss_mean: lossCount ? lossSum / lossCount : null,
        skipped_steps: nSkipped - skippedBefore,
        skipped_steps_total: nSkipped,
        ...(lastValidation ? { valid_loss: lastValidation.loss, ...lastValidation.metrics } : {}),
        bytes_in_use: pool.stats.bytesInUse,
        time_s: seconds(),
      });
      const skipNote = nSkipped > skippedBefore
        ? ` · ${nSkipped - skippedBefore} steps skipped (non-finite)`
        : "";
      log(
        `epoch ${state.epoch + 1}/${state.epochs}: ${
          lastValidation?.summary ?? "no validation split"
        }${skipNote}`,
      );
      state.epoch++;
      state.stepInEpoch = 0;
      state.elapsed = seconds();
      await save(cfg.keepBest && improved);
    }
    if (stopped) {
      state.elapsed = seconds();
      await save();
    }
    return {
      stopped,
      epochsDone: state.epoch,
      lastValidation,
      bestLoss: state.bestLoss,
      seconds: seconds(),
      steps: state.globalStep,
    };
  } finally {
    skipped.dispose();
    consecutive.dispose();
    dir.release();
  }
}

async function resume(
  dir: RunDir,
  task: TrainTask,
  cfg: LoopConfig,
  state: LoopState,
  loopTensors: Record<string, Tensor>,
  log: (line: string) => void,
): Promise<Record<string, unknown>> {
  const path = dir.file(CKPT);
  if (!dir.has(CKPT)) throw new Error(`--resume: no checkpoint at ${path}`);
  const { tensors, metadata } = await loadSafetensors(path);
  if (metadata.format !== `lola-webgpu/${task.name}/1`) {
    throw new Error(
      `--resume: ${path} is a ${metadata.format ?? "foreign"} checkpoint, not a ${task.name} run`,
    );
  }
  let saved: Record<string, unknown>;
  try {
    saved = JSON.parse(metadata.config ?? "");
  } catch {
    throw new Error(`--resume: ${path} has no readable configuration`);
  }
  const changes = configChanges(saved, task.config);
  const overrides = (saved.overrides as unknown[] | undefined) ?? [];
  let config = { ...task.config, overrides };
  if (changes.length) {
    if (!cfg.override) {
      throw new Error(
        `--resume: the checkpoint was trained with ${changes.join("; ")}: use the same settings, or pass ` +
          `--override to continue with the new ones`,
      );
    }
    log(`--override: continuing with changed settings (${changes.join("; ")})`);
  }
  loadInto({ ...task.model.stateDict(), ...prefixed("optim.", loopTensors) }, tensors, path);
  const scalars: Record<string, number> = JSON.parse(metadata.optim_scalars ?? "{}");
  const sd: Record<string, ArrayLike<number> | number> = {};
  for (const [k, v] of Object.entries(task.optimizer.stateDict())) {
    const value = typeof v === "number" ? scalars[k] : tensors.get(`optim.${k}`)?.data;
    if (value === undefined) throw new Error(`--resume: ${path} lacks optimizer state ${k}`);
    sd[k] = value;
  }
  task.optimizer.loadStateDict(sd);
  Object.assign(state, JSON.parse(metadata.loop));
  if (changes.length) {
    config = { ...task.config, overrides: [...overrides, { step: state.globalStep, changes }] };
  }
  await writeTextAtomic(dir.file("config.json"), JSON.stringify(config, null, 2) + "\n");
  const dropped = dir.truncateMetrics(state.globalStep);
  log(
    `resumed ${path} at epoch ${state.epoch + 1}, step ${state.stepInEpoch}` +
      (dropped ? ` (dropped ${dropped} metrics rows written after that checkpoint)` : ""),
  );
  return config;
}
