/**
 * Stride-1 "same" convolution (zeros or circular padding, odd k, 2-D or 3-D) reading its input and weights
 * from rgba32float textures: the software adapters' forward and input-gradient pass (engine/ops/conv.ts asks
 * `convTexConfig`). kernels/matmul_tex.wgsl.ts says why textures: on lavapipe a storage load at a
 * per-invocation address is a per-lane loop with a store-forwarding stall, a texel fetch an unrolled gather.
 *
 * Layout and invariants:
 * - The input x (B, C_r, ...S) is flattened into a texture of TEX_WIDTH texels per row, 4 floats per texel
 *   along the last spatial axis, whose length X must be a multiple of 4 (so a row of the image starts on a
 *   texel) and at least 4·halo texels long.
 * - Weights are (C_r, taps, O_p) with O_p a multiple of `ro` (kernels/conv.wgsl.ts's layout kernel: zeros in
 *   the padding; taps reversed and channels swapped for the input gradient), 4 output channels per texel.
 * - Each invocation computes `rx` consecutive outputs along x (a multiple of 4) for `ro` output channels at
 *   one (b, outer position). Per reduction channel and per row offset it loads rx/4 texels plus `halo` on each
 *   side (halo = ⌈(k−1)/2 / 4⌉), wrapped (circular) or zeroed (zeros padding) at texel granularity, which is
 *   exact because X is a multiple of 4; every tap then reads a constant index of those values.
 * - Outputs past O or X are not stored; their weight texels are padding zeros or the next rows' values.
 */
import { cachedKernel, type Kernel, linearIndex, MAIN_BUILTINS, stridesOf } from "./common.ts";
import type { ConvGeom } from "./conv.wgsl.ts";
import { texelLoad, texelLoaders } from "./matmul_tex.wgsl.ts";

/** A forward-form pass's geometry (kernels/conv.wgsl.ts: `cin` reduces, `cout` is produced) and its tile. */
export type ConvTexConfig = ConvGeom & { bias: boolean; ro: number; rx: number };

export const CONV_TEX_WG = 64;

/** Output channels in the weight layout (a multiple of ro). */
export function convTexOp(c: ConvTexConfig): number {
  return Math.ceil(c.cout / c.ro) * c.ro;
}

export function convTexInvocations(c: ConvTexConfig): number {
  const X = c.spatial[c.spatial.length - 1], outer = c.spatial.slice(0, -1).reduce((a, b) => a * b, 1);
  return c.batch * outer * Math.ceil(c.cout / c.ro) * Math.ceil(X / c.rx);
}

/** WGSL for the segment's texel columns `col{q}` (and `colv{q}` validity, zeros padding) around texel `xq`. */
function segmentColumns(seg: number, halo: number, X4: number, circular: boolean): string[] {
  return Array.from({ length: seg }, (_, q) => {
    const e = `i32(xq) + ${q - halo}`;
    return circular
      ? `let col${q} = u32((${e} + ${X4}) % ${X4});`
      : `let colv${q} = ${e} >= 0 && ${e} < ${X4}; let col${q} = u32(clamp(${e}, 0, ${X4 - 1}));`;
  });
}

/**
 * The k^(n−1) offsets over the outer axes, each with WGSL defining its source row `row{i}` (wrapped or
 * clamped) and validity `rowv{i}` relative to the outer position p0, p1, ….
 */
function rowOffsets(outerDims: readonly number[], k: number, circular: boolean) {
  const h = (k - 1) / 2, os = stridesOf(outerDims);
  const all: number[][] = [];
  const walk = (prefix: number[]) => {
    if (prefix.length === outerDims.length) return void all.push(prefix);
    for (let d = 0; d < k; d++) walk([...prefix, d]);
  };
  walk([]);
  return all.map((offs, ri) => {
    const parts: string[] = [], valid: string[] = [];
    offs.forEach((d, a) => {
      const size = outerDims[a], e = `i32(p${a}) + ${d - h}`;
      if (circular) parts.push(`u32((${e} + ${size}) % ${size}) * ${os[a]}u`);
      else {
        valid.push(`${e} >= 0 && ${e} < ${size}`);
        parts.push(`u32(clamp(${e}, 0, ${size - 1})) * ${os[a]}u`);
      }
    });
    const wgsl = [
      `let row${ri} = ${parts.length ? parts.join(" + ") : "0u"};`,
      `let rowv${ri} = ${valid.length ? valid.join(" && ") : "true"};`,
    ];
    // The flat tap index of (offs, dx) in PyTorch's row-major kernel layout.
    const tap = (dx: number) => offs.reduce((acc, d) => acc * k + d, 0) * k + dx;
    return { wgsl, tap };
  });
}

