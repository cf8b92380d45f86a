/**
 * Test fixtures in The Well layout, written with raw h5wasm calls (deliberately not through data/well_writer.ts, so
 * the reader is checked against an independent writer): int8 booleans, int64 counts, empty lists as float64 (0,).
 *
 * Value encoding (well-format §7, extended so every element is identifiable): time-varying field k (0-based in
 * t0, t1, t2 field_names order) of trajectory b at step t, stored spatial index s (row-major), component c of K:
 *   1000(k+1) + 100b + t + (s·K + c)/1024, exact in float32 while S·K ≤ 1024, b < 10, t < 100.
 */
import h5wasm from "h5wasm/node";
import type { Dataset, Group } from "h5wasm/node";
import { join } from "node:path";
import { ensureH5 } from "../../data/h5.ts";

export function encode(k: number, b: number, t: number, s: number, c: number, K: number): number {
  return 1000 * (k + 1) + 100 * b + t + (s * K + c) / 1024;
}

export interface FixtureBc {
  name: string;
  type: string;
  dims: string[];
  /** Mask over the associated dims (row-major); default True at both ends of a single dim. */
  mask?: boolean[];
  maskShape?: number[];
}

export interface FixtureOptions {
  datasetName?: string;
  B?: number;
  T?: number;
  shape?: number[];
  dims?: string[];
  t0?: string[];
  t1?: string[];
  t2?: string[];
  /** null: no /boundary_conditions group at all. Default: periodic on every dim. */
  bcs?: FixtureBc[] | null;
  gamma?: number;
  /** Things to leave out, e.g. "attr:/:n_trajectories", "group:scalars", "attr:t0_fields:field_names". */
  omit?: string[];
  /** Values of field k instead of the encoding: (k, b, t, s, c, K) → number. */
  value?: (k: number, b: number, t: number, s: number, c: number, K: number) => number;
}

const i8 = (xs: boolean[]) => Int8Array.from(xs, (x) => (x ? 1 : 0));

