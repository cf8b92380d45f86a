/**
 * Trained runs loaded back for inference (emulation, evaluation, guidance): the emulator of a `train dm|solver`
 * run folder and the autoencoder of a `train ae` run, from their config.json and safetensors. Also the one place
 * that maps a stage name to its model class, shared with train/.
 */
import { join } from "node:path";
import { loadInto, loadSafetensors } from "../engine/checkpoint.ts";
import { Autoencoder } from "../models/autoencoder.ts";
import type { AutoencoderConfig } from "../models/autoencoder_config.ts";
import { Denoiser, type ScheduleKind } from "../models/diffusion.ts";
import { PixelSolver, Solver } from "../models/solver.ts";
import { type TransformerConfig, transformerPreset } from "../models/transformer.ts";

export type EmulatorStage = "dm" | "solver" | "pixel";
export type TransformerPreset = "tiny" | "default" | "small" | "large";

/** A trained-or-training emulator model behind one interface. */
export type EmulatorModel = Denoiser | Solver | PixelSolver;

/** The transformer configuration of a stage. */
export function emulatorModelConfig(
  stage: EmulatorStage,
  preset: TransformerPreset,
  o: { channels: number; spatial: 2 | 3; labelDim: number },
): TransformerConfig {
  return transformerPreset(preset, { ...o, kind: stage === "dm" ? "denoiser" : "solver" });
}

export function makeEmulator(
  stage: EmulatorStage,
  cfg: TransformerConfig,
  o: { seed: number; patch: number; schedule: ScheduleKind },
): EmulatorModel {
  if (stage === "dm") return new Denoiser(cfg, o.seed, o.schedule);
  if (stage === "solver") return new Solver(cfg, o.seed);
  return new PixelSolver(cfg, o.patch, o.seed);
}

/** What an emulator run's config.json holds (written by train/emulator.ts). */
export interface EmulatorRunConfig {
  stage: EmulatorStage;
  ae?: string;
  data?: string;
  preset: TransformerPreset;
  window: number;
  stride: number;
  patch: number;
  schedule: ScheduleKind;
  seed: number;
  model: TransformerConfig;
  /** The latent cache (latent stages) or dataset (pixel) it was trained on. */
  source: string;
  channels: number;
  grid: number[];
}

export interface LoadedEmulator {
  stage: EmulatorStage;
  model: EmulatorModel;
  /** The run's config.json. */
  config: EmulatorRunConfig;
}

/**
 * A trained emulator from its run folder: config.json and `best.safetensors` (default, the lowest validation
 * loss; the last checkpoint's `model.safetensors` when the run has no best or `which` says so).
 */
export async function loadEmulator(run: string, which: "best" | "last" = "best"): Promise<LoadedEmulator> {
  let config: LoadedEmulator["config"];
  try {
    config = JSON.parse(await Deno.readTextFile(join(run, "config.json")));
  } catch {
    throw new Error(
      `${run} is not an emulator run: no readable config.json (train one with \`deno task train dm\`)`,
    );
  }
  if (!config.model || !["dm", "solver", "pixel"].includes(config.stage)) {
    throw new Error(
      `${run}/config.json is not an emulator configuration (stage ${config.stage ?? "missing"})`,
    );
  }
  let file = join(run, which === "best" ? "best.safetensors" : "model.safetensors");
  try {
    await Deno.stat(file);
  } catch {
    file = join(run, "model.safetensors");
  }
  const model = makeEmulator(config.stage, config.model, config);
  try {
    const { tensors } = await loadSafetensors(file);
    loadInto(model.stateDict(), tensors, file);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return { stage: config.stage, model, config };
}

/** The model configuration of a trained autoencoder run (its config.json), read without touching the GPU. */
export async function readAutoencoderConfig(run: string): Promise<AutoencoderConfig> {
  let cfg: { model?: AutoencoderConfig };
  try {
    cfg = JSON.parse(await Deno.readTextFile(join(run, "config.json")));
  } catch {
    throw new Error(
      `${run} is not an autoencoder run: no readable config.json (train one with \`deno task train ae\`)`,
    );
  }
  if (!cfg.model) throw new Error(`${run}/config.json has no model configuration`);
  return cfg.model;
}

/** A trained autoencoder from its run folder (config.json + model.safetensors). */
export async function loadAutoencoder(run: string): Promise<Autoencoder> {
  const model = new Autoencoder(await readAutoencoderConfig(run), 0);
  try {
    const file = join(run, "model.safetensors");
    const { tensors } = await loadSafetensors(file);
    loadInto(model.stateDict(), tensors, file);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return model;
}
