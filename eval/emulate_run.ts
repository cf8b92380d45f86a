/**
 * The emulation pipeline behind `deno task emulate`: open the split, read each raw trajectory, normalise it,
 * encode its first c frames with the autoencoder (eval mode), roll out (models/emulate.ts: diffusion with K
 * members, or a latent or pixel solver), decode the windows frame by frame, undo the normalisation, and write per
 * trajectory:
 *   <out>/<base>.hdf5         the K members as the K trajectories of a file in The Well's layout (same fields,
 *                             groups, grid and scalars as the source; physical units; root attributes
 *                             `source_file`, `source_trajectory` (K,), `member` (K,), `lead_steps` (T,), …)
 *   <out>/<base>_truth.hdf5   the true frames at the same steps (1 trajectory), so `eval compare` reads the pair
 *   <out>/<base>.png          truth / ensemble mean / member 0 / spread per field at chosen lead times
 *   <out>/<base>.gif          truth beside the emulation, frame by frame
 * with <base> = `<source file stem>_traj<trajectory>`, plus `<out>/emulate.json` listing the settings and files.
 *
 * Guided emulation (`observe`, diffusion only; method §8): every frame the rollout generates is observed from the
 * true trajectory at the same raw step, y = A(x_true) + σ_y·η in standardized (normalised) pixel space, η from a
 * generator seeded by (seed, file, trajectory); each window is sampled with masked(MMPS(D)) against the
 * observations of its frames within the horizon (models/emulate.ts `guidedDiffusionWindow`). The prediction file
 * records `observe`, `observation_noise`, `gmres_iterations` and the per-member observation residual
 * ‖A(x̂) − y‖/√n over the generated frames (`observation_residual`, (K,); the truth's own,
 * ≈ σ_y, as `observation_truth_residual`); the strip figure marks the observation pattern. With 0 GMRES
 * iterations the observations are drawn and scored but nothing is guided: the unguided baseline of the same seed.
 *
 * Invariants: every input is checked (runs, stages, shapes of AE and emulator, context, indices, horizon)
 * before the device starts, each failure one line; every file is written under a temp name and renamed only once
 * all of a trajectory's outputs are complete, so an interrupted run leaves whole files only.
 */
import { basename, extname, join } from "node:path";
import h5wasm from "h5wasm/node";
import { Generator, initDevice, reshape, scope, Tensor } from "../engine/index.ts";
import { ensureH5, readNumbers, withH5 } from "../data/h5.ts";
import { openNormalizedSplit } from "../data/open_split.ts";
import { deriveSeed } from "../data/rng.ts";
import { thetaVector } from "../data/transforms.ts";
import type { Split } from "../data/well_dataset.ts";
import { constantScalars, type WellFileInfo } from "../data/well_file.ts";
import { type WellBoundarySpec, WellFileWriter } from "../data/well_writer.ts";
import type { Autoencoder } from "../models/autoencoder.ts";
import { type AutoencoderConfig, downFactor } from "../models/autoencoder_config.ts";
import type { Denoiser } from "../models/diffusion.ts";
import {
  decodeWindow,
  diffusionWindow,
  encodeWindow,
  generatedFrames,
  guidedDiffusionWindow,
  Rollout,
  solverWindow,
  type WindowModel,
} from "../models/emulate.ts";
import { type ObservationOperator, observe, parseObservation } from "../models/observe.ts";
import type { PixelSolver, Solver } from "../models/solver.ts";
import { type EmulationFigureData, writeEmulationAnimation, writeEmulationStrip } from "./emulate_figures.ts";
import {
  type EmulatorRunConfig,
  type EmulatorStage,
  loadAutoencoder,
  loadEmulator,
  readAutoencoderConfig,
} from "./runs.ts";

