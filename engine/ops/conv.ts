/**
 * conv2d / conv3d (PyTorch names and layouts: x (B, C_in, H, W[, D]), weight (C_out, C_in, k, k[, k]), bias (C_out))
 * with stride 1 and "same" padding, zeros or circular (`padding_mode` as in torch.nn.Conv2d), odd k — the convs
 * of the autoencoder (method §1.2–1.5: k = 3, and k = 1 at attention levels; zeros padding).
 *
 * Forward and input gradient are one implicit-GEMM kernel (kernels/conv.wgsl.ts) reading weights re-laid as
 * (reduction channel, tap, output channel): for the input gradient the re-layout transposes the channels and
 * reverses the taps, which is the adjoint of a stride-1 "same" convolution under both padding modes. The weight
 * gradient is the split-K pass of the same generator plus one sum over splits; the bias gradient sums g.
 * The JVP (conv is bilinear in x and weight) is conv(ẋ, W) + conv(x, Ẇ) + ḃ: two forward passes, ḃ riding as the
 * second one's bias.
 * Tile shapes come from a per-adapter table (filled from bench/kernels/conv.ts sweeps); the float64 reference
 * sits at the bottom. On software adapters the forward-form passes (forward and input gradient) read x and the
 * re-laid weights from textures instead (kernels/conv_tex.wgsl.ts, `convTexConfig`), where the shape allows.
 */
import {
  type ConvConfig,
  type ConvGeom,
  convGrid,
  convKernel,
  type ConvTile,
  convWeightLayoutKernel,
  LAYOUT_WG,
  weightLayoutDims,
  type WgradConfig,
  wgradGrid,
  wgradKernel,
  wgradRowTiles,
  type WgradTile,
} from "../../kernels/conv.wgsl.ts";
import {
  CONV_TEX_WG,
  type ConvTexConfig,
  convTexInvocations,
  convTexKernel,
  convTexOp,
  type ConvTexWgradConfig,
  convTexWgradInvocations,
  convTexWgradKernel,
} from "../../kernels/conv_tex.wgsl.ts";
import { texRows, upload } from "./matmul_tex.ts";
import { type AdapterKind, type AdapterTable, adapterTable } from "../adapter.ts";
import { needsGrad, record } from "../autograd.ts";
import { gpu } from "../device.ts";
import { type Binding, dispatch, grid1d } from "../runtime.ts";
import { numel, type Shape, shapeStr, Tensor } from "../tensor.ts";
import { add, map } from "./elementwise.ts";
import { sum } from "./reduce.ts";

export type { ConvGeom, ConvTile, WgradTile };

export interface ConvOptions {
  /** "zeros" (default; the reference autoencoder always pads with zeros) or "circular" (periodic wrap). */
  padding_mode?: "zeros" | "circular";
}

/** Tile choice for one adapter: functions of the problem so small or odd shapes get fitting tiles. */
export interface ConvTiles {
  forward: (g: ConvGeom) => ConvTile;
  weightGrad: (g: ConvGeom) => WgradTile;
  /** Split the weight-gradient reduction until about this many invocations run. */
  wgradInvocations: number;
}

const pow2AtMost = (x: number, cap: number) => {
  let p = 1;
  while (p * 2 <= Math.min(x, cap)) p *= 2;
  return p;
};

/** Columns per invocation for direct kernels: 8 (vec4 × 2) where the last axis allows, else ≤ 8 scalars. */
function directColumns(sl: number): number {
  if (sl % 8 === 0) return 8;
  if (sl % 4 === 0) return 4;
  return Math.min(sl, 8);
}

/**
 * CPU adapters (lavapipe/llvmpipe, SwiftShader): direct loads, 4 channels × 4 rows × 8 columns per invocation,
 * weight gradient 4 × 2 channel pairs over 2 rows × 8 columns. On lavapipe (2 cores, FMA ceiling 65 GFLOP/s) this
 * is ≈ 44% of the ceiling for the 2-D forward / input gradient and ≈ 27% for the weight gradient at the AE shapes
 * (staged tiles: 17% and 6%; best scalar-load direct variant: 16%). Measured with bench/kernels/conv.ts.
 */
