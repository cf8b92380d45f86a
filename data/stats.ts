/**
 * stats.yaml: reading it (with the `yaml` library), computing it from a train split, and writing it in exactly
 * the format of The Well's `scripts/compute_statistics.py` (`shared/spec/well-format.md` §5).
 *
 * Invariants:
 * - Six top-level keys mean, mean_delta, rms, rms_delta, std, std_delta; each maps a core field name to a number
 *   (t0), a list of D numbers (t1) or D lists of D numbers (t2). Time-invariant fields have no *_delta entry.
 * - Computation streams the train split in float64, one trajectory and a bounded block of steps at a time;
 *   moments are merged with Chan's pairwise update, which equals the reference's count-weighted mixture of
 *   per-file population moments. Deltas are x[t+1] − x[t] within each trajectory.
 * - Output is PyYAML's `yaml.dump` (keys sorted by code point, block style, indentless sequences) with every float
 *   written as Python's "%.4E" (round-half-even on exact ties); the file is written to a temp name, then renamed.
 */
import { parse as parseYaml } from "yaml";
import { DataError } from "./errors.ts";
import { ensureH5, type H5File, openRead, readFloat32, requireDataset, shapeOf } from "./h5.ts";
import type { FieldInfo, WellFileInfo } from "./well_file.ts";
import { readSplitInfo, resolveLayout } from "./well_dataset.ts";

export type StatValue = number | number[] | number[][];
export const STATS_KEYS = ["mean", "mean_delta", "rms", "rms_delta", "std", "std_delta"] as const;
export type StatsKey = typeof STATS_KEYS[number];
export type WellStats = Record<StatsKey, Record<string, StatValue>>;

// ---- reading ----

/**
 * Reads and validates stats.yaml; a missing file is a DataError that points to `data stats`, an invalid one a
 * DataError that says what is wrong and points to `data stats --force`.
 */
export function readStats(path: string, datasetRoot?: string): WellStats {
  const stats = readStatsIfPresent(path, datasetRoot);
  if (!stats) {
    throw new DataError(
      `missing ${path}: compute it with \`deno task data stats ${datasetRoot ?? "DATASET_ROOT"}\``,
    );
  }
  return stats;
}

/** Like readStats, but null when the file does not exist; an unreadable or invalid file is still an error. */
export function readStatsIfPresent(path: string, datasetRoot?: string): WellStats | null {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw new DataError(`cannot read ${path} (${(e as Error).message.split("\n")[0]})`);
  }
  try {
    return parseStats(text, path);
  } catch (e) {
    if (!(e instanceof DataError)) throw e;
    throw new DataError(
      `invalid stats file: ${e.message}: fix it, or delete it or recompute it with ` +
        `\`deno task data stats ${datasetRoot ?? "DATASET_ROOT"} --force\``,
    );
  }
}

export function parseStats(text: string, path = "stats.yaml"): WellStats {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new DataError(`${path} is not valid YAML (${(e as Error).message.split("\n")[0]})`);
  }
  if (!doc || typeof doc !== "object" || Array.isArray(doc)) {
    throw new DataError(
      `${path} is not a stats.yaml (expected a mapping with keys ${STATS_KEYS.join(", ")})`,
    );
  }
  const d = doc as Record<string, unknown>;
  const out = {} as WellStats;
  for (const k of STATS_KEYS) {
    const v = d[k] ?? {};
    if (typeof v !== "object" || Array.isArray(v) || v === null) {
      throw new DataError(`${path}: '${k}' is not a mapping`);
    }
    out[k] = {};
    for (const [name, x] of Object.entries(v as Record<string, unknown>)) {
      if (!isStatValue(x)) throw new DataError(`${path}: ${k}.${name} is not a number or list of numbers`);
      if ([x].flat(2).some((y) => !Number.isFinite(y))) {
        throw new DataError(`${path}: ${k}.${name} is not finite (${[x].flat(2).join(", ")})`);
      }
      out[k][name] = x;
    }
  }
  for (const k of ["mean", "std"] as const) {
    if (Object.keys(out[k]).length === 0) {
      throw new DataError(`${path} has no '${k}' entries: recompute it with \`data stats\``);
    }
  }
  return out;
}

