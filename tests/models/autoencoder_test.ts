/**
 * The autoencoder of method §1: exact parameter counts of the paper's presets (no GPU allocation), the
 * reference state-dict names and shapes, the pseudo-identity init, shapes and the saturation bound, eval-mode
 * determinism, a real learning check, and loading of reference-named weights with clear errors.
 */
import assert from "node:assert/strict";
import * as E from "../../engine/index.ts";
import { CheckpointError, loadInto } from "../../engine/checkpoint.ts";
import { Autoencoder } from "../../models/autoencoder.ts";
import { hostRand, initValues } from "../../models/params.ts";
import { AE_PRESETS, autoencoderParams, countParams } from "../../models/autoencoder_config.ts";
import { reconstructionLoss } from "../../models/losses.ts";
import { gpuReady, randArray } from "../helpers.ts";

Deno.test("autoencoder: parameter counts of the paper presets equal method §12 exactly", () => {
  assert.equal(countParams(AE_PRESETS.euler(5, 64)), 237_625_733);
  assert.equal(countParams(AE_PRESETS.rb(4, 64)), 237_624_580);
  assert.equal(countParams(AE_PRESETS.tgc(6, 64)), 741_019_014);
  assert.equal(countParams(AE_PRESETS.small(5, 64)), 78_581_989);
  assert.equal(countParams(AE_PRESETS.small_attn(5, 64)), 59_719_909);
  assert.equal(countParams({ ...AE_PRESETS.euler(5, 64), attentionHeads: {} }), 313_098_629);
});

/**
 * The reference's state dict for C_p=5, hid_channels=[16,32,64], hid_blocks=[1,1,1], attention at level 2
 * (2 heads), C_z=8, 2-D (spec/state-dict-keys.md, "Autoencoder"), without its `norm.eps` buffers (a constant
 * here, not a tensor).
 */
const AUTOENCODER_KEYS = `encoder.descent.0.0.weight [16, 5, 3, 3]
encoder.descent.0.0.bias [16]
encoder.descent.0.1.ffn.0.weight [16, 16, 3, 3]
encoder.descent.0.1.ffn.0.bias [16]
encoder.descent.0.1.ffn.3.weight [16, 16, 3, 3]
encoder.descent.0.1.ffn.3.bias [16]
encoder.descent.1.0.1.weight [32, 64, 3, 3]
encoder.descent.1.0.1.bias [32]
encoder.descent.1.1.ffn.0.weight [32, 32, 3, 3]
encoder.descent.1.1.ffn.0.bias [32]
encoder.descent.1.1.ffn.3.weight [32, 32, 3, 3]
encoder.descent.1.1.ffn.3.bias [32]
encoder.descent.2.0.1.weight [64, 128, 3, 3]
encoder.descent.2.0.1.bias [64]
encoder.descent.2.1.attn.0.in_proj_weight [192, 64]
encoder.descent.2.1.attn.0.in_proj_bias [192]
encoder.descent.2.1.attn.0.out_proj.weight [64, 64]
encoder.descent.2.1.attn.0.out_proj.bias [64]
encoder.descent.2.1.ffn.0.weight [64, 64, 1, 1]
encoder.descent.2.1.ffn.0.bias [64]
encoder.descent.2.1.ffn.3.weight [64, 64, 1, 1]
encoder.descent.2.1.ffn.3.bias [64]
encoder.descent.2.2.weight [8, 64, 3, 3]
encoder.descent.2.2.bias [8]
decoder.ascent.0.0.weight [64, 8, 3, 3]
decoder.ascent.0.0.bias [64]
decoder.ascent.0.1.attn.0.in_proj_weight [192, 64]
decoder.ascent.0.1.attn.0.in_proj_bias [192]
decoder.ascent.0.1.attn.0.out_proj.weight [64, 64]
decoder.ascent.0.1.attn.0.out_proj.bias [64]
decoder.ascent.0.1.ffn.0.weight [64, 64, 1, 1]
decoder.ascent.0.1.ffn.0.bias [64]
decoder.ascent.0.1.ffn.3.weight [64, 64, 1, 1]
decoder.ascent.0.1.ffn.3.bias [64]
decoder.ascent.0.2.0.weight [128, 64, 3, 3]
decoder.ascent.0.2.0.bias [128]
decoder.ascent.1.0.ffn.0.weight [32, 32, 3, 3]
decoder.ascent.1.0.ffn.0.bias [32]
decoder.ascent.1.0.ffn.3.weight [32, 32, 3, 3]
decoder.ascent.1.0.ffn.3.bias [32]
decoder.ascent.1.1.0.weight [64, 32, 3, 3]
decoder.ascent.1.1.0.bias [64]
decoder.ascent.2.0.ffn.0.weight [16, 16, 3, 3]
decoder.ascent.2.0.ffn.0.bias [16]
decoder.ascent.2.0.ffn.3.weight [16, 16, 3, 3]
decoder.ascent.2.0.ffn.3.bias [16]
decoder.ascent.2.1.weight [5, 16, 3, 3]
decoder.ascent.2.1.bias [5]`;

