/**
 * The latent cache: one HDF5 file per split holding every encoded trajectory, `state` (N, T, C_z, h, w[, d]) float32
 * and `label` (N, D_θ) float32 (the layout of lola's `cache_latents.py`), written trajectory by trajectory and read
 * back as windows of L frames (lola's MiniWellDataset) for emulator training.
 *
 * Invariants:
 * - The writer appends to `<path>.tmp-<pid>` (extendible datasets, one chunk per frame) and renames on `close()`;
 *   `abort()` (or a crash) leaves no file at `path`. Memory is one trajectory.
 * - Windows: W = T − (L−1)·stride per trajectory, window i ↦ (trajectory i // W, start i % W), frames
 *   start, start+stride, …; a window longer than T is an error at open time.
 * - `LatentCache` is a `WindowSource` (`data/batches.ts`), so the same shuffling/prefetching loader serves it; its
 *   label is the θ stored at encoding time (augmentation happened before encoding).
 */
import { dirname } from "node:path";
import { DataError } from "./errors.ts";
import {
  attrInt,
  type Dataset,
  ensureH5,
  type H5File,
  openRead,
  openWrite,
  readFloat32,
  requireDataset,
  shapeOf,
} from "./h5.ts";

export interface LatentCacheSpec {
  /** Frames per trajectory, T. */
  frames: number;
  /** (C_z, h, w[, d]). */
  latentShape: number[];
  /** D_θ. */
  thetaDim: number;
  /** Free-form provenance stored as root attributes (e.g. source dataset, autoencoder run). */
  attributes?: Record<string, string | number>;
}

const FORMAT = "lola-webgpu latent cache v1";

export class LatentCacheWriter {
  private n = 0;
  private readonly frameSize: number;
  private closed = false;

  private constructor(
    readonly path: string,
    private readonly tmp: string,
    private readonly file: H5File,
    readonly spec: LatentCacheSpec,
  ) {
    this.frameSize = spec.latentShape.reduce((a, b) => a * b, 1);
  }

  static async create(path: string, spec: LatentCacheSpec): Promise<LatentCacheWriter> {
    await ensureH5();
    const { frames: T, latentShape, thetaDim } = spec;
    if (!(T >= 1 && latentShape.length >= 2 && latentShape.every((n) => n >= 1) && thetaDim >= 1)) {
      throw new Error(`latent cache: bad spec T=${T}, latentShape=[${latentShape}], thetaDim=${thetaDim}`);
    }
    Deno.mkdirSync(dirname(path), { recursive: true });
    const tmp = `${path}.tmp-${Deno.pid}`;
    const f = openWrite(tmp);
    try {
      f.create_attribute("format", FORMAT);
      f.create_attribute("n_frames", new BigInt64Array([BigInt(T)]), [], "<q");
      for (const [k, v] of Object.entries(spec.attributes ?? {})) {
        if (typeof v === "number") f.create_attribute(k, new Float64Array([v]), [], "<d");
        else f.create_attribute(k, v);
      }
      f.create_dataset({
        name: "state",
        data: new Float32Array(0),
        shape: [0, T, ...latentShape],
        maxshape: [null, T, ...latentShape],
        chunks: [1, 1, ...latentShape],
        dtype: "<f4",
      });
      f.create_dataset({
        name: "label",
        data: new Float32Array(0),
        shape: [0, thetaDim],
        maxshape: [null, thetaDim],
        chunks: [64, thetaDim],
        dtype: "<f4",
      });
    } catch (e) {
      f.close();
      Deno.removeSync(tmp);
      throw e;
    }
    return new LatentCacheWriter(path, tmp, f, spec);
  }

  get count(): number {
    return this.n;
  }

  /** Appends one trajectory, state (T, C_z, h, w[, d]) and its label (D_θ). */
  append(state: Float32Array, label: ArrayLike<number>): void {
    if (this.closed) throw new Error(`latent cache ${this.path} is closed`);
    const { frames: T, latentShape, thetaDim } = this.spec;
    if (state.length !== T * this.frameSize) {
      throw new Error(`latent cache: state has ${state.length} values, expected (${T}, ${latentShape})`);
    }
    if (label.length !== thetaDim) {
      throw new Error(`latent cache: label has ${label.length} values, expected ${thetaDim}`);
    }
    const n = this.n;
    const st = this.file.get("state") as Dataset, lb = this.file.get("label") as Dataset;
    st.resize([n + 1, T, ...latentShape]);
    st.write_slice([[n, n + 1], ...latentShape.map(() => [] as []), []], state);
    lb.resize([n + 1, thetaDim]);
    lb.write_slice([[n, n + 1], []], Float32Array.from(label));
    this.n = n + 1;
  }

  /** Finishes the file and moves it to its final name. Returns the path. */
  close(): string {
    if (this.closed) return this.path;
    this.closed = true;
    this.file.close();
    Deno.renameSync(this.tmp, this.path);
    return this.path;
  }