export interface EmulateOptions {
  /** Autoencoder run (latent stages). */
  ae?: string;
  /** Exactly one emulator run: diffusion, latent solver or pixel solver. */
  dm?: string;
  solver?: string;
  pixelSolver?: string;
  /** Well dataset; default the one the AE (pixel: the emulator) was trained on. */
  data?: string;
  split?: Split;
  /** The first N trajectories of the split (default all) … */
  trajectories?: number;
  /** … or the one with this index. */
  trajectory?: number;
  /** Raw step of the last context frame (lead 0); default (c − 1)·Δ, the earliest possible. */
  start?: number;
  /** Ensemble members K (diffusion; default 4). Solvers are deterministic: 1. */
  members?: number;
  /** Context frames c (default 1). */
  context?: number;
  /** Sampler steps (default 16). */
  steps?: number;
  /** Frames T of each output trajectory, context included; default all the trajectory allows. */
  horizon?: number;
  seed?: number;
  /** Output folder (default <emulator run>/emulate). */
  out?: string;
  /**
   * Guidance by observations of the true trajectory (diffusion only): "subsample:S" (every S-th pixel/voxel) or
   * "pool:S" (S×S(×S) means), in standardized pixel space (method §8).
   */
  observe?: string;
  /** σ_y of the observations (default 0.1; needs `observe`). */
  obsNoise?: number;
  /** GMRES iterations of MMPS (default 1; needs `observe`); 0 = draw and score the observations, no guidance. */
  gmres?: number;
  /** PNG strip and GIF per trajectory (default true). */
  figures?: boolean;
  onLog?: (line: string) => void;
  /** After each window (done, total) over all trajectories. */
  onProgress?: (done: number, total: number, info: string) => void;
}

/** What a guided (or observed) rollout recorded. */
export interface ObservationSettings {
  /** "subsample:S" or "pool:S". */
  observe: string;
  /** σ_y. */
  noise: number;
  /** GMRES iterations (0: observed, not guided). */
  gmres: number;
}

export interface EmulateResult {
  out: string;
  files: {
    source: string;
    trajectory: number;
    prediction: string;
    truth: string;
    figures: string[];
    /**
     * With `observe`: ‖A(x̂) − y‖/√n per member over the generated frames (standardized units; n observed values),
     * and the same of the true frames (≈ σ_y: the level a perfect fit reaches).
     */
    observation?: { residual: number[]; truthResidual: number };
  }[];
  /** The observation settings, null when unguided. */
  observation: ObservationSettings | null;
  members: number;
  context: number;
  horizon: number;
  leadTimes: number[];
  seconds: number;
}

interface Plan {
  stage: EmulatorStage;
  run: string;
  config: EmulatorRunConfig;
  ae: string | null;
  aeConfig: AutoencoderConfig | null;
  data: string;
  K: number;
  c: number;
  steps: number;
  seed: number;
  out: string;
  obs: (ObservationSettings & { op: ObservationOperator }) | null;
}

function readJson(path: string, what: string): Record<string, unknown> {
  try {
    return JSON.parse(Deno.readTextFileSync(path));
  } catch {
    throw new Error(`${what}: no readable ${path}`);
  }
}

