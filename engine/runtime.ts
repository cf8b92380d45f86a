/**
 * Execution runtime: the size-bucketed buffer pool, the single open command encoder that every op dispatches
 * into, the pipeline cache, and the only sync points (`flush` submits, `readBuffer` waits).
 *
 * Invariants:
 * - Nothing waits except `readBuffer`. Ops only encode.
 * - A storage buffer released while the open encoder may still reference it is reused inside that encoder only
 *   for GPU-written results (WebGPU orders every dispatch and copy after the earlier ones that touch the same
 *   buffer), so a training step's footprint is its live peak, not the sum of its temporaries. A host write
 *   (`queue.writeBuffer`) is ordered before all unsubmitted work, so it only ever lands in a buffer no pending
 *   command touches: host-written acquisitions take committed free buffers only, and `writeBuffer` into a
 *   buffer recycled within the open encoder submits that encoder first.
 * - Pipelines are cached by WGSL source; each kernel carries a readable name for profiles and errors.
 * - Free buffers are handed out oldest first whatever order they came back in, so a step that repeats its
 *   acquisitions binds the same buffers and finds its bind groups (cached by pipeline and resources) and its
 *   uniform buffers' contents again: encoding a step creates no bind groups and writes only changed uniforms.
 */
import { checkGpuErrors, gpu } from "./device.ts";
import { nextTimestampWrites, profilingEnabled, resolveQueries } from "./profile.ts";
import type { Kernel } from "../kernels/common.ts";

export type { Kernel };

export const STORAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
const UNIFORM = GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST;

/** Round a byte size up to a bucket: 4 buckets per power of two, so pooling wastes at most 25%. */
export function bucketSize(bytes: number): number {
  const b = Math.max(256, Math.ceil(bytes / 4) * 4);
  const p = 2 ** Math.floor(Math.log2(b));
  if (b === p) return p;
  const step = p / 4;
  return Math.ceil(b / step) * step;
}

/** A stable number per buffer (never reused), for the bind-group cache's keys and the pool's order. */
const ids = new WeakMap<object, number>();
let nextId = 1;
export function resourceId(r: object): number {
  let id = ids.get(r);
  if (id === undefined) ids.set(r, id = nextId++);
  return id;
}

export interface MemoryStats {
  /** Bytes held by live tensors and other acquired buffers. */
  bytesInUse: number;
  /** Bytes sitting free in the pool (allocated on the device, reusable). */
  bytesPooled: number;
  /** Highest bytesInUse seen. */
  peakBytesInUse: number;
  /** Buffers created on the device so far. */
  buffersCreated: number;
}

class BufferPool {
  private free = new Map<string, GPUBuffer[]>();
  /** Released while the open encoder may still use them: reusable in it for GPU writes only. */
  private deferred = new Map<string, GPUBuffer[]>();
  /** Taken from `deferred` since the last submit: a host write into one must wait for that submit. */
  private recycled = new Set<GPUBuffer>();
  stats: MemoryStats = { bytesInUse: 0, bytesPooled: 0, peakBytesInUse: 0, buffersCreated: 0 };

  /**
   * A buffer of at least `bytes`. `hostWrite`: the caller fills it with queue.writeBuffer before any dispatch
   * writes it, so it must not be one that unsubmitted work still uses.
   */
  acquire(bytes: number, usage = STORAGE, hostWrite = usage !== STORAGE): GPUBuffer {
    const size = bucketSize(bytes);
    const key = `${usage}:${size}`;
    let buf = this.free.get(key)?.pop();
    if (!buf && !hostWrite) {
      buf = this.deferred.get(key)?.pop();
      if (buf) this.recycled.add(buf);
    }
    if (buf) {
      this.stats.bytesPooled -= size;
    } else {
      buf = gpu().device.createBuffer({ size, usage });
      resourceId(buf);
      this.stats.buffersCreated++;
    }
    this.stats.bytesInUse += size;
    this.stats.peakBytesInUse = Math.max(this.stats.peakBytesInUse, this.stats.bytesInUse);
    return buf;
  }

  release(buf: GPUBuffer, encoderOpen: boolean): void {
    const key = `${buf.usage}:${buf.size}`;
    this.stats.bytesInUse -= buf.size;
    this.stats.bytesPooled += buf.size;
    if (encoderOpen) put(this.deferred, key, buf);
    else putOrdered(this.free, key, buf);
  }

  /** Whether unsubmitted work may still use `buf` from an earlier owner (see `writeBuffer`). */
  isRecycled(buf: GPUBuffer): boolean {
    return this.recycled.has(buf);
  }

  /**
   * Called right after a submit: buffers released during that encoder become reusable by anyone. Each free list
   * is kept in one order (highest id first, so `pop` takes the oldest buffer): a step that repeats the same
   * acquisitions then gets the same buffers every time, and the bind-group cache finds its groups again.
   */
  recycleDeferred(): void {
    for (const [k, list] of this.deferred) for (const b of list) putOrdered(this.free, k, b);
    this.deferred.clear();
    this.recycled.clear();
  }

