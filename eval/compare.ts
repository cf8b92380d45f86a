/**
 * Metrics between two files in The Well's layout: predictions (PRED, e.g. from another model, or our
 * `emulate`) against the ground truth (TRUTH), per field (channel) and per lead time, averaged over trajectories.
 *
 * Conventions and invariants:
 * - Ensembles: when PRED holds K·B trajectories and TRUTH holds B, the members of truth trajectory b are PRED
 *   trajectories b·K … b·K+K−1 (K = 1: one deterministic prediction per trajectory). Any other ratio is an error.
 * - The files must agree on channels (names and order), spatial dims, grid shape, grid coordinates (to 1e-5 of
 *   their extent) and the number of steps; every mismatch is a one-line Error naming both values.
 * - Lead time t is the step index of the files; `times` reports TRUTH's /dimensions/time values where it is
 *   shared by all trajectories, else the step indices.
 * - Values are plain means over trajectories of the per-trajectory numbers (as the_well and the paper's
 *   notebooks average per-sample metrics); The Well's metrics use the ensemble mean as the prediction.
 * - Memory: one trajectory's window of (K + 1)·steps·C·S floats is read at a time, `maxElements` bounding it.
 */
import { ensureH5, type H5File, openRead, readNumbers, requireDataset, requireGroup } from "../data/h5.ts";
import { readWellFileInfo, readWindowInto, type WellFileInfo } from "../data/well_file.ts";
import { evaluate, type MetricValues, PAPER_METRICS, WELL_METRICS } from "./metrics.ts";

export interface CompareOptions {
  /** Channel or field names to keep (a t1/t2 field name selects all its channels); default all. */
  fields?: string[];
  /** Bound on (K + 1)·steps·C·S floats read at once (default 2^25). */
  maxElements?: number;
  /** Awaited once the files are found compatible, before any GPU work (the CLI starts the device here). */
  beforeCompute?: () => Promise<void>;
  /** Called after each truth trajectory (progress). */
  onTrajectory?: (done: number, total: number) => void;
}

export interface Comparison {
  fields: string[];
  times: number[];
  members: number;
  trajectories: number;
  /** metric → field → one value per time. */
  well: Record<string, Record<string, number[]>>;
  paper: Record<string, Record<string, number[]>>;
}

interface Opened {
  f: H5File;
  info: WellFileInfo;
}

function coordinates(o: Opened, dim: string): Float64Array {
  return readNumbers(requireDataset(requireGroup(o.f, "dimensions", o.info.path), dim, o.info.path));
}

/** Throws one line for the first way PRED and TRUTH disagree. */
function checkCompatible(pred: Opened, truth: Opened): void {
  const p = pred.info, t = truth.info;
  const list = (xs: readonly (string | number)[]) => `[${xs.join(", ")}]`;
  if (p.channels.join() !== t.channels.join()) {
    throw new Error(`fields differ: PRED has ${list(p.channels)}, TRUTH has ${list(t.channels)}`);
  }
  if (p.spatialDims.join() !== t.spatialDims.join()) {
    throw new Error(`spatial dims differ: PRED has ${list(p.spatialDims)}, TRUTH has ${list(t.spatialDims)}`);
  }
  if (p.spatialShape.join() !== t.spatialShape.join()) {
    throw new Error(
      `grid shapes differ: PRED is ${p.spatialShape.join("×")}, TRUTH is ${t.spatialShape.join("×")}`,
    );
  }
  for (const dim of t.spatialDims) {
    const a = coordinates(pred, dim), b = coordinates(truth, dim);
    const extent = Math.max(...b) - Math.min(...b) || 1;
    const worst = a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
    if (a.length !== b.length || !(worst <= 1e-5 * extent)) {
      throw new Error(`grid coordinates of '${dim}' differ between PRED and TRUTH (max difference ${worst})`);
    }
  }
  if (p.nSteps !== t.nSteps) {
    throw new Error(`step counts differ: PRED has ${p.nSteps}, TRUTH has ${t.nSteps}`);
  }
  if (p.nTrajectories % t.nTrajectories !== 0) {
    throw new Error(
      `PRED has ${p.nTrajectories} trajectories, not a multiple of TRUTH's ${t.nTrajectories} (K members each)`,
    );
  }
}

