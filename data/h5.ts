/**
 * The only place that touches h5wasm directly: loading the library, checking that a path is an HDF5 file,
 * opening files (alone or through a bounded pool), and decoding attributes the way h5py wrote them.
 *
 * Invariants:
 * - Files are opened in place through h5wasm's Node build (Emscripten NODERAWFS): nothing reads a whole file;
 *   data comes in through `Dataset.slice`.
 * - HDF5 library errors throw (the throwing error handler is switched on once), and every user-facing failure
 *   is a one-line DataError that names the file and the missing group/attribute.
 * - `H5Pool` never holds more than `maxOpen` files open; `closeAll()` releases them (The Well issue #51: file
 *   handles kept forever make memory grow).
 * - Attribute decoding accepts both encodings seen in the wild: h5py enum booleans (json_value true/false) and
 *   int8 booleans (0/1, what h5wasm writes); int64 as BigInt; an empty name list stored as a float64 (0,) array.
 */
import h5wasm from "h5wasm/node";
import type { Attribute, Dataset, File as H5File, Group } from "h5wasm/node";
import { DataError } from "./errors.ts";

export type { Dataset, Group, H5File };

let readyPromise: Promise<void> | null = null;
let isReady = false;

/** Loads the wasm module once; every other function here requires it to have resolved. */
export function ensureH5(): Promise<void> {
  readyPromise ??= h5wasm.ready.then((m) => {
    // Without this, HDF5 prints a diagnostic stack to stderr and returns -1 instead of throwing.
    (m as unknown as { activate_throwing_error_handler(): number }).activate_throwing_error_handler();
    isReady = true;
  });
  return readyPromise;
}

function requireReady(): void {
  if (!isReady) throw new Error("h5wasm is not loaded: await ensureH5() first");
}

const SIGNATURE = [0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]; // "\x89HDF\r\n\x1a\n"

/** Throws a DataError unless `path` is an existing regular file carrying the HDF5 signature. */
export function assertHdf5File(path: string): void {
  let size: number;
  try {
    const st = Deno.statSync(path);
    if (!st.isFile) throw new DataError(`${path} is not a file`);
    size = st.size;
  } catch (e) {
    if (e instanceof DataError) throw e;
    throw new DataError(`${path} does not exist: check the path`);
  }
  const f = Deno.openSync(path, { read: true });
  try {
    const buf = new Uint8Array(8);
    // The superblock sits at 0, or at 512·2^k after a user block.
    for (let off = 0; off + 8 <= size; off = off === 0 ? 512 : off * 2) {
      f.seekSync(off, Deno.SeekMode.Start);
      let got = 0;
      while (got < 8) {
        const n = f.readSync(buf.subarray(got));
        if (n === null) break;
        got += n;
      }
      if (got === 8 && SIGNATURE.every((b, i) => buf[i] === b)) return;
      if (off >= 1 << 20) break;
    }
  } finally {
    f.close();
  }
  throw new DataError(
    `${path} is not an HDF5 file (no HDF5 signature): pass a .hdf5/.h5 file or a dataset folder`,
  );
}

/** Opens an existing HDF5 file read-only, after checking it. */
export function openRead(path: string): H5File {
  requireReady();
  assertHdf5File(path);
  try {
    return new h5wasm.File(path, "r");
  } catch (e) {
    throw new DataError(`${path} could not be opened as HDF5 (${firstLine(e)})`);
  }
}

/** Creates (truncates) an HDF5 file for writing. */
export function openWrite(path: string): H5File {
  requireReady();
  try {
    return new h5wasm.File(path, "w");
  } catch (e) {
    throw new DataError(
      `${path} could not be created (${firstLine(e)}): check the folder exists and is writable`,
    );
  }
}

/** Runs fn on a file opened read-only and closes it whatever happens. */
export async function withH5<T>(path: string, fn: (f: H5File) => T): Promise<T> {
  await ensureH5();
  const f = openRead(path);
  try {
    return fn(f);
  } finally {
    f.close();
  }
}

function firstLine(e: unknown): string {
  const s = e instanceof Error ? e.message : String(e);
  const lines = s.split("\n").map((l) => l.trim()).filter(Boolean);
  const minor = lines.filter((l) => l.startsWith("minor:")).pop();
  return (minor ?? lines[0] ?? "unknown error").replace(/^minor:\s*/, "");
}

/** A bounded LRU of read-only file handles, keyed by path. */
export class H5Pool {
  private readonly open = new Map<string, H5File>();
  constructor(readonly maxOpen = 8) {
    if (maxOpen < 1) throw new Error("H5Pool needs maxOpen ≥ 1");
  }

  get(path: string): H5File {
    let f = this.open.get(path);
    if (f) {
      this.open.delete(path); // re-insert: Map order is the recency order
      this.open.set(path, f);
      return f;
    }
    f = openRead(path);
    this.open.set(path, f);
    if (this.open.size > this.maxOpen) {
      const [oldest, h] = this.open.entries().next().value!;
      this.open.delete(oldest);
      h.close();
    }
    return f;
  }

  get size(): number {
    return this.open.size;
  }

  closeAll(): void {
    for (const f of this.open.values()) f.close();
    this.open.clear();
  }
}

// ---- navigation with named errors ----

export function requireGroup(parent: Group, name: string, file: string): Group {
  const g = parent.get(name);
  if (!(g instanceof h5wasm.Group)) {
    throw new DataError(
      `${file}: missing group /${joinPath(parent.path, name)}: this is not a file in The Well format`,
    );
  }
  return g;
}