const CPU_TILES: ConvTiles = {
  forward: (g) => ({
    stage: false,
    rm: 4,
    ry: Math.min(4, g.spatial[g.spatial.length - 2]),
    rn: directColumns(g.spatial[g.spatial.length - 1]),
    wg: 64,
    tm: 1,
    ty: 1,
    tx: 1,
    bk: 1,
  }),
  weightGrad: (g) => ({
    stage: false,
    rm: 4,
    rc: g.spatial.length === 3 && g.k > 1 ? 1 : 2,
    rn: directColumns(g.spatial[g.spatial.length - 1]),
    ry: Math.min(2, g.spatial[g.spatial.length - 2]),
    wg: 8,
    tm: 1,
    tc: 1,
  }),
  wgradInvocations: 2048,
};

/**
 * GPUs (default for unknown adapters): workgroup-memory tiling, 32 output channels × 8 rows × 16 columns per
 * workgroup of 128, 4 × 2 × 4 outputs per invocation, 8 reduction channels per step; the tile shrinks to fit
 * small images. Not yet tuned on hardware.
 */
const GPU_TILES: ConvTiles = {
  forward: (g) => {
    const sr = g.spatial[g.spatial.length - 2], sl = g.spatial[g.spatial.length - 1];
    const ry = Math.min(2, sr), rn = Math.min(4, sl);
    return {
      stage: true,
      rm: 4,
      ry,
      rn,
      wg: 1,
      tm: 8,
      ty: pow2AtMost(Math.ceil(sr / ry), 4),
      tx: pow2AtMost(Math.ceil(sl / rn), 4),
      bk: 8,
    };
  },
  weightGrad: (g) => ({
    stage: true,
    rm: 2,
    rc: g.spatial.length === 3 && g.k > 1 ? 1 : 2,
    rn: Math.min(16, g.spatial[g.spatial.length - 1]),
    ry: 1,
    wg: 1,
    tm: 8,
    tc: 8,
  }),
  wgradInvocations: 1 << 17,
};

/**
 * Tiles of the texture passes (kernels/conv_tex.wgsl.ts) per adapter, for passes of at least `minWork`
 * multiply-adds (smaller ones compile faster as direct kernels and take no time either way); none on GPUs.
 * Forward form: `ro` output channels × `rx` positions along the last axis per invocation. Weight gradient:
 * `ro` × `rc` channel pairs per invocation, rows split until about `invocations` run. lavapipe (2026-12-04,
 * `default` autoencoder Adam step, batch 8): 4.67 s with the direct kernels; forward form at 16 × 8 2.61 s
 * (8 × 8: 2.99, 8 × 16: 2.85, 16 × 16: 2.84, 32 × 8: 2.96, 16 × 4: 3.26); with the weight gradient at 8 × 4
 * over ~256 invocations 1.31 s (4 × 4 / 512: 1.64, 8 × 4 / 512: 1.49, 8 × 8 / 512: 1.32, 8 × 4 / 1024: 1.49,
 * 16 × 8 / 256: 1.48). The 64² 16-channel forward conv 52 → 16 ms; the encoder's forward at batch 8
 * 602 → 240 ms.
 */
export const CONV_TEX_TILES = adapterTable<
  { ro: number; rx: number; minWork: number; wgrad: { ro: number; rc: number; invocations: number } } | null
>({
  lavapipe: { ro: 16, rx: 8, minWork: 2 ** 20, wgrad: { ro: 8, rc: 4, invocations: 256 } },
  default: null,
});

let texOverride: boolean | null = null;