function isStatValue(x: unknown): x is StatValue {
  if (typeof x === "number") return true;
  if (typeof x === "string" && /^[+-]?(nan|inf)$/i.test(x)) return true; // PyYAML's NAN/INF, refused as not finite
  if (!Array.isArray(x)) return false;
  return x.every((y) => typeof y === "number") ||
    x.every((y) => Array.isArray(y) && y.every((z) => typeof z === "number"));
}

/** Per-channel values of one key, flattened in channel order (t1 → D values, t2 → D² row-major). */
export function channelStats(
  stats: WellStats,
  key: StatsKey,
  fields: FieldInfo[],
  path = "stats.yaml",
): Float64Array {
  const out: number[] = [];
  for (const fi of fields) {
    const v = stats[key][fi.name];
    if (v === undefined) {
      throw new DataError(
        `${path} has no ${key} entry for field '${fi.name}': recompute it with \`data stats\``,
      );
    }
    const flat = (Array.isArray(v) ? (v as unknown[]).flat() : [v]) as number[];
    if (flat.length !== fi.channels.length) {
      throw new DataError(
        `${path}: ${key}.${fi.name} has ${flat.length} values, field has ${fi.channels.length} channels`,
      );
    }
    out.push(...flat);
  }
  return Float64Array.from(out);
}

// ---- writing ----

/** Python's f"{x:.4E}": 4 decimals, upper-case E, signed exponent of ≥ 2 digits, ties to even. */
export function formatE4(x: number): string {
  if (Number.isNaN(x)) return "NAN";
  if (!Number.isFinite(x)) return x > 0 ? "INF" : "-INF";
  let s = x.toExponential(4);
  // JS breaks exact ties upward; Python rounds half to even. Exact ties have a short decimal expansion.
  const long = x.toExponential(40);
  const m = /^(-?)(\d)\.(\d{4})5(0*)e([+-]\d+)$/.exec(long);
  if (m) {
    const digits = Number(m[2] + m[3]);
    if (digits % 2 === 0) s = `${m[1]}${m[2]}.${m[3]}e${m[5]}`;
  }
  const [mant, exp] = s.split("e");
  const e = Number(exp);
  const sign = Object.is(x, -0) && !mant.startsWith("-") ? "-" : "";
  return `${sign}${mant}E${e < 0 ? "-" : "+"}${String(Math.abs(e)).padStart(2, "0")}`;
}

const plainKey = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The text PyYAML's yaml.dump writes for these stats with the %.4E float representer. */
export function formatStats(stats: WellStats): string {
  const lines: string[] = [];
  const keyText = (k: string) => (plainKey.test(k) ? k : `'${k.replaceAll("'", "''")}'`);
  const byCodePoint = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  for (const k of [...STATS_KEYS].sort(byCodePoint)) {
    const m = stats[k] ?? {};
    const names = Object.keys(m).sort(byCodePoint);
    if (names.length === 0) {
      lines.push(`${k}: {}`);
      continue;
    }
    lines.push(`${k}:`);
    for (const name of names) {
      const v = m[name];
      if (typeof v === "number") {
        lines.push(`  ${keyText(name)}: ${formatE4(v)}`);
      } else if (v.length === 0) {
        lines.push(`  ${keyText(name)}: []`);
      } else {
        lines.push(`  ${keyText(name)}:`);
        for (const row of v) {
          if (typeof row === "number") lines.push(`  - ${formatE4(row)}`);
          else row.forEach((x, j) => lines.push(`  ${j === 0 ? "- - " : "  - "}${formatE4(x)}`));
        }
      }
    }
  }
  return lines.join("\n") + "\n";
}

// ---- computing ----

/** Running count/mean/M2 per tensor component, merged with Chan et al.'s pairwise formula. */
class Moments {
  n = 0;
  readonly mean: Float64Array;
  readonly m2: Float64Array;
  constructor(readonly k: number) {
    this.mean = new Float64Array(k);
    this.m2 = new Float64Array(k);
  }