/** Everything checkable without the data or the device. */
async function plan(o: EmulateOptions): Promise<Plan> {
  const given = ([["dm", o.dm], ["solver", o.solver], ["pixel", o.pixelSolver]] as const).filter(([, r]) =>
    r
  );
  if (given.length !== 1) {
    throw new Error(
      `give exactly one emulator: --dm RUN, --solver RUN or --pixel-solver RUN (got ${given.length})`,
    );
  }
  const [stage, run] = given[0] as [EmulatorStage, string];
  const flag = stage === "pixel" ? "--pixel-solver" : `--${stage}`;
  const config = readJson(
    join(run, "config.json"),
    `${run} is not an emulator run`,
  ) as unknown as EmulatorRunConfig;
  if (config.stage !== stage) {
    throw new Error(`${run} is a '${config.stage}' run, not what ${flag} takes ('${stage}')`);
  }
  let aeConfig: AutoencoderConfig | null = null, data = o.data;
  if (stage !== "pixel") {
    if (!o.ae) throw new Error(`${flag} needs --ae RUN (the autoencoder whose latents it was trained on)`);
    aeConfig = await readAutoencoderConfig(o.ae);
    if (!Number.isInteger(aeConfig.latentChannels) || !Array.isArray(aeConfig.hidChannels)) {
      throw new Error(`${o.ae} is not an autoencoder run: its config.json describes no autoencoder (--ae)`);
    }
    if (aeConfig.latentChannels !== config.channels) {
      throw new Error(
        `mismatched latent shapes: ${o.ae} encodes ${aeConfig.latentChannels} latent channels, ${run} was ` +
          `trained on ${config.channels}: pass the autoencoder of its config.json (${
            config.ae ?? "not recorded"
          })`,
      );
    }
    data ??= readJson(join(o.ae, "config.json"), `${o.ae} is not an autoencoder run`).data as
      | string
      | undefined;
  } else data ??= config.data ?? config.source;
  if (!data) throw new Error(`no dataset recorded in the runs' config.json: pass --data PATH`);
  const c = o.context ?? 1, L = config.window;
  if (!Number.isInteger(c) || c < 1 || c >= L) {
    throw new Error(`--context must be an integer with 1 ≤ c < L = ${L} (the window of ${run}), got ${c}`);
  }
  const K = o.members ?? (stage === "dm" ? 4 : 1);
  if (!Number.isInteger(K) || K < 1) throw new Error(`--members must be a positive integer, got ${K}`);
  if (stage !== "dm" && K > 1) {
    throw new Error(`--members ${K}: a solver is deterministic, its members would be identical (use --dm)`);
  }
  let obs: Plan["obs"] = null;
  if (o.observe === undefined) {
    if (o.obsNoise !== undefined || o.gmres !== undefined) {
      throw new Error(`--obs-noise and --gmres set up guidance: they need --observe subsample:S|pool:S`);
    }
  } else {
    if (stage !== "dm") {
      throw new Error(
        `--observe needs --dm: a deterministic ${flag.slice(2)} cannot be guided by observations`,
      );
    }
    const noise = o.obsNoise ?? 0.1, gmres = o.gmres ?? 1;
    if (!(Number.isFinite(noise) && noise >= 0)) {
      throw new Error(`--obs-noise must be a finite number ≥ 0, got ${noise}`);
    }
    if (!Number.isInteger(gmres) || gmres < 0) {
      throw new Error(`--gmres must be a non-negative integer (0: observe without guiding), got ${gmres}`);
    }
    let op: ObservationOperator;
    try {
      op = parseObservation(o.observe, noise);
    } catch (e) {
      throw new Error(`--observe: ${(e as Error).message}`);
    }
    if (op.factor < 1) throw new Error(`--observe ${o.observe}: the factor must be ≥ 1`);
    obs = { observe: `${op.kind}:${op.factor}`, noise, gmres, op };
  }
  return {
    stage,
    run,
    config,
    ae: stage === "pixel" ? null : o.ae!,
    aeConfig,
    data,
    K,
    c,
    steps: o.steps ?? 16,
    seed: o.seed ?? 0,
    out: o.out ?? join(run, "emulate"),
    obs,
  };
}

/** The Well spec of an output file: the source's layout, time at the emulated steps, `n` trajectories. */
async function outputSpec(info: WellFileInfo, traj: number, steps: number[], n: number) {
  const coordinates = await withH5(info.path, (f) =>
    info.spatialDims.map((dim, d) => {
      try {
        return Float32Array.from(readNumbers(f.get(`dimensions/${dim}`) as never));
      } catch {
        return Float32Array.from(
          { length: info.spatialShape[d] },
          (_, i) => (i + 0.5) / info.spatialShape[d],
        );
      }
    }));
  const NAMES = ["WALL", "OPEN", "PERIODIC"] as const;
  // The writer marks both edges of a dim; a dim whose edges differ keeps its lower edge's type.
  const boundaryConditions: WellBoundarySpec[] = info.spatialDims.map((dim, d) => {
    const type = NAMES[info.boundaryConditions[d][0]] ?? "OPEN";
    return { name: `${dim}_${type.toLowerCase()}`, type, dim };
  });
  const byGroup = (g: string) => info.fields.filter((f) => f.group === g).map((f) => f.name);
  return {
    datasetName: info.datasetName,
    gridType: info.gridType,
    spatialDims: info.spatialDims,
    spatialShape: info.spatialShape,
    coordinates,
    nTrajectories: n,
    time: Float32Array.from(steps, (s) => info.time?.[s] ?? s),
    boundaryConditions,
    parameters: constantScalars(info, traj),
    t0Fields: byGroup("t0_fields"),
    t1Fields: byGroup("t1_fields"),
    t2Fields: byGroup("t2_fields"),
  };
}

