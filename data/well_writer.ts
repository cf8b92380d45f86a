/**
 * Writes one file in The Well's layout (`shared/spec/well-format.md` §2, §7), trajectory by trajectory: what the
 * built-in simulator uses, so that the one reader serves both real and generated data.
 *
 * Invariants:
 * - Every item of the loader's and of the format checker's lists is written (root attributes, dimensions with
 *   time and coordinates, BC groups with bc_type/associated_dims/associated_fields/mask, scalars, t0/t1/t2 groups),
 *   except that booleans are int8 (h5wasm cannot write h5py's enum; the loader accepts int8) and empty name lists
 *   are float64 (0,) arrays, as h5py writes `[]`.
 * - Trajectories are appended in order 0..B−1 to `<path>.tmp-<pid>`; `close()` checks all B were written, then
 *   renames. `abort()` removes the temp file. Memory is one trajectory.
 */
import { DataError } from "./errors.ts";
import { type Dataset, type Group, type H5File, openWrite } from "./h5.ts";

export interface WellBoundarySpec {
  /** Group name, e.g. "x_periodic". */
  name: string;
  type: "WALL" | "OPEN" | "PERIODIC";
  /** One spatial dim name; the mask is True at both ends of it. */
  dim: string;
}

export interface WellFileSpec {
  datasetName: string;
  gridType?: string;
  spatialDims: string[];
  spatialShape: number[];
  /** Cell-centre coordinates per dim. */
  coordinates: Float32Array[];
  nTrajectories: number;
  time: Float32Array;
  boundaryConditions: WellBoundarySpec[];
  /** Constant scalars; each is also a simulation parameter (root attribute + /scalars dataset). */
  parameters: { name: string; value: number }[];
  t0Fields: string[];
  t1Fields: string[];
  t2Fields?: string[];
}

function int8(b: boolean | boolean[]): Int8Array {
  return Int8Array.from(Array.isArray(b) ? b : [b], (x) => (x ? 1 : 0));
}

function boolAttr(obj: Group | Dataset, name: string, v: boolean) {
  obj.create_attribute(name, int8(v), [], "<b");
}

function namesAttr(obj: Group | H5File, name: string, names: string[]) {
  if (names.length === 0) obj.create_attribute(name, new Float64Array(0), [0], "<d");
  else obj.create_attribute(name, names);
}

export class WellFileWriter {
  private written = 0;
  private closed = false;

  private constructor(
    readonly path: string,
    private readonly tmp: string,
    private readonly f: H5File,
    readonly spec: WellFileSpec,
  ) {}

  /** Creates the temp file with all metadata and empty, extendible field datasets. Requires ensureH5(). */
  static create(path: string, spec: WellFileSpec): WellFileWriter {
    const tmp = `${path}.tmp-${Deno.pid}`;
    const f = openWrite(tmp);
    try {
      writeMetadata(f, spec);
    } catch (e) {
      f.close();
      Deno.removeSync(tmp);
      throw e;
    }
    return new WellFileWriter(path, tmp, f, spec);
  }

  /**
   * Appends trajectory `written`: each t0 field (T, N1, …, ND), each t1 field (T, N1, …, ND, D), each t2 field
   * (T, N1, …, ND, D, D), float32, keyed by field name.
   */
  writeTrajectory(fields: Record<string, Float32Array>): void {
    const s = this.spec, b = this.written, T = s.time.length, D = s.spatialDims.length;
    if (b >= s.nTrajectories) {
      throw new Error(`${this.path}: all ${s.nTrajectories} trajectories already written`);
    }
    const groups = [["t0_fields", s.t0Fields, 0], ["t1_fields", s.t1Fields, 1], [
      "t2_fields",
      s.t2Fields ?? [],
      2,
    ]] as const;
    for (const [group, names, order] of groups) {
      for (const name of names) {
        const data = fields[name];
        const tail = [...s.spatialShape, ...Array(order).fill(D)];
        const n = T * tail.reduce((a, x) => a * x, 1);
        if (!data || data.length !== n) {
          throw new Error(`${this.path}: field ${name} needs ${n} values, got ${data?.length}`);
        }
        const ds = this.f.get(`${group}/${name}`) as Dataset;
        ds.resize([b + 1, T, ...tail]);
        ds.write_slice([[b, b + 1], [], ...tail.map(() => [] as [])], data);
      }
    }
    this.written++;
  }