function buildConvTexKernel(c: ConvTexConfig): Kernel {
  const { k, rx, ro, cin: cr } = c;
  const n = c.spatial.length, X = c.spatial[n - 1], X4 = X / 4;
  const outerDims = c.spatial.slice(0, -1), outer = outerDims.reduce((a, b) => a * b, 1);
  const h = (k - 1) / 2, halo = Math.ceil(h / 4), seg = rx / 4 + 2 * halo;
  const taps = k ** n, op = convTexOp(c), ro4 = ro / 4;
  const xTiles = Math.ceil(X / rx), oTiles = op / ro;
  const total = convTexInvocations(c);
  const os = stridesOf(outerDims);
  // Texel columns of the row segment (the same for every channel and row offset), then the row offsets.
  const rows = rowOffsets(outerDims, k, c.circular);
  const lines = [...segmentColumns(seg, halo, X4, c.circular), ...rows.flatMap((r) => r.wgsl)];
  const body: string[] = [];
  for (const [ri, { tap }] of rows.entries()) {
    body.push(`let rb${ri} = (cb + row${ri}) * ${X4}u;`);
    for (let q = 0; q < seg; q++) {
      const v = c.circular ? "rowv" + ri : `rowv${ri} && colv${q}`;
      body.push(`let s${ri}_${q} = select(vec4f(0.0), ${texelLoad("tx", `rb${ri} + col${q}`)}, ${v});`);
    }
    for (let dx = 0; dx < k; dx++) {
      const t = tap(dx);
      for (let j = 0; j < ro4; j++) {
        body.push(
          `let w${ri}_${dx}_${j} = ${texelLoad("tw", `(c * ${taps}u + ${t}u) * ${op / 4}u + oq + ${j}u`)};`,
        );
      }
      for (let px = 0; px < rx; px++) {
        const at = px + dx - h + 4 * halo; // index into the segment's floats
        const v = `s${ri}_${Math.floor(at / 4)}[${at % 4}]`;
        for (let j = 0; j < ro4; j++) {
          body.push(`a${px}_${j} = fma(vec4f(${v}), w${ri}_${dx}_${j}, a${px}_${j});`);
        }
      }
    }
  }
  // Quad stores along x (X % 4 = 0 here, so a quad is wholly in or out): a storage store is a per-lane loop
  // on lavapipe too, so one vec4 per lane costs what one f32 did.
  const vec = rx % 4 === 0;
  const accs: string[] = [], full: string[] = [], edge: string[] = [];
  for (let px = 0; px < rx; px++) for (let j = 0; j < ro4; j++) accs.push(`var a${px}_${j} = vec4f(0.0);`);
  for (let o = 0; o < ro; o++) {
    const j = Math.floor(o / 4), q = o % 4, b = c.bias ? ` + bias[o0 + ${o}u]` : "";
    for (let px = 0; px < rx; px += vec ? 4 : 1) {
      const v = vec
        ? `vec4f(${[0, 1, 2, 3].map((d) => `a${px + d}_${j}[${q}]`).join(", ")})${b}`
        : `a${px}_${j}[${q}]${b}`;
      const at = vec
        ? `out[qb + ${(o * outer * X + px) / 4}u]`
        : `out[ob + (o0 + ${o}u) * ${outer * X}u + x0 + ${px}u]`;
      full.push(`${at} = ${v};`);
      edge.push(`if (o0 + ${o}u < ${c.cout}u && x0 + ${px}u < ${X}u) { ${at} = ${v}; }`);
    }
  }
  const code = `@group(0) @binding(0) var tx: texture_2d<f32>;
@group(0) @binding(1) var tw: texture_2d<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<${vec ? "vec4f" : "f32"}>;
${c.bias ? "@group(0) @binding(3) var<storage, read> bias: array<f32>;" : ""}
${texelLoaders("tx", "tw")}

@compute @workgroup_size(${CONV_TEX_WG})
fn main(${MAIN_BUILTINS}) {
  ${linearIndex(CONV_TEX_WG)}
  if (i >= ${total}u) { return; }
  let xt = i % ${xTiles}u;
  let ot = (i / ${xTiles}u) % ${oTiles}u;
  let pos = (i / ${xTiles * oTiles}u) % ${outer}u;
  let b = i / ${xTiles * oTiles * outer}u;
  ${outerDims.map((d, a) => `let p${a} = (pos / ${os[a]}u) % ${d}u;`).join("\n  ")}
  let x0 = xt * ${rx}u;
  let xq = x0 / 4u;
  let o0 = ot * ${ro}u;
  let oq = o0 / 4u;
  let ob = b * ${c.cout * outer * X}u + pos * ${X}u;
  let qb = (ob + o0 * ${outer * X}u + x0) / 4u;
  ${lines.join("\n  ")}
  ${accs.join("\n  ")}
  for (var c = 0u; c < ${cr}u; c++) {
    let cb = (b * ${cr}u + c) * ${outer}u;
    ${body.join("\n    ")}
  }
  if (o0 + ${ro}u <= ${c.cout}u && x0 + ${rx}u <= ${X}u) {
    ${full.join("\n    ")}
  } else {
    ${edge.join("\n    ")}
  }
}`;
  const name = `conv_tex_${c.batch}x${cr}x${c.cout}x${c.spatial.join("x")}_k${k}${
    c.circular ? "c" : "z"
  }_r${ro}x${rx}${c.bias ? "_b" : ""}`;
  return { name, code };
}