export function requireDataset(parent: Group, name: string, file: string): Dataset {
  const d = parent.get(name);
  if (!(d instanceof h5wasm.Dataset)) {
    throw new DataError(
      `${file}: missing dataset /${joinPath(parent.path, name)}: this is not a file in The Well format`,
    );
  }
  return d;
}

export function hasChild(parent: Group, name: string): boolean {
  return parent.keys().includes(name);
}

function joinPath(parent: string, name: string): string {
  return (parent === "/" ? name : `${parent.replace(/^\//, "")}/${name}`);
}

interface HasAttrs {
  path: string;
  attrs: Record<string, Attribute>;
}

function requireAttr(obj: HasAttrs, name: string, file: string): Attribute {
  const a = obj.attrs[name];
  if (!a) {
    throw new DataError(
      `${file}: missing attribute '${name}' on ${obj.path}: this is not a file in The Well format`,
    );
  }
  return a;
}

function badAttr(obj: HasAttrs, name: string, file: string, want: string, got: unknown): DataError {
  return new DataError(
    `${file}: attribute '${name}' on ${obj.path} should be ${want}, got ${JSON.stringify(got)}`,
  );
}

export function attrString(obj: HasAttrs, name: string, file: string): string {
  const v = requireAttr(obj, name, file).json_value;
  if (typeof v === "string") return v;
  if (Array.isArray(v) && v.length === 1 && typeof v[0] === "string") return v[0];
  throw badAttr(obj, name, file, "a string", v);
}

/** An integer attribute; int64 (BigInt in `.value`) arrives as a plain number through json_value. */
export function attrInt(obj: HasAttrs, name: string, file: string): number {
  const v = requireAttr(obj, name, file).json_value;
  const x = Array.isArray(v) && v.length === 1 ? v[0] : v;
  if (typeof x === "number" && Number.isInteger(x)) return x;
  throw badAttr(obj, name, file, "an integer", v);
}

export function attrNumber(obj: HasAttrs, name: string, file: string): number {
  const v = requireAttr(obj, name, file).json_value;
  const x = Array.isArray(v) && v.length === 1 ? v[0] : v;
  if (typeof x === "number") return x;
  throw badAttr(obj, name, file, "a number", v);
}

/** A list of names; h5py stores `[]` as a float64 (0,) array, which is accepted as empty. */
export function attrStringList(obj: HasAttrs, name: string, file: string): string[] {
  const v = requireAttr(obj, name, file).json_value;
  if (typeof v === "string") return [v];
  if (Array.isArray(v) && v.every((s) => typeof s === "string")) return v as string[];
  if (Array.isArray(v) && v.length === 0) return [];
  throw badAttr(obj, name, file, "a list of strings", v);
}

export function attrStringListOptional(obj: HasAttrs, name: string, file: string): string[] {
  return obj.attrs[name] ? attrStringList(obj, name, file) : [];
}

function toBool(x: unknown): boolean | null {
  if (typeof x === "boolean") return x;
  if (x === 0 || x === 1) return x === 1;
  return null;
}

/** A boolean: h5py enum (json true/false) or int8 0/1. */
export function attrBool(obj: HasAttrs, name: string, file: string): boolean {
  const v = requireAttr(obj, name, file).json_value;
  const b = toBool(Array.isArray(v) && v.length === 1 ? v[0] : v);
  if (b === null) throw badAttr(obj, name, file, "a boolean", v);
  return b;
}

export function attrBoolList(obj: HasAttrs, name: string, file: string): boolean[] {
  const v = requireAttr(obj, name, file).json_value;
  const arr = Array.isArray(v) ? v : [v];
  const out = arr.map(toBool);
  if (out.some((b) => b === null)) throw badAttr(obj, name, file, "a list of booleans", v);
  return out as boolean[];
}

/** The dataset's shape as plain numbers ([] for a 0-d dataset). */
export function shapeOf(d: Dataset): number[] {
  return (d.shape ?? []).map(Number);
}

/** Reads a numeric dataset (or a slice of it) as float64, whatever its stored numeric type. */
export function readNumbers(
  d: Dataset,
  ranges?: Array<[number, number] | [number, number, number] | []>,
): Float64Array {
  const v = ranges ? d.slice(ranges) : d.value;
  if (typeof v === "number") return Float64Array.of(v);
  if (typeof v === "bigint") return Float64Array.of(Number(v));
  if (typeof v === "boolean") return Float64Array.of(v ? 1 : 0);
  if (v instanceof BigInt64Array || v instanceof BigUint64Array) return Float64Array.from(v, Number);
  if (ArrayBuffer.isView(v)) return Float64Array.from(v as unknown as ArrayLike<number>);
  if (Array.isArray(v)) return Float64Array.from((v as unknown[]).flat(8) as number[], (x) => Number(x));
  throw new DataError(`dataset ${d.path} is not numeric`);
}

/** Reads a float32 slice (the common case of field data) without an extra copy when the type already matches. */
export function readFloat32(
  d: Dataset,
  ranges: Array<[number, number] | [number, number, number] | []>,
): Float32Array {
  const v = d.slice(ranges);
  if (v instanceof Float32Array) return v;
  if (v instanceof BigInt64Array || v instanceof BigUint64Array) return Float32Array.from(v, Number);
  if (ArrayBuffer.isView(v)) return Float32Array.from(v as unknown as ArrayLike<number>);
  if (typeof v === "number") return Float32Array.of(v);
  throw new DataError(`dataset ${d.path} is not numeric`);
}