  close(): string {
    if (this.closed) return this.path;
    this.closed = true;
    this.f.close();
    if (this.written !== this.spec.nTrajectories) {
      Deno.removeSync(this.tmp);
      throw new DataError(
        `${this.path}: only ${this.written} of ${this.spec.nTrajectories} trajectories were written`,
      );
    }
    Deno.renameSync(this.tmp, this.path);
    return this.path;
  }

  abort(): void {
    if (this.closed) return;
    this.closed = true;
    this.f.close();
    try {
      Deno.removeSync(this.tmp);
    } catch { /* already gone */ }
  }
}

function writeMetadata(f: H5File, s: WellFileSpec): void {
  const B = s.nTrajectories, T = s.time.length, D = s.spatialDims.length;
  f.create_attribute("dataset_name", s.datasetName);
  f.create_attribute("grid_type", s.gridType ?? "cartesian");
  f.create_attribute("n_spatial_dims", new BigInt64Array([BigInt(D)]), [], "<q");
  f.create_attribute("n_trajectories", new BigInt64Array([BigInt(B)]), [], "<q");
  namesAttr(f, "simulation_parameters", s.parameters.map((p) => p.name));
  for (const p of s.parameters) f.create_attribute(p.name, new Float64Array([p.value]), [], "<d");

  const dims = f.create_group("dimensions");
  namesAttr(dims, "spatial_dims", s.spatialDims);
  const time = dims.create_dataset({ name: "time", data: s.time, shape: [T], dtype: "<f4" });
  boolAttr(time, "sample_varying", false);
  boolAttr(time, "time_varying", true);
  s.spatialDims.forEach((name, d) => {
    const c = dims.create_dataset({ name, data: s.coordinates[d], shape: [s.spatialShape[d]], dtype: "<f4" });
    boolAttr(c, "sample_varying", false);
    boolAttr(c, "time_varying", false);
  });

  const bcs = f.create_group("boundary_conditions");
  for (const bc of s.boundaryConditions) {
    const g = bcs.create_group(bc.name);
    g.create_attribute("bc_type", bc.type);
    namesAttr(g, "associated_dims", [bc.dim]);
    namesAttr(g, "associated_fields", []);
    boolAttr(g, "sample_varying", false);
    boolAttr(g, "time_varying", false);
    const n = s.spatialShape[s.spatialDims.indexOf(bc.dim)];
    const mask = Array.from({ length: n }, (_, i) => i === 0 || i === n - 1);
    g.create_dataset({ name: "mask", data: int8(mask), shape: [n], dtype: "<b" });
  }

  const scalars = f.create_group("scalars");
  namesAttr(scalars, "field_names", s.parameters.map((p) => p.name));
  for (const p of s.parameters) {
    const d = scalars.create_dataset({
      name: p.name,
      data: new Float32Array([p.value]),
      shape: [],
      dtype: "<f4",
    });
    boolAttr(d, "sample_varying", false);
    boolAttr(d, "time_varying", false);
  }

  const groups = [["t0_fields", s.t0Fields, 0], ["t1_fields", s.t1Fields, 1], [
    "t2_fields",
    s.t2Fields ?? [],
    2,
  ]] as const;
  for (const [group, names, order] of groups) {
    const g = f.create_group(group);
    namesAttr(g, "field_names", names);
    for (const name of names) {
      const tail = [...s.spatialShape, ...Array(order).fill(D)];
      const d = g.create_dataset({
        name,
        data: new Float32Array(0),
        shape: [0, T, ...tail],
        maxshape: [B, T, ...tail],
        chunks: [1, 1, ...tail],
        dtype: "<f4",
      });
      d.create_attribute("dim_varying", int8(Array(D).fill(true)), [D], "<b");
      boolAttr(d, "sample_varying", true);
      boolAttr(d, "time_varying", true);
      if (order === 2) {
        boolAttr(d, "symmetric", false);
        boolAttr(d, "antisymmetric", false);
      }
    }
  }
}
