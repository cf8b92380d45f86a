/**
 * Checkpoints in the safetensors format (8-byte little-endian header size, JSON header with dtype/shape/
 * data_offsets and `__metadata__` strings, then raw little-endian data), with PyTorch state-dict names, so
 * weights move both ways with `safetensors.torch`. Written to a temp name and renamed: never half a file.
 */
import { flush, writeBuffer } from "./runtime.ts";
import { numel, shapeStr, Tensor } from "./tensor.ts";

export interface LoadedTensor {
  shape: number[];
  data: Float32Array;
}

export class CheckpointError extends Error {
  override name = "CheckpointError";
}

/** Save GPU tensors (read back here: call outside training steps) plus string metadata. */
export async function saveSafetensors(
  path: string,
  tensors: Record<string, Tensor>,
  metadata: Record<string, string> = {},
) {
  const names = Object.keys(tensors).sort();
  const arrays: Float32Array[] = [];
  for (const k of names) arrays.push(await tensors[k].read());
  const header: Record<string, unknown> = { __metadata__: metadata };
  let off = 0;
  names.forEach((k, i) => {
    header[k] = {
      dtype: "F32",
      shape: [...tensors[k].shape],
      data_offsets: [off, off + arrays[i].byteLength],
    };
    off += arrays[i].byteLength;
  });
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const hbytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + hbytes.length + off);
  new DataView(out.buffer).setBigUint64(0, BigInt(hbytes.length), true);
  out.set(hbytes, 8);
  let p = 8 + hbytes.length;
  for (const a of arrays) {
    out.set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), p);
    p += a.byteLength;
  }
  await replaceAtomically(path, (tmp) => Deno.writeFile(tmp, out));
}

/** Writes through `write(tmp)` then renames to `path`; a failure (full disk, kill signal) removes the temp file. */
async function replaceAtomically(path: string, write: (tmp: string) => Promise<void>): Promise<void> {
  const tmp = `${path}.tmp-${Deno.pid}`;
  try {
    await write(tmp);
    await Deno.rename(tmp, path);
  } catch (e) {
    try {
      await Deno.remove(tmp);
    } catch { /* never written */ }
    throw e;
  }
}

/** Read every tensor of a safetensors file (F32, F16 and BF16 are converted to float32). */
export async function loadSafetensors(
  path: string,
): Promise<{ tensors: Map<string, LoadedTensor>; metadata: Record<string, string> }> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    throw new CheckpointError(`cannot read checkpoint ${path}: ${(e as Error).message}`);
  }
  const truncated = (what: string) =>
    new CheckpointError(
      `${path} is truncated (${bytes.length} bytes, ${what}): it was cut off while being written or copied; ` +
        `use another checkpoint or retrain`,
    );
  if (bytes.length < 8) throw truncated("shorter than the 8-byte header size");
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const hlen64 = dv.getBigUint64(0, true);
  if (hlen64 > BigInt(100_000_000)) {
    throw new CheckpointError(`${path} is not a safetensors file (header size ${hlen64} is implausible)`);
  }
  const hlen = Number(hlen64);
  if (hlen > bytes.length - 8) throw truncated(`the header alone declares ${hlen} bytes`);
  let header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + hlen)));
  } catch {
    throw new CheckpointError(`${path} is not a safetensors file (header is not JSON)`);
  }
  if (!header || typeof header !== "object" || Array.isArray(header)) {
    throw new CheckpointError(`${path} is not a safetensors file (header is not a JSON object)`);
  }
  const base = 8 + hlen;
  const tensors = new Map<string, LoadedTensor>();
  let metadata: Record<string, string> = {};
  for (const [name, info] of Object.entries(header)) {
    if (name === "__metadata__") {
      metadata = info as unknown as Record<string, string>;
      continue;
    }
    const width = DTYPE_BYTES[info?.dtype];
    if (!width) throw new CheckpointError(`${path}: tensor ${name} has unsupported dtype ${info?.dtype}`);
    const [s, e] = info.data_offsets ?? [];
    const shapeOk = Array.isArray(info.shape) && info.shape.every((d) => Number.isInteger(d) && d >= 0);
    if (!shapeOk || !Number.isInteger(s) || !Number.isInteger(e) || s < 0 || e < s) {
      throw new CheckpointError(`${path} is not a valid safetensors file (bad entry for tensor ${name})`);
    }
    const n = numel(info.shape);
    if (e - s !== n * width) {
      throw new CheckpointError(
        `${path}: tensor ${name} of shape ${shapeStr(info.shape)} ${info.dtype} needs ${n * width} bytes, ` +
          `its data_offsets span ${e - s}: the file is damaged`,
      );
    }
    if (base + e > bytes.length) {
      throw truncated(`tensor ${name} ends at byte ${base + e}`);
    }
    const raw = bytes.slice(base + s, base + e);
    let data: Float32Array;
    if (info.dtype === "F32") data = new Float32Array(raw.buffer, 0, n);
    else {
      const u = new Uint16Array(raw.buffer, 0, n);
      data = new Float32Array(n);
      for (let i = 0; i < n; i++) data[i] = info.dtype === "BF16" ? bf16(u[i]) : f16(u[i]);
    }
    tensors.set(name, { shape: info.shape, data });
  }
  return { tensors, metadata };
}

const DTYPE_BYTES: Record<string, number> = { F32: 4, F16: 2, BF16: 2 };

function bf16(u: number): number {
  return new Float32Array(new Uint32Array([u << 16]).buffer)[0];
}

function f16(u: number): number {
  const s = u & 0x8000 ? -1 : 1, e = (u >> 10) & 0x1f, m = u & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/**
 * Copy loaded tensors into existing GPU tensors by name. Every target must be present with its exact shape;
 * the error lists all missing and mis-shaped names at once. Extra entries in the file are returned.
 */
export function loadInto(
  targets: Record<string, Tensor>,
  loaded: Map<string, LoadedTensor>,
  source = "checkpoint",
): string[] {
  const missing: string[] = [], wrong: string[] = [];
  for (const [k, t] of Object.entries(targets)) {
    const l = loaded.get(k);
    if (!l) missing.push(k);
    else if (l.shape.join() !== t.shape.join()) {
      wrong.push(`${k} ${shapeStr(l.shape)} != expected ${shapeStr(t.shape)}`);
    }
  }
  if (missing.length || wrong.length) {
    const parts = [];
    if (missing.length) {
      parts.push(
        `missing ${missing.length}: ${missing.slice(0, 5).join(", ")}${missing.length > 5 ? ", ..." : ""}`,
      );
    }
    if (wrong.length) {
      parts.push(
        `mis-shaped ${wrong.length}: ${wrong.slice(0, 3).join("; ")}${wrong.length > 3 ? "; ..." : ""}`,
      );
    }
    throw new CheckpointError(`${source} does not match the model: ${parts.join(" | ")}`);
  }
  flush(); // queued writes must not overtake encoded work that still reads the old values
  for (const [k, t] of Object.entries(targets)) writeBuffer(t.buffer, loaded.get(k)!.data);
  return [...loaded.keys()].filter((k) => !(k in targets));
}

/** Write a text file under a temp name, then rename: readers never see half of it. */
export async function writeTextAtomic(path: string, text: string): Promise<void> {
  await replaceAtomically(path, (tmp) => Deno.writeTextFile(tmp, text));
}
