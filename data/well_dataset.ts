/**
 * A split of a Well dataset as a list of windows: every start offset of every trajectory of every file, files in
 * sorted order, each window L frames spaced by a stride Δ (`shared/spec/well-format.md` §1, §3).
 *
 * Invariants:
 * - Path resolution accepts a file, a split folder (`…/data/train`), or a dataset root holding `data/<split>/` (or
 *   `<split>/` directly); files are `*.hdf5` and `*.h5`, sorted by code point like Python's `sorted`.
 * - All files of a split share dataset_name, spatial dims, resolution and channels, or opening fails naming the two
 *   files that differ.
 * - Window i ↦ (file, trajectory, t0) with W_f = T_f − (L−1)·Δ windows per trajectory; a window longer than any
 *   trajectory is an error at open time, not at read time.
 * - File handles come from a bounded pool (`maxOpenFiles`); `close()` releases them.
 * - With `checkFinite`, no window or frame holding NaN/±Inf is handed out: reading it throws a one-line DataError.
 */
import { basename, dirname, join } from "node:path";
import { DataError } from "./errors.ts";
import { ensureH5, H5Pool, withH5 } from "./h5.ts";
import {
  constantScalars,
  readConstantFields,
  readWellFileInfo,
  readWindowInto,
  type WellFileInfo,
} from "./well_file.ts";

export type Split = "train" | "valid" | "test";
export const SPLITS: readonly Split[] = ["train", "valid", "test"];

export interface DatasetLayout {
  /** What the path named. */
  kind: "file" | "split" | "root";
  /** The dataset root (the folder holding stats.yaml and data/), when it can be told. */
  root: string | null;
  /** Sorted file paths per split; a lone file or a split folder outside a root is listed under its folder name. */
  splits: Record<string, string[]>;
  statsPath: string | null;
}

const isHdf5Name = (n: string) => n.endsWith(".hdf5") || n.endsWith(".h5");
const byCodePoint = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

function statOrNull(p: string): Deno.FileInfo | null {
  try {
    return Deno.statSync(p);
  } catch {
    return null;
  }
}

function listHdf5(dir: string): string[] {
  const names: string[] = [];
  for (const e of Deno.readDirSync(dir)) {
    if ((e.isFile || e.isSymlink) && isHdf5Name(e.name)) names.push(e.name);
  }
  return names.sort(byCodePoint).map((n) => join(dir, n));
}

/** Finds the dataset root, split folders and files that `path` names. */
export function resolveLayout(path: string): DatasetLayout {
  const st = statOrNull(path);
  if (!st) throw new DataError(`${path} does not exist: check the path`);
  const rootOf = (splitDir: string) => {
    const parent = dirname(splitDir);
    return SPLITS.includes(basename(splitDir) as Split) && basename(parent) === "data"
      ? dirname(parent)
      : null;
  };
  const withStats = (l: Omit<DatasetLayout, "statsPath">): DatasetLayout => ({
    ...l,
    statsPath: l.root ? join(l.root, "stats.yaml") : null,
  });
  if (st.isFile) {
    const dir = dirname(path);
    return withStats({ kind: "file", root: rootOf(dir), splits: { [splitKey(dir)]: [path] } });
  }
  for (const base of [join(path, "data"), path]) {
    const splits: Record<string, string[]> = {};
    for (const s of SPLITS) {
      const d = join(base, s);
      if (statOrNull(d)?.isDirectory) splits[s] = listHdf5(d);
    }
    if (Object.keys(splits).length > 0) return withStats({ kind: "root", root: path, splits });
  }
  const files = listHdf5(path);
  if (files.length > 0) {
    return withStats({ kind: "split", root: rootOf(path), splits: { [splitKey(path)]: files } });
  }
  throw new DataError(
    `${path} holds no .hdf5/.h5 files and no data/{train,valid,test} folders: pass a Well file, split folder or dataset root`,
  );
}

function splitKey(dir: string): string {
  const b = basename(dir);
  return SPLITS.includes(b as Split) ? b : "file";
}

/** Reads the metadata of each file (opened one at a time) and checks that they agree. */
export async function readSplitInfo(files: string[]): Promise<WellFileInfo[]> {
  await ensureH5();
  const infos: WellFileInfo[] = [];
  for (const p of files) {
    try {
      infos.push(await withH5(p, (f) => readWellFileInfo(f, p)));
    } catch (e) {
      if (e instanceof DataError) throw e;
      // h5wasm's own failure on a damaged file: name the file, whatever the library said
      throw new DataError(
        `${p} could not be read (${String((e as Error)?.message ?? e).split("\n")[0]}): ` +
          `the file may be truncated or corrupt; replace it or move it out of the split`,
      );
    }
  }
  const a = infos[0];
  for (const b of infos.slice(1)) {
    const differs = (what: string, x: unknown, y: unknown) => {
      if (JSON.stringify(x) !== JSON.stringify(y)) {
        throw new DataError(
          `files of one split must share ${what}: ${a.path} has ${JSON.stringify(x)}, ${b.path} has ${
            JSON.stringify(y)
          }`,
        );
      }
    };
    differs("dataset_name", a.datasetName, b.datasetName);
    differs("spatial_dims", a.spatialDims, b.spatialDims);
    differs("the spatial resolution", a.spatialShape, b.spatialShape);
    differs("the channels", a.channels, b.channels);
  }
  return infos;
}