/** Force the texture pass on (where its layout allows) or off (tests, benchmarks); `null` restores the table. */
export function setConvTexture(on: boolean | null): void {
  texOverride = on;
}

/** This adapter's texture tile when a pass of `geom` can take it (else null: the direct kernels below). */
function texTile(geom: ConvGeom) {
  const tile = CONV_TEX_TILES.for(gpu().adapterKind) ?? (texOverride ? CONV_TEX_TILES.for("lavapipe") : null);
  if (!tile || texOverride === false || tilesOverride) return null;
  const X = geom.spatial[geom.spatial.length - 1], halo = Math.ceil((geom.k - 1) / 8);
  if (X % 4 !== 0 || X / 4 < halo) return null;
  const work = geom.batch * numel(geom.spatial) * geom.cin * geom.cout * geom.k ** geom.spatial.length;
  if (work < tile.minWork && !texOverride) return null;
  const texels = (geom.batch * Math.max(geom.cin, geom.cout) * numel(geom.spatial)) / 4;
  return texRows(texels) === null ? null : tile;
}

/** The weight-gradient texture pass's config for x (B, cin, ...S) and g (B, cout, ...S), or null. */
export function convTexWgradConfig(geom: ConvGeom): ConvTexWgradConfig | null {
  const tile = texTile(geom);
  if (!tile) return null;
  const { ro, rc, invocations } = tile.wgrad;
  const rows = geom.batch * numel(geom.spatial.slice(0, -1));
  const blocks = Math.ceil(geom.cout / ro) * Math.ceil(geom.cin / rc);
  let splits = Math.max(1, Math.min(rows, Math.ceil(invocations / blocks)));
  splits = Math.ceil(rows / Math.ceil(rows / splits)); // no empty split
  return { ...geom, ro, rc, splits };
}

/** The texture pass's config for a forward-form pass, or null when it does not apply (then the tiles below). */
export function convTexConfig(geom: ConvGeom, bias: boolean): ConvTexConfig | null {
  const tile = texTile(geom);
  if (!tile) return null;
  const c: ConvTexConfig = { ...geom, bias, ro: tile.ro, rx: tile.rx };
  // texTile checked the input's texture; the re-laid weights need one too.
  const wTexels = (geom.cin * geom.k ** geom.spatial.length * convTexOp(c)) / 4;
  return texRows(wTexels) !== null ? c : null;
}

/** Per-adapter tiles (engine/adapter.ts): direct loads on software adapters, staged tiles elsewhere. */
export const CONV_TILES: AdapterTable<ConvTiles> = adapterTable({ cpu: CPU_TILES, default: GPU_TILES });

let tilesOverride: ConvTiles | null = null;

/** Force a tile choice (tests exercise both strategies; benchmarks sweep); `null` restores the table. */
export function setConvTiles(t: ConvTiles | null): void {
  tilesOverride = t;
}

/** The override, else this adapter's (or `kind`'s) tiles. */
export function convTiles(kind: AdapterKind = gpu().adapterKind): ConvTiles {
  return tilesOverride ?? CONV_TILES.for(kind);
}

export const tilePresets = { cpu: CPU_TILES, gpu: GPU_TILES };

/** Staged tiles hold bk reduction channels in workgroup memory: halve bk until the slab fits the device. */
function fitWorkgroupMemory(c: ConvConfig): ConvConfig {
  if (!c.tile.stage) return c;
  const limit = gpu().limits.maxComputeWorkgroupStorageSize;
  const n = c.spatial.length, k = c.k, t = c.tile;
  const kz = n === 3 ? k : 1, taps = k ** n;
  const bytes = (bk: number) =>
    4 * bk * (kz * (t.ty * t.ry + k - 1) * (t.tx * t.rn + k - 1) + taps * t.tm * t.rm);
  let bk = t.bk;
  while (bk > 1 && bytes(bk) > limit) bk = Math.max(1, bk >> 1);
  if (bytes(bk) > limit) {
    throw new Error(`conv: staged tile needs ${bytes(bk)} B of workgroup memory (limit ${limit})`);
  }
  return bk === t.bk ? c : { ...c, tile: { ...t, bk } };
}