  /** Adds values laid out (…, K): component c is every K-th entry starting at c. get(i) is the i-th value. */
  add(count: number, get: (i: number) => number): void {
    const K = this.k, nb = count / K;
    if (nb === 0) return;
    for (let c = 0; c < K; c++) {
      let s = 0;
      for (let i = c; i < count; i += K) s += get(i);
      const mb = s / nb;
      let q = 0;
      for (let i = c; i < count; i += K) {
        const d = get(i) - mb;
        q += d * d;
      }
      const n = this.n + nb, delta = mb - this.mean[c];
      this.mean[c] += (delta * nb) / n;
      this.m2[c] += q + (delta * delta * this.n * nb) / n;
    }
    this.n += nb;
  }

  shaped(values: Float64Array, order: number, D: number): StatValue {
    const a = Array.from(values);
    if (order === 0) return a[0];
    if (order === 1) return a;
    return Array.from({ length: D }, (_, i) => a.slice(i * D, (i + 1) * D));
  }
}

export interface StatsProgress {
  done: number;
  total: number;
  what: string;
}

export interface StatsResult {
  stats: WellStats;
  /** Fields whose std or std_delta is ≤ 1e-4 (the reference script asserts on these; here they are reported). */
  warnings: string[];
}

const MAX_BLOCK = 1 << 24; // floats per read: bounds memory to ~64 MB however large the files

/** Computes stats.yaml contents from the train split of the dataset at `root`, streaming. */
export async function computeStats(
  root: string,
  opts: { onProgress?: (p: StatsProgress) => void; blockFloats?: number } = {},
): Promise<StatsResult> {
  const layout = resolveLayout(root);
  const files = layout.splits["train"];
  if (layout.kind !== "root" || !files) {
    throw new DataError(
      `${root} is not a dataset root with data/train/: stats are computed from the train split`,
    );
  }
  if (files.length === 0) throw new DataError(`${root}/data/train holds no .hdf5/.h5 files`);
  await ensureH5();
  const infos = await readSplitInfo(files);
  const D = infos[0].nSpatialDims;
  const acc = new Map<string, { fi: FieldInfo; x: Moments; d: Moments | null }>();
  const total = infos.reduce((a, i) => a + i.nTrajectories * (i.fields.length + i.constantFields.length), 0);
  let done = 0;
  for (const info of infos) {
    const f = openRead(info.path);
    try {
      for (const fi of [...info.fields, ...info.constantFields]) {
        let a = acc.get(fi.name);
        if (!a) {
          const K = fi.channels.length;
          a = { fi, x: new Moments(K), d: fi.timeVarying ? new Moments(K) : null };
          acc.set(fi.name, a);
        }
        const nB = fi.sampleVarying ? info.nTrajectories : 1;
        for (let b = 0; b < nB; b++) {
          accumulateTrajectory(f, info, fi, b, a.x, a.d, opts.blockFloats ?? MAX_BLOCK);
          done += fi.sampleVarying ? 1 : info.nTrajectories;
          opts.onProgress?.({ done, total, what: `${info.path} ${fi.name}` });
          await Promise.resolve(); // let a progress printer or a signal handler run between trajectories
        }
      }
    } finally {
      f.close();
    }
  }
  const stats = Object.fromEntries(STATS_KEYS.map((k) => [k, {}])) as WellStats;
  const warnings: string[] = [];
  for (const [name, { fi, x, d }] of acc) {
    for (const [m, suffix] of [[x, ""], [d, "_delta"]] as const) {
      if (!m) continue;
      const std = m.m2.map((q) => Math.sqrt(q / m.n));
      const rms = m.mean.map((mu, c) => Math.sqrt(m.m2[c] / m.n + mu * mu));
      stats[`mean${suffix}`][name] = m.shaped(m.mean, fi.order, D);
      stats[`std${suffix}`][name] = m.shaped(std, fi.order, D);
      stats[`rms${suffix}`][name] = m.shaped(rms, fi.order, D);
      if ([...m.mean, ...std, ...rms].some((v) => !Number.isFinite(v))) {
        throw new DataError(
          `the ${suffix ? "deltas" : "values"} of field '${name}' overflow float64 in the moments: ` +
            `stats.yaml would not be finite; check the data's scale`,
        );
      }
      if (std.some((s) => !(s > 1e-4))) warnings.push(`the std${suffix} of '${name}' is ≤ 1e-4`);
    }
  }
  return { stats, warnings };
}

