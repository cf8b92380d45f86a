/**
 * `deno task eval`: the evaluation of method §7 over test trajectories. For every method given (latent diffusion
 * with K members, latent solver, pixel solver) and every context size c, the rollouts of eval/emulate_run.ts are
 * compared with the truth in physical units (eval/compare.ts, the paper's and The Well's metrics per field and
 * lead time); persistence (the last context frame repeated) and the autoencoder's reconstruction of the true
 * frames are evaluated alongside as references. Writes to `out`:
 *   metrics.jsonl   one row per method × trajectory × context × field × lead time
 *   summary.json    the aggregates the report is made of (per method × lead-time window), for scripts
 *   report.md       tables like the paper's (plain means per method × window), the findings, the figures
 *   figures/*.png   VRMSE and spread–skill against lead time, spectral band errors, power spectra
 *   rollouts/       the predicted and true trajectories as Well files, with strips and animations
 *
 * Lead time ℓ of a frame is in raw steps of the dataset, (t − c + 1)·Δ; ℓ ≤ 0 (context) is left out of every
 * aggregate, as in the paper.
 */
import { basename, join } from "node:path";
import { initDevice, noGrad, scope, Tensor } from "../engine/index.ts";
import { openNormalizedSplit } from "../data/open_split.ts";
import type { Split } from "../data/well_dataset.ts";
import { WellDataset } from "../data/well_dataset.ts";
import { compareWellFiles } from "./compare.ts";
import { emulate, type EmulateResult } from "./emulate_run.ts";
import { evaluate as metricsOf, isotropicPowerSpectrum } from "./metrics.ts";
import { linePanelsPng, type LineSeries, writePng } from "./plots.ts";
import { loadAutoencoder } from "./runs.ts";
import { parseObservation } from "../models/observe.ts";
import { isDiffusion, writeReport } from "./report.ts";

/** `diffusion guided by pool:8`: the diffusion emulator guided by observations of the truth (method §8). */
export type MethodKey =
  | "diffusion"
  | `diffusion guided by ${string}`
  | "latent solver"
  | "pixel solver"
  | "persistence"
  | "autoencoder";

export interface EvaluateOptions {
  ae: string;
  dm?: string;
  solver?: string;
  pixelSolver?: string;
  /** Well dataset (default: the one the autoencoder was trained on). */
  data?: string;
  split?: Split;
  /** The first N trajectories of the split. */
  trajectories?: number;
  /** Diffusion ensemble size K. */
  members?: number;
  /** Context sizes c to evaluate. */
  contexts?: number[];
  /** Sampler steps. */
  steps?: number;
  /**
   * Also roll the diffusion emulator out guided by observations of the true trajectory, once per operator
   * ("subsample:8", "pool:8"; method §8): the same seed as the unguided rollout, so the rows differ by the
   * guidance alone.
   */
  guided?: string[];
  /** σ_y of the observations (default 0.1) and GMRES iterations (default 1) of the guided rollouts. */
  obsNoise?: number;
  gmres?: number;
  seed?: number;
  out: string;
  /** A label for the report (e.g. the run name) and extra lines for its header. */
  title?: string;
  notes?: string[];
  onLog?: (line: string) => void;
  onProgress?: (done: number, total: number, info: string) => void;
}

/** One metrics row (metrics.jsonl). */
export interface MetricRow {
  method: MethodKey;
  trajectory: string;
  context: number;
  field: string;
  lead_time: number;
  [metric: string]: string | number | null;
}

export interface EvaluationSummary {
  out: string;
  report: string;
  rows: number;
  windows: { name: string; lo: number; hi: number }[];
  /** method → window → metric → plain mean over rows (fields, trajectories, contexts). */
  table: Record<string, Record<string, Record<string, number>>>;
  /** method → per lead time (mean over fields, trajectories, contexts) VRMSE and spread/skill. */
  curves: Record<string, { lead: number[]; VRMSE: number[]; spread_skill: number[] }>;
  seconds: number;
}

const PAPER_KEYS = ["VRMSE", "RMSE", "NRMSE", "spread", "spread_skill"];
const BAND_KEYS = ["spectrum_error_low", "spectrum_error_mid", "spectrum_error_high", "spectrum_error_sub"];
export const TABLE_METRICS = [
  "VRMSE",
  "spread_skill",
  "spectrum_error_low",
  "spectrum_error_mid",
  "spectrum_error_high",
];