  /** Destroy every pooled buffer (bytes in use are untouched). */
  trim(): void {
    for (const list of this.free.values()) for (const b of list) b.destroy();
    this.free.clear();
    bindGroups.clear();
    let deferred = 0;
    for (const list of this.deferred.values()) for (const b of list) deferred += b.size;
    this.stats.bytesPooled = deferred;
  }
}

function put(lists: Map<string, GPUBuffer[]>, key: string, buf: GPUBuffer) {
  let list = lists.get(key);
  if (!list) lists.set(key, list = []);
  list.push(buf);
}

/** `put` keeping the list in descending id order: `pop` then takes the oldest free buffer, whatever the order
 * buffers came back in. */
function putOrdered(lists: Map<string, GPUBuffer[]>, key: string, buf: GPUBuffer) {
  let list = lists.get(key);
  if (!list) lists.set(key, list = []);
  const id = resourceId(buf);
  let lo = 0, hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (resourceId(list[mid]) > id) lo = mid + 1;
    else hi = mid;
  }
  list.splice(lo, 0, buf);
}

export const pool = new BufferPool();

let encoder: GPUCommandEncoder | null = null;
let pass: GPUComputePassEncoder | null = null;
let dispatchesSinceSubmit = 0;
const pipelines = new Map<string, GPUComputePipeline>();
/** The pipeline of each Kernel object seen (a WeakMap: kernels from uncached builders come and go). */
const byKernel = new WeakMap<Kernel, GPUComputePipeline>();
export const counters = { dispatches: 0, submits: 0, readbacks: 0, pipelines: 0, bindGroups: 0 };
/**
 * Bind groups by pipeline and bound resources. A step that repeats its dispatches on the same buffers (the pool's
 * order above) reuses its groups instead of creating ~1,000 a step (~15 µs each on the host). Ids are never
 * reused, so a destroyed buffer's groups are never hit again; the map is cleared when it grows past a bound.
 */
const bindGroups = new Map<string, GPUBindGroup>();
const BIND_GROUP_CACHE_MAX = 1 << 14;

function getEncoder(): GPUCommandEncoder {
  if (!encoder) encoder = gpu().device.createCommandEncoder();
  return encoder;
}

export function pipelineFor(k: Kernel): GPUComputePipeline {
  // A cached builder's Kernel object (kernels/common.ts cachedKernel) finds its pipeline without hashing the source.
  let p = byKernel.get(k) ?? pipelines.get(k.code);
  if (!p) {
    const device = gpu().device;
    const module = device.createShaderModule({ label: k.name, code: k.code });
    p = device.createComputePipeline({
      label: k.name,
      layout: "auto",
      compute: { module, entryPoint: "main" },
    });
    pipelines.set(k.code, p);
    counters.pipelines++;
  }
  byKernel.set(k, p);
  return p;
}

export type Binding = GPUBuffer | { buffer: GPUBuffer; offset?: number; size?: number } | GPUTextureView;

/** Encode one compute dispatch; bindings are @binding(0..n-1) of group 0, in order. */
export function dispatch(k: Kernel, bindings: Binding[], workgroups: [number, number?, number?]): void {
  const device = gpu().device;
  const p = pipelineFor(k);
  let key = String(resourceId(p));
  for (const b of bindings) {
    if (b instanceof GPUBuffer) key += `,${resourceId(b)}`;
    else if (b instanceof GPUTextureView) key += `,v${resourceId(b)}`;
    else key += `,${resourceId(b.buffer)}:${b.offset ?? 0}:${b.size ?? -1}`;
  }
  let bg = bindGroups.get(key);
  if (!bg) {
    bg = device.createBindGroup({
      layout: p.getBindGroupLayout(0),
      entries: bindings.map((b, i) => ({
        binding: i,
        resource: b instanceof GPUTextureView || "buffer" in b ? b : { buffer: b },
      })),
    });
    if (bindGroups.size >= BIND_GROUP_CACHE_MAX) bindGroups.clear();
    bindGroups.set(key, bg);
    counters.bindGroups++;
  }
  if (profilingEnabled()) {
    endPass();
    let tw = nextTimestampWrites(k.name);
    if (!tw) {
      flush();
      tw = nextTimestampWrites(k.name)!;
    }
    pass = getEncoder().beginComputePass({ timestampWrites: tw });
  }
  if (!pass) pass = getEncoder().beginComputePass();
  pass.setPipeline(p);
  pass.setBindGroup(0, bg);
  pass.dispatchWorkgroups(workgroups[0], workgroups[1] ?? 1, workgroups[2] ?? 1);
  if (profilingEnabled()) endPass();
  dispatchesSinceSubmit++;
  counters.dispatches++;
}

