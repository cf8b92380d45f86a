/**
 * `data info`: a summary of a Well file or dataset folder, as a JSON-ready object and as text.
 *
 * Invariants: only metadata is read (each file opened, read, closed in turn), so this is fast on datasets of
 * hundreds of GB; every split listed is checked for consistency exactly as training would (same reader).
 */
import { basename } from "node:path";
import { type H5File, readFloat32, requireDataset, shapeOf, withH5 } from "./h5.ts";
import { DataError } from "./errors.ts";
import { readStatsIfPresent } from "./stats.ts";
import { thetaNames } from "./transforms.ts";
import { readSplitInfo, resolveLayout } from "./well_dataset.ts";
import {
  constantScalars,
  type FieldInfo,
  simulationParameterValues,
  type WellFileInfo,
} from "./well_file.ts";

export interface DatasetSummary {
  path: string;
  kind: "file" | "split" | "root";
  dataset_name: string;
  grid_type: string;
  n_spatial_dims: number;
  spatial_dims: string[];
  spatial_shape: number[];
  channels: string[];
  constant_channels: string[];
  /** Steps per trajectory (the minimum over files when they differ; see n_steps_max). */
  n_steps: number;
  n_steps_max: number;
  /** Time between stored steps, when the time grid is uniform and shared. */
  dt: number | null;
  /** Constant scalars: the value when all files agree, else the sorted distinct values; per file in `files`. */
  scalars: Record<string, number | number[]>;
  /** (D, 2): WALL=0, OPEN=1, PERIODIC=2, of the first file; per file in `files`. */
  boundary_conditions: number[][];
  /** The distinct (D, 2) tensors over all files (more than one when files differ, e.g. periodic and open). */
  boundary_conditions_variants: number[][][];
  theta: string[];
  splits: Record<string, { files: number; trajectories: number }>;
  has_stats: boolean;
  stats_path: string | null;
  /** Why stats.yaml cannot be used, when it exists but is invalid. */
  stats_error?: string;
  /** With `check`: the number of NaN/±Inf values per split and field (every value read). */
  non_finite?: Record<string, Record<string, number>>;
  files: {
    split: string;
    name: string;
    trajectories: number;
    n_steps: number;
    scalars: Record<string, number>;
    parameters: Record<string, number>;
    boundary_conditions: number[][];
  }[];
}

export interface DescribeOptions {
  /** Read every value and count the non-finite ones per split and field (reads the whole data). */
  check?: boolean;
  /** Progress of the check, in (file, field, trajectory) reads. */
  onProgress?: (p: { done: number; total: number }) => void;
}

export async function describeDataset(path: string, opts: DescribeOptions = {}): Promise<DatasetSummary> {
  const layout = resolveLayout(path);
  const splits: DatasetSummary["splits"] = {};
  const files: DatasetSummary["files"] = [];
  const nonFinite: Record<string, Record<string, number>> = {};
  let first: WellFileInfo | null = null;
  const all: [string, WellFileInfo[]][] = [];
  for (const [split, paths] of Object.entries(layout.splits)) {
    all.push([split, paths.length ? await readSplitInfo(paths) : []]);
  }
  const total = all.flatMap(([, i]) => i).reduce((a, i) => a + reads(i), 0);
  let done = 0;
  for (const [split, infos] of all) {
    splits[split] = { files: infos.length, trajectories: infos.reduce((a, i) => a + i.nTrajectories, 0) };
    for (const info of infos) {
      first ??= info;
      const params = await withH5(info.path, (f) => simulationParameterValues(f, info));
      if (opts.check) {
        const counts = nonFinite[split] ??= {};
        for (const fi of [...info.fields, ...info.constantFields]) counts[fi.name] ??= 0;
        await withH5(info.path, (f) =>
          countNonFinite(f, info, (fi, n) => {
            counts[fi.name] += n;
            opts.onProgress?.({ done: ++done, total });
          }));
      }
      files.push({
        split,
        name: basename(info.path),
        trajectories: info.nTrajectories,
        n_steps: info.nSteps,
        scalars: Object.fromEntries(constantScalars(info, 0).map((s) => [s.name, s.value])),
        parameters: params,
        boundary_conditions: info.boundaryConditions,
      });
    }
  }
  if (!first) throw new Error(`unreachable: resolveLayout returned no files for ${path}`);
  const steps = files.map((f) => f.n_steps);
  const t = first.time;
  const dt = t && t.length > 1 &&
      t.every((x, k) =>
        k === 0 || Math.abs(x - t[k - 1] - (t[1] - t[0])) < 1e-4 * Math.abs(t[1] - t[0]) + 1e-12
      )
    ? t[1] - t[0]
    : null;
  let hasStats = false, statsError: string | undefined;
  if (layout.statsPath) {
    try {
      hasStats = Deno.statSync(layout.statsPath).isFile;
    } catch { /* absent */ }
    if (hasStats) {
      try {
        readStatsIfPresent(layout.statsPath, layout.root ?? undefined);
      } catch (e) {
        if (!(e instanceof DataError)) throw e;
        statsError = e.message;
      }
    }
  }
  const scalarNames = first.scalars.filter((s) => !s.timeVarying).map((s) => s.name);
  return {
    path,
    kind: layout.kind,
    dataset_name: first.datasetName,
    grid_type: first.gridType,
    n_spatial_dims: first.nSpatialDims,
    spatial_dims: first.spatialDims,
    spatial_shape: first.spatialShape,
    channels: first.channels,
    constant_channels: first.constantChannels,
    n_steps: Math.min(...steps),
    n_steps_max: Math.max(...steps),
    dt,
    scalars: Object.fromEntries(scalarNames.map((n) => {
      const vals = [...new Set(files.map((f) => f.scalars[n]))].sort((a, b) => a - b);
      return [n, vals.length === 1 ? vals[0] : vals];
    })),
    boundary_conditions: first.boundaryConditions,
    boundary_conditions_variants: [...new Set(files.map((f) => JSON.stringify(f.boundary_conditions)))].map((
      x,
    ) => JSON.parse(x)),
    theta: thetaNames(scalarNames, first.spatialDims),
    splits,
    has_stats: hasStats,
    stats_path: layout.statsPath,
    ...(statsError ? { stats_error: statsError } : {}),
    ...(opts.check ? { non_finite: nonFinite } : {}),
    files,
  };
}