/** (T, C, S) channels-first frames → the writer's per-field arrays (T, S[, D[, D]]), channels last. */
function toFields(x: Float32Array, info: WellFileInfo, T: number): Record<string, Float32Array> {
  const C = info.channels.length, S = info.spatialShape.reduce((a, b) => a * b, 1);
  const out: Record<string, Float32Array> = {};
  let c0 = 0;
  for (const f of info.fields) {
    const n = f.channels.length, a = new Float32Array(T * S * n);
    for (let t = 0; t < T; t++) {
      for (let k = 0; k < n; k++) {
        const src = (t * C + c0 + k) * S;
        for (let s = 0; s < S; s++) a[(t * S + s) * n + k] = x[src + s];
      }
    }
    out[f.name] = a;
    c0 += n;
  }
  return out;
}

/** A root attribute: string, int64 (number or number[]) or float64 (`{ f64 }`, scalar or array). */
type Attr = string | number | number[] | { f64: number | number[] };

/** Writes a Well file under `tmp`, then adds the provenance attributes (h5wasm append mode). */
async function writeWell(
  tmp: string,
  spec: Awaited<ReturnType<typeof outputSpec>>,
  info: WellFileInfo,
  trajectories: Float32Array[],
  attrs: Record<string, Attr>,
): Promise<void> {
  await ensureH5();
  const w = WellFileWriter.create(tmp, spec);
  try {
    for (const x of trajectories) w.writeTrajectory(toFields(x, info, spec.time.length));
    w.close();
  } catch (e) {
    w.abort();
    throw e;
  }
  const f = new h5wasm.File(tmp, "a");
  try {
    for (const [k, v] of Object.entries(attrs)) {
      if (typeof v === "string") f.create_attribute(k, v);
      else if (!Array.isArray(v) && typeof v === "object") {
        if (typeof v.f64 === "number") f.create_attribute(k, new Float64Array([v.f64]), [], "<d");
        else f.create_attribute(k, Float64Array.from(v.f64), [v.f64.length], "<d");
      } else if (typeof v === "number") f.create_attribute(k, new BigInt64Array([BigInt(v)]), [], "<q");
      else f.create_attribute(k, BigInt64Array.from(v, BigInt), [v.length], "<q");
    }
  } finally {
    f.close();
  }
}

/** (N, C, n, S) window read back → per-entry (n, C, S) blocks written into dst[entry] at frame `first`. */
function scatterFrames(w: Float32Array, shape: readonly number[], dst: Float32Array[], first: number): void {
  const [N, C, n] = shape, S = w.length / (N * C * n);
  for (let e = 0; e < N; e++) {
    for (let ch = 0; ch < C; ch++) {
      for (let t = 0; t < n; t++) {
        const src = ((e * C + ch) * n + t) * S;
        dst[e].set(w.subarray(src, src + S), ((first + t) * C + ch) * S);
      }
    }
  }
}