export async function writeFixture(path: string, o: FixtureOptions = {}): Promise<void> {
  await ensureH5();
  const B = o.B ?? 2,
    T = o.T ?? 8,
    shape = o.shape ?? [8, 6],
    dims = o.dims ?? ["x", "y", "z"].slice(0, shape.length);
  const D = shape.length, S = shape.reduce((a, b) => a * b, 1);
  const omit = new Set(o.omit ?? []);
  const value = o.value ?? encode;
  const f = new h5wasm.File(path, "w");
  try {
    const attr = (where: string, name: string, write: () => void) => {
      if (!omit.has(`attr:${where}:${name}`)) write();
    };
    const names = (obj: Group | Dataset, where: string, name: string, list: string[]) =>
      attr(where, name, () => {
        if (list.length === 0) obj.create_attribute(name, new Float64Array(0), [0], "<d");
        else obj.create_attribute(name, list);
      });
    const bool = (obj: Group | Dataset, where: string, name: string, v: boolean) =>
      attr(where, name, () => obj.create_attribute(name, i8([v]), [], "<b"));
    attr(
      "/",
      "dataset_name",
      () => f.create_attribute("dataset_name", o.datasetName ?? "euler_multi_quadrants_periodicBC"),
    );
    attr("/", "grid_type", () => f.create_attribute("grid_type", "cartesian"));
    attr(
      "/",
      "n_spatial_dims",
      () => f.create_attribute("n_spatial_dims", new BigInt64Array([BigInt(D)]), [], "<q"),
    );
    attr(
      "/",
      "n_trajectories",
      () => f.create_attribute("n_trajectories", new BigInt64Array([BigInt(B)]), [], "<q"),
    );
    names(f, "/", "simulation_parameters", ["gamma"]);
    attr("/", "gamma", () => f.create_attribute("gamma", new Float64Array([o.gamma ?? 1.4]), [], "<d"));

    if (!omit.has("group:dimensions")) {
      const g = f.create_group("dimensions");
      names(g, "dimensions", "spatial_dims", dims);
      if (!omit.has("dataset:dimensions/time")) {
        const t = g.create_dataset({
          name: "time",
          data: Float32Array.from({ length: T }, (_, k) => k * 0.015),
          shape: [T],
          dtype: "<f4",
        });
        bool(t, "dimensions/time", "sample_varying", false);
        bool(t, "dimensions/time", "time_varying", true);
      }
      dims.forEach((name, d) => {
        const c = g.create_dataset({
          name,
          data: Float32Array.from({ length: shape[d] }, (_, i) => (i + 0.5) / shape[d]),
          shape: [shape[d]],
          dtype: "<f4",
        });
        bool(c, `dimensions/${name}`, "sample_varying", false);
        bool(c, `dimensions/${name}`, "time_varying", false);
      });
    }

    if (o.bcs !== null && !omit.has("group:boundary_conditions")) {
      const g = f.create_group("boundary_conditions");
      const bcs: FixtureBc[] = o.bcs ??
        dims.map((d) => ({ name: `${d}_periodic`, type: "PERIODIC", dims: [d] }));
      for (const bc of bcs) {
        const h = g.create_group(bc.name);
        const where = `boundary_conditions/${bc.name}`;
        attr(where, "bc_type", () => h.create_attribute("bc_type", bc.type));
        names(h, where, "associated_dims", bc.dims);
        names(h, where, "associated_fields", []);
        bool(h, where, "sample_varying", false);
        bool(h, where, "time_varying", false);
        const n = shape[dims.indexOf(bc.dims[0])];
        const mask = bc.mask ?? Array.from({ length: n }, (_, i) => i === 0 || i === n - 1);
        if (!omit.has(`dataset:${where}/mask`)) {
          h.create_dataset({
            name: "mask",
            data: i8(mask),
            shape: bc.maskShape ?? [mask.length],
            dtype: "<b",
          });
        }
      }
    }

    if (!omit.has("group:scalars")) {
      const g = f.create_group("scalars");
      names(g, "scalars", "field_names", ["gamma"]);
      const d = g.create_dataset({
        name: "gamma",
        data: new Float32Array([o.gamma ?? 1.4]),
        shape: [],
        dtype: "<f4",
      });
      bool(d, "scalars/gamma", "sample_varying", false);
      bool(d, "scalars/gamma", "time_varying", false);
    }

    let k = 0;
    const groups = [["t0_fields", o.t0 ?? ["energy", "density", "pressure"], 0], [
      "t1_fields",
      o.t1 ?? ["momentum"],
      1,
    ], [
      "t2_fields",
      o.t2 ?? [],
      2,
    ]] as const;
    for (const [group, fields, order] of groups) {
      if (omit.has(`group:${group}`)) continue;
      const g = f.create_group(group);
      names(g, group, "field_names", [...fields]);
      for (const name of fields) {
        const K = D ** order;
        const fshape = [B, T, ...shape, ...Array(order).fill(D)];
        if (omit.has(`dataset:${group}/${name}`)) {
          k++;
          continue;
        }
        // Written frame by frame so that large fixtures never sit whole in the wasm heap.
        const d = g.create_dataset({
          name,
          data: new Float32Array(0),
          shape: [0, ...fshape.slice(1)],
          maxshape: fshape,
          chunks: [1, 1, ...fshape.slice(2)],
          dtype: "<f4",
        });
        d.resize(fshape);
        const frame = new Float32Array(S * K);
        for (let b = 0; b < B; b++) {
          for (let t = 0; t < T; t++) {
            for (let s = 0; s < S; s++) {
              for (let c = 0; c < K; c++) frame[s * K + c] = value(k, b, t, s, c, K);
            }
            d.write_slice([[b, b + 1], [t, t + 1], ...fshape.slice(2).map(() => [] as [])], frame);
          }
        }
        const where = `${group}/${name}`;
        attr(
          where,
          "dim_varying",
          () => d.create_attribute("dim_varying", i8(Array(D).fill(true)), [D], "<b"),
        );
        bool(d, where, "sample_varying", true);
        bool(d, where, "time_varying", true);
        k++;
      }
    }
  } finally {
    f.close();
  }
}

/** A dataset root with the given files per split; returns the root. */
export async function writeDatasetRoot(
  root: string,
  files: Partial<Record<"train" | "valid" | "test", { name: string; opts?: FixtureOptions }[]>>,
): Promise<string> {
  for (const [split, list] of Object.entries(files)) {
    Deno.mkdirSync(join(root, "data", split), { recursive: true });
    for (const { name, opts } of list ?? []) await writeFixture(join(root, "data", split, name), opts);
  }
  return root;
}

/** Runs fn with a fresh temp dir, removed afterwards whatever happens. */
export async function withTempDir<T>(fn: (dir: string) => Promise<T> | T): Promise<T> {
  const dir = Deno.makeTempDirSync({ prefix: "lola-data-test-" });
  try {
    return await fn(dir);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

/** Max |a − b| over two arrays (for failure messages). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    m = Number.isNaN(d) ? Infinity : Math.max(m, d);
  }
  return m;
}

/** Asserts a DataError whose message matches re is thrown (sync or async). */
export async function assertDataError(fn: () => unknown, re: RegExp): Promise<void> {
  const { DataError } = await import("../../data/errors.ts");
  try {
    await fn();
  } catch (e) {
    if (!(e instanceof DataError)) throw new Error(`expected DataError matching ${re}, got ${e}`);
    if (!re.test(e.message)) throw new Error(`DataError message '${e.message}' does not match ${re}`);
    if (e.message.includes("\n")) throw new Error(`DataError message is not one line: '${e.message}'`);
    return;
  }
  throw new Error(`expected DataError matching ${re}, nothing was thrown`);
}
