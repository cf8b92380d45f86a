/**
 * The convolutional autoencoder of method §1 (DC-AE style): encoder levels of space-to-depth + conv +
 * pre-norm ResBlocks, a saturating bound z/√(1+(z/5)²) on the latent, and the mirrored decoder. 2-D and 3-D.
 * Parameters carry the reference state-dict names (models/autoencoder_config.ts), so reference weights load.
 *
 * Shapes: x (B, C_p, H, W[, D]) → z (B, C_z, H/f, W/f[, D/f]) with f = 2^(levels−1).
 */
import {
  add,
  div,
  dropout,
  Generator,
  linear,
  matmul,
  mul,
  permute,
  reshape,
  silu,
  slice,
  softmax,
  sqrt,
  square,
  Tensor,
} from "../engine/index.ts";
import { conv2d, conv3d } from "../engine/ops/conv.ts";
import { channel_norm } from "../engine/ops/channel_norm.ts";
import { depth_to_space, space_to_depth } from "../engine/ops/space_to_depth.ts";
import { type AutoencoderConfig, autoencoderParams, downFactor } from "./autoencoder_config.ts";
import { ParamTable } from "./params.ts";

export interface ForwardOptions {
  training: boolean;
}

export class Autoencoder {
  private readonly table: ParamTable;
  readonly gen: Generator;

  constructor(readonly cfg: AutoencoderConfig, seed = 0) {
    this.table = new ParamTable(autoencoderParams(cfg), seed, "autoencoder");
    this.gen = new Generator(seed + 1);
  }

  get params(): Map<string, Tensor> {
    return this.table.params;
  }

  parameters(): Tensor[] {
    return this.table.parameters();
  }

  /** Tensors of the reference state dict (parameters; the 0-d `norm.eps` buffers are added by the writer). */
  stateDict(): Record<string, Tensor> {
    return this.table.stateDict();
  }

  private p(name: string): Tensor {
    return this.table.get(name);
  }

  private conv(x: Tensor, name: string): Tensor {
    const f = this.cfg.spatial === 2 ? conv2d : conv3d;
    return f(x, this.p(`${name}.weight`), this.p(`${name}.bias`));
  }

  /** Multi-head self-attention over all pixels (torch.nn.MultiheadAttention, packed in_proj). */
  private attention(x: Tensor, name: string, heads: number): Tensor {
    const [b, c] = x.shape;
    const t = x.size / (b * c);
    const dh = c / heads;
    const tokens = permute(reshape(x, [b, c, t]), [0, 2, 1]); // (B, T, C)
    const qkv = linear(tokens, this.p(`${name}.in_proj_weight`), this.p(`${name}.in_proj_bias`)); // (B, T, 3C)
    const split = permute(reshape(qkv, [b, t, 3, heads, dh]), [2, 0, 3, 1, 4]); // (3, B, H, T, dh)
    const part = (i: number) => reshape(slice(split, 0, i, i + 1), [b * heads, t, dh]);
    const scores = mul(matmul(part(0), part(1), false, true), 1 / Math.sqrt(dh)); // (BH, T, T)
    const y = matmul(softmax(scores), part(2)); // (BH, T, dh)
    const merged = reshape(permute(reshape(y, [b, heads, t, dh]), [0, 2, 1, 3]), [b, t, c]); // (B, T, C)
    const out = linear(merged, this.p(`${name}.out_proj.weight`), this.p(`${name}.out_proj.bias`));
    return reshape(permute(out, [0, 2, 1]), [...x.shape]); // (B, C, H, W[, D])
  }

  private resBlock(x: Tensor, name: string, level: number, o: ForwardOptions): Tensor {
    let n = channel_norm(x, 1e-5);
    const heads = this.cfg.attentionHeads[level];
    if (heads) n = add(n, this.attention(n, `${name}.attn.0`, heads));
    const h = silu(this.conv(n, `${name}.ffn.0`));
    const hd = dropout(h, this.cfg.dropout, o.training, this.gen);
    return add(x, this.conv(hd, `${name}.ffn.3`));
  }

  encode(x: Tensor, o: ForwardOptions): Tensor {
    const { hidBlocks: nb, hidChannels: ch, pixelChannels } = this.cfg;
    const f = downFactor(this.cfg);
    if (
      x.ndim !== this.cfg.spatial + 2 || x.shape[1] !== pixelChannels || x.shape.slice(2).some((d) => d % f)
    ) {
      throw new Error(
        `autoencoder input must be (B, ${pixelChannels}, spatial dims divisible by ${f}), got (${
          x.shape.join(", ")
        })`,
      );
    }
    let h = x;
    for (let i = 0; i < ch.length; i++) {
      const p = `encoder.descent.${i}`;
      h = i === 0 ? this.conv(h, `${p}.0`) : this.conv(space_to_depth(h, 2), `${p}.0.1`);
      for (let b = 0; b < nb[i]; b++) h = this.resBlock(h, `${p}.${b + 1}`, i, o);
      if (i === ch.length - 1) h = this.conv(h, `${p}.${nb[i] + 1}`);
    }
    // softclip2: z / sqrt(1 + (z/5)^2), bound 5.
    return div(h, sqrt(add(square(mul(h, 0.2)), 1)));
  }

  decode(z: Tensor, o: ForwardOptions): Tensor {
    const { hidBlocks: nb, hidChannels: ch } = this.cfg;
    const K = ch.length;
    let h = z;
    for (let j = 0; j < K; j++) {
      const i = K - 1 - j;
      const p = `decoder.ascent.${j}`;
      let idx = 0;
      if (j === 0) h = this.conv(h, `${p}.${idx++}`);
      for (let b = 0; b < nb[i]; b++) h = this.resBlock(h, `${p}.${idx++}`, i, o);
      h = i > 0 ? depth_to_space(this.conv(h, `${p}.${idx}.0`), 2) : this.conv(h, `${p}.${idx}`);
    }
    return h;
  }

  forward(x: Tensor, o: ForwardOptions): { z: Tensor; xhat: Tensor } {
    const z = this.encode(x, o);
    return { z, xhat: this.decode(z, o) };
  }

  dispose(): void {
    this.table.dispose();
  }
}