/**
 * The weight gradient's geometry (channels of x as `cin`, of g as `cout`) and its tile: output × input channels
 * per invocation; rows of (b, outer position) are split `splits` ways.
 */
export type ConvTexWgradConfig = ConvGeom & { ro: number; rc: number; splits: number };

/** Invocations of the weight-gradient pass (channel blocks × splits). */
export function convTexWgradInvocations(c: ConvTexWgradConfig): number {
  return Math.ceil(c.cout / c.ro) * Math.ceil(c.cin / c.rc) * c.splits;
}

/**
 * The weight gradient partials[s, o, c, t] = Σ over split s's rows (b, outer position) and all x of
 * g[b, o, p] · x[b, c, p + offset(t)], read from the textures of x and g (both flattened as in the forward
 * pass, 4 positions along the last axis per texel). The caller sums the splits. Each invocation holds ro·rc·taps
 * scalar accumulators and adds, per texel column, one 4-position dot product per (o, c, tap).
 */
function buildConvTexWgradKernel(c: ConvTexWgradConfig): Kernel {
  const { k, ro, rc } = c;
  const n = c.spatial.length, X = c.spatial[n - 1], X4 = X / 4;
  const outerDims = c.spatial.slice(0, -1), outer = outerDims.reduce((a, b) => a * b, 1);
  const h = (k - 1) / 2, halo = Math.ceil(h / 4), seg = 1 + 2 * halo;
  const taps = k ** n, rows = c.batch * outer, per = Math.ceil(rows / c.splits);
  const oBlocks = Math.ceil(c.cout / ro), cBlocks = Math.ceil(c.cin / rc);
  const total = convTexWgradInvocations(c);
  const os = stridesOf(outerDims);
  const body = segmentColumns(seg, halo, X4, c.circular);
  for (let o = 0; o < ro; o++) {
    body.push(
      `let g${o} = ${
        texelLoad(
          "tg",
          `((b * ${c.cout}u + min(o0 + ${o}u, ${c.cout - 1}u)) * ${outer}u + pos) * ${X4}u + xq`,
        )
      };`,
    );
  }
  for (const [ri, { wgsl, tap }] of rowOffsets(outerDims, k, c.circular).entries()) {
    body.push(...wgsl);
    for (let ci = 0; ci < rc; ci++) {
      const ch = `min(c0 + ${ci}u, ${c.cin - 1}u)`;
      for (let q = 0; q < seg; q++) {
        const v = c.circular ? `rowv${ri}` : `rowv${ri} && colv${q}`;
        const texel = `((b * ${c.cin}u + ${ch}) * ${outer}u + row${ri}) * ${X4}u + col${q}`;
        body.push(`let s${ri}_${ci}_${q} = select(vec4f(0.0), ${texelLoad("tx", texel)}, ${v});`);
      }
      for (let dx = 0; dx < k; dx++) {
        const t = tap(dx);
        const at = (j: number) => {
          const f = j + dx - h + 4 * halo;
          return `s${ri}_${ci}_${Math.floor(f / 4)}[${f % 4}]`;
        };
        body.push(`let xs${ri}_${ci}_${dx} = vec4f(${[0, 1, 2, 3].map(at).join(", ")});`);
        for (let o = 0; o < ro; o++) body.push(`a${o}_${ci}_${t} += dot(g${o}, xs${ri}_${ci}_${dx});`);
      }
    }
  }
  // One guard per channel pair and constant offsets from the block's base: the stores were half the source,
  // and source size is what pipeline creation (naga, then llvmpipe's JIT) pays for.
  const accs: string[] = [], stores: string[] = [];
  for (let o = 0; o < ro; o++) {
    for (let ci = 0; ci < rc; ci++) {
      const pair: string[] = [];
      for (let t = 0; t < taps; t++) {
        accs.push(`var a${o}_${ci}_${t} = 0.0;`);
        pair.push(`part[pb + ${(o * c.cin + ci) * taps + t}u] = a${o}_${ci}_${t};`);
      }
      stores.push(`if (o0 + ${o}u < ${c.cout}u && c0 + ${ci}u < ${c.cin}u) { ${pair.join(" ")} }`);
    }
  }
  const code = `@group(0) @binding(0) var tx: texture_2d<f32>;
@group(0) @binding(1) var tg: texture_2d<f32>;
@group(0) @binding(2) var<storage, read_write> part: array<f32>;
${texelLoaders("tx", "tg")}

@compute @workgroup_size(${CONV_TEX_WG})
fn main(${MAIN_BUILTINS}) {
  ${linearIndex(CONV_TEX_WG)}
  if (i >= ${total}u) { return; }
  let cbk = i % ${cBlocks}u;
  let obk = (i / ${cBlocks}u) % ${oBlocks}u;
  let s = i / ${cBlocks * oBlocks}u;
  let o0 = obk * ${ro}u;
  let c0 = cbk * ${rc}u;
  ${accs.join("\n  ")}
  for (var r = s * ${per}u; r < min((s + 1u) * ${per}u, ${rows}u); r++) {
    let b = r / ${outer}u;
    let pos = r % ${outer}u;
    ${outerDims.map((d, a) => `let p${a} = (pos / ${os[a]}u) % ${d}u;`).join("\n    ")}
    for (var xq = 0u; xq < ${X4}u; xq++) {
      ${body.join("\n      ")}
    }
  }
  let pb = ((s * ${c.cout}u + o0) * ${c.cin}u + c0) * ${taps}u;
  ${stores.join("\n  ")}
}`;
  const name = `conv_tex_wgrad_${c.batch}x${c.cin}x${c.cout}x${c.spatial.join("x")}_k${k}${
    c.circular ? "c" : "z"
  }_r${ro}x${rc}_s${c.splits}`;
  return { name, code };
}

// One Kernel object per arguments (kernels/common.ts cachedKernel).
export const convTexKernel = cachedKernel(buildConvTexKernel);
export const convTexWgradKernel = cachedKernel(buildConvTexWgradKernel);
