/**
 * space_to_depth / depth_to_space for 2-D and 3-D maps (method §1.2–1.3): blocks of r per spatial axis move into
 * channels with output channel index c·r^N + sub-position, the sub-position row-major over (dy, dx) or
 * (dz, dy, dx) — the order of lola's `Patchify`/`Unpatchify` (einops "C (H h) (W w) -> (C h w) H W"), which for
 * 2-D is also torch.nn.functional.pixel_unshuffle / pixel_shuffle (exported under those names for 4-D inputs).
 *
 * Both are one reshape–permute–reshape, so forward and backward are a single gather each (the backward of a
 * permute is the inverse permute); no kernel of their own.
 */
import type { Shape } from "../tensor.ts";
import { shapeStr, Tensor } from "../tensor.ts";
import { permute, reshape } from "./shape.ts";

const range = (n: number) => [...Array(n).keys()];

/** (B, C, S₀·r, …) → (B, C·r^N, S₀, …): channel c·r^N + row-major sub-position. */
export function space_to_depth(x: Tensor, r = 2): Tensor {
  const n = x.ndim - 2;
  const [b, c, ...sp] = x.shape;
  if ((n !== 2 && n !== 3) || !Number.isInteger(r) || r < 1 || sp.some((s) => s % r !== 0)) {
    throw new Error(
      `space_to_depth: need (B, C, H, W[, D]) with every spatial size divisible by ${r}, got ${
        shapeStr(x.shape)
      }`,
    );
  }
  const split = [b, c, ...sp.flatMap((s) => [s / r, r])]; // (B, C, S₀/r, r, S₁/r, r, …)
  const perm = [0, 1, ...range(n).map((i) => 3 + 2 * i), ...range(n).map((i) => 2 + 2 * i)]; // (B, C, r…, S/r…)
  return reshape(permute(reshape(x, split), perm), [b, c * r ** n, ...sp.map((s) => s / r)]);
}

/** Exact inverse of space_to_depth: (B, C·r^N, S₀, …) → (B, C, S₀·r, …). */
export function depth_to_space(x: Tensor, r = 2): Tensor {
  const n = x.ndim - 2;
  const [b, cr, ...sp] = x.shape;
  if ((n !== 2 && n !== 3) || !Number.isInteger(r) || r < 1 || cr % r ** n !== 0) {
    throw new Error(
      `depth_to_space: need (B, C·${r}^N, H, W[, D]) with N = 2 or 3, got ${shapeStr(x.shape)}`,
    );
  }
  const c = cr / r ** n;
  const split = [b, c, ...Array(n).fill(r), ...sp]; // (B, C, r…, S…)
  const perm = [0, 1, ...range(n).flatMap((i) => [2 + n + i, 2 + i])]; // (B, C, S₀, r, S₁, r, …)
  return reshape(permute(reshape(x, split), perm), [b, c, ...sp.map((s) => s * r)]);
}

/** torch.nn.functional.pixel_unshuffle for (B, C, H, W). */
export function pixel_unshuffle(x: Tensor, downscale_factor: number): Tensor {
  if (x.ndim !== 4) throw new Error(`pixel_unshuffle: expected (B, C, H, W), got ${shapeStr(x.shape)}`);
  return space_to_depth(x, downscale_factor);
}

/** torch.nn.functional.pixel_shuffle for (B, C·r², H, W). */
export function pixel_shuffle(x: Tensor, upscale_factor: number): Tensor {
  if (x.ndim !== 4) throw new Error(`pixel_shuffle: expected (B, C·r², H, W), got ${shapeStr(x.shape)}`);
  return depth_to_space(x, upscale_factor);
}

/** Float64 reference by explicit index arithmetic (independent of the reshape/permute path). */
function referenceSpaceToDepth(x: Float64Array, shape: Shape, r = 2): Float64Array {
  const [b, c, ...sp] = shape;
  const n = sp.length, sub = r ** n, osp = sp.map((s) => s / r);
  const out = new Float64Array(x.length);
  const pix = sp.reduce((a, s) => a * s, 1);
  for (let i = 0; i < b * c; i++) {
    for (let p = 0; p < pix; p++) {
      let rem = p, q = 0, o = 0, ostride = 1;
      const coords: number[] = [];
      for (let a = n - 1; a >= 0; a--) {
        coords[a] = rem % sp[a];
        rem = Math.floor(rem / sp[a]);
      }
      for (let a = 0; a < n; a++) q = q * r + (coords[a] % r);
      for (let a = n - 1; a >= 0; a--) {
        o += Math.floor(coords[a] / r) * ostride;
        ostride *= osp[a];
      }
      const bb = Math.floor(i / c), cc = i % c;
      out[((bb * c + cc) * sub + q) * (pix / sub) + o] = x[i * pix + p];
    }
  }
  return out;
}

export const reference = { space_to_depth: referenceSpaceToDepth };
