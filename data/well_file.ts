/**
 * One file of The Well: its metadata (`readWellFileInfo`) and lazy, strided reads of frame windows
 * (`readWindowInto`), following `shared/spec/well-format.md` §2–3.
 *
 * Invariants:
 * - Channel order is t0, then t1, then t2 fields, each group in its `field_names` order (never `keys()`, which is
 *   alphabetical); a t1 field expands to `name_x, name_y[, name_z]`, a t2 field to `name_xx, name_xy, …` in
 *   row-major order, using the names of `spatial_dims`.
 * - Windows are returned channels-first, `(L, C, N1, …, ND)` float32, the layout the engine uploads as
 *   `(B, C, H, W[, D])`; storage is channels-last, so the read transposes. Axes a field does not vary along
 *   (`dim_varying[d] = false`) are tiled, as the official loader does.
 * - Only time-varying fields are channels; time-invariant ones are "constant fields", read separately.
 * - Every stored field shape is checked against its sample_varying/time_varying/dim_varying attributes when
 *   the metadata is read, so a read never runs off a dataset.
 * - The boundary-condition tensor is (D, 2), rows = spatial dims, columns = lower/upper edge, codes
 *   WALL=0, OPEN=1, PERIODIC=2, OPEN where no group says otherwise.
 */
import { DataError } from "./errors.ts";
import {
  attrBool,
  attrBoolList,
  attrInt,
  attrNumber,
  attrString,
  attrStringList,
  attrStringListOptional,
  type Dataset,
  type Group,
  type H5File,
  hasChild,
  readFloat32,
  readNumbers,
  requireDataset,
  requireGroup,
  shapeOf,
} from "./h5.ts";

export const BC_CODES = { WALL: 0, OPEN: 1, PERIODIC: 2 } as const;
export type BcName = keyof typeof BC_CODES;

export interface FieldInfo {
  name: string;
  group: "t0_fields" | "t1_fields" | "t2_fields";
  order: 0 | 1 | 2;
  sampleVarying: boolean;
  timeVarying: boolean;
  dimVarying: boolean[];
  /** Expanded channel names, in storage order of the trailing tensor axes. */
  channels: string[];
}

export interface ScalarInfo {
  name: string;
  sampleVarying: boolean;
  timeVarying: boolean;
  /** All stored values, flattened: 1 value, (B,), (T,) or (B, T). */
  values: Float64Array;
}

export interface WellFileInfo {
  path: string;
  datasetName: string;
  gridType: string;
  nSpatialDims: number;
  spatialDims: string[];
  spatialShape: number[];
  nTrajectories: number;
  nSteps: number;
  /** Time of each step, when the time grid is shared by all trajectories. */
  time: Float64Array | null;
  simulationParameters: string[];
  fields: FieldInfo[];
  constantFields: FieldInfo[];
  channels: string[];
  constantChannels: string[];
  scalars: ScalarInfo[];
  boundaryConditions: number[][];
}

