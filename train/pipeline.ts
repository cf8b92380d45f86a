/**
 * The whole method in one call (`deno task train` with no stage): data → autoencoder (PSGD-Kron) → latent cache →
 * diffusion denoiser → latent solver → pixel solver → evaluation and report, in `<root>/<name>/{ae, dm, solver,
 * pixel, eval}` (with `--compressions`, one `c<C_z>/{ae, dm, solver, eval}` per latent width and a combined
 * report in `eval/`).
 *
 * Invariants:
 * - A stage is complete when its `done.json` holds the fingerprint of its settings and of the `done.json` of the
 *   stages it reads; a complete stage is skipped, a stage whose fingerprint changed (a retrained autoencoder, other
 *   settings) is removed and redone, and an interrupted stage resumes from its checkpoint. So a rerun, or Ctrl-C
 *   then a rerun, continues where the run stopped and ends with the same files as an uninterrupted run.
 * - The time budget is split over the stages in fixed shares; each training stage measures its own step time
 *   and picks its epochs to fit its share (train/loop.ts), so stage lengths come from measurement on the adapter
 *   at hand, not from a guess.
 */
import { join } from "node:path";
import { ensureDefaultDataset } from "../data/default_dataset.ts";
import { type EvaluationSummary, runEvaluation } from "../eval/evaluate.ts";
import { writeReport } from "../eval/report.ts";
import { type TrainAeConfig, trainAutoencoder } from "./ae.ts";
import {
  ensureLatentCache,
  trainEmulator,
  type TrainEmulatorConfig,
  type TransformerPreset,
} from "./emulator.ts";
import type { LoopEvents } from "./loop.ts";

export const STAGES = ["ae", "dm", "solver", "pixel", "eval"] as const;
export type StageName = (typeof STAGES)[number];

export interface PipelineOptions {
  name: string;
  /** Parent folder of the run (default "runs"). */
  root?: string;
  /** Well dataset; default the built-in Euler dataset (generated on first use). */
  data?: string;
  /** Autoencoder preset; the emulators use `emulatorPreset`. */
  aePreset: string;
  emulatorPreset: TransformerPreset;
  stages: StageName[];
  /** Total minutes for the training stages and the evaluation. */
  budgetMinutes: number;
  /** Latent widths C_z (one autoencoder and latent emulators per width). */
  compressions: number[];
  seed: number;
  /** Sizes of every stage, for tests and experiments (merged over the defaults). */
  ae?: Partial<TrainAeConfig>;
  emulator?: Partial<TrainEmulatorConfig>;
  evaluation?: {
    trajectories?: number;
    members?: number;
    contexts?: number[];
    steps?: number;
    guided?: string[];
  };
  onLog?: (line: string) => void;
  /** A stage starts: (label, index among the stages to run, count). */
  onStage?: (label: string, index: number, count: number) => void;
  onStep?: LoopEvents["onStep"];
  shouldStop?: () => boolean;
}

export interface StageRecord {
  stage: string;
  folder: string;
  status: "skipped" | "done" | "stopped";
  seconds: number;
  summary: Record<string, unknown>;
}

export interface PipelineResult {
  stopped: boolean;
  folder: string;
  stages: StageRecord[];
  report: string | null;
  evaluation: EvaluationSummary | null;
  seconds: number;
}

/** Budget shares of the stages (they sum to 1 with the evaluation's); measured timings in the README. */
const SHARES = { ae: 0.34, dm: 0.18, solver: 0.14, pixel: 0.14 } as const;
/** The evaluation's reserve of the budget (its length is fixed by its settings, not fitted). */
const EVAL_SHARE = 0.2;

interface Done {
  fingerprint: string;
  finished: string;
  seconds: number;
  summary: Record<string, unknown>;
}

async function sha(text: string): Promise<string> {
  const h = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(h)].slice(0, 12).map((b) => b.toString(16).padStart(2, "0")).join("");
}

function readDone(dir: string): Done | null {
  try {
    return JSON.parse(Deno.readTextFileSync(join(dir, "done.json")));
  } catch {
    return null;
  }
}

function exists(p: string): boolean {
  try {
    Deno.statSync(p);
    return true;
  } catch {
    return false;
  }
}

class Stopped extends Error {}