/** Encode a buffer-to-buffer copy (ends the open compute pass). */
export function copyBuffer(
  src: GPUBuffer,
  srcOffset: number,
  dst: GPUBuffer,
  dstOffset: number,
  bytes: number,
) {
  endPass();
  getEncoder().copyBufferToBuffer(src, srcOffset, dst, dstOffset, bytes);
  dispatchesSinceSubmit++;
}

/** Encode a buffer-to-texture copy (ends the open compute pass); ordered with the dispatches around it. */
export function copyBufferToTexture(
  src: GPUTexelCopyBufferInfo,
  dst: GPUTexelCopyTextureInfo,
  size: [number, number, number],
) {
  endPass();
  getEncoder().copyBufferToTexture(src, dst, size);
  dispatchesSinceSubmit++;
}

function endPass() {
  if (pass) {
    pass.end();
    pass = null;
  }
}

/** True while the open encoder holds commands that have not been submitted. */
export function hasPendingWork(): boolean {
  return dispatchesSinceSubmit > 0;
}

/** Submit everything encoded so far (does not wait). */
export function flush(): void {
  if (!encoder) {
    pool.recycleDeferred();
    return;
  }
  endPass();
  const afterSubmit = resolveQueries(encoder);
  gpu().device.queue.submit([encoder.finish()]);
  afterSubmit?.();
  encoder = null;
  dispatchesSinceSubmit = 0;
  counters.submits++;
  pool.recycleDeferred();
}

/** Release a pooled buffer (deferred while unsubmitted work may still use it). */
export function releaseBuffer(buf: GPUBuffer): void {
  pool.release(buf, hasPendingWork());
}

const uniformContents = new WeakMap<GPUBuffer, Uint8Array>();

/** A small uniform buffer with the given 32-bit words; released (deferred) by the caller via releaseBuffer. */
export function uniformBuffer(words: ArrayBufferView): GPUBuffer {
  const buf = pool.acquire(Math.max(16, words.byteLength), UNIFORM);
  // Only the host writes uniform buffers, so one that already holds these words needs no write (~35 µs each):
  // with the pool's fixed order, a repeated step gets back the buffers it filled last time.
  const bytes = new Uint8Array(words.buffer, words.byteOffset, words.byteLength);
  const last = uniformContents.get(buf);
  if (last && last.length === bytes.length && last.every((v, i) => v === bytes[i])) return buf;
  uniformContents.set(buf, bytes.slice());
  gpu().device.queue.writeBuffer(buf, 0, words.buffer as ArrayBuffer, words.byteOffset, words.byteLength);
  return buf;
}

/**
 * Upload host data into a buffer. Safe for pooled buffers (see the invariants above): a buffer recycled inside
 * the open encoder gets that encoder submitted first, so the write cannot land before its earlier owner's
 * pending commands.
 */
export function writeBuffer(buf: GPUBuffer, data: ArrayBufferView, offset = 0): void {
  if (pool.isRecycled(buf)) flush();
  gpu().device.queue.writeBuffer(buf, offset, data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
}

/** The one sync point: submit pending work and read `bytes` of `buf` back to the host. */
export async function readBuffer(buf: GPUBuffer, bytes: number, offset = 0): Promise<ArrayBuffer> {
  const staging = gpu().device.createBuffer({
    size: Math.ceil(bytes / 4) * 4,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  copyBuffer(buf, offset, staging, 0, Math.ceil(bytes / 4) * 4);
  flush();
  counters.readbacks++;
  try {
    await staging.mapAsync(GPUMapMode.READ);
    checkGpuErrors();
    return staging.getMappedRange().slice(0, bytes);
  } finally {
    staging.destroy();
  }
}

/** Submit and wait until the GPU is idle (for benchmarks and tests; training loops never call this). */
export async function sync(): Promise<void> {
  flush();
  await gpu().device.queue.onSubmittedWorkDone();
  checkGpuErrors();
}

/**
 * Consecutive runs of `items` that fit one dispatch's storage bindings: `per` bindings an item beside
 * `reserved` others, within the device's maxStorageBuffersPerShaderStage (the multi-tensor kernels).
 */
export function bindingGroups<T>(items: readonly T[], per: number, reserved: number): T[][] {
  const size = Math.max(1, Math.floor((gpu().limits.maxStorageBuffersPerShaderStage - reserved) / per));
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** Workgroup grid for `n` invocations of `wg` threads: 2-D when more than 65535 groups are needed. */
export function grid1d(n: number, wg: number): [number, number] {
  const groups = Math.ceil(n / wg);
  const max = gpu().limits.maxComputeWorkgroupsPerDimension;
  if (groups <= max) return [groups, 1];
  const y = Math.ceil(groups / max);
  return [Math.ceil(groups / y), y];
}