/** Reads and validates the metadata of an open Well file. `path` is only used in messages. */
export function readWellFileInfo(f: H5File, path: string): WellFileInfo {
  const datasetName = attrString(f, "dataset_name", path);
  const gridType = attrString(f, "grid_type", path);
  const nSpatialDims = attrInt(f, "n_spatial_dims", path);
  const nTrajectories = attrInt(f, "n_trajectories", path);
  const simulationParameters = attrStringListOptional(f, "simulation_parameters", path);

  const dims = requireGroup(f, "dimensions", path);
  const spatialDims = attrStringList(dims, "spatial_dims", path);
  if (spatialDims.length !== nSpatialDims) {
    throw new DataError(
      `${path}: n_spatial_dims is ${nSpatialDims} but /dimensions spatial_dims lists ${spatialDims.length} names`,
    );
  }
  const timeDs = requireDataset(dims, "time", path);
  const timeSampleVarying = attrBool(timeDs, "sample_varying", path);
  const timeShape = shapeOf(timeDs);
  const nSteps = timeShape[timeShape.length - 1] ?? 1;
  const time = timeSampleVarying ? null : readNumbers(timeDs);

  const fields: FieldInfo[] = [];
  for (const [order, group] of [[0, "t0_fields"], [1, "t1_fields"], [2, "t2_fields"]] as const) {
    const g = requireGroup(f, group, path);
    for (const name of attrStringList(g, "field_names", path)) {
      const d = requireDataset(g, name, path);
      const dimVarying = attrBoolList(d, "dim_varying", path);
      if (dimVarying.length !== nSpatialDims) {
        throw new DataError(
          `${path}: ${group}/${name} has dim_varying of length ${dimVarying.length}, not ${nSpatialDims}`,
        );
      }
      fields.push({
        name,
        group,
        order,
        sampleVarying: attrBool(d, "sample_varying", path),
        timeVarying: attrBool(d, "time_varying", path),
        dimVarying,
        channels: expandChannels(name, order, spatialDims),
      });
    }
  }

  const spatialShape = spatialDims.map((dim, d) => spatialSize(f, dims, dim, d, fields, path));
  for (const fi of fields) {
    const actual = shapeOf(requireDataset(f, `${fi.group}/${fi.name}`, path));
    const expected = storedShape(fi, nTrajectories, nSteps, spatialShape);
    if (actual.join(",") !== expected.join(",")) {
      throw new DataError(
        `${path}: ${fi.group}/${fi.name} has shape [${actual}] but its sample_varying/time_varying/dim_varying ` +
          `attributes and n_trajectories=${nTrajectories}, n_steps=${nSteps} imply [${expected}]`,
      );
    }
  }

  const variable = fields.filter((x) => x.timeVarying);
  const constant = fields.filter((x) => !x.timeVarying);
  return {
    path,
    datasetName,
    gridType,
    nSpatialDims,
    spatialDims,
    spatialShape,
    nTrajectories,
    nSteps,
    time,
    simulationParameters,
    fields: variable,
    constantFields: constant,
    channels: variable.flatMap((x) => x.channels),
    constantChannels: constant.flatMap((x) => x.channels),
    scalars: readScalars(f, path),
    boundaryConditions: readBoundaryConditions(f, path, spatialDims),
  };
}

/** Channel names of one field: t1 → name_x…, t2 → name_xx, name_xy, … (row-major over the (D, D) axes). */
export function expandChannels(name: string, order: number, spatialDims: string[]): string[] {
  let suffixes = [""];
  for (let k = 0; k < order; k++) suffixes = suffixes.flatMap((s) => spatialDims.map((d) => s + d));
  return order === 0 ? [name] : suffixes.map((s) => `${name}_${s}`);
}

/** The shape a field must have on disk: [B][T] [N_d for varying d] [D]·order. */
export function storedShape(fi: FieldInfo, nTraj: number, nSteps: number, spatialShape: number[]): number[] {
  const s: number[] = [];
  if (fi.sampleVarying) s.push(nTraj);
  if (fi.timeVarying) s.push(nSteps);
  spatialShape.forEach((n, d) => fi.dimVarying[d] && s.push(n));
  for (let k = 0; k < fi.order; k++) s.push(spatialShape.length);
  return s;
}

function spatialSize(
  f: H5File,
  dims: Group,
  dim: string,
  d: number,
  fields: FieldInfo[],
  path: string,
): number {
  if (hasChild(dims, dim)) {
    const s = shapeOf(requireDataset(dims, dim, path));
    return s[s.length - 1];
  }
  // No coordinate dataset: take the size from a field that varies along this dim.
  for (const fi of fields) {
    if (!fi.dimVarying[d]) continue;
    const shape = shapeOf(requireDataset(f, `${fi.group}/${fi.name}`, path));
    const lead = (fi.sampleVarying ? 1 : 0) + (fi.timeVarying ? 1 : 0);
    return shape[lead + fi.dimVarying.slice(0, d).filter(Boolean).length];
  }
  throw new DataError(
    `${path}: missing dataset /dimensions/${dim}, and no field gives the size of that axis`,
  );
}