/**
 * Lead-time windows of §7 by dataset (Euler ℓ < 20, < 60, else; RB the same; TGC < 10, < 30, else); for other data
 * (the built-in dataset's short trajectories) the distinct positive lead times split into thirds.
 */
export function leadWindows(dataset: string, leads: number[]): { name: string; lo: number; hi: number }[] {
  const w = (a: number, b: number) => [
    { name: `1–${a - 1}`, lo: 1, hi: a - 1 },
    { name: `${a}–${b - 1}`, lo: a, hi: b - 1 },
    { name: `${b}+`, lo: b, hi: Infinity },
  ];
  const ls = [...new Set(leads.filter((l) => l > 0))].sort((a, b) => a - b);
  const maxLead = ls[ls.length - 1] ?? 0;
  if (/^euler/.test(dataset) && maxLead >= 60) return w(20, 60);
  if (/^rayleigh/.test(dataset)) return w(20, 60);
  if (/^turbulence_gravity/.test(dataset)) return w(10, 30);
  if (ls.length < 3) return [{ name: `1–${maxLead}`, lo: 1, hi: Infinity }];
  const cut = (k: number) => ls[Math.floor((k * ls.length) / 3)];
  const [a, b] = [cut(1), cut(2)];
  return [
    { name: `${ls[0]}–${ls[ls.indexOf(a) - 1]}`, lo: 1, hi: a - 1 },
    { name: `${a}–${ls[ls.indexOf(b) - 1]}`, lo: a, hi: b - 1 },
    { name: `${b}–${maxLead}`, lo: b, hi: Infinity },
  ];
}

function mean(xs: number[]): number {
  const f = xs.filter(Number.isFinite);
  return f.length ? f.reduce((a, b) => a + b, 0) / f.length : NaN;
}

/** Frames of one trajectory of a Well file, physical units (T, C, …). */
async function readTrajectory(
  path: string,
  trajectory: number,
): Promise<{ x: Float32Array; T: number; C: number; spatial: number[]; fields: string[] }> {
  const ds = await WellDataset.open(path, { nSteps: 1 });
  try {
    const T = ds.files[0].nSteps;
    return {
      x: ds.readFrames(0, trajectory, 0, T),
      T,
      C: ds.channels.length,
      spatial: ds.spatialShape,
      fields: ds.channels,
    };
  } finally {
    ds.close();
  }
}

function rowsOf(
  method: MethodKey,
  trajectory: string,
  context: number,
  fields: string[],
  leads: number[],
  paper: Record<string, Record<string, number[]>>,
  well: Record<string, Record<string, number[]>>,
): MetricRow[] {
  const rows: MetricRow[] = [];
  leads.forEach((lead, t) => {
    for (const f of fields) {
      const row: MetricRow = { method, trajectory, context, field: f, lead_time: lead };
      for (const [k, v] of Object.entries(paper)) row[k] = num(v[f]?.[t]);
      for (const [k, v] of Object.entries(well)) row[`well_${k}`] = num(v[f]?.[t]);
      rows.push(row);
    }
  });
  return rows;
}

const num = (v: number | undefined) => (v === undefined || !Number.isFinite(v) ? null : v);

/** (T·C) row-major metric arrays → metric → field → per time. */
function byField(m: Record<string, Float64Array>, T: number, fields: string[]) {
  const out: Record<string, Record<string, number[]>> = {};
  for (const [k, v] of Object.entries(m)) {
    out[k] = Object.fromEntries(
      fields.map((f, c) => [f, Array.from({ length: T }, (_, t) => v[t * fields.length + c])]),
    );
  }
  return out;
}

