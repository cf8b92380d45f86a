/**
 * The emulator transformer of method §2 (lola's ViT with its denoiser / neural-solver wrappers): tokens are the
 * (t, y, x[, z]) positions of a latent window with [input ; mask] channels, a sine positional embedding, per-block
 * modulation (a, b, c, d) from the θ (and noise) embedding, pre-norm modulated attention (QK-RMS-norm and learned
 * mixed-axis RoPE, fused in engine/ops/attention.ts) with its residual inside the branch, an ×4 SiLU FFN, gated
 * variance-preserving residuals and a gated re-injection of the input embedding. Parameter names and layouts are
 * the reference state dict's (spec/state-dict-keys.md), so reference weights load. Value residual learning (named
 * in the paper's text, absent from the code) is an option, off by default.
 *
 * Shapes: x, mask (B, C_z, L, h, w[, d]) → (B, C_z, L, h, w[, d]); label (B, D_θ); time (B) = c_noise.
 * The float64 reference of the same model (tests) is models/transformer_reference.ts.
 */
import {
  add,
  checkpoint,
  concat,
  cos,
  gate,
  Generator,
  layer_norm,
  linear,
  map,
  modulate,
  mul,
  permute,
  reshape,
  silu,
  silu_dropout,
  sin,
  slice,
  Tensor,
} from "../engine/index.ts";
import { countSpecs, type ParamSpec, ParamTable } from "./params.ts";
import { attention } from "../engine/ops/attention.ts";

export interface TransformerConfig {
  /** Latent channels C_z of the window (tokens carry 2·C_z features: input and mask). */
  channels: number;
  /** Width D. */
  width: number;
  blocks: number;
  heads: number;
  /** Spatial dims of the data (2 or 3); tokens have spatial + 1 axes (time first). */
  spatial: 2 | 3;
  /** Width of the conditioning vector and of the modulation MLP (256 in the paper). */
  modFeatures: number;
  ffnFactor: number;
  dropout: number;
  /** D_θ; 0 = no label embedding. */
  labelDim: number;
  /** Denoiser: noise-level embedding added to the label embedding. */
  timeEmbedding: boolean;
  rope: boolean;
  /** Value residual learning (Zhou et al. 2024): v_n ← λ v_n + (1 − λ) v_1 in blocks n ≥ 1. */
  valueResidual: boolean;
  valueResidualLambda: number;
  /** State-dict nesting: "denoiser" (backbone.backbone.*), "solver" (backbone.*), "bare" (ViT keys only). */
  kind: "denoiser" | "solver" | "bare";
}

type PresetName = "tiny" | "default" | "small" | "large";

const SIZES: Record<PresetName, Pick<TransformerConfig, "width" | "blocks" | "heads" | "modFeatures">> = {
  /** Unit tests: every code path at toy size (method §12 debug size, narrower). */
  tiny: { width: 32, blocks: 2, heads: 2, modFeatures: 32 },
  /** The built-in dataset (320 tokens of 8×8 latents × 5 frames) on a CPU adapter in minutes. */
  default: { width: 128, blocks: 4, heads: 4, modFeatures: 128 },
  /** vit_small. */
  small: { width: 512, blocks: 16, heads: 4, modFeatures: 256 },
  /** vit_large: the paper's emulators (≈ 223 M parameters). */
  large: { width: 1024, blocks: 16, heads: 8, modFeatures: 256 },
};

export function transformerPreset(
  name: PresetName,
  o: { channels: number; spatial: 2 | 3; labelDim: number; kind: TransformerConfig["kind"] },
): TransformerConfig {
  const size = SIZES[name];
  if (!size) throw new Error(`unknown transformer preset ${name} (tiny, default, small, large)`);
  return {
    ...size,
    ...o,
    ffnFactor: 4,
    dropout: 0.05,
    timeEmbedding: o.kind === "denoiser",
    rope: true,
    valueResidual: false,
    valueResidualLambda: 0.5,
  };
}

// ---------------------------------------------------------------------------------------------------------
// Parameter table: names, shapes, initialisers (method §2.5). Pure: counting allocates nothing.