function readScalars(f: H5File, path: string): ScalarInfo[] {
  const g = requireGroup(f, "scalars", path);
  return attrStringList(g, "field_names", path).map((name) => {
    const d = requireDataset(g, name, path);
    return {
      name,
      sampleVarying: attrBool(d, "sample_varying", path),
      timeVarying: attrBool(d, "time_varying", path),
      values: readNumbers(d),
    };
  });
}

/** The (D, 2) boundary tensor by the official loader's rule (any-True for OPEN/PERIODIC, all-True for WALL). */
export function readBoundaryConditions(f: H5File, path: string, spatialDims: string[]): number[][] {
  const g = requireGroup(f, "boundary_conditions", path);
  const out = spatialDims.map(() => [BC_CODES.OPEN as number, BC_CODES.OPEN as number]);
  for (const name of g.keys()) { // alphabetical, as h5py iterates; a later group overrides an earlier one
    const bc = requireGroup(g, name, path);
    const type = attrString(bc, "bc_type", path).toUpperCase();
    if (!(type in BC_CODES)) {
      throw new DataError(
        `${path}: boundary_conditions/${name} has bc_type '${type}', expected WALL, OPEN or PERIODIC`,
      );
    }
    const code = BC_CODES[type as BcName];
    const assoc = attrStringList(bc, "associated_dims", path);
    const maskDs = requireDataset(bc, "mask", path);
    const mask = readNumbers(maskDs);
    const shape = shapeOf(maskDs);
    if (shape.length !== assoc.length) {
      throw new DataError(
        `${path}: boundary_conditions/${name}/mask has ${shape.length} axes but associated_dims lists ${assoc.length}`,
      );
    }
    assoc.forEach((dim, a) => {
      const d = spatialDims.indexOf(dim);
      if (d < 0) {
        throw new DataError(`${path}: boundary_conditions/${name} names dim '${dim}', not in spatial_dims`);
      }
      const edge = (at: number) => maskEdge(mask, shape, a, at, type === "WALL");
      if (edge(0)) out[d][0] = code;
      if (edge(shape[a] - 1)) out[d][1] = code;
    });
  }
  return out;
}

/** all (WALL) or any (others) of mask[..., index=at along axis a, ...]. */
function maskEdge(mask: Float64Array, shape: number[], a: number, at: number, all: boolean): boolean {
  if (shape[a] === 0) return false;
  const inner = shape.slice(a + 1).reduce((x, y) => x * y, 1);
  const outer = shape.slice(0, a).reduce((x, y) => x * y, 1);
  let any = false, every = true;
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      const v = mask[(o * shape[a] + at) * inner + i] !== 0;
      any ||= v;
      every &&= v;
    }
  }
  return all ? every : any;
}

/** Constant (time-invariant) scalars of one trajectory, in field_names order. */
export function constantScalars(info: WellFileInfo, trajectory: number): { name: string; value: number }[] {
  return info.scalars.filter((s) => !s.timeVarying).map((s) => ({
    name: s.name,
    value: s.sampleVarying ? s.values[trajectory] : s.values[0],
  }));
}

// Index maps from the full grid to the stored (reduced) grid, for fields with dim_varying false somewhere.
const reducedIndexCache = new WeakMap<FieldInfo, Int32Array>();

function reducedIndex(fi: FieldInfo, spatialShape: number[]): Int32Array | null {
  if (fi.dimVarying.every(Boolean)) return null;
  let idx = reducedIndexCache.get(fi);
  if (idx) return idx;
  const S = spatialShape.reduce((a, b) => a * b, 1);
  idx = new Int32Array(S);
  for (let s = 0; s < S; s++) {
    let rem = s, r = 0, rstride = 1;
    for (let d = spatialShape.length - 1; d >= 0; d--) {
      const i = rem % spatialShape[d];
      rem = Math.floor(rem / spatialShape[d]);
      if (fi.dimVarying[d]) {
        r += i * rstride;
        rstride *= spatialShape[d];
      }
    }
    idx[s] = r;
  }
  reducedIndexCache.set(fi, idx);
  return idx;
}

type Range = [number, number] | [number, number, number] | [];

/**
 * Reads frames t0, t0+stride, …, t0+(nFrames−1)·stride of one trajectory into out[offset…] as
 * (nFrames, C, N1, …, ND). Bounds are the caller's job (WellDataset checks them once per index).
 */
