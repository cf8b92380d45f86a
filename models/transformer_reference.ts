/**
 * Float64 reference of the emulator transformer (method §2), composed from the engine's reference ops: one
 * block (blockReference) and the whole model (transformerReference: tokens, input and positional embeddings,
 * the θ and noise-level embeddings, the blocks, the output projection), in eval mode (no dropout). Tests compare
 * models/transformer.ts and the diffusion/solver wrappers against it.
 */
import { reference as attnRef } from "../engine/ops/attention.ts";
import { reference as mmRef } from "../engine/ops/matmul.ts";
import { reference as normRef } from "../engine/ops/norm.ts";
import { prefixes, tokenCoords, type TransformerConfig } from "./transformer.ts";

export interface BlockRefParams {
  theta: Float64Array;
  mod0w: Float64Array;
  mod0b: Float64Array;
  mod2w: Float64Array;
  mod2b: Float64Array;
  qkv: Float64Array;
  yw: Float64Array;
  yb: Float64Array;
  f0w: Float64Array;
  f0b: Float64Array;
  f3w: Float64Array;
  f3b: Float64Array;
}

function linearRef(
  x: Float64Array,
  rows: number,
  w: Float64Array,
  out: number,
  inp: number,
  b?: Float64Array,
) {
  const y = mmRef.matmul(x, [rows, inp], w, [out, inp], false, true);
  if (b) { for (let i = 0; i < y.length; i++) y[i] += b[i % out]; }
  return y;
}

const siluRef = (v: number) => v / (1 + Math.exp(-v));

/** One block in float64 (no dropout): h, s (B, N, D), m (B, M), coords (N, axes) → h''. */
export function blockReference(
  p: BlockRefParams,
  h: Float64Array,
  s: Float64Array,
  m: Float64Array,
  coords: Float64Array,
  dims: {
    batch: number;
    tokens: number;
    width: number;
    heads: number;
    mod: number;
    axes: number;
    ffn: number;
  },
): Float64Array {
  const { batch: B, tokens: N, width: D, heads: H, mod: M, axes: A, ffn } = dims;
  const hid = linearRef(m, B, p.mod0w, M, M, p.mod0b).map(siluRef);
  const mod = linearRef(hid, B, p.mod2w, 4 * D, M, p.mod2b); // (B, 4D)
  const n = normRef.layer_norm(h, [B * N, D]);
  const u = new Float64Array(B * N * D);
  for (let i = 0; i < u.length; i++) {
    const b = Math.floor(i / (N * D)), k = i % D;
    u[i] = (1 + mod[b * 4 * D + k]) * n[i] + mod[b * 4 * D + D + k];
  }
  const qkv = linearRef(u, B * N, p.qkv, 3 * D, D);
  const att = attnRef.attention(qkv, p.theta, coords, {
    batch: B,
    tokens: N,
    heads: H,
    headDim: D / H,
    axes: A,
  });
  const y = linearRef(att, B * N, p.yw, D, D, p.yb);
  for (let i = 0; i < u.length; i++) u[i] += y[i];
  const f = linearRef(
    linearRef(u, B * N, p.f0w, ffn * D, D, p.f0b).map(siluRef),
    B * N,
    p.f3w,
    D,
    ffn * D,
    p.f3b,
  );
  const out = new Float64Array(B * N * D);
  for (let i = 0; i < out.length; i++) {
    const b = Math.floor(i / (N * D)), k = i % D;
    const c = mod[b * 4 * D + 2 * D + k], d = mod[b * 4 * D + 3 * D + k];
    const h1 = (h[i] + c * f[i]) / Math.sqrt(1 + c * c);
    out[i] = (h1 + d * s[i]) / Math.sqrt(1 + d * d);
  }
  return out;
}

const sineFreqs = (n: number) => Float64Array.from({ length: n }, (_, j) => Math.pow(1000, -j / (n - 1)));

function mlpRef(
  x: Float64Array,
  rows: number,
  P: Record<string, Float64Array>,
  a: string,
  b: string,
  dims: number[],
) {
  const [inp, hid, out] = dims;
  const h = linearRef(x, rows, P[`${a}.weight`], hid, inp, P[`${a}.bias`]).map(siluRef);
  return linearRef(h, rows, P[`${b}.weight`], out, hid, P[`${b}.bias`]);
}

/**
 * The whole model in float64: x and mask (B, C, L, h, w[, d]) (mask already expanded to x's shape), label
 * (B, D_θ), time (B) = c_noise, parameters by state-dict name → (B, C, L, h, w[, d]).
 */