/** Runs the emulation; see the file header for what it writes. */
export async function emulate(o: EmulateOptions): Promise<EmulateResult> {
  const t0 = performance.now(), log = o.onLog ?? (() => {});
  const p = await plan(o);
  const { c, K, config } = p, L = config.window, stride = config.stride;
  const split = o.split ?? "test";
  const opened = await openNormalizedSplit(p.data, split, { nSteps: 1 });
  if (!opened) throw new Error(`${p.data} has no ${split} split (expected data/${split}/*.hdf5)`);
  const { ds, normalizer } = opened;
  let model: Awaited<ReturnType<typeof loadEmulator>>["model"] | null = null, ae: Autoencoder | null = null;
  try {
    // Shapes of data, autoencoder and emulator.
    const sp = ds.spatialShape, C = ds.channels.length, S = sp.reduce((a, b) => a * b, 1);
    if (p.aeConfig) {
      const f = downFactor(p.aeConfig), grid = sp.map((n) => n / f);
      if (p.aeConfig.pixelChannels !== C || sp.some((n) => n % f !== 0)) {
        throw new Error(
          `${p.data} has ${C} channels of ${
            sp.join("×")
          }, the autoencoder ${p.ae} takes ${p.aeConfig.pixelChannels}` +
            ` channels with sizes divisible by ${f}`,
        );
      }
      if (config.grid && grid.join() !== config.grid.join()) {
        throw new Error(
          `mismatched latent shapes: ${p.ae} maps ${sp.join("×")} to ${
            grid.join("×")
          } latents, ${p.run} was ` +
            `trained on ${config.grid.join("×")}`,
        );
      }
    } else if (config.channels !== C || (config.grid && config.grid.join() !== sp.join())) {
      throw new Error(
        `${p.run} was trained on ${config.channels} channels of ${
          config.grid?.join("×")
        }, ${p.data} has ${C} ` +
          `of ${sp.join("×")}`,
      );
    }
    if (p.obs && sp.some((n) => n % p.obs!.op.factor !== 0)) {
      throw new Error(
        `--observe ${p.obs.observe}: every spatial size of ${p.data} (${
          sp.join("×")
        }) must be divisible by ${p.obs.op.factor}`,
      );
    }
    const all = ds.trajectories();
    let chosen = all;
    if (o.trajectory !== undefined) {
      if (!(Number.isInteger(o.trajectory) && o.trajectory >= 0 && o.trajectory < all.length)) {
        throw new Error(
          `--trajectory ${o.trajectory} is out of range: the ${split} split has ${all.length} (0…${
            all.length - 1
          })`,
        );
      }
      chosen = [all[o.trajectory]];
    } else if (o.trajectories !== undefined) {
      if (o.trajectories > all.length) {
        throw new Error(`--trajectories ${o.trajectories}: the ${split} split has only ${all.length}`);
      }
      chosen = all.slice(0, o.trajectories);
    }
    const start = o.start ?? (c - 1) * stride, first = start - (c - 1) * stride;
    const nSteps = Math.min(...chosen.map((t) => t.nSteps));
    if (first < 0 || start >= nSteps) {
      throw new Error(
        `--start ${start}: the ${c} context frame(s) every ${stride} steps need (c − 1)·Δ = ${
          (c - 1) * stride
        } ≤ ` +
          `start < ${nSteps} (the trajectory's steps)`,
      );
    }
    const available = Math.floor((nSteps - 1 - first) / stride) + 1;
    const T = o.horizon ?? available;
    if (T > available) {
      throw new Error(
        `--horizon ${T}: from step ${first} every ${stride} steps the trajectories hold only ${available} frames`,
      );
    }
    if (T <= c) throw new Error(`--horizon ${T} must exceed the ${c} context frame(s)`);
    const leadTimes = Array.from({ length: T }, (_, t) => (t - c + 1) * stride);
    const rawSteps = leadTimes.map((l) => start + l);
    const windows = 1 + Math.max(0, Math.ceil((T - L) / (L - c)));
    await Deno.mkdir(p.out, { recursive: true });

    await initDevice();
    const loaded = await loadEmulator(p.run);
    model = loaded.model;
    if (p.ae) ae = await loadAutoencoder(p.ae);
    const labelDim = config.model.labelDim;
    log(
      `emulating ${chosen.length} trajector${
        chosen.length === 1 ? "y" : "ies"
      } of ${p.data} (${split}) with ${p.run}` +
        ` (${p.stage}), ${K} member(s), c = ${c}, L = ${L}, Δ = ${stride}, ${T} frames (${windows} windows each)` +
        (p.obs ? `, ${observationNote(p.obs)}` : ""),
    );
    const result: EmulateResult = {
      out: p.out,
      files: [],
      members: K,
      context: c,
      horizon: T,
      leadTimes,
      seconds: 0,
      observation: p.obs ? { observe: p.obs.observe, noise: p.obs.noise, gmres: p.obs.gmres } : null,
    };
    let done = 0;
    const total = windows * chosen.length;
    for (const [n, tr] of chosen.entries()) {
      const info = ds.files[tr.fileIndex];
      const truth = ds.readFrames(tr.fileIndex, tr.trajectory, first, T, stride); // (T, C, H, W) physical
      // Context (1, C, c, H, W), normalised.
      const x = normalizer.normalize(truth.slice(0, c * C * S), S);
      const ctxHost = new Float32Array(c * C * S);
      for (let t = 0; t < c; t++) {
        for (let ch = 0; ch < C; ch++) {
          ctxHost.set(x.subarray((t * C + ch) * S, (t * C + ch + 1) * S), (ch * c + t) * S);
        }
      }
      let theta: Float32Array | null = null;
      if (labelDim > 0) {
        theta = thetaVector(constantScalars(info, tr.trajectory), info.boundaryConditions);
        if (theta.length !== labelDim) {
          throw new Error(`${info.path} gives θ of ${theta.length} values, ${p.run} takes ${labelDim}`);
        }
      }
      const { context, label } = scope(() => {
        const px = Tensor.fromData(ctxHost, [1, C, c, ...sp]);
        return {
          context: (ae ? encodeWindow(ae, px) : px).keep(),
          label: theta ? Tensor.fromData(theta, [1, labelDim]).keep() : null,
        };
      });
      const seed = deriveSeed(p.seed, tr.fileIndex, tr.trajectory);
      const geometry = { window: L, context: c, stride, horizon: T };
      // Observations y of every window's generated frames (1, n·m), standardized, drawn before the rollout.
      const truthStd = p.obs ? normalizer.normalize(truth.slice(), S) : null; // (T, C, S)
      const ys = p.obs ? observationsOf(p.obs.op, truthStd!, geometry, windows, [C, ...sp], seed) : [];
      const wm: WindowModel & { dispose?: () => void } = p.stage !== "dm"
        ? solverWindow(model as Solver | PixelSolver)
        : p.obs && p.obs.gmres > 0
        ? guidedDiffusionWindow(model as Denoiser, {
          seed,
          steps: p.steps,
          geometry,
          decode: (z) => ae!.decode(z, { training: false }),
          observe: (x) => p.obs!.op.apply(x),
          observations: (k) => ys[k] ?? null,
          noise: p.obs.noise,
          iterations: p.obs.gmres,
        })
        : diffusionWindow(model as Denoiser, { seed, steps: p.steps });
      const members = Array.from({ length: K }, () => new Float32Array(T * C * S));
      let observation: { residual: number[]; truthResidual: number } | undefined;
      const r = new Rollout(wm, context, label, { ...geometry, members: K });
      try {
        for (let ch = r.next(); ch; ch = r.next()) {
          const px = scope(() => (ae ? decodeWindow(ae, ch.frames) : ch.frames).keep());
          const host = await px.read();
          scatterFrames(host, px.shape, members, ch.first);
          if (px !== ch.frames) px.dispose();
          ch.frames.dispose();
          o.onProgress?.(++done, total, `trajectory ${n + 1}/${chosen.length}`);
        }
        if (p.obs) observation = await observationResiduals(p.obs.op, ys, members, truthStd!, c, [C, ...sp]);
      } finally {
        r.dispose();
        wm.dispose?.();
        context.dispose();
        label?.dispose();
        ys.forEach((y) => y?.dispose());
      }
      for (const m of members) normalizer.denormalize(m, S);
      result.files.push(
        await writeOutputs(p, info, tr.trajectory, {
          truth,
          members,
          rawSteps,
          leadTimes,
          start,
          o,
          observation,
        }),
      );
    }
    result.seconds = (performance.now() - t0) / 1000;
    const settings = join(p.out, "emulate.json");
    await Deno.writeTextFile(
      `${settings}.part-${Deno.pid}`,
      JSON.stringify(
        {
          stage: p.stage,
          emulator: p.run,
          autoencoder: p.ae,
          data: p.data,
          split,
          members: K,
          context: c,
          window: L,
          stride,
          start,
          horizon: T,
          steps: p.stage === "dm" ? p.steps : null,
          seed: p.seed,
          lead_steps: leadTimes,
          observe: p.obs?.observe ?? null,
          obs_noise: p.obs?.noise ?? null,
          gmres: p.obs?.gmres ?? null,
          files: result.files,
        },
        null,
        2,
      ) + "\n",
    );
    await Deno.rename(`${settings}.part-${Deno.pid}`, settings);
    return result;
  } finally {
    model?.dispose();
    ae?.dispose();
    ds.close();
  }
}

