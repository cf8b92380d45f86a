/**
 * Tensor: a float32, contiguous, row-major view of a reference-counted GPU storage, plus the autodiff fields.
 * Also the scopes that give temporaries back to the pool.
 *
 * Invariants:
 * - A tensor created inside `scope(fn)` is disposed when `fn` returns unless it is returned (then it moves to the
 *   parent scope) or `keep()`-ed. Outside every scope a tensor lives until `dispose()`.
 * - The outermost scope submits its work when it ends (no wait), so a training step's temporaries are reusable
 *   by the next step and memory stays flat however rarely the loop reads back.
 * - Views (`reshape`, `detach`) share storage; the buffer goes back to the pool when the last view is disposed.
 * - Persistent tensors (parameters, gradients, optimizer state) are never tracked by scopes.
 */
import { flush, pool, readBuffer, releaseBuffer, STORAGE, writeBuffer } from "./runtime.ts";

export type Shape = readonly number[];

export interface TapeNode {
  /** Op name, for error messages. */
  op: string;
  inputs: Tensor[];
  /** Given dL/dout, return dL/dinput for each input (null where an input needs no gradient). */
  backward: (gradOut: Tensor) => (Tensor | null)[];
}

class Storage {
  refs = 1;
  constructor(readonly buffer: GPUBuffer) {}
}

const scopes: Set<Tensor>[] = [];
let nextId = 0;

export function numel(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function shapeStr(shape: Shape): string {
  return `(${shape.join(", ")})`;
}

export class Tensor {
  readonly shape: Shape;
  readonly size: number;
  requiresGrad = false;
  grad: Tensor | null = null;
  node: TapeNode | null = null;
  /** Optional name (parameters carry their state-dict key). */
  name?: string;
  /** Creation order in this process: backward() tells the gradients it made from tensors it was given. */
  readonly id = nextId++;
  private storage: Storage | null;
  private persistentFlag: boolean;

  private constructor(shape: Shape, storage: Storage, persistent: boolean) {
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 1) throw new Error(`invalid tensor shape ${shapeStr(shape)}`);
    }
    this.shape = Object.freeze([...shape]);
    this.size = numel(shape);
    this.storage = storage;
    this.persistentFlag = persistent;
    if (!persistent && scopes.length) scopes[scopes.length - 1].add(this);
  }

  /**
   * Uninitialised tensor from the pool, for a kernel to fill (`hostWrite`: for `writeBuffer` instead, which
   * must not get a buffer that unsubmitted work still uses; see engine/runtime.ts).
   */
  static empty(shape: Shape, opts: { persistent?: boolean; hostWrite?: boolean } = {}): Tensor {
    const buf = pool.acquire(numel(shape) * 4, STORAGE, opts.hostWrite ?? false);
    return new Tensor(shape, new Storage(buf), opts.persistent ?? false);
  }

  static fromData(
    data: ArrayLike<number>,
    shape: Shape,
    opts: { requiresGrad?: boolean; persistent?: boolean; name?: string } = {},
  ): Tensor {
    if (data.length !== numel(shape)) {
      throw new Error(`fromData: ${data.length} values do not fill shape ${shapeStr(shape)}`);
    }
    const t = Tensor.empty(shape, { persistent: opts.persistent, hostWrite: true });
    const f = data instanceof Float32Array ? data : Float32Array.from(data);
    writeBuffer(t.buffer, f);
    t.requiresGrad = opts.requiresGrad ?? false;
    t.name = opts.name;
    return t;
  }

  /** A trainable leaf: persistent, requires grad. */
  static parameter(data: ArrayLike<number>, shape: Shape, name?: string): Tensor {
    return Tensor.fromData(data, shape, { requiresGrad: true, persistent: true, name });
  }

  get buffer(): GPUBuffer {
    if (!this.storage) {
      throw new Error(
        `use of a disposed tensor ${shapeStr(this.shape)}${this.name ? ` (${this.name})` : ""}`,
      );
    }
    return this.storage.buffer;
  }

  get byteSize(): number {
    return this.size * 4;
  }

  get ndim(): number {
    return this.shape.length;
  }

  get isDisposed(): boolean {
    return this.storage === null;
  }

  get persistent(): boolean {
    return this.persistentFlag;
  }

  /** A view of the same storage with another shape of equal size (no autodiff: see ops.reshape). */
  view(shape: Shape): Tensor {
    if (numel(shape) !== this.size) {
      throw new Error(`cannot view ${shapeStr(this.shape)} as ${shapeStr(shape)}`);
    }
    const s = this.storage!;
    s.refs++;
    return new Tensor(shape, s, false);
  }

  /** Copy to the host (the only sync point). */
  async read(): Promise<Float32Array> {
    return new Float32Array(await readBuffer(this.buffer, this.byteSize));
  }

  async item(): Promise<number> {
    if (this.size !== 1) throw new Error(`item() on a tensor of shape ${shapeStr(this.shape)}`);
    return (await this.read())[0];
  }

  /** Give the storage back (deferred until submitted work that uses it is done). Idempotent. */
  dispose(): void {
    const s = this.storage;
    if (!s) return;
    this.storage = null;
    this.node = null;
    if (--s.refs === 0) releaseBuffer(s.buffer);
    if (!this.persistentFlag) { for (const sc of scopes) sc.delete(this); }
  }

  /** Whether another tensor views the same storage. */
  get shared(): boolean {
    return (this.storage?.refs ?? 0) > 1;
  }

  /** Untrack from scopes: the caller now owns it (it must call dispose). */
  keep(): this {
    for (const sc of scopes) sc.delete(this);
    this.persistentFlag = true;
    return this;
  }
}

function collect(value: unknown, out: Set<Tensor>, depth = 0) {
  if (depth > 4 || value === null || typeof value !== "object") return;
  if (value instanceof Tensor) {
    out.add(value);
    if (value.grad) out.add(value.grad);
    return;
  }
  if (Array.isArray(value)) { for (const v of value) collect(v, out, depth + 1); }
  else if (value.constructor === Object) { for (const v of Object.values(value)) collect(v, out, depth + 1); }
}

/**
 * Run `fn`; every non-persistent tensor it created is disposed afterwards except those in its return value
 * (tensors, arrays or plain objects of tensors), which move to the enclosing scope. `fn` must be synchronous.
 */
export function scope<T>(fn: () => T): T {
  const mine = new Set<Tensor>();
  scopes.push(mine);
  let result: T;
  try {
    result = fn();
    if (result instanceof Promise) {
      throw new Error("scope(fn): fn must be synchronous (encode, then read outside)");
    }
  } catch (e) {
    scopes.pop();
    for (const t of mine) t.dispose();
    throw e;
  }
  scopes.pop();
  const kept = new Set<Tensor>();
  collect(result, kept);
  for (const t of mine) {
    if (kept.has(t)) {
      if (scopes.length) scopes[scopes.length - 1].add(t);
    } else t.dispose();
  }
  if (scopes.length === 0) flush();
  return result;
}

/** The id the next tensor will get (see `Tensor.id`). */
export function nextTensorId(): number {
  return nextId;
}

/** Number of tensors tracked by open scopes (for leak tests). */
export function scopedTensorCount(): number {
  return scopes.reduce((s, sc) => s + sc.size, 0);
}