// ---------------------------------------------------------------------------------------------------------------
// Raw passes (no autodiff)

/** Re-lay weight (C_out, C_in, taps) as (r, tap, o) for the forward pass or the input gradient. */
function layoutWeights(weight: Tensor, pass: "forward" | "input_grad", rp: number, op: number): Tensor {
  const [cout, cin] = weight.shape;
  const taps = weight.size / (cout * cin);
  const a = Tensor.empty([rp * taps * op]);
  const k = convWeightLayoutKernel({ cout, cin, taps, pass, rp, op });
  dispatch(k, [weight.buffer, a.buffer], grid1d(a.size, LAYOUT_WG));
  return a;
}

/** One forward-form pass: out (B, geom.cout, ...S) from inp (B, geom.cin, ...S). */
function gemmPass(
  inp: Tensor,
  weight: Tensor,
  bias: Tensor | undefined,
  geom: ConvGeom,
  pass: "forward" | "input_grad",
) {
  const tex = convTexConfig(geom, !!bias);
  if (tex) {
    const a = layoutWeights(weight, pass, geom.cin, convTexOp(tex));
    const out = Tensor.empty([geom.batch, geom.cout, ...geom.spatial]);
    const rx = texRows(inp.size / 4), rw = texRows(a.size / 4);
    const bindings: Binding[] = [upload(inp, "conv_x", rx!), upload(a, "conv_w", rw!), out.buffer];
    if (bias) bindings.push(bias.buffer);
    dispatch(convTexKernel(tex), bindings, grid1d(convTexInvocations(tex), CONV_TEX_WG));
    a.dispose();
    return out;
  }
  const cfg = fitWorkgroupMemory({ ...geom, tile: convTiles().forward(geom), bias: !!bias });
  const { rp, op } = weightLayoutDims(cfg);
  const a = layoutWeights(weight, pass, rp, op);
  const out = Tensor.empty([geom.batch, geom.cout, ...geom.spatial]);
  const bindings = bias
    ? [inp.buffer, a.buffer, bias.buffer, out.buffer]
    : [inp.buffer, a.buffer, out.buffer];
  dispatch(convKernel(cfg), bindings, convGrid(cfg, gpu().limits.maxComputeWorkgroupsPerDimension));
  a.dispose();
  return out;
}

/** Geometry of x (B, C, ...S) convolved into `cout` channels by a k^N kernel. */
function geometry(x: Tensor, cout: number, k: number, circular: boolean): ConvGeom {
  return { batch: x.shape[0], cin: x.shape[1], cout, spatial: x.shape.slice(2), k, circular };
}

/** y = conv(x, weight) + bias, no autodiff. */
export function convForwardRaw(
  x: Tensor,
  weight: Tensor,
  bias: Tensor | undefined,
  circular: boolean,
): Tensor {
  return gemmPass(x, weight, bias, geometry(x, weight.shape[0], weight.shape[2], circular), "forward");
}

/** dL/dx from g = dL/dy: the forward kernel over g with transposed, tap-reversed weights. */
export function convInputGradRaw(g: Tensor, weight: Tensor, circular: boolean): Tensor {
  return gemmPass(
    g,
    weight,
    undefined,
    geometry(g, weight.shape[1], weight.shape[2], circular),
    "input_grad",
  );
}

