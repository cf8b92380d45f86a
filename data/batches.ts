/**
 * Batches of windows for training: a seeded shuffle per epoch, augmentation and normalization per window, θ per
 * window, and prefetch (batch k+1 is assembled while the caller works on batch k). Then `batchToTensor`, the one
 * function here that touches the GPU.
 *
 * Invariants:
 * - The order of epoch e is a function of (seed, e) only; the augmentation of window i in epoch e is drawn from
 *   its own stream deriveSeed(seed, e, i), so prefetching or batch size never changes what a window looks like.
 * - Order of operations per window: read (physical units) → augment → normalize → θ from the augmented BCs.
 * - Prefetch: reads are synchronous (h5wasm), so the next batch is scheduled as a macrotask right after the current
 *   one is handed out; it runs whenever the caller awaits (GPU readback, onSubmittedWorkDone, a timer). At most
 *   one batch is assembled ahead, so memory is two batches.
 * - Batch shape is (B, C, N1, …, ND) for single frames and (B, L, C, N1, …, ND) for windows of L > 1 frames;
 *   θ is (B, D_θ). drop_last: the epoch's remainder smaller than B is dropped, as in The Well and lola.
 */
import { Tensor } from "../engine/tensor.ts";
import {
  applyAugmentation,
  type AugmentationConfig,
  augmentBoundaryConditions,
  type ChannelKind,
  drawAugmentation,
} from "./augment.ts";
import { deriveSeed, Rng } from "./rng.ts";
import { type Normalizer, thetaVector } from "./transforms.ts";

/**
 * What the loader needs from a dataset: WellDataset (θ built from scalars and BCs) and LatentCache (θ stored as
 * `label`) both satisfy it; tests can pass a fake.
 */
export interface WindowSource {
  readonly length: number;
  readonly nSteps: number;
  readonly spatialShape: number[];
  readonly channels: string[];
  getWindow(i: number, out?: Float32Array, offset?: number): {
    label?: Float32Array;
    boundaryConditions?: number[][];
    constantScalars?: { name: string; value: number }[];
  };
}

export interface Batch {
  /** (B, C, …) or (B, L, C, …) float32, normalized if a normalizer was given. */
  x: Float32Array;
  shape: number[];
  /** (B, D_θ) float32. */
  theta: Float32Array;
  thetaDim: number;
  /** Dataset indices of the windows, in batch order. */
  indices: number[];
  epoch: number;
  /** Batch number within the epoch. */
  step: number;
}

export interface LoaderOptions {
  batchSize: number;
  seed?: number;
  shuffle?: boolean;
  /** Drop the last incomplete batch of each epoch (default true). */
  dropLast?: boolean;
  normalizer?: Normalizer | null;
  /** Augmentations to draw per window; needs `channelKinds`. */
  augment?: AugmentationConfig | null;
  channelKinds?: ChannelKind[];
}

/** The permutation of 0..n−1 used in epoch `epoch` (identity when shuffle is off). */
export function epochOrder(n: number, seed: number, epoch: number, shuffle = true): Int32Array {
  const order = Int32Array.from({ length: n }, (_, i) => i);
  if (shuffle) new Rng(deriveSeed(seed, 0x5eed, epoch)).shuffle(order);
  return order;
}

export class WindowLoader {
  readonly batchSize: number;
  readonly seed: number;
  private readonly opts: LoaderOptions;

  constructor(readonly source: WindowSource, opts: LoaderOptions) {
    if (!(Number.isInteger(opts.batchSize) && opts.batchSize >= 1)) throw new Error(`batchSize must be ≥ 1`);
    if (opts.augment && !opts.channelKinds) throw new Error(`augmentation needs channelKinds`);
    this.batchSize = opts.batchSize;
    this.seed = opts.seed ?? 0;
    this.opts = opts;
  }

  get batchesPerEpoch(): number {
    const n = this.source.length / this.batchSize;
    return (this.opts.dropLast ?? true) ? Math.floor(n) : Math.ceil(n);
  }