export interface WellDatasetOptions {
  /** Which split of a dataset root to read (default "train"); ignored for a file or split folder. */
  split?: Split;
  /** Frames per window, L (default 1). */
  nSteps?: number;
  /** Steps between consecutive frames of a window, Δ (default 1). */
  stride?: number;
  maxOpenFiles?: number;
  /**
   * Check every window and frame read for NaN/±Inf and throw a DataError naming file, field, trajectory and
   * step (one pass over the values read: cheap next to reading them). Off by default; training turns it on.
   */
  checkFinite?: boolean;
}

export interface WellWindow {
  /** (L, C, N1, …, ND) float32, physical units. */
  data: Float32Array;
  shape: number[];
  fileIndex: number;
  trajectory: number;
  t0: number;
  /** (D, 2) codes, WALL=0, OPEN=1, PERIODIC=2. */
  boundaryConditions: number[][];
  constantScalars: { name: string; value: number }[];
}

export class WellDataset {
  readonly nSteps: number;
  readonly stride: number;
  readonly windowsPerTrajectory: number[];
  readonly checkFinite: boolean;
  /** Cumulative window offsets per file; offsets[f] is the index of file f's first window. */
  private readonly offsets: number[];
  private readonly pool: H5Pool;

  private constructor(
    readonly layout: DatasetLayout,
    readonly split: string,
    readonly files: WellFileInfo[],
    opts: WellDatasetOptions,
  ) {
    this.nSteps = opts.nSteps ?? 1;
    this.stride = opts.stride ?? 1;
    this.checkFinite = opts.checkFinite ?? false;
    if (!(Number.isInteger(this.nSteps) && this.nSteps >= 1)) {
      throw new DataError(`window length must be ≥ 1`);
    }
    if (!(Number.isInteger(this.stride) && this.stride >= 1)) {
      throw new DataError(`window stride must be ≥ 1`);
    }
    const span = (this.nSteps - 1) * this.stride + 1;
    this.windowsPerTrajectory = files.map((fi) => {
      const w = fi.nSteps - span + 1;
      if (w < 1) {
        throw new DataError(
          `a window of ${this.nSteps} frames with stride ${this.stride} spans ${span} steps, but ${fi.path} has ` +
            `only ${fi.nSteps}: use fewer frames or a smaller stride`,
        );
      }
      return w;
    });
    this.offsets = [0];
    files.forEach((fi, k) =>
      this.offsets.push(this.offsets[k] + fi.nTrajectories * this.windowsPerTrajectory[k])
    );
    this.pool = new H5Pool(opts.maxOpenFiles ?? 8);
  }

  static async open(path: string, opts: WellDatasetOptions = {}): Promise<WellDataset> {
    const layout = resolveLayout(path);
    let split: string;
    if (layout.kind === "root") {
      split = opts.split ?? "train";
      if (!layout.splits[split]) {
        throw new DataError(`${path} has no ${split} split: expected ${join(path, "data", split)}/*.hdf5`);
      }
    } else {
      split = Object.keys(layout.splits)[0];
    }
    const files = layout.splits[split];
    if (files.length === 0) throw new DataError(`the ${split} split of ${path} holds no .hdf5/.h5 files`);
    return new WellDataset(layout, split, await readSplitInfo(files), opts);
  }

  get length(): number {
    return this.offsets[this.offsets.length - 1];
  }
  get datasetName(): string {
    return this.files[0].datasetName;
  }
  get channels(): string[] {
    return this.files[0].channels;
  }
  get spatialShape(): number[] {
    return this.files[0].spatialShape;
  }
  get nSpatialDims(): number {
    return this.files[0].nSpatialDims;
  }
  /** Shape of one window: (L, C, N1, …, ND). */
  get windowShape(): number[] {
    return [this.nSteps, this.channels.length, ...this.spatialShape];
  }
  get windowSize(): number {
    return this.windowShape.reduce((a, b) => a * b, 1);
  }