/** dL/dweight (C_out, C_in, k...) from x and g: split-K partials, then one sum over the splits. */
export function convWeightGradRaw(x: Tensor, g: Tensor, weight: Shape, circular: boolean): Tensor {
  const geom = geometry(x, weight[0], weight[2], circular);
  const tex = convTexWgradConfig(geom);
  if (tex) {
    const texels = x.size / 4, gTexels = g.size / 4;
    const partial = Tensor.empty([tex.splits, numel(weight)]);
    const bindings = [
      upload(x, "conv_x", texRows(texels)!),
      upload(g, "conv_g", texRows(gTexels)!),
      partial.buffer,
    ];
    dispatch(convTexWgradKernel(tex), bindings, grid1d(convTexWgradInvocations(tex), CONV_TEX_WG));
    return sumSplits(partial, weight);
  }
  const tiles = convTiles();
  const tile = tiles.weightGrad(geom);
  const rows = wgradRowTiles({ ...geom, tile });
  const blocks = tile.stage
    ? Math.ceil(geom.cout / (tile.tm * tile.rm)) * Math.ceil(geom.cin / (tile.tc * tile.rc)) * tile.tm *
      tile.tc
    : Math.ceil(geom.cout / tile.rm) * Math.ceil(geom.cin / tile.rc);
  let splits = Math.max(1, Math.min(rows, Math.ceil(tiles.wgradInvocations / blocks)));
  splits = Math.ceil(rows / Math.ceil(rows / splits)); // no empty split
  const cfg: WgradConfig = { ...geom, tile, splits };
  const partial = Tensor.empty([splits, numel(weight)]);
  dispatch(wgradKernel(cfg), [x.buffer, g.buffer, partial.buffer], wgradGrid(cfg));
  return sumSplits(partial, weight);
}

/** (splits, |W|) partial sums → W's shape (frees `partial`). */
function sumSplits(partial: Tensor, weight: Shape): Tensor {
  if (partial.shape[0] === 1) {
    const dw = partial.view(weight);
    partial.dispose();
    return dw;
  }
  const total = sum(partial, 0);
  partial.dispose();
  const dw = total.view(weight);
  total.dispose();
  return dw;
}