export function readWindowInto(
  f: H5File,
  info: WellFileInfo,
  trajectory: number,
  t0: number,
  nFrames: number,
  stride: number,
  out: Float32Array,
  offset = 0,
): void {
  const S = info.spatialShape.reduce((a, b) => a * b, 1);
  const C = info.channels.length;
  let c0 = 0;
  for (const fi of info.fields) {
    const lead: Range[] = fi.sampleVarying ? [[trajectory, trajectory + 1]] : [];
    if (stride === 1) {
      scatter(
        readField(f, fi, info, [...lead, [t0, t0 + nFrames]]),
        fi,
        info.spatialShape,
        nFrames,
        out,
        offset,
        c0,
        C,
        S,
      );
    } else {
      // One slice per frame: HDF5's strided hyperslabs over chunked data measured 5–20× slower than this.
      for (let l = 0; l < nFrames; l++) {
        const t = t0 + l * stride;
        const frame = readField(f, fi, info, [...lead, [t, t + 1]]);
        scatter(frame, fi, info.spatialShape, 1, out, offset + l * C * S, c0, C, S);
      }
    }
    c0 += fi.channels.length;
  }
}

/** Reads the time-invariant fields of one trajectory as (C_const, N1, …, ND). */
export function readConstantFields(f: H5File, info: WellFileInfo, trajectory: number): Float32Array {
  const S = info.spatialShape.reduce((a, b) => a * b, 1);
  const C = info.constantChannels.length;
  const out = new Float32Array(C * S);
  let c0 = 0;
  for (const fi of info.constantFields) {
    const lead: Range[] = fi.sampleVarying ? [[trajectory, trajectory + 1]] : [];
    scatter(readField(f, fi, info, lead), fi, info.spatialShape, 1, out, 0, c0, C, S);
    c0 += fi.channels.length;
  }
  return out;
}

// Dataset handles per open file: h5wasm's `get` and metadata lookups cost more than reading a small frame.
const datasetCache = new WeakMap<H5File, Map<string, Dataset>>();

function readField(f: H5File, fi: FieldInfo, info: WellFileInfo, lead: Range[]): Float32Array {
  let byPath = datasetCache.get(f);
  if (!byPath) datasetCache.set(f, byPath = new Map());
  const key = `${fi.group}/${fi.name}`;
  let ds = byPath.get(key);
  if (!ds) {
    ds = requireDataset(f, key, info.path);
    byPath.set(key, ds);
  }
  const ranges = [...lead];
  fi.dimVarying.forEach((v) => v && ranges.push([]));
  for (let k = 0; k < fi.order; k++) ranges.push([]);
  return readFloat32(ds, ranges);
}

/** Channels-last (L, S_reduced, K) → channels-first out[(l·C + c0 + k)·S + s], tiling non-varying axes. */
function scatter(
  data: Float32Array,
  fi: FieldInfo,
  spatialShape: number[],
  L: number,
  out: Float32Array,
  offset: number,
  c0: number,
  C: number,
  S: number,
): void {
  const K = fi.channels.length;
  const red = reducedIndex(fi, spatialShape);
  const Sred = red ? spatialShape.reduce((a, n, d) => (fi.dimVarying[d] ? a * n : a), 1) : S;
  for (let l = 0; l < L; l++) {
    for (let k = 0; k < K; k++) {
      const dst = offset + (l * C + c0 + k) * S;
      const src = l * Sred * K + k;
      if (red) {
        for (let s = 0; s < S; s++) out[dst + s] = data[src + red[s] * K];
      } else if (K === 1) {
        out.set(data.subarray(src, src + S), dst);
      } else {
        for (let s = 0; s < S; s++) out[dst + s] = data[src + s * K];
      }
    }
  }
}

/** Root attribute values of the simulation parameters, where present. */
export function simulationParameterValues(f: H5File, info: WellFileInfo): Record<string, number> {
  const out: Record<string, number> = {};
  for (const p of info.simulationParameters) if (f.attrs[p]) out[p] = attrNumber(f, p, info.path);
  return out;
}