/** State-dict prefixes of the ViT, the time and the label embeddings for the config's nesting. */
export function prefixes(cfg: TransformerConfig) {
  if (cfg.kind === "denoiser") {
    return {
      vit: "backbone.backbone.",
      time: "backbone.time_embedding.",
      label: "backbone.label_embedding.",
    };
  }
  if (cfg.kind === "solver") return { vit: "backbone.", time: "", label: "label_embedding." };
  return { vit: "", time: "time_embedding.", label: "label_embedding." };
}

/** torch.nn.Linear: weight, bias ~ U(±1/√fan_in); `scale` multiplies the weight (modulation output ×0.01). */
function linearParams(name: string, out: number, inp: number, bias = true, scale = 1): ParamSpec[] {
  const bound = 1 / Math.sqrt(inp);
  const ps: ParamSpec[] = [{
    name: `${name}.weight`,
    shape: [out, inp],
    init: { kind: "uniform", bound, scale },
  }];
  if (bias) ps.push({ name: `${name}.bias`, shape: [out], init: { kind: "uniform", bound, scale: 1 } });
  return ps;
}

const hasModulation = (cfg: TransformerConfig) => cfg.labelDim > 0 || cfg.timeEmbedding;

/** Every trainable tensor of the model, in state-dict order. */
export function transformerParams(cfg: TransformerConfig): ParamSpec[] {
  const { width: D, channels: C, modFeatures: M } = cfg;
  const axes = cfg.spatial + 1, pre = prefixes(cfg);
  const ps: ParamSpec[] = [
    ...linearParams(`${pre.vit}in_proj`, D, 2 * C),
    ...linearParams(`${pre.vit}out_proj`, C, D),
    ...linearParams(`${pre.vit}positional_embedding.2`, D, axes * D),
  ];
  for (let i = 0; i < cfg.blocks; i++) {
    const b = `${pre.vit}blocks.${i}.`;
    if (cfg.rope) ps.push({ name: `${b}theta`, shape: [axes, D / 2], init: { kind: "rope" } });
    if (hasModulation(cfg)) {
      ps.push(
        ...linearParams(`${b}ada_zero.0`, M, M),
        ...linearParams(`${b}ada_zero.2`, 4 * D, M, true, 0.01),
      );
    } else ps.push({ name: `${b}ada_zero`, shape: [4, D], init: { kind: "normal", std: 0.01 } });
    ps.push(
      ...linearParams(`${b}msa.qkv_proj`, 3 * D, D, false),
      ...linearParams(`${b}msa.y_proj`, D, D),
      ...linearParams(`${b}ffn.0`, cfg.ffnFactor * D, D),
      ...linearParams(`${b}ffn.3`, D, cfg.ffnFactor * D),
    );
  }
  if (cfg.timeEmbedding) {
    ps.push(...linearParams(`${pre.time}1`, M, M), ...linearParams(`${pre.time}3`, M, M));
  }
  if (cfg.labelDim > 0) {
    ps.push(...linearParams(`${pre.label}0`, M, cfg.labelDim), ...linearParams(`${pre.label}2`, M, M));
  }
  return ps;
}

/** Parameter count (method §12: 222,756,928 for the RB solver), computed from the config alone. */
export function countParams(cfg: TransformerConfig): number {
  return countSpecs(transformerParams(cfg));
}