export function transformerReference(
  cfg: TransformerConfig,
  P: Record<string, Float64Array>,
  x: Float64Array,
  shape: number[],
  mask: Float64Array,
  cond: { label?: Float64Array; time?: Float64Array } = {},
): Float64Array {
  const [B, C, ...grid] = shape;
  const N = grid.reduce((a, b) => a * b, 1), A = grid.length, D = cfg.width, M = cfg.modFeatures;
  if (cfg.valueResidual) throw new Error("transformerReference: value residual is not modelled");
  const pre = prefixes(cfg), vit = pre.vit;
  const tokens = new Float64Array(B * N * 2 * C);
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < C; c++) {
      for (let n = 0; n < N; n++) {
        tokens[(b * N + n) * 2 * C + c] = x[(b * C + c) * N + n];
        tokens[(b * N + n) * 2 * C + C + c] = mask[(b * C + c) * N + n];
      }
    }
  }
  const s = linearRef(tokens, B * N, P[`${vit}in_proj.weight`], D, 2 * C, P[`${vit}in_proj.bias`]); // (B, N, D)
  const coords = Float64Array.from(tokenCoords(grid));
  const w = sineFreqs(D / 2);
  const feats = new Float64Array(N * A * D);
  for (let n = 0; n < N; n++) {
    for (let a = 0; a < A; a++) {
      for (let j = 0; j < D / 2; j++) {
        feats[(n * A + a) * D + j] = Math.sin(coords[n * A + a] * w[j]);
        feats[(n * A + a) * D + D / 2 + j] = Math.cos(coords[n * A + a] * w[j]);
      }
    }
  }
  const pe = linearRef(
    feats,
    N,
    P[`${vit}positional_embedding.2.weight`],
    D,
    A * D,
    P[`${vit}positional_embedding.2.bias`],
  );
  let h: Float64Array = s.map((v, i) => v + pe[i % (N * D)]);
  let m = new Float64Array(B * M);
  if (cfg.labelDim > 0) {
    m = mlpRef(cond.label!, B, P, `${pre.label}0`, `${pre.label}2`, [cfg.labelDim, M, M]);
  }
  if (cfg.timeEmbedding) {
    const wt = sineFreqs(M / 2), tf = new Float64Array(B * M);
    for (let b = 0; b < B; b++) {
      for (let j = 0; j < M / 2; j++) {
        tf[b * M + j] = Math.sin(cond.time![b] * wt[j]);
        tf[b * M + M / 2 + j] = Math.cos(cond.time![b] * wt[j]);
      }
    }
    const e = mlpRef(tf, B, P, `${pre.time}1`, `${pre.time}3`, [M, M, M]);
    m = m.map((v, i) => v + e[i]);
  }
  for (let i = 0; i < cfg.blocks; i++) {
    const k = `${vit}blocks.${i}.`;
    if (!P[`${k}ada_zero.0.weight`]) {
      throw new Error("transformerReference: needs the modulation MLP (θ or time)");
    }
    const bp: BlockRefParams = {
      theta: cfg.rope ? P[`${k}theta`] : new Float64Array((A * D) / 2),
      mod0w: P[`${k}ada_zero.0.weight`],
      mod0b: P[`${k}ada_zero.0.bias`],
      mod2w: P[`${k}ada_zero.2.weight`],
      mod2b: P[`${k}ada_zero.2.bias`],
      qkv: P[`${k}msa.qkv_proj.weight`],
      yw: P[`${k}msa.y_proj.weight`],
      yb: P[`${k}msa.y_proj.bias`],
      f0w: P[`${k}ffn.0.weight`],
      f0b: P[`${k}ffn.0.bias`],
      f3w: P[`${k}ffn.3.weight`],
      f3b: P[`${k}ffn.3.bias`],
    };
    h = blockReference(bp, h, s, m, coords, {
      batch: B,
      tokens: N,
      width: D,
      heads: cfg.heads,
      mod: M,
      axes: A,
      ffn: cfg.ffnFactor,
    });
  }
  const o = linearRef(h, B * N, P[`${vit}out_proj.weight`], C, D, P[`${vit}out_proj.bias`]); // (B, N, C)
  const out = new Float64Array(B * C * N);
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < C; c++) for (let n = 0; n < N; n++) out[(b * C + c) * N + n] = o[(b * N + n) * C + c];
  }
  return out;
}
