/**
 * Autoencoder configurations (method §1.1) and the parameter list they imply: names and shapes of the
 * reference state dict (spec/state-dict-keys.md) with each tensor's initialiser. Pure functions: counting the
 * paper's 237 M-parameter presets allocates nothing on the GPU.
 */
import { countSpecs, type Init, type ParamSpec } from "./params.ts";

export interface AutoencoderConfig {
  /** Pixel channels C_p (fields of the dataset). */
  pixelChannels: number;
  /** Latent channels C_z. */
  latentChannels: number;
  /** Channels per level; level i ≥ 1 halves each spatial axis. */
  hidChannels: number[];
  /** ResBlocks per level. */
  hidBlocks: number[];
  /** 2 or 3 spatial dims. */
  spatial: 2 | 3;
  kernel: number;
  /** level → heads of the self-attention in that level's ResBlocks (whose convs become 1×1). */
  attentionHeads: Record<number, number>;
  dropout: number;
  identityInit: boolean;
}

export type { Init, ParamSpec };

const base = { kernel: 3, dropout: 0.05, identityInit: true } as const;

export const AE_PRESETS: Record<string, (cp: number, cz: number) => AutoencoderConfig> = {
  /** Unit tests: every code path (shuffles, attention level) at toy size. */
  tiny: (cp, cz) => ({
    ...base,
    pixelChannels: cp,
    latentChannels: cz,
    hidChannels: [8, 16, 16],
    hidBlocks: [1, 1, 1],
    spatial: 2,
    attentionHeads: { 2: 2 },
  }),
  /** The built-in Euler dataset on a CPU adapter: 64×64 → 8×8 latents in minutes. */
  default: (cp, cz) => ({
    ...base,
    pixelChannels: cp,
    latentChannels: cz,
    hidChannels: [16, 32, 64, 64],
    hidBlocks: [1, 1, 1, 1],
    spatial: 2,
    attentionHeads: {},
  }),
  /** dcae_f32c64_large with the level-5 attention the paper's Euler/RB AEs were trained with. */
  euler: (cp, cz) => ({
    ...base,
    pixelChannels: cp,
    latentChannels: cz,
    hidChannels: [64, 128, 256, 512, 768, 1024],
    hidBlocks: [3, 3, 3, 3, 3, 3],
    spatial: 2,
    attentionHeads: { 5: 8 },
  }),
  rb: (cp, cz) => AE_PRESETS.euler(cp, cz),
  /** dcae_f32c64_small without attention (78,581,989 parameters for C_p=5, C_z=64). */
  small: (cp, cz) => ({
    ...base,
    pixelChannels: cp,
    latentChannels: cz,
    hidChannels: [32, 64, 128, 256, 384, 512],
    hidBlocks: [3, 3, 3, 3, 3, 3],
    spatial: 2,
    attentionHeads: {},
  }),
  /** dcae_f32c64_small with {5: 4} attention (59,719,909 parameters). */
  small_attn: (cp, cz) => ({ ...AE_PRESETS.small(cp, cz), attentionHeads: { 5: 4 } }),
  /** dcae_3d_f8c64_large (TGC), no attention. */
  tgc: (cp, cz) => ({
    ...base,
    pixelChannels: cp,
    latentChannels: cz,
    hidChannels: [64, 256, 512, 1024],
    hidBlocks: [3, 3, 3, 3],
    spatial: 3,
    attentionHeads: {},
  }),
};

function conv(
  name: string,
  cout: number,
  cin: number,
  k: number,
  n: number,
  init: "default" | "identity" | "small",
) {
  const fan = cin * k ** n;
  const bound = 1 / Math.sqrt(fan);
  const w: Init = init === "identity"
    ? { kind: "pseudo_identity", bound, cin }
    : { kind: "uniform", bound, scale: init === "small" ? 0.01 : 1 };
  return [
    { name: `${name}.weight`, shape: [cout, cin, ...Array(n).fill(k)], init: w },
    { name: `${name}.bias`, shape: [cout], init: { kind: "uniform", bound } as Init },
  ];
}

function resBlock(prefix: string, c: number, cfg: AutoencoderConfig, level: number): ParamSpec[] {
  const heads = cfg.attentionHeads[level];
  const k = heads ? 1 : cfg.kernel;
  const out: ParamSpec[] = [];
  if (heads) {
    const xavier = Math.sqrt(6 / (c + 3 * c));
    out.push(
      {
        name: `${prefix}.attn.0.in_proj_weight`,
        shape: [3 * c, c],
        init: { kind: "uniform", bound: xavier },
      },
      { name: `${prefix}.attn.0.in_proj_bias`, shape: [3 * c], init: { kind: "zeros" } },
      {
        name: `${prefix}.attn.0.out_proj.weight`,
        shape: [c, c],
        init: { kind: "uniform", bound: 1 / Math.sqrt(c) },
      },
      { name: `${prefix}.attn.0.out_proj.bias`, shape: [c], init: { kind: "zeros" } },
    );
  }
  out.push(...conv(`${prefix}.ffn.0`, c, c, k, cfg.spatial, "default"));
  out.push(...conv(`${prefix}.ffn.3`, c, c, k, cfg.spatial, "small"));
  return out;
}

/** Every parameter of the autoencoder in reference state-dict order, with shapes and initialisers. */
export function autoencoderParams(cfg: AutoencoderConfig): ParamSpec[] {
  const { hidChannels: ch, hidBlocks: nb, spatial: n, kernel: k } = cfg;
  const K = ch.length, f = 2 ** n;
  const id = cfg.identityInit ? "identity" : "default";
  const ps: ParamSpec[] = [];
  for (let i = 0; i < K; i++) {
    const p = `encoder.descent.${i}`;
    if (i === 0) ps.push(...conv(`${p}.0`, ch[0], cfg.pixelChannels, k, n, "default"));
    else ps.push(...conv(`${p}.0.1`, ch[i], f * ch[i - 1], k, n, id));
    for (let b = 0; b < nb[i]; b++) ps.push(...resBlock(`${p}.${b + 1}`, ch[i], cfg, i));
    if (i === K - 1) ps.push(...conv(`${p}.${nb[i] + 1}`, cfg.latentChannels, ch[i], k, n, id));
  }
  for (let j = 0; j < K; j++) {
    const i = K - 1 - j;
    const p = `decoder.ascent.${j}`;
    let idx = 0;
    if (j === 0) ps.push(...conv(`${p}.${idx++}`, ch[i], cfg.latentChannels, k, n, id));
    for (let b = 0; b < nb[i]; b++) ps.push(...resBlock(`${p}.${idx++}`, ch[i], cfg, i));
    if (i > 0) ps.push(...conv(`${p}.${idx}.0`, f * ch[i - 1], ch[i], k, n, id));
    else ps.push(...conv(`${p}.${idx}`, cfg.pixelChannels, ch[0], k, n, "default"));
  }
  return ps;
}

export function countParams(cfg: AutoencoderConfig): number {
  return countSpecs(autoencoderParams(cfg));
}

/** Spatial down-sampling factor per axis. */
export function downFactor(cfg: AutoencoderConfig): number {
  return 2 ** (cfg.hidChannels.length - 1);
}