/** Channel indices selected by `fields` (channel names, or field names expanding to their channels). */
function selectChannels(info: WellFileInfo, fields?: string[]): number[] {
  if (!fields?.length) return info.channels.map((_, i) => i);
  const out: number[] = [];
  for (const name of fields) {
    const field = info.fields.find((f) => f.name === name);
    const names = field ? field.channels : [name];
    for (const n of names) {
      const c = info.channels.indexOf(n);
      if (c < 0) throw new Error(`unknown field '${name}': the files have ${info.channels.join(", ")}`);
      if (!out.includes(c)) out.push(c);
    }
  }
  return out;
}

/** Reads steps [t0, t0+n) of trajectory b, keeping channels `sel`: (n, C', S). */
function readSteps(o: Opened, b: number, t0: number, n: number, sel: number[], S: number): Float32Array {
  const C = o.info.channels.length;
  const all = new Float32Array(n * C * S);
  readWindowInto(o.f, o.info, b, t0, n, 1, all);
  if (sel.length === C && sel.every((c, i) => c === i)) return all;
  const out = new Float32Array(n * sel.length * S);
  for (let t = 0; t < n; t++) {
    sel.forEach((c, j) =>
      out.set(all.subarray((t * C + c) * S, (t * C + c + 1) * S), (t * sel.length + j) * S)
    );
  }
  return out;
}

/** Both metric suites between PRED and TRUTH (see the header for the conventions). */
export async function compareWellFiles(predPath: string, truthPath: string, opts: CompareOptions = {}) {
  await ensureH5();
  const open = (path: string): Opened => {
    const f = openRead(path);
    try {
      return { f, info: readWellFileInfo(f, path) };
    } catch (e) {
      f.close();
      throw e;
    }
  };
  const truth = open(truthPath);
  let pred: Opened | null = null;
  try {
    pred = open(predPath);
    checkCompatible(pred, truth);
    selectChannels(truth.info, opts.fields);
    await opts.beforeCompute?.();
    return await compareOpened(pred, truth, opts);
  } finally {
    pred?.f.close();
    truth.f.close();
  }
}

async function compareOpened(pred: Opened, truth: Opened, opts: CompareOptions): Promise<Comparison> {
  const info = truth.info, spatial = info.spatialShape;
  const S = spatial.reduce((a, b) => a * b, 1), T = info.nSteps, B = info.nTrajectories;
  const K = pred.info.nTrajectories / B;
  const sel = selectChannels(info, opts.fields), C = sel.length;
  const fields = sel.map((c) => info.channels[c]);
  const sums = {
    well: Object.fromEntries(WELL_METRICS.map((n) => [n, new Float64Array(T * C)])) as MetricValues,
    paper: Object.fromEntries(PAPER_METRICS.map((n) => [n, new Float64Array(T * C)])) as MetricValues,
  };
  const step = Math.max(1, Math.min(T, Math.floor((opts.maxElements ?? 2 ** 25) / ((K + 1) * C * S))));
  for (let b = 0; b < B; b++) {
    for (let t0 = 0; t0 < T; t0 += step) {
      const n = Math.min(step, T - t0), N = n * C * S;
      const u = readSteps(truth, b, t0, n, sel, S);
      const v = new Float32Array(K * N);
      for (let k = 0; k < K; k++) v.set(readSteps(pred, b * K + k, t0, n, sel, S), k * N);
      const ev = await evaluate(u, v, { K, T: n, C, spatial });
      for (const suite of ["well", "paper"] as const) {
        for (const [name, vals] of Object.entries(ev[suite])) {
          const acc = sums[suite][name];
          vals.forEach((x, i) => (acc[t0 * C + i] += x / B));
        }
      }
    }
    opts.onTrajectory?.(b + 1, B);
  }
  // (T, C) rows → metric → field → per-time list.
  const byField = (m: MetricValues) =>
    Object.fromEntries(
      Object.entries(m).map(([name, a]) => [
        name,
        Object.fromEntries(
          fields.map((fname, c) => [fname, Array.from({ length: T }, (_, t) => a[t * C + c])]),
        ),
      ]),
    );
  return {
    fields,
    times: info.time ? Array.from(info.time) : Array.from({ length: T }, (_, t) => t),
    members: K,
    trajectories: B,
    well: byField(sums.well),
    paper: byField(sums.paper),
  };
}