Deno.test("autoencoder: names and shapes equal the reference state dict (spec/state-dict-keys.md)", () => {
  const cfg = {
    ...AE_PRESETS.tiny(5, 8),
    hidChannels: [16, 32, 64],
    hidBlocks: [1, 1, 1],
    attentionHeads: { 2: 2 },
  };
  const mine = autoencoderParams(cfg).map((p) => `${p.name} [${p.shape.join(", ")}]`);
  assert.deepEqual(mine, AUTOENCODER_KEYS.split("\n"));
});

Deno.test("autoencoder: pseudo-identity init is 0.01·default + a centre tap on channel o mod C_in", () => {
  const spec = {
    name: "w",
    shape: [6, 4, 3, 3],
    init: { kind: "pseudo_identity" as const, bound: 0.1, cin: 4 },
  };
  const w = initValues(spec, hostRand(1));
  for (let o = 0; o < 6; o++) {
    for (let i = 0; i < 4; i++) {
      for (let t = 0; t < 9; t++) {
        const v = w[(o * 4 + i) * 9 + t];
        const id = i === o % 4 && t === 4 ? 1 : 0;
        assert.ok(Math.abs(v - id) <= 0.001 + 1e-7, `w[${o},${i},${t}] = ${v}`);
      }
    }
  }
});

Deno.test("autoencoder: tiny 2-D preset maps (B, C, 16, 16) to a bounded (B, C_z, 4, 4) latent and back", async () => {
  await gpuReady();
  const model = new Autoencoder(AE_PRESETS.tiny(3, 4), 0);
  const x = E.Tensor.fromData(Float32Array.from(randArray(2 * 3 * 16 * 16, 1, -3, 3)), [2, 3, 16, 16], {
    persistent: true,
  });
  const { z, xhat } = E.scope(() => {
    const r = E.noGrad(() => model.forward(E.mul(x, 10), { training: false }));
    return { z: r.z.keep(), xhat: r.xhat.keep() };
  });
  assert.deepEqual(z.shape, [2, 4, 4, 4]);
  assert.deepEqual(xhat.shape, [2, 3, 16, 16]);
  const zv = await z.read();
  assert.ok(zv.every((v) => Math.abs(v) < 5), "softclip2 bounds |z| < 5");
  const again = E.scope(() => E.noGrad(() => model.forward(E.mul(x, 10), { training: false }).xhat.keep()));
  assert.deepEqual(await again.read(), await xhat.read(), "eval mode is deterministic (no dropout)");
  assert.throws(
    () => model.encode(E.Tensor.fromData(new Float32Array(3 * 10 * 10), [1, 3, 10, 10]), { training: false }),
    /divisible by 4/,
  );
  for (const t of [x, z, xhat, again]) t.dispose();
  model.dispose();
});

Deno.test("autoencoder: a tiny AE learns to reconstruct smooth fields (VRMSE loss falls ≥ 3×)", async () => {
  await gpuReady();
  const model = new Autoencoder({ ...AE_PRESETS.tiny(2, 8), dropout: 0 }, 1);
  const B = 4, H = 16;
  const data = new Float32Array(B * 2 * H * H);
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < 2; c++) {
      for (let i = 0; i < H; i++) {
        for (let j = 0; j < H; j++) {
          data[((b * 2 + c) * H + i) * H + j] = Math.sin((i + b) / 3 + c) * Math.cos(j / 4 - b);
        }
      }
    }
  }
  const x = E.Tensor.fromData(data, [B, 2, H, H], { persistent: true });
  const params = model.parameters();
  const opt = new E.Adam(params, { lr: 3e-3 });
  const losses: number[] = [];
  for (let s = 0; s < 150; s++) {
    const l = E.scope(() => {
      const loss = reconstructionLoss("vrmse", model.forward(x, { training: true }).xhat, x);
      E.backward(loss);
      opt.step({ gradNorm: E.gradNorm(params), maxNorm: 1 });
      E.zeroGrad(params);
      return s % 50 === 0 || s === 149 ? loss.keep() : null;
    });
    if (l) {
      losses.push(await l.item());
      l.dispose();
    }
  }
  console.log(`vrmse ${losses.map((v) => v.toFixed(4)).join(" → ")}`);
  assert.ok(losses[0] / losses[losses.length - 1] >= 3, `loss ${losses.join(", ")}`);
  x.dispose();
  opt.dispose();
  model.dispose();
});

Deno.test("autoencoder: reference-named weights load; missing or mis-shaped tensors are named in the error", async () => {
  await gpuReady();
  const cfg = AE_PRESETS.tiny(3, 4);
  const a = new Autoencoder(cfg, 1), b = new Autoencoder(cfg, 2);
  const file = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [k, t] of a.params) file.set(k, { shape: [...t.shape], data: await t.read() });
  loadInto(b.stateDict(), file, "reference.safetensors");
  assert.deepEqual(
    await b.params.get("decoder.ascent.2.1.weight")!.read(),
    file.get("decoder.ascent.2.1.weight")!.data,
  );
  file.delete("encoder.descent.0.0.bias");
  file.set("encoder.descent.1.0.1.weight", { shape: [1, 2], data: new Float32Array(2) });
  assert.throws(
    () => loadInto(b.stateDict(), file, "reference.safetensors"),
    (e: Error) =>
      e instanceof CheckpointError && /encoder\.descent\.0\.0\.bias/.test(e.message) &&
      /encoder\.descent\.1\.0\.1\.weight \(1, 2\)/.test(e.message),
  );
  a.dispose();
  b.dispose();
});