/** dL/dbias: g summed over batch and space (two contiguous reductions, no permute). */
export function convBiasGradRaw(g: Tensor): Tensor {
  const [b, c] = g.shape;
  const g3 = g.view([b, c, g.size / (b * c)]);
  const perImage = sum(g3, 2);
  g3.dispose();
  const out = sum(perImage, 0);
  perImage.dispose();
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Public ops

function checkShapes(n: number, x: Tensor, weight: Tensor, bias: Tensor | undefined, op: string) {
  const k = weight.shape[2];
  const bad = x.ndim !== n + 2 || weight.ndim !== n + 2 || weight.shape[1] !== x.shape[1] ||
    weight.shape.slice(2).some((d) => d !== k) || k % 2 !== 1 ||
    (bias && (bias.ndim !== 1 || bias.shape[0] !== weight.shape[0]));
  if (bad) {
    throw new Error(
      `${op}: expected x (B, C_in, ${n === 2 ? "H, W" : "H, W, D"}), weight (C_out, C_in, ${
        Array(n).fill("k").join(", ")
      }) with odd k, bias (C_out); got x ${shapeStr(x.shape)}, weight ${shapeStr(weight.shape)}${
        bias ? `, bias ${shapeStr(bias.shape)}` : ""
      }`,
    );
  }
}

function convNd(n: 2 | 3, x: Tensor, weight: Tensor, bias: Tensor | undefined, opts: ConvOptions): Tensor {
  const op = `conv${n}d`;
  checkShapes(n, x, weight, bias, op);
  const mode = opts.padding_mode ?? "zeros";
  if (mode !== "zeros" && mode !== "circular") {
    throw new Error(`${op}: padding_mode must be "zeros" or "circular", got "${mode}"`);
  }
  const circular = mode === "circular";
  const y = convForwardRaw(x, weight, bias, circular);
  const inputs = bias ? [x, weight, bias] : [x, weight];
  return record(y, op, inputs, (g) => {
    const gx = needsGrad(x) ? convInputGradRaw(g, weight, circular) : null;
    const gw = needsGrad(weight) ? convWeightGradRaw(x, g, weight.shape, circular) : null;
    if (!bias) return [gx, gw];
    return [gx, gw, needsGrad(bias) ? convBiasGradRaw(g) : null];
  }, ([tx, tw, tb]) => {
    const viaW = tw
      ? convForwardRaw(x, tw, tb ?? undefined, circular)
      : tb
      ? map([tb.view([tb.size, ...Array(n).fill(1)])], "in0", "conv_jvp_bias", y.shape)
      : null;
    const viaX = tx ? convForwardRaw(tx, weight, undefined, circular) : null;
    if (viaX && viaW) return add(viaX, viaW);
    return viaX ?? viaW;
  });
}

/** torch.nn.functional.conv2d with stride 1 and padding k // 2 (padding_mode "zeros" or "circular"). */
export function conv2d(x: Tensor, weight: Tensor, bias?: Tensor, opts: ConvOptions = {}): Tensor {
  return convNd(2, x, weight, bias, opts);
}

/** torch.nn.functional.conv3d with stride 1 and padding k // 2 on (B, C, H, W, D). */
export function conv3d(x: Tensor, weight: Tensor, bias?: Tensor, opts: ConvOptions = {}): Tensor {
  return convNd(3, x, weight, bias, opts);
}

/** 2·B·C_out·C_in·k^N·pixels: the FLOPs of one pass (forward, input gradient or weight gradient). */
export function convFlops(xShape: Shape, wShape: Shape): number {
  return 2 * xShape[0] * numel(wShape) * numel(xShape.slice(2));
}

// ---------------------------------------------------------------------------------------------------------------
// Float64 reference

/** Direct N-D convolution, stride 1, same padding: y[b,o,p] = bias[o] + Σ_{i,t} w[o,i,t] · x[b,i,p+t−h]. */
function referenceConv(
  x: Float64Array,
  xShape: Shape,
  w: Float64Array,
  wShape: Shape,
  bias: Float64Array | null,
  circular: boolean,
): Float64Array {
  const [batch, cin] = xShape, cout = wShape[0], k = wShape[2], h = (k - 1) / 2;
  const sp = xShape.slice(2), n = sp.length, p = numel(sp), taps = k ** n;
  const out = new Float64Array(batch * cout * p);
  const coords = (i: number, dims: Shape) => {
    const c: number[] = new Array(dims.length);
    for (let a = dims.length - 1; a >= 0; a--) {
      c[a] = i % dims[a];
      i = Math.floor(i / dims[a]);
    }
    return c;
  };
  const tapOff = Array.from({ length: taps }, (_, t) => coords(t, Array(n).fill(k)).map((v) => v - h));
  // Source pixel index for every (pixel, tap), -1 where padding gives zero.
  const src = new Int32Array(p * taps);
  for (let px = 0; px < p; px++) {
    const pc = coords(px, sp);
    for (let t = 0; t < taps; t++) {
      let idx = 0, ok = true;
      for (let a = 0; a < n; a++) {
        let v = pc[a] + tapOff[t][a];
        if (circular) v = ((v % sp[a]) + sp[a]) % sp[a];
        else if (v < 0 || v >= sp[a]) ok = false;
        idx = idx * sp[a] + v;
      }
      src[px * taps + t] = ok ? idx : -1;
    }
  }
  for (let b = 0; b < batch; b++) {
    for (let o = 0; o < cout; o++) {
      const ob = (b * cout + o) * p;
      for (let px = 0; px < p; px++) {
        let s = bias ? bias[o] : 0;
        for (let i = 0; i < cin; i++) {
          const xb = (b * cin + i) * p, wb = (o * cin + i) * taps;
          for (let t = 0; t < taps; t++) {
            const j = src[px * taps + t];
            if (j >= 0) s += w[wb + t] * x[xb + j];
          }
        }
        out[ob + px] = s;
      }
    }
  }
  return out;
}

export const reference = { conv: referenceConv };