/** One trajectory's files, written under temp names and renamed together. */
async function writeOutputs(
  p: Plan,
  info: WellFileInfo,
  traj: number,
  d: {
    truth: Float32Array;
    members: Float32Array[];
    rawSteps: number[];
    leadTimes: number[];
    start: number;
    o: EmulateOptions;
    observation?: { residual: number[]; truthResidual: number };
  },
): Promise<EmulateResult["files"][number]> {
  const base = join(p.out, `${basename(info.path, extname(info.path))}_traj${traj}`);
  const names = {
    prediction: `${base}.hdf5`,
    truth: `${base}_truth.hdf5`,
    png: `${base}.png`,
    gif: `${base}.gif`,
  };
  const tmp = (f: string) => `${f}.part-${Deno.pid}`;
  const common = {
    source_file: info.path,
    emulator: p.run,
    emulator_stage: p.stage,
    autoencoder: p.ae ?? "",
    context: p.c,
    stride: p.config.stride,
    start: d.start,
    lead_steps: d.leadTimes,
    source_steps: d.rawSteps,
  };
  const written: [string, string][] = [];
  try {
    const K = d.members.length;
    await writeWell(tmp(names.prediction), await outputSpec(info, traj, d.rawSteps, K), info, d.members, {
      ...common,
      source_trajectory: Array(K).fill(traj),
      member: Array.from({ length: K }, (_, k) => k),
      seed: p.seed,
      sampler_steps: p.stage === "dm" ? p.steps : 0,
      ...(p.obs
        ? {
          observe: p.obs.observe,
          observation_noise: { f64: p.obs.noise },
          gmres_iterations: p.obs.gmres,
          observation_residual: { f64: d.observation!.residual },
          observation_truth_residual: { f64: d.observation!.truthResidual },
        }
        : {}),
    });
    written.push([tmp(names.prediction), names.prediction]);
    await writeWell(tmp(names.truth), await outputSpec(info, traj, d.rawSteps, 1), info, [d.truth], {
      ...common,
      source_trajectory: [traj],
      member: [-1],
    });
    written.push([tmp(names.truth), names.truth]);
    const figures: string[] = [];
    if (d.o.figures ?? true) {
      const fig: EmulationFigureData = {
        truth: d.truth,
        members: d.members,
        channels: info.channels,
        spatialShape: info.spatialShape,
        leadTimes: d.leadTimes,
        context: p.c,
        title: `${basename(p.run)} (${p.stage}) · ${
          basename(info.path)
        } trajectory ${traj} · K = ${K}, c = ${p.c}`,
        observation: p.obs
          ? {
            kind: p.obs.op.kind,
            factor: p.obs.op.factor,
            note: `${observationNote(p.obs, true)}; rms |A(x) - y| member 0 ${
              d.observation!.residual[0].toPrecision(3)
            }, truth ${d.observation!.truthResidual.toPrecision(3)}`,
          }
          : undefined,
      };
      await writeEmulationStrip(tmp(names.png), fig);
      written.push([tmp(names.png), names.png]);
      await writeEmulationAnimation(tmp(names.gif), fig);
      written.push([tmp(names.gif), names.gif]);
      figures.push(names.png, names.gif);
    }
    for (const [from, to] of written) await Deno.rename(from, to);
    return {
      source: info.path,
      trajectory: traj,
      prediction: names.prediction,
      truth: names.truth,
      figures,
      ...(d.observation ? { observation: d.observation } : {}),
    };
  } catch (e) {
    for (const [from] of written) await Deno.remove(from).catch(() => {});
    throw e;
  }
}