/** Adds one trajectory of one field (stored layout, no tiling: tiling does not change moments). */
function accumulateTrajectory(
  f: H5File,
  info: WellFileInfo,
  fi: FieldInfo,
  b: number,
  x: Moments,
  d: Moments | null,
  blockFloats: number,
) {
  const ds = requireDataset(f, `${fi.group}/${fi.name}`, info.path);
  const shape = shapeOf(ds);
  const lead = fi.sampleVarying ? [[b, b + 1] as [number, number]] : [];
  const rest = shape.slice(lead.length + (fi.timeVarying ? 1 : 0)).map(() => [] as []);
  if (!fi.timeVarying) {
    const v = readFloat32(ds, [...lead, ...rest]);
    refuseNonFinite(v, info, fi, b, null, 1);
    x.add(v.length, (i) => v[i]);
    return;
  }
  const T = info.nSteps;
  const frame = rest.length === 0 ? 1 : shape.slice(lead.length + 1).reduce((p, q) => p * q, 1);
  const block = Math.max(1, Math.floor(blockFloats / frame));
  let prev: Float32Array | null = null;
  for (let t = 0; t < T; t += block) {
    const t1 = Math.min(T, t + block);
    const v = readFloat32(ds, [...lead, [t, t1], ...rest]);
    refuseNonFinite(v, info, fi, b, t, frame);
    x.add(v.length, (i) => v[i]);
    if (d) {
      // deltas inside the block, then the one across the block boundary
      const n = v.length - frame;
      if (n > 0) d.add(n, (i) => v[i + frame] - v[i]);
      if (prev) {
        const p = prev;
        d.add(frame, (i) => v[i] - p[p.length - frame + i]);
      }
    }
    prev = v;
  }
}

/** Throws a DataError naming file, field, trajectory and step at the first NaN/±Inf of a block read at step t0. */
function refuseNonFinite(
  v: Float32Array,
  info: WellFileInfo,
  fi: FieldInfo,
  b: number,
  t0: number | null,
  frame: number,
): void {
  for (let i = 0; i < v.length; i++) {
    if (v[i] - v[i] === 0) continue;
    const traj = fi.sampleVarying ? ` of trajectory ${b}` : "";
    const step = t0 === null ? "" : ` at step ${t0 + Math.floor(i / frame)}`;
    throw new DataError(
      `${info.path}: field '${fi.name}'${traj} holds ${
        v[i]
      }${step}: stats.yaml would not be finite; fix or remove ` +
        `the file (\`deno task data info PATH --check\` counts non-finite values per field)`,
    );
  }
}

/** Computes and writes `<root>/stats.yaml` (temp name, then rename). Refuses to overwrite unless `force`. */
export async function writeStats(
  root: string,
  opts: { force?: boolean; onProgress?: (p: StatsProgress) => void } = {},
): Promise<{ path: string; warnings: string[] }> {
  const path = `${root.replace(/\/+$/, "")}/stats.yaml`;
  let exists = false;
  try {
    Deno.statSync(path);
    exists = true;
  } catch { /* absent: the normal case */ }
  if (exists && !opts.force) {
    try {
      parseStats(Deno.readTextFileSync(path), path);
    } catch (e) {
      if (!(e instanceof DataError)) throw e;
      throw new DataError(`${path} exists but is invalid (${e.message}): pass --force to replace it`);
    }
    throw new DataError(`${path} already exists: pass --force to recompute it`);
  }
  const { stats, warnings } = await computeStats(root, opts);
  const tmp = `${path}.tmp-${Deno.pid}`;
  try {
    Deno.writeTextFileSync(tmp, formatStats(stats));
    Deno.renameSync(tmp, path);
  } catch (e) {
    try {
      Deno.removeSync(tmp);
    } catch { /* nothing was written */ }
    throw e;
  }
  return { path, warnings };
}