export async function runEvaluation(o: EvaluateOptions): Promise<EvaluationSummary> {
  const t0 = performance.now(), log = o.onLog ?? (() => {});
  const contexts = o.contexts ?? [1];
  const methods: [MethodKey, Partial<Record<"dm" | "solver" | "pixelSolver" | "observe", string>>][] = [];
  if (o.dm) methods.push(["diffusion", { dm: o.dm }]);
  if (o.guided?.length && !o.dm) throw new Error(`guided evaluation needs --dm (a diffusion run to guide)`);
  for (const spec of o.guided ?? []) {
    try {
      parseObservation(spec, o.obsNoise ?? 0.1);
    } catch (e) {
      throw new Error(`--guided: ${(e as Error).message}`);
    }
    methods.push([`diffusion guided by ${spec}`, { dm: o.dm, observe: spec }]);
  }
  if (o.solver) methods.push(["latent solver", { solver: o.solver }]);
  if (o.pixelSolver) methods.push(["pixel solver", { pixelSolver: o.pixelSolver }]);
  if (!methods.length) throw new Error(`eval needs at least one of --dm, --solver, --pixel-solver`);
  if (contexts.some((c) => !Number.isInteger(c) || c < 1)) throw new Error(`contexts must be integers ≥ 1`);
  await initDevice();
  await Deno.mkdir(join(o.out, "figures"), { recursive: true });
  const rows: MetricRow[] = [];
  const rollouts: Record<string, EmulateResult> = {};
  /** Rollout folder key → method name (figure legends). */
  const methodOf: Record<string, string> = {};
  const total = methods.length * contexts.length;
  let done = 0, dataset = "", fields: string[] = [];
  for (const [method, run] of methods) {
    for (const c of contexts) {
      const key = `${method.replaceAll(" ", "_").replace(":", "")}_c${c}`;
      log(`rollouts: ${method}, context ${c}`);
      const res = await emulate({
        ae: method === "pixel solver" ? undefined : o.ae,
        ...run,
        data: o.data,
        split: o.split ?? "test",
        trajectories: o.trajectories ?? 4,
        members: isDiffusion(method) ? o.members ?? 8 : 1,
        ...(run.observe ? { obsNoise: o.obsNoise ?? 0.1, gmres: o.gmres ?? 1 } : {}),
        context: c,
        steps: o.steps ?? 16,
        seed: o.seed ?? 0,
        out: join(o.out, "rollouts", key),
        figures: c === contexts[0],
        onLog: log,
        onProgress: (d, n, info) => o.onProgress?.(done + d / n, total, `${method} c=${c} ${info}`),
      });
      rollouts[key] = res;
      methodOf[key] = method;
      for (const f of res.files) {
        const cmp = await compareWellFiles(f.prediction, f.truth);
        fields = cmp.fields;
        const name = `${basename(f.source)}#${f.trajectory}`;
        rows.push(...rowsOf(method, name, c, cmp.fields, res.leadTimes, cmp.paper, cmp.well));
        if (method === methods[0][0]) {
          // References on the same true frames: persistence of the last context frame, the AE's reconstruction.
          const truth = await readTrajectory(f.truth, 0);
          dataset ||= await WellDataset.open(f.truth, { nSteps: 1 }).then((d) => (d.close(), d.datasetName));
          const S = truth.spatial.reduce((a, b) => a * b, 1), frame = truth.C * S;
          const persist = new Float32Array(truth.x.length);
          for (let t = 0; t < truth.T; t++) {
            persist.set(truth.x.subarray((c - 1) * frame, c * frame), t * frame);
          }
          const shape = { K: 1, T: truth.T, C: truth.C, spatial: truth.spatial };
          const p = await metricsOf(truth.x, persist, shape);
          rows.push(
            ...rowsOf(
              "persistence",
              name,
              c,
              truth.fields,
              res.leadTimes,
              byField(p.paper, truth.T, truth.fields),
              byField(p.well, truth.T, truth.fields),
            ),
          );
          if (c === contexts[0]) {
            const recon = await reconstruct(o.ae, o.data, o.split ?? "test", truth);
            const r = await metricsOf(truth.x, recon, shape);
            rows.push(
              ...rowsOf(
                "autoencoder",
                name,
                0,
                truth.fields,
                res.leadTimes,
                byField(r.paper, truth.T, truth.fields),
                byField(r.well, truth.T, truth.fields),
              ),
            );
          }
        }
      }
      done++;
    }
  }
  const tmp = join(o.out, `metrics.jsonl.tmp-${Deno.pid}`);
  await Deno.writeTextFile(tmp, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
  await Deno.rename(tmp, join(o.out, "metrics.jsonl"));

  const windows = leadWindows(dataset, rows.map((r) => r.lead_time));
  const summary = aggregate(rows, windows);
  const figures = await drawFigures(o.out, rows, fields, rollouts, methodOf, contexts[0]);
  const seconds = (performance.now() - t0) / 1000;
  const result: EvaluationSummary = {
    out: o.out,
    report: join(o.out, "report.md"),
    rows: rows.length,
    windows,
    table: summary.table,
    curves: summary.curves,
    seconds,
  };
  await Deno.writeTextFile(join(o.out, "summary.json"), JSON.stringify(result, null, 2) + "\n");
  await writeReport(result, {
    title: o.title ?? "evaluation",
    notes: [
      ...(o.notes ?? []),
      ...(o.guided?.length
        ? [
          `Guided rollouts (${
            o.guided.join(", ")
          }): every generated frame observed from the true trajectory in ` +
          `standardized units with σ_y = ${o.obsNoise ?? 0.1}, MMPS with ${
            o.gmres ?? 1
          } GMRES iteration(s), the ` +
          `same seed as the unguided rollout (method §8).`,
        ]
        : []),
    ],
    dataset,
    fields,
    contexts,
    members: o.members ?? 8,
    trajectories: o.trajectories ?? 4,
    steps: o.steps ?? 16,
    figures,
    rollouts: Object.fromEntries(
      Object.entries(rollouts).map(([k, r]) => [k, r.files.flatMap((f) => f.figures)]),
    ),
  });
  log(`evaluation: ${rows.length} metric rows in ${seconds.toFixed(0)} s → ${result.report}`);
  return result;
}

/** The autoencoder's reconstruction of true frames (physical units in and out). */
async function reconstruct(
  aeRun: string,
  data: string | undefined,
  split: Split,
  truth: { x: Float32Array; T: number; C: number; spatial: number[] },
): Promise<Float32Array> {
  const source = data ?? JSON.parse(await Deno.readTextFile(join(aeRun, "config.json"))).data;
  const opened = await openNormalizedSplit(source, split, { nSteps: 1 });
  if (!opened) throw new Error(`${source} has no ${split} split`);
  const ae = await loadAutoencoder(aeRun);
  try {
    const S = truth.spatial.reduce((a, b) => a * b, 1);
    const x = opened.normalizer.normalize(Float32Array.from(truth.x), S);
    const out = new Float32Array(x.length), per = truth.C * S, B = 8;
    for (let t0 = 0; t0 < truth.T; t0 += B) {
      const n = Math.min(B, truth.T - t0);
      const y = scope(() =>
        noGrad(() =>
          ae.forward(Tensor.fromData(x.subarray(t0 * per, (t0 + n) * per), [n, truth.C, ...truth.spatial]), {
            training: false,
          }).xhat.keep()
        )
      );
      out.set(await y.read(), t0 * per);
      y.dispose();
    }
    return opened.normalizer.denormalize(out, S);
  } finally {
    ae.dispose();
    opened.ds.close();
  }
}

function aggregate(rows: MetricRow[], windows: { name: string; lo: number; hi: number }[]) {
  const table: EvaluationSummary["table"] = {};
  const curves: EvaluationSummary["curves"] = {};
  const methods = [...new Set(rows.map((r) => r.method))];
  for (const m of methods) {
    const mine = rows.filter((r) => r.method === m && r.lead_time > 0);
    table[m] = {};
    for (const w of windows) {
      const inW = mine.filter((r) => r.lead_time >= w.lo && r.lead_time <= w.hi);
      table[m][w.name] = Object.fromEntries(
        [...PAPER_KEYS, ...BAND_KEYS].map((k) => [k, mean(inW.map((r) => r[k] as number))]),
      );
    }
    table[m].all = Object.fromEntries(
      [...PAPER_KEYS, ...BAND_KEYS].map((k) => [k, mean(mine.map((r) => r[k] as number))]),
    );
    const leads = [...new Set(mine.map((r) => r.lead_time))].sort((a, b) => a - b);
    curves[m] = {
      lead: leads,
      VRMSE: leads.map((l) => mean(mine.filter((r) => r.lead_time === l).map((r) => r.VRMSE as number))),
      spread_skill: leads.map((l) =>
        mean(mine.filter((r) => r.lead_time === l).map((r) => r.spread_skill as number))
      ),
    };
  }
  return { table, curves };
}

/** Mean over trajectories (and contexts) of a metric per method, field and lead time. */
function curve(rows: MetricRow[], method: MethodKey, field: string | null, metric: string) {
  const mine = rows.filter((r) =>
    r.method === method && r.lead_time > 0 && (field === null || r.field === field)
  );
  const leads = [...new Set(mine.map((r) => r.lead_time))].sort((a, b) => a - b);
  return {
    x: leads,
    y: leads.map((l) => mean(mine.filter((r) => r.lead_time === l).map((r) => r[metric] as number))),
  };
}

async function drawFigures(
  out: string,
  rows: MetricRow[],
  fields: string[],
  rollouts: Record<string, EmulateResult>,
  methodOf: Record<string, string>,
  context: number,
): Promise<Record<string, string>> {
  const methods = [...new Set(rows.map((r) => r.method))];
  const series = (metric: string, field: string | null, only?: MethodKey[]): LineSeries[] =>
    (only ?? methods).filter((m) => methods.includes(m)).map((m) => ({
      name: m,
      ...curve(rows, m, field, metric),
      dash: m === "persistence" || m === "autoencoder",
    }));
  const figs: Record<string, string> = {};
  const panels = (metric: string, yLabel: string, only?: MethodKey[], logY = false) =>
    [null, ...fields].map((f) => ({
      title: f ?? "mean over fields",
      xLabel: "lead time (raw steps)",
      yLabel,
      series: series(metric, f, only),
      logY,
    }));
  figs.vrmse = join("figures", "vrmse_vs_lead.png");
  await writePng(
    join(out, figs.vrmse),
    await linePanelsPng("VRMSE against lead time (physical units)", panels("VRMSE", "VRMSE"), 3),
  );
  if (methods.some(isDiffusion)) {
    figs.spread = join("figures", "spread_skill.png");
    await writePng(
      join(out, figs.spread),
      await linePanelsPng(
        "Spread / skill of the diffusion ensemble (1 = calibrated)",
        panels("spread_skill", "spread / skill", methods.filter(isDiffusion)),
        3,
      ),
    );
  }
  figs.bands = join("figures", "spectral_band_errors.png");
  await writePng(
    join(out, figs.bands),
    await linePanelsPng(
      "Relative power-spectrum error by band (mean over fields; 0 = exact spectrum)",
      ["low", "mid", "high"].map((b) => ({
        title: `${b} frequencies`,
        xLabel: "lead time (raw steps)",
        yLabel: "spectrum error",
        series: series(`spectrum_error_${b}`, null, methods.filter((m) => m !== "persistence")),
      })),
      3,
    ),
  );
  const spectra = await spectraFigure(out, rollouts, methodOf, context);
  if (spectra) figs.spectra = spectra;
  return figs;
}

/** Isotropic power spectra of truth and each method at the last lead time of the first trajectory. */
async function spectraFigure(
  out: string,
  rollouts: Record<string, EmulateResult>,
  methodOf: Record<string, string>,
  context: number,
): Promise<string | null> {
  const entries = Object.entries(rollouts).filter(([k, r]) => k.endsWith(`_c${context}`) && r.files.length);
  if (!entries.length) return null;
  const first = entries[0][1].files[0];
  const truth = await readTrajectory(first.truth, 0);
  const t = truth.T - 1, S = truth.spatial.reduce((a, b) => a * b, 1), frame = truth.C * S;
  const spectrum = async (x: Float32Array, K: number) => {
    const s = await isotropicPowerSpectrum(
      Tensor.fromData(x, [K, truth.C, ...truth.spatial]),
      truth.spatial.length,
    );
    const B = s.freq.length, avg = new Float64Array(truth.C * B);
    for (let k = 0; k < K; k++) {
      for (let i = 0; i < truth.C * B; i++) avg[i] += s.power[k * truth.C * B + i] / K;
    }
    return { freq: Array.from(s.freq), power: avg, B };
  };
  const series: Record<string, { freq: number[]; power: Float64Array; B: number }> = {};
  series.truth = await spectrum(truth.x.slice(t * frame, (t + 1) * frame), 1);
  for (const [key, r] of entries) {
    const f = r.files[0];
    const K = r.members;
    const x = new Float32Array(K * frame);
    for (let k = 0; k < K; k++) {
      x.set((await readTrajectory(f.prediction, k)).x.subarray(t * frame, (t + 1) * frame), k * frame);
    }
    series[methodOf[key]] = await spectrum(x, K);
  }
  const name = join("figures", "power_spectra.png");
  const lead = (t - context + 1) * (entries[0][1].leadTimes[1] - entries[0][1].leadTimes[0]);
  await writePng(
    join(out, name),
    await linePanelsPng(
      `Isotropic power spectra at lead time ${lead} (trajectory ${
        basename(first.source)
      }#${first.trajectory})`,
      truth.fields.map((f, c) => ({
        title: f,
        xLabel: "frequency (cycles / pixel)",
        yLabel: "power",
        logX: true,
        logY: true,
        series: Object.entries(series).map(([m, s]) => ({
          name: m,
          x: s.freq,
          y: Array.from(s.power.subarray(c * s.B, (c + 1) * s.B)),
        })),
      })),
      3,
    ),
  );
  return name;
}