/** Reads done by countNonFinite for one file: one per field and trajectory (one for shared fields). */
function reads(info: WellFileInfo): number {
  return [...info.fields, ...info.constantFields].reduce(
    (a, fi) => a + (fi.sampleVarying ? info.nTrajectories : 1),
    0,
  );
}

const BLOCK = 1 << 22; // floats per read: bounds memory to 16 MB however large the files

/** Calls `add(field, count)` with the number of non-finite values of each field, one trajectory at a time. */
export function countNonFinite(f: H5File, info: WellFileInfo, add: (fi: FieldInfo, n: number) => void): void {
  for (const fi of [...info.fields, ...info.constantFields]) {
    const ds = requireDataset(f, `${fi.group}/${fi.name}`, info.path);
    const shape = shapeOf(ds);
    const nB = fi.sampleVarying ? info.nTrajectories : 1;
    for (let b = 0; b < nB; b++) {
      const lead: [number, number][] = fi.sampleVarying ? [[b, b + 1]] : [];
      const rest = shape.slice(lead.length + (fi.timeVarying ? 1 : 0)).map(() => [] as []);
      let n = 0;
      const count = (v: Float32Array) => {
        for (let i = 0; i < v.length; i++) if (v[i] - v[i] !== 0) n++;
      };
      if (!fi.timeVarying) count(readFloat32(ds, [...lead, ...rest]));
      else {
        const T = shape[lead.length];
        const frame = shape.slice(lead.length + 1).reduce((p, q) => p * q, 1);
        const block = Math.max(1, Math.floor(BLOCK / frame));
        for (let t = 0; t < T; t += block) {
          count(readFloat32(ds, [...lead, [t, Math.min(T, t + block)], ...rest]));
        }
      }
      add(fi, n);
    }
  }
}

const BC_NAMES = ["WALL", "OPEN", "PERIODIC"];

/** A human-readable summary (what `data info` prints without --json). */
export function formatSummary(s: DatasetSummary): string {
  const bc = s.boundary_conditions_variants.map((v) =>
    v.map((r, d) => `${s.spatial_dims[d]}: ${r.map((c) => BC_NAMES[c] ?? c).join("/")}`).join(", ")
  );
  const lines = [
    `${s.dataset_name}  (${s.kind} ${s.path})`,
    `  grid          ${s.grid_type}, ${s.spatial_dims.join("×")} = ${s.spatial_shape.join("×")}`,
    `  channels      ${s.channels.length}: ${s.channels.join(", ")}`,
    ...(s.constant_channels.length ? [`  constant      ${s.constant_channels.join(", ")}`] : []),
    `  steps         ${s.n_steps === s.n_steps_max ? s.n_steps : `${s.n_steps}..${s.n_steps_max}`}` +
    (s.dt !== null ? ` (dt ${+s.dt.toPrecision(6)})` : ""),
    `  scalars       ${
      Object.entries(s.scalars).map(([k, v]) => `${k}=${[v].flat().map((x) => +x.toPrecision(6)).join("|")}`)
        .join(", ") ||
      "none"
    }`,
    `  boundaries    ${bc.join("  |  ")}`,
    `  θ             ${s.theta.length}: ${s.theta.join(", ")}`,
    ...Object.entries(s.splits).map(([k, v]) =>
      `  ${k.padEnd(13)} ${v.files} files, ${v.trajectories} trajectories`
    ),
    `  stats.yaml    ${
      s.stats_error
        ? s.stats_error
        : s.has_stats
        ? s.stats_path
        : s.stats_path
        ? `missing (compute with \`deno task data stats ${s.path}\`)`
        : "n/a"
    }`,
    ...Object.entries(s.non_finite ?? {}).map(([split, counts]) => {
      const bad = Object.entries(counts).filter(([, n]) => n > 0);
      return `  non-finite    ${split}: ${bad.length ? bad.map(([k, n]) => `${k} ${n}`).join(", ") : "none"}`;
    }),
  ];
  return lines.join("\n");
}
