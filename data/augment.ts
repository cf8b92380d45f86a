/**
 * The Well's spatial augmentations (`the_well/data/augmentation.py`), as used by the method (§0): RandomAxisFlip
 * (p = 0.5 per axis), RandomAxisPermute (p = 1), RandomAxisRoll (periodic axes, shift uniform in [0, n)), applied in
 * that order, drawn once per window and applied identically to every frame.
 *
 * Semantics, exactly the reference's:
 * - flip axis a: index i ↦ n_a − 1 − i; a tensor component picks up a factor −1 per index equal to a (vector
 *   components along a change sign, t2 components (a, b≠a) too, (a, a) does not); BC row a swaps its two entries.
 * - permute p: new axis i is old axis p[i] (torch.movedim(src=p, dst=0..D−1)); component i of a vector is old
 *   component p[i], (i, j) of a t2 field is old (p[i], p[j]); BC row i is old row p[i].
 * - roll on every axis whose (post-permute) BC row is [PERIODIC, PERIODIC]: out[i] = in[(i − shift) mod n].
 * The three compose into one gather (an index map computed once per window), so applying costs one pass.
 */
import type { Rng } from "./rng.ts";
import { BC_CODES, type FieldInfo } from "./well_file.ts";

export interface AugmentationConfig {
  flip?: boolean;
  permute?: boolean;
  roll?: boolean;
}

/** One draw: flips over input axes, the permutation, then shifts over output axes (0 = no roll). */
export interface AxisAugmentation {
  flips: boolean[];
  permutation: number[];
  shifts: number[];
}

/** The method's per-dataset augmentations (§0); other datasets get flip + roll, plus permute on square grids. */
export function augmentationsFor(datasetName: string, spatialShape: number[]): AugmentationConfig {
  if (datasetName.startsWith("euler")) return { flip: true, permute: true, roll: true };
  if (datasetName.startsWith("rayleigh_benard")) return { flip: true, roll: true };
  if (datasetName === "turbulence_gravity_cooling") return { flip: true, permute: true };
  return { flip: true, roll: true, permute: spatialShape.every((n) => n === spatialShape[0]) };
}

export function identityAugmentation(D: number): AxisAugmentation {
  return { flips: Array(D).fill(false), permutation: [...Array(D).keys()], shifts: Array(D).fill(0) };
}

/** Draws flips, then a permutation, then shifts, in that fixed order from rng. */
export function drawAugmentation(
  rng: Rng,
  cfg: AugmentationConfig,
  spatialShape: number[],
  boundaryConditions: number[][],
): AxisAugmentation {
  const D = spatialShape.length;
  const a = identityAugmentation(D);
  if (cfg.flip) a.flips = spatialShape.map(() => rng.random() < 0.5);
  if (cfg.permute) a.permutation = rng.permutation(D);
  if (cfg.roll) {
    const bc = augmentBoundaryConditions(boundaryConditions, { ...a, shifts: a.shifts });
    const shape = a.permutation.map((p) => spatialShape[p]);
    a.shifts = bc.map((
      row,
      i,
    ) => (row[0] === BC_CODES.PERIODIC && row[1] === BC_CODES.PERIODIC ? rng.int(shape[i]) : 0));
  }
  return a;
}

/** The (D, 2) boundary tensor after the augmentation. */
export function augmentBoundaryConditions(bc: number[][], a: AxisAugmentation): number[][] {
  const flipped = bc.map((row, d) => (a.flips[d] ? [row[1], row[0]] : [...row]));
  return a.permutation.map((p) => flipped[p]);
}

/** Spatial shape after the augmentation. */
export function augmentShape(spatialShape: number[], a: AxisAugmentation): number[] {
  return a.permutation.map((p) => spatialShape[p]);
}

/** Per-channel description of how a channel transforms: the axis index of each of its tensor components. */
export interface ChannelKind {
  /** First channel of the field this channel belongs to. */
  fieldStart: number;
  order: number;
  /** Tensor indices of this channel, e.g. [1] for momentum_y, [0, 1] for D_xy. */
  index: number[];
}

export function channelKinds(fields: FieldInfo[], D: number): ChannelKind[] {
  const out: ChannelKind[] = [];
  for (const fi of fields) {
    const fieldStart = out.length;
    for (let k = 0; k < fi.channels.length; k++) {
      const index: number[] = [];
      for (let r = fi.order - 1, q = k; r >= 0; r--, q = Math.floor(q / D)) index.unshift(q % D);
      out.push({ fieldStart, order: fi.order, index });
    }
  }
  return out;
}

/**
 * Applies the augmentation to frames laid out (L, C, N1, …, ND) (any leading count L), returning a new array
 * of shape (L, C, augmentShape(...)).
 */
export function applyAugmentation(
  data: Float32Array,
  spatialShape: number[],
  kinds: ChannelKind[],
  a: AxisAugmentation,
): Float32Array {
  const D = spatialShape.length, C = kinds.length;
  const S = spatialShape.reduce((x, y) => x * y, 1);
  if (data.length % (C * S) !== 0) {
    throw new Error(`augment: ${data.length} values are not (L, ${C}, ${spatialShape})`);
  }
  const L = data.length / (C * S);
  const outShape = augmentShape(spatialShape, a);
  const inStride = spatialShape.map((_, d) => spatialShape.slice(d + 1).reduce((x, y) => x * y, 1));

  // Gather map: output flat index → input flat index.
  const src = new Int32Array(S);
  const idx = new Array<number>(D).fill(0); // output multi-index, row-major odometer
  for (let o = 0; o < S; o++) {
    let s = 0;
    for (let i = 0; i < D; i++) {
      const ax = a.permutation[i], n = outShape[i];
      const j = (((idx[i] - a.shifts[i]) % n) + n) % n;
      s += (a.flips[ax] ? spatialShape[ax] - 1 - j : j) * inStride[ax];
    }
    src[o] = s;
    for (let i = D - 1; i >= 0; i--) {
      if (++idx[i] < outShape[i]) break;
      idx[i] = 0;
    }
  }

  // Channel map: output channel → (input channel, sign).
  const srcChannel = new Int32Array(C), sign = new Float32Array(C);
  kinds.forEach((k, c) => {
    let off = 0, sg = 1;
    for (const i of k.index) {
      const old = a.permutation[i];
      off = off * D + old;
      if (a.flips[old]) sg = -sg;
    }
    srcChannel[c] = k.order === 0 ? c : k.fieldStart + off;
    sign[c] = sg;
  });

  const out = new Float32Array(data.length);
  for (let l = 0; l < L; l++) {
    for (let c = 0; c < C; c++) {
      const o0 = (l * C + c) * S, i0 = (l * C + srcChannel[c]) * S, sg = sign[c];
      for (let o = 0; o < S; o++) out[o0 + o] = sg * data[i0 + src[o]];
    }
  }
  return out;
}