  /** Drops everything written so far. */
  abort(): void {
    if (this.closed) return;
    this.closed = true;
    this.file.close();
    try {
      Deno.removeSync(this.tmp);
    } catch { /* already gone */ }
  }
}

export interface LatentCacheOptions {
  /** Frames per window, L (default 5, the method's window). */
  length?: number;
  /** Steps between frames of a window (default 1). */
  stride?: number;
}

export class LatentCache {
  readonly count: number;
  readonly frames: number;
  readonly latentShape: number[];
  readonly thetaDim: number;
  readonly nSteps: number;
  readonly stride: number;
  readonly windowsPerTrajectory: number;
  private readonly labelData: Float32Array;
  private stateDs: Dataset | null = null;

  private constructor(readonly path: string, private file: H5File | null, opts: LatentCacheOptions) {
    const f = file!;
    const st = requireDataset(f, "state", path), lb = requireDataset(f, "label", path);
    const s = shapeOf(st), l = shapeOf(lb);
    if (s.length < 4 || l.length !== 2 || l[0] !== s[0]) {
      throw new DataError(
        `${path}: state [${s}] and label [${l}] are not (N, T, C_z, h, w[, d]) and (N, D_θ)`,
      );
    }
    [this.count, this.frames] = s;
    this.latentShape = s.slice(2);
    this.thetaDim = l[1];
    this.nSteps = opts.length ?? 5;
    this.stride = opts.stride ?? 1;
    const span = (this.nSteps - 1) * this.stride + 1;
    if (!(this.nSteps >= 1 && this.stride >= 1)) throw new DataError(`window length and stride must be ≥ 1`);
    if (span > this.frames) {
      throw new DataError(
        `a window of ${this.nSteps} frames with stride ${this.stride} spans ${span} steps, but ${path} has ` +
          `only ${this.frames} per trajectory: use fewer frames or a smaller stride`,
      );
    }
    this.windowsPerTrajectory = this.frames - span + 1;
    this.labelData = this.count > 0 ? readFloat32(lb, [[], []]) : new Float32Array(0);
  }

  static async open(path: string, opts: LatentCacheOptions = {}): Promise<LatentCache> {
    await ensureH5();
    const f = openRead(path);
    try {
      if (f.attrs["n_frames"]) attrInt(f, "n_frames", path); // validates the type when present
      return new LatentCache(path, f, opts);
    } catch (e) {
      f.close();
      throw e;
    }
  }

  get length(): number {
    return this.count * this.windowsPerTrajectory;
  }
  /** (h, w[, d]): lets the cache act as a WindowSource. */
  get spatialShape(): number[] {
    return this.latentShape.slice(1);
  }
  get channels(): string[] {
    return Array.from({ length: this.latentShape[0] }, (_, c) => `z${c}`);
  }
  get windowShape(): number[] {
    return [this.nSteps, ...this.latentShape];
  }

  label(n: number): Float32Array {
    return this.labelData.slice(n * this.thetaDim, (n + 1) * this.thetaDim);
  }

  /** Window i as (L, C_z, h, w[, d]), filled into out at offset when given. */
  getWindow(
    i: number,
    out?: Float32Array,
    offset = 0,
  ): { data: Float32Array; shape: number[]; label: Float32Array; trajectory: number; t0: number } {
    if (!(Number.isInteger(i) && i >= 0 && i < this.length)) {
      throw new RangeError(`window ${i} out of [0, ${this.length})`);
    }
    const n = Math.floor(i / this.windowsPerTrajectory), t0 = i % this.windowsPerTrajectory;
    const F = this.latentShape.reduce((a, b) => a * b, 1), L = this.nSteps, st = this.state();
    const data = out ?? new Float32Array(L * F);
    const rest = this.latentShape.map(() => [] as []);
    if (this.stride === 1) {
      data.set(readFloat32(st, [[n, n + 1], [t0, t0 + L], ...rest]), offset);
    } else {
      // One slice per frame: HDF5's strided hyperslabs over chunked data measured 5–20× slower.
      for (let l = 0; l < L; l++) {
        const t = t0 + l * this.stride;
        data.set(readFloat32(st, [[n, n + 1], [t, t + 1], ...rest]), offset + l * F);
      }
    }
    return { data, shape: this.windowShape, label: this.label(n), trajectory: n, t0 };
  }

  /** A whole trajectory, (T, C_z, h, w[, d]). */
  readTrajectory(n: number): Float32Array {
    if (!(n >= 0 && n < this.count)) throw new RangeError(`trajectory ${n} out of [0, ${this.count})`);
    return readFloat32(this.state(), [[n, n + 1], [], ...this.latentShape.map(() => [] as [])]);
  }

  private state(): Dataset {
    if (!this.file) throw new Error(`latent cache ${this.path} is closed`);
    return this.stateDs ??= this.file.get("state") as Dataset; // cached: h5wasm's get() costs more than a small read
  }

  close(): void {
    this.file?.close();
    this.file = null;
    this.stateDs = null;
  }
}