  /** Window index → (file, trajectory, first step). */
  locate(i: number): { fileIndex: number; trajectory: number; t0: number } {
    if (!(Number.isInteger(i) && i >= 0 && i < this.length)) {
      throw new RangeError(`window index ${i} out of range [0, ${this.length})`);
    }
    let lo = 0, hi = this.files.length - 1;
    while (lo < hi) { // last file whose offset ≤ i
      const mid = (lo + hi + 1) >> 1;
      if (this.offsets[mid] <= i) lo = mid;
      else hi = mid - 1;
    }
    const local = i - this.offsets[lo], w = this.windowsPerTrajectory[lo];
    return { fileIndex: lo, trajectory: Math.floor(local / w), t0: local % w };
  }

  /** Reads window i; `out` (length ≥ offset + windowSize) is filled in place when given. */
  getWindow(i: number, out?: Float32Array, offset = 0): WellWindow {
    const { fileIndex, trajectory, t0 } = this.locate(i);
    const data = out ?? new Float32Array(this.windowSize);
    const info = this.files[fileIndex];
    readWindowInto(this.pool.get(info.path), info, trajectory, t0, this.nSteps, this.stride, data, offset);
    if (this.checkFinite) assertFinite(data, offset, this.nSteps, info, trajectory, t0, this.stride);
    return {
      data,
      shape: this.windowShape,
      fileIndex,
      trajectory,
      t0,
      boundaryConditions: info.boundaryConditions.map((r) => [...r]),
      constantScalars: constantScalars(info, trajectory),
    };
  }

  /** Reads any frames of one trajectory, (nFrames, C, N1, …, ND): e.g. whole trajectories for the latent cache. */
  readFrames(fileIndex: number, trajectory: number, t0: number, nFrames: number, stride = 1): Float32Array {
    const info = this.files[fileIndex];
    if (!info) throw new RangeError(`file index ${fileIndex} out of range`);
    if (trajectory < 0 || trajectory >= info.nTrajectories) {
      throw new RangeError(
        `trajectory ${trajectory} out of range [0, ${info.nTrajectories}) in ${info.path}`,
      );
    }
    if (t0 < 0 || nFrames < 1 || t0 + (nFrames - 1) * stride >= info.nSteps) {
      throw new DataError(
        `frames ${t0}..${
          t0 + (nFrames - 1) * stride
        } (stride ${stride}) are outside the ${info.nSteps} steps of ${info.path}`,
      );
    }
    const S = this.spatialShape.reduce((a, b) => a * b, 1);
    const out = new Float32Array(nFrames * this.channels.length * S);
    readWindowInto(this.pool.get(info.path), info, trajectory, t0, nFrames, stride, out, 0);
    if (this.checkFinite) assertFinite(out, 0, nFrames, info, trajectory, t0, stride);
    return out;
  }

  /** Time-invariant fields of one trajectory, (C_const, N1, …, ND). */
  readConstantFields(fileIndex: number, trajectory: number): Float32Array {
    const info = this.files[fileIndex];
    return readConstantFields(this.pool.get(info.path), info, trajectory);
  }

  /** Every (file, trajectory) pair in order, with its step count. */
  trajectories(): { fileIndex: number; trajectory: number; nSteps: number }[] {
    return this.files.flatMap((fi, fileIndex) =>
      Array.from(
        { length: fi.nTrajectories },
        (_, trajectory) => ({ fileIndex, trajectory, nSteps: fi.nSteps }),
      )
    );
  }

  /** Number of files currently open (≤ maxOpenFiles). */
  get openFiles(): number {
    return this.pool.size;
  }

  close(): void {
    this.pool.closeAll();
  }
}

/**
 * Throws a DataError when the (nFrames, C, N1, …, ND) frames at data[offset…] hold a NaN or ±Inf, naming the
 * file, field, trajectory and step (and time, when the file has a shared time grid) of the first one.
 */
export function assertFinite(
  data: Float32Array,
  offset: number,
  nFrames: number,
  info: WellFileInfo,
  trajectory: number,
  t0: number,
  stride = 1,
): void {
  const S = info.spatialShape.reduce((a, b) => a * b, 1), C = info.channels.length;
  const end = offset + nFrames * C * S;
  for (let i = offset; i < end; i++) {
    const v = data[i];
    if (v - v === 0) continue;
    const k = Math.floor((i - offset) / S), l = Math.floor(k / C), c = k % C;
    let field = info.channels[c];
    for (let c0 = 0, j = 0; j < info.fields.length; c0 += info.fields[j++].channels.length) {
      if (c < c0 + info.fields[j].channels.length) {
        field = info.fields[j].name;
        break;
      }
    }
    const step = t0 + l * stride;
    const time = info.time && step < info.time.length ? ` (t = ${+info.time[step].toPrecision(6)})` : "";
    throw new DataError(
      `${info.path}: field '${field}' of trajectory ${trajectory} holds ${v} at step ${step}${time}: ` +
        `fix or remove the file (\`deno task data info PATH --check\` counts non-finite values per field)`,
    );
  }
}