/** "guided by subsample:4 (σ_y = 0.1, GMRES 1)", or "observed by …, not guided" with 0 iterations. */
function observationNote(o: ObservationSettings, ascii = false): string {
  const sy = ascii ? "sigma_y" : "σ_y";
  return o.gmres > 0
    ? `guided by ${o.observe} (${sy} = ${o.noise}, GMRES ${o.gmres})`
    : `observed by ${o.observe} (${sy} = ${o.noise}), not guided`;
}

/**
 * y of every window: the true standardized frames [start, end) it generates (generatedFrames) observed with
 * noise, y = A(x) + σ_y·η, as persistent (1, n·m) tensors (frame by frame, each frame's C·… values in turn, as
 * guidance's observeFrames lays them out); η from one generator seeded by (trajectory seed, 1), drawn window by
 * window. null for a window with no frame within the horizon.
 */
function observationsOf(
  op: ObservationOperator,
  truth: Float32Array,
  geometry: { window: number; context: number; horizon: number },
  windows: number,
  frame: number[],
  seed: number,
): (Tensor | null)[] {
  const gen = new Generator(deriveSeed(seed, 1));
  const size = frame.reduce((a, b) => a * b, 1);
  return Array.from({ length: windows }, (_, k) => {
    const { start, end } = generatedFrames(geometry, k);
    if (end <= start) return null;
    return scope(() => {
      const x = Tensor.fromData(truth.subarray(start * size, end * size), [end - start, ...frame]);
      return reshape(observe(op, x, gen), [1, -1]).keep();
    });
  });
}