export async function runPipeline(o: PipelineOptions): Promise<PipelineResult> {
  const t0 = performance.now();
  const log = o.onLog ?? (() => {});
  const folder = join(o.root ?? "runs", o.name);
  await Deno.mkdir(folder, { recursive: true });
  const data = o.data ?? await ensureDefaultDataset({
    onStart: (p) => log(`generating the built-in Euler dataset in ${p} (first use only)`),
  });
  const records: StageRecord[] = [];
  const multi = o.compressions.length > 1;
  const widths = o.compressions;
  const todo = o.stages;
  const count = widths.length * todo.filter((s) => s !== "pixel" && s !== "eval").length +
    (todo.includes("pixel") ? 1 : 0) + (todo.includes("eval") ? widths.length + (multi ? 1 : 0) : 0);
  let index = 0;
  // The training stages share what the evaluation's reserve leaves, each getting its share of what is left
  // when it starts: a stage that overran (or a slow encoding) shortens the ones after it, not the total.
  const queue: number[] = [
    ...(todo.includes("pixel") ? [SHARES.pixel] : []),
    ...widths.flatMap(() =>
      (["ae", "dm", "solver"] as const).filter((s) => todo.includes(s)).map((s) => SHARES[s] / widths.length)
    ),
  ];
  const trainingMinutes = o.budgetMinutes * (todo.includes("eval") ? 1 - EVAL_SHARE : 1);
  let spentMinutes = 0;
  const minutes = (): number => {
    const share = queue.shift() ?? 0, rest = share + queue.reduce((a, b) => a + b, 0);
    return Math.max(0.5, ((trainingMinutes - spentMinutes) * share) / (rest || 1));
  };

  /** Runs one stage unless complete; `run(resume)` returns its summary, or null when stopped. */
  const stage = async (
    label: string,
    dir: string,
    inputs: unknown,
    run: (resume: boolean) => Promise<Record<string, unknown> | null>,
  ): Promise<Done> => {
    // The budget only sizes a run (its epochs are fixed once measured): not an input of its results.
    const fingerprint = await sha(JSON.stringify(inputs, (k, v) => (k === "budgetMinutes" ? undefined : v)));
    o.onStage?.(label, index++, count);
    const done = readDone(dir);
    if (done?.fingerprint === fingerprint) {
      spentMinutes += done.seconds / 60;
      log(`${label}: complete in ${dir} (skipped)`);
      records.push({ stage: label, folder: dir, status: "skipped", seconds: 0, summary: done.summary });
      return done;
    }
    if (done) {
      log(`${label}: its inputs changed since ${done.finished}: redoing it`);
      await Deno.remove(dir, { recursive: true });
    }
    const resume = exists(join(dir, "checkpoint.safetensors"));
    if (resume) log(`${label}: resuming the interrupted run in ${dir}`);
    const s0 = performance.now();
    const summary = await run(resume);
    const seconds = (performance.now() - s0) / 1000;
    spentMinutes += seconds / 60;
    if (!summary) {
      records.push({ stage: label, folder: dir, status: "stopped", seconds, summary: {} });
      throw new Stopped();
    }
    const rec: Done = { fingerprint, finished: new Date().toISOString(), seconds, summary };
    await Deno.mkdir(dir, { recursive: true });
    await Deno.writeTextFile(join(dir, "done.json.tmp"), JSON.stringify(rec, null, 2) + "\n");
    await Deno.rename(join(dir, "done.json.tmp"), join(dir, "done.json"));
    records.push({ stage: label, folder: dir, status: "done", seconds, summary });
    log(`${label}: done in ${seconds.toFixed(0)} s`);
    return rec;
  };
  const events = (): LoopEvents => ({ onLog: log, onStep: o.onStep, shouldStop: o.shouldStop });

  const emulatorConfig = (
    stage: "dm" | "solver" | "pixel",
    out: string,
    ae?: string,
  ): TrainEmulatorConfig => ({
    stage,
    ae,
    data: stage === "pixel" ? data : undefined,
    preset: o.emulatorPreset,
    epochs: 1000,
    stepsPerEpoch: 32,
    batch: 8,
    lr: o.emulatorPreset === "tiny" || o.emulatorPreset === "default" ? 1e-3 : 1e-4,
    seed: o.seed,
    out,
    window: 5,
    stride: 4,
    maskPrior: "code",
    patch: 8,
    schedule: "ve",
    validBatches: 4,
    logEvery: 8,
    maxNorm: 1,
    resume: false,
    budgetMinutes: minutes(),
    ...o.emulator,
  });
  const trained = async (cfg: TrainEmulatorConfig, resume: boolean) => {
    const r = await trainEmulator({ ...cfg, resume }, events());
    return r.stopped
      ? null
      : { epochs: r.epochsDone, valid_loss: r.validLoss, best_loss: r.bestLoss, params: r.params };
  };

  const evaluations: Record<number, EvaluationSummary> = {};
  let pixelDone: Done | null = null,
    report: string | null = null,
    evaluation: EvaluationSummary | null = null;
  try {
    if (todo.includes("pixel")) {
      const cfg = emulatorConfig("pixel", join(folder, "pixel"));
      pixelDone = await stage("pixel solver", cfg.out, { cfg, data }, (resume) => trained(cfg, resume));
    } else if (exists(join(folder, "pixel", "done.json"))) pixelDone = readDone(join(folder, "pixel"));
    for (const w of widths) {
      const base = multi ? join(folder, `c${w}`) : folder;
      const tag = multi ? ` (C_z ${w})` : "";
      const aeDir = join(base, "ae");
      const aeCfg: TrainAeConfig = {
        preset: o.aePreset,
        data,
        latentChannels: w,
        epochs: 1000,
        stepsPerEpoch: 32,
        batch: 8,
        lr: 3e-4,
        optimizer: "psgd",
        loss: "vrmse",
        seed: o.seed,
        out: aeDir,
        identityInit: true,
        validBatches: 4,
        logEvery: 8,
        maxNorm: 1,
        resume: false,
        budgetMinutes: minutes(),
        ...o.ae,
      };
      const aeDone = todo.includes("ae")
        ? await stage(`autoencoder${tag}`, aeDir, { aeCfg }, async (resume) => {
          const r = await trainAutoencoder({ ...aeCfg, resume }, events());
          return r.stopped ? null : { epochs: r.epochsDone, valid_vrmse: r.lastValidation, params: r.params };
        })
        : readDone(aeDir);
      const upstream = await sha(JSON.stringify(aeDone));
      if (aeDone && (todo.includes("dm") || todo.includes("solver"))) {
        // Encoding the dataset is part of the budget: done before the emulators' shares are computed, so a slow
        // encoding shortens them instead of lengthening the run.
        const e0 = performance.now();
        await ensureLatentCache(aeDir, undefined, log);
        const seconds = (performance.now() - e0) / 1000;
        spentMinutes += seconds / 60;
        if (seconds > 1) log(`latent cache${tag}: written in ${seconds.toFixed(0)} s`);
      }
      const emus: Partial<Record<"dm" | "solver", Done | null>> = {};
      for (const s of ["dm", "solver"] as const) {
        const dir = join(base, s);
        if (!todo.includes(s)) {
          emus[s] = readDone(dir);
          continue;
        }
        if (!aeDone) throw new Error(`${s} needs a trained autoencoder in ${aeDir}: include the ae stage`);
        const cfg = emulatorConfig(s, dir, aeDir);
        emus[s] = await stage(
          `${s === "dm" ? "diffusion" : "latent solver"}${tag}`,
          dir,
          { cfg, upstream },
          (resume) => trained(cfg, resume),
        );
      }
      if (todo.includes("eval")) {
        const dir = join(base, "eval");
        if (!aeDone) throw new Error(`eval needs a trained autoencoder in ${aeDir}`);
        const ev = {
          ae: aeDir,
          dm: emus.dm ? join(base, "dm") : undefined,
          solver: emus.solver ? join(base, "solver") : undefined,
          pixelSolver: pixelDone ? join(folder, "pixel") : undefined,
          data,
          trajectories: 4,
          members: 8,
          contexts: [1],
          steps: 16,
          seed: o.seed,
          ...o.evaluation,
        };
        const fp = { ev, done: [aeDone, emus.dm ?? null, emus.solver ?? null, pixelDone] };
        const done = await stage(`evaluation${tag}`, dir, fp, async () => {
          const r = await runEvaluation({
            ...ev,
            out: dir,
            title: `${o.name}${tag}`,
            notes: [
              `Run folder \`${folder}\`; autoencoder preset \`${o.aePreset}\`, emulators \`${o.emulatorPreset}\`.`,
            ],
            onLog: log,
          });
          return { ...r } as unknown as Record<string, unknown>;
        });
        evaluations[w] = done.summary as unknown as EvaluationSummary;
      }
    }
    if (todo.includes("eval")) {
      const main = evaluations[widths[0]];
      if (multi) {
        // The compression study: every width's evaluation in one report.
        const dir = join(folder, "eval");
        await Deno.mkdir(dir, { recursive: true });
        const first = main;
        await writeReport({ ...first, out: dir }, {
          title: `${o.name} (compressions ${widths.join(", ")})`,
          notes: [
            `Per-width reports: ${
              widths.map((w) => `\`c${w}/eval/report.md\``).join(", ")
            }; the tables below are ` +
            `those of C_z ${widths[0]}.`,
          ],
          dataset: "",
          fields: [],
          contexts: o.evaluation?.contexts ?? [1],
          members: o.evaluation?.members ?? 8,
          trajectories: o.evaluation?.trajectories ?? 4,
          steps: o.evaluation?.steps ?? 16,
          figures: Object.fromEntries(
            Object.entries(readFigures(join(folder, `c${widths[0]}`, "eval"))).map((
              [k, p],
            ) => [k, `../c${widths[0]}/eval/${p}`]),
          ),
          rollouts: {},
          compressions: evaluations,
        });
        report = join(dir, "report.md");
      } else report = join(folder, "eval", "report.md");
      evaluation = main;
    }
    return {
      stopped: false,
      folder,
      stages: records,
      report,
      evaluation,
      seconds: (performance.now() - t0) / 1000,
    };
  } catch (e) {
    if (!(e instanceof Stopped)) throw e;
    return {
      stopped: true,
      folder,
      stages: records,
      report: null,
      evaluation: null,
      seconds: (performance.now() - t0) / 1000,
    };
  }
}

function readFigures(evalDir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const names: Record<string, string> = {
    vrmse: "vrmse_vs_lead.png",
    spread: "spread_skill.png",
    bands: "spectral_band_errors.png",
    spectra: "power_spectra.png",
  };
  for (const [k, n] of Object.entries(names)) {
    if (exists(join(evalDir, "figures", n))) out[k] = join("figures", n);
  }
  return out;
}