/** Non-trainable buffers: the sine frequencies ω_j = 1000^(−j/(n−1)) of the positional and time embeddings. */
export function transformerBuffers(cfg: TransformerConfig): { name: string; values: Float32Array }[] {
  const pre = prefixes(cfg);
  const freqs = (n: number) => Float32Array.from({ length: n }, (_, j) => Math.pow(1000, -j / (n - 1)));
  const out = [{ name: `${pre.vit}positional_embedding.0.freqs`, values: freqs(cfg.width / 2) }];
  if (cfg.timeEmbedding) out.push({ name: `${pre.time}0.freqs`, values: freqs(cfg.modFeatures / 2) });
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// One block (method §2.3), as a function of explicit parameters so tests can differentiate every input.

export interface BlockParams {
  theta: Tensor;
  /** (B, 4D) modulation comes from mod0/mod2 applied to the conditioning vector, or from the (4, D) table. */
  mod0?: { weight: Tensor; bias: Tensor };
  mod2?: { weight: Tensor; bias: Tensor };
  table?: Tensor;
  qkv: Tensor;
  yProj: { weight: Tensor; bias: Tensor };
  ffn0: { weight: Tensor; bias: Tensor };
  ffn3: { weight: Tensor; bias: Tensor };
}

export interface BlockContext {
  heads: number;
  coords: Tensor;
  dropout: number;
  training: boolean;
  gen: Generator;
  /** Value residual: the first block's v (B, N, D), mixed in with weight 1 − λ. */
  firstValue?: Tensor;
  lambda?: number;
  /** Return this block's v (the first block's, under value residuals); else it is not sliced out. */
  keepValue?: boolean;
}

/**
 * h (B, N, D), s (B, N, D) the input embedding, m (B, M) the conditioning vector → (h'', v of this block when
 * value residuals need it, else null).
 */
export function blockForward(p: BlockParams, h: Tensor, s: Tensor, m: Tensor | null, ctx: BlockContext) {
  const [B, , D] = h.shape;
  const mod = p.table
    ? reshape(p.table, [1, 1, 4 * D]) // (1, 1, 4D)
    : reshape(linear(silu(linear(m!, p.mod0!.weight, p.mod0!.bias)), p.mod2!.weight, p.mod2!.bias), [
      B,
      1,
      4 * D,
    ]);
  const [a, b, c, d] = [0, 1, 2, 3].map((k) => slice(mod, 2, k * D, (k + 1) * D)); // (B, 1, D) each
  const n = layer_norm(h); // (B, N, D)
  let u = modulate(n, a, b); // (1 + a)·n + b, (B, N, D)
  let qkv = linear(u, p.qkv); // (B, N, 3D)
  const v = ctx.firstValue || ctx.keepValue ? slice(qkv, 2, 2 * D, 3 * D) : null; // (B, N, D)
  if (ctx.firstValue && v) {
    const lam = ctx.lambda ?? 0.5;
    qkv = concat([slice(qkv, 2, 0, 2 * D), add(mul(v, lam), mul(ctx.firstValue, 1 - lam))], 2);
  }
  const y = linear(attention(qkv, p.theta, ctx.coords, { heads: ctx.heads }), p.yProj.weight, p.yProj.bias);
  u = add(u, y); // attention residual inside the branch
  const f = linear(
    silu_dropout(linear(u, p.ffn0.weight, p.ffn0.bias), ctx.dropout, ctx.training, ctx.gen), // dropout(silu(·))
    p.ffn3.weight,
    p.ffn3.bias,
  ); // (B, N, D)
  return { h: gate(gate(h, c, f), d, s), v }; // gate(x, g, r) = (x + g·r)/√(1 + g²)
}

// ---------------------------------------------------------------------------------------------------------
// The module.

export interface Conditioning {
  /** (B, D_θ) */
  label?: Tensor;
  /** (B) noise level c_noise (denoiser). */
  time?: Tensor;
}

/** Integer token coordinates (N, axes), row-major over the grid (time slowest). */
export function tokenCoords(grid: readonly number[]): Float32Array {
  const n = grid.reduce((a, b) => a * b, 1), A = grid.length;
  const out = new Float32Array(n * A);
  for (let i = 0; i < n; i++) {
    let r = i;
    for (let a = A - 1; a >= 0; a--) {
      out[i * A + a] = r % grid[a];
      r = Math.floor(r / grid[a]);
    }
  }
  return out;
}

/** Sine features (N, axes·D) of the positional embedding: per axis [sin(p·ω) ; cos(p·ω)]. */
export function sineFeatures(coords: Float32Array, axes: number, freqs: Float32Array): Float32Array {
  const n = coords.length / axes, h = freqs.length, D = 2 * h;
  const out = new Float32Array(n * axes * D);
  for (let i = 0; i < n; i++) {
    for (let a = 0; a < axes; a++) {
      const p = coords[i * axes + a], o = (i * axes + a) * D;
      for (let j = 0; j < h; j++) {
        out[o + j] = Math.sin(p * freqs[j]);
        out[o + h + j] = Math.cos(p * freqs[j]);
      }
    }
  }
  return out;
}

export class Transformer {
  private readonly table: ParamTable;
  readonly buffers = new Map<string, Tensor>();
  readonly gen: Generator;
  /**
   * Recompute each block in the backward instead of keeping its activations (training only): a step's memory
   * is then the blocks' outputs plus one block's intermediates, for ~1/3 more compute. A run setting, not part
   * of the configuration (the model and its results are the same).
   */
  checkpointBlocks = false;
  private readonly pre: ReturnType<typeof prefixes>;
  private readonly grids = new Map<string, { coords: Tensor; pe: Tensor; host: Float32Array }>();

  constructor(readonly cfg: TransformerConfig, seed = 0) {
    if (cfg.width % (2 * cfg.heads) || (cfg.width / cfg.heads) % 8) {
      throw new Error(
        `transformer: width ${cfg.width} must split into ${cfg.heads} heads of a multiple of 8`,
      );
    }
    this.table = new ParamTable(transformerParams(cfg), seed, "transformer");
    for (const b of transformerBuffers(cfg)) {
      this.buffers.set(
        b.name,
        Tensor.fromData(b.values, [b.values.length], { persistent: true, name: b.name }),
      );
    }
    this.pre = prefixes(cfg);
    this.gen = new Generator(seed + 1);
  }

  get params(): Map<string, Tensor> {
    return this.table.params;
  }

  parameters(): Tensor[] {
    return this.table.parameters();
  }

  /** Parameters and buffers under their reference names. */
  stateDict(): Record<string, Tensor> {
    return { ...this.table.stateDict(), ...Object.fromEntries(this.buffers) };
  }

  p(name: string): Tensor {
    return this.table.get(name);
  }

  private lin(name: string) {
    return { weight: this.p(`${name}.weight`), bias: this.p(`${name}.bias`) };
  }

  blockParams(i: number): BlockParams {
    const b = `${this.pre.vit}blocks.${i}.`;
    const mod = hasModulation(this.cfg);
    return {
      theta: this.cfg.rope ? this.p(`${b}theta`) : this.zeroTheta(),
      mod0: mod ? this.lin(`${b}ada_zero.0`) : undefined,
      mod2: mod ? this.lin(`${b}ada_zero.2`) : undefined,
      table: mod ? undefined : this.p(`${b}ada_zero`),
      qkv: this.p(`${b}msa.qkv_proj.weight`),
      yProj: this.lin(`${b}msa.y_proj`),
      ffn0: this.lin(`${b}ffn.0`),
      ffn3: this.lin(`${b}ffn.3`),
    };
  }

  private zeroThetaT: Tensor | null = null;
  private zeroTheta(): Tensor {
    this.zeroThetaT ??= Tensor.fromData(new Float32Array(((this.cfg.spatial + 1) * this.cfg.width) / 2), [
      this.cfg.spatial + 1,
      this.cfg.width / 2,
    ], { persistent: true });
    return this.zeroThetaT;
  }

  /** Coordinates (N, axes) and sine features (N, axes·D) of a token grid, built once per grid. */
  grid(shape: readonly number[]) {
    const key = shape.join("x");
    let g = this.grids.get(key);
    if (!g) {
      const host = tokenCoords(shape);
      const freqs = transformerBuffers(this.cfg)[0].values;
      const feats = sineFeatures(host, shape.length, freqs);
      const n = host.length / shape.length;
      g = {
        host,
        coords: Tensor.fromData(host, [n, shape.length], { persistent: true }),
        pe: Tensor.fromData(feats, [n, shape.length * this.cfg.width], { persistent: true }),
      };
      this.grids.set(key, g);
    }
    return g;
  }

  /** The conditioning vector m (B, M): E_t + E_θ, or null when the model has no modulation MLP. */
  conditioning(c: Conditioning, batch: number): Tensor | null {
    let m: Tensor | null = null;
    if (this.cfg.labelDim > 0) {
      if (!c.label || c.label.shape.join() !== [batch, this.cfg.labelDim].join()) {
        throw new Error(`transformer: label must be (${batch}, ${this.cfg.labelDim})`);
      }
      const l0 = this.lin(`${this.pre.label}0`), l2 = this.lin(`${this.pre.label}2`);
      m = linear(silu(linear(c.label, l0.weight, l0.bias)), l2.weight, l2.bias); // (B, M)
    }
    if (this.cfg.timeEmbedding) {
      if (!c.time || c.time.size !== batch) {
        throw new Error(`transformer: time must hold ${batch} noise levels`);
      }
      const freqs = this.buffers.get(`${this.pre.time}0.freqs`)!;
      const arg = mul(reshape(c.time, [batch, 1]), freqs.view([1, freqs.size])); // (B, M/2)
      const t0 = this.lin(`${this.pre.time}1`), t3 = this.lin(`${this.pre.time}3`);
      const e = linear(silu(linear(concat([sin(arg), cos(arg)], 1), t0.weight, t0.bias)), t3.weight, t3.bias);
      m = m ? add(e, m) : e;
    }
    return m;
  }

  forward(
    x: Tensor,
    mask: Tensor,
    c: Conditioning = {},
    o: { training: boolean } = { training: false },
  ): Tensor {
    const { channels: C, spatial } = this.cfg;
    if (x.ndim !== spatial + 3 || x.shape[1] !== C) {
      throw new Error(
        `transformer: x must be (B, ${C}, L, ${spatial === 2 ? "h, w" : "d, h, w"}), got (${x.shape})`,
      );
    }
    const B = x.shape[0], grid = x.shape.slice(2), N = grid.reduce((a, b) => a * b, 1);
    const g = this.grid(grid);
    const m4 = map([mask], "in0", "expand", x.shape); // mask broadcast to x (no gradient)
    const last = [0, ...grid.map((_, i) => i + 2), 1];
    const tokens = reshape(permute(concat([x, m4], 1), last), [B, N, 2 * C]); // (B, N, 2C)
    const inP = this.lin(`${this.pre.vit}in_proj`), peP = this.lin(`${this.pre.vit}positional_embedding.2`);
    const s = linear(tokens, inP.weight, inP.bias); // (B, N, D)
    let h = add(s, linear(g.pe, peP.weight, peP.bias)); // (B, N, D)
    const m = this.conditioning(c, B);
    let first: Tensor | undefined;
    for (let i = 0; i < this.cfg.blocks; i++) {
      const p = this.blockParams(i);
      const ctx: BlockContext = {
        heads: this.cfg.heads,
        coords: g.coords,
        dropout: this.cfg.dropout,
        training: o.training,
        gen: this.gen,
        firstValue: this.cfg.valueResidual ? first : undefined,
        lambda: this.cfg.valueResidualLambda,
        keepValue: this.cfg.valueResidual && i === 0,
      };
      // Block 0 also hands its v to the others under value residuals: it keeps its activations.
      if (this.checkpointBlocks && o.training && !(i === 0 && this.cfg.valueResidual)) {
        const fv = ctx.firstValue;
        const ins = [h, s, ...(m ? [m] : []), ...(fv ? [fv] : [])];
        h = checkpoint(
          (xs) =>
            blockForward(p, xs[0], xs[1], m ? xs[2] : null, {
              ...ctx,
              firstValue: fv ? xs.at(-1) : undefined,
            }).h,
          ins,
          [this.gen],
        );
        continue;
      }
      const r = blockForward(p, h, s, m, ctx);
      h = r.h;
      if (i === 0) first = r.v ?? undefined;
    }
    const outP = this.lin(`${this.pre.vit}out_proj`);
    const y = reshape(linear(h, outP.weight, outP.bias), [B, ...grid, C]); // (B, L, h, w[, d], C)
    return permute(y, [0, grid.length + 1, ...grid.map((_, i) => i + 1)]); // (B, C, L, h, w[, d])
  }

  dispose(): void {
    this.table.dispose();
    for (const t of this.buffers.values()) t.dispose();
    for (const g of this.grids.values()) {
      g.coords.dispose();
      g.pe.dispose();
    }
    this.zeroThetaT?.dispose();
  }
}