/**
 * ‖A(x̂) − y‖/√n over the generated frames c … T − 1 of every member (standardized (T, C, …) host arrays) and
 * of the truth, against the windows' observations (which tile those frames in order).
 */
async function observationResiduals(
  op: ObservationOperator,
  ys: (Tensor | null)[],
  members: Float32Array[],
  truth: Float32Array,
  c: number,
  frame: number[],
): Promise<{ residual: number[]; truthResidual: number }> {
  const size = frame.reduce((a, b) => a * b, 1), T = truth.length / size;
  const parts: Float32Array[] = [];
  for (const y of ys) if (y) parts.push(await y.read());
  const y = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  parts.reduce((off, p) => (y.set(p, off), off + p.length), 0);
  const rms = async (x: Float32Array) => {
    const t = scope(() =>
      reshape(op.apply(Tensor.fromData(x.subarray(c * size, T * size), [T - c, ...frame])), [-1]).keep()
    );
    try {
      const a = await t.read();
      if (a.length !== y.length) {
        throw new Error(`observation residual: ${a.length} values for ${y.length} observations`);
      }
      let s = 0;
      for (let i = 0; i < a.length; i++) s += (a[i] - y[i]) ** 2;
      return Math.sqrt(s / a.length);
    } finally {
      t.dispose();
    }
  };
  const residual: number[] = [];
  for (const m of members) residual.push(await rms(m));
  return { residual, truthResidual: await rms(truth) };
}