  /** Assembles batch `step` of epoch `epoch` synchronously. */
  assemble(
    epoch: number,
    step: number,
    order = epochOrder(this.source.length, this.seed, epoch, this.opts.shuffle ?? true),
  ): Batch {
    const src = this.source, B0 = this.batchSize;
    const indices = Array.from(order.subarray(step * B0, Math.min((step + 1) * B0, order.length)));
    const B = indices.length, L = src.nSteps, C = src.channels.length;
    const S = src.spatialShape.reduce((a, b) => a * b, 1);
    const win = L * C * S;
    const x = new Float32Array(B * win);
    const thetas: Float32Array[] = [];
    let spatial = src.spatialShape;
    indices.forEach((i, b) => {
      const w = src.getWindow(i, x, b * win);
      let bc = w.boundaryConditions ?? [];
      if (this.opts.augment) {
        if (!w.boundaryConditions) throw new Error(`augmentation needs the windows' boundary conditions`);
        const a = drawAugmentation(
          new Rng(deriveSeed(this.seed, epoch, i)),
          this.opts.augment,
          src.spatialShape,
          bc,
        );
        x.set(
          applyAugmentation(x.subarray(b * win, (b + 1) * win), src.spatialShape, this.opts.channelKinds!, a),
          b * win,
        );
        bc = augmentBoundaryConditions(bc, a);
        const shape = a.permutation.map((p) => src.spatialShape[p]);
        if (b > 0 && shape.join() !== spatial.join()) {
          throw new Error(`augmentation permuted a non-square grid: windows of one batch differ in shape`);
        }
        spatial = shape;
      }
      thetas.push(w.label ?? thetaVector(w.constantScalars ?? [], bc));
    });
    this.opts.normalizer?.normalize(x, S);
    const thetaDim = thetas[0]?.length ?? 0;
    const theta = new Float32Array(B * thetaDim);
    thetas.forEach((t, b) => theta.set(t, b * thetaDim));
    const shape = L === 1 ? [B, C, ...spatial] : [B, L, C, ...spatial];
    return { x, shape, theta, thetaDim, indices, epoch, step };
  }

  /** One epoch, prefetching one batch ahead. */
  async *epoch(epoch: number): AsyncGenerator<Batch> {
    const order = epochOrder(this.source.length, this.seed, epoch, this.opts.shuffle ?? true);
    const n = this.batchesPerEpoch;
    if (n === 0) return;
    let next = this.later(epoch, 0, order);
    try {
      for (let k = 0; k < n; k++) {
        const batch = await next.promise;
        if (k + 1 < n) next = this.later(epoch, k + 1, order);
        yield batch;
      }
    } finally {
      next.cancel(); // the caller may stop early: no timer or rejection is left behind
    }
  }

  /** Epochs 0, 1, 2, … without end; the caller stops when its step budget is spent. */
  async *forever(firstEpoch = 0): AsyncGenerator<Batch> {
    if (this.batchesPerEpoch === 0) {
      throw new Error(`dataset of ${this.source.length} windows < one batch of ${this.batchSize}`);
    }
    for (let e = firstEpoch;; e++) yield* this.epoch(e);
  }

  private later(
    epoch: number,
    step: number,
    order: Int32Array,
  ): { promise: Promise<Batch>; cancel: () => void } {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const promise = new Promise<Batch>((resolve, reject) => {
      timer = setTimeout(() => {
        try {
          resolve(this.assemble(epoch, step, order));
        } catch (e) {
          reject(e);
        }
      }, 0);
    });
    promise.catch(() => {}); // surfaced when awaited; never an unhandled rejection if abandoned
    return { promise, cancel: () => clearTimeout(timer) };
  }
}

/** Uploads a batch as engine tensors: x (B, C, …) or (B, L, C, …), θ (B, D_θ) (null when D_θ = 0). */
export function batchToTensor(batch: Batch): { x: Tensor; theta: Tensor | null } {
  const B = batch.shape[0];
  return {
    x: Tensor.fromData(batch.x, batch.shape),
    theta: batch.thetaDim > 0 ? Tensor.fromData(batch.theta, [B, batch.thetaDim]) : null,
  };
}
