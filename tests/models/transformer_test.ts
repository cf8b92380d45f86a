/**
 * The emulator transformer (models/transformer.ts) against method §2 and §12: parameter counts, reference
 * state-dict names and shapes, one block forward and backward against a float64 reference, the full model on
 * 2-D and 3-D windows, and a tiny model learning a token-to-token mapping with Adam.
 */
import { assertClose, checkOp, gpuReady, randArray } from "../helpers.ts";
import { Adam, backward, mean, scope, square, sub, Tensor, zeroGrad } from "../../engine/index.ts";
import {
  blockForward,
  type BlockParams,
  countParams,
  tokenCoords,
  Transformer,
  transformerBuffers,
  type TransformerConfig,
  transformerParams,
  transformerPreset,
} from "../../models/transformer.ts";
import { blockReference, transformerReference } from "../../models/transformer_reference.ts";
import { Generator } from "../../engine/index.ts";

Deno.test("transformer: parameter counts equal method §12 (RB solver, TGC solver, TGC denoiser)", () => {
  const rb = transformerPreset("large", { channels: 64, spatial: 2, labelDim: 6, kind: "solver" });
  const tgcSolver = transformerPreset("large", { channels: 64, spatial: 3, labelDim: 9, kind: "solver" });
  const tgcDenoiser = transformerPreset("large", { channels: 64, spatial: 3, labelDim: 9, kind: "denoiser" });
  const counts = [countParams(rb), countParams(tgcSolver), countParams(tgcDenoiser)];
  console.log(`RB solver ${counts[0]}, TGC solver ${counts[1]}, TGC denoiser ${counts[2]}`);
  if (counts.join() !== [222_756_928, 223_814_464, 223_946_048].join()) {
    throw new Error(`parameter counts ${counts} differ from method §12`);
  }
  // The §12 breakdown of one block: mod-MLP 1,118,464 + attention 4,195,328 + Θ 1,536 + FFN 8,393,728.
  const block0 = transformerParams(rb).filter((p) => p.name.startsWith("backbone.blocks.0."));
  const size = (pre: string) =>
    block0.filter((p) => p.name.includes(pre)).reduce((s, p) => s + p.shape.reduce((a, b) => a * b, 1), 0);
  const parts = [size("ada_zero"), size("msa"), size("theta"), size("ffn")];
  if (parts.join() !== [1_118_464, 4_195_328, 1_536, 8_393_728].join()) {
    throw new Error(`block breakdown ${parts}`);
  }
});

const DENOISER_KEYS = `backbone.backbone.in_proj.weight [64, 16]
backbone.backbone.in_proj.bias [64]
backbone.backbone.out_proj.weight [8, 64]
backbone.backbone.out_proj.bias [8]
backbone.backbone.positional_embedding.0.freqs [32]
backbone.backbone.positional_embedding.2.weight [64, 192]
backbone.backbone.positional_embedding.2.bias [64]
backbone.backbone.blocks.0.theta [3, 32]
backbone.backbone.blocks.0.ada_zero.0.weight [256, 256]
backbone.backbone.blocks.0.ada_zero.0.bias [256]
backbone.backbone.blocks.0.ada_zero.2.weight [256, 256]
backbone.backbone.blocks.0.ada_zero.2.bias [256]
backbone.backbone.blocks.0.msa.qkv_proj.weight [192, 64]
backbone.backbone.blocks.0.msa.y_proj.weight [64, 64]
backbone.backbone.blocks.0.msa.y_proj.bias [64]
backbone.backbone.blocks.0.ffn.0.weight [256, 64]
backbone.backbone.blocks.0.ffn.0.bias [256]
backbone.backbone.blocks.0.ffn.3.weight [64, 256]
backbone.backbone.blocks.0.ffn.3.bias [64]
backbone.time_embedding.0.freqs [128]
backbone.time_embedding.1.weight [256, 256]
backbone.time_embedding.1.bias [256]
backbone.time_embedding.3.weight [256, 256]
backbone.time_embedding.3.bias [256]
backbone.label_embedding.0.weight [256, 5]
backbone.label_embedding.0.bias [256]
backbone.label_embedding.2.weight [256, 256]
backbone.label_embedding.2.bias [256]`;

/** The solver's keys: the ViT under `backbone.`, the label embedding at the top, no time embedding. */
const SOLVER_KEYS = DENOISER_KEYS.split("\n")
  .filter((l) => !l.includes("time_embedding"))
  .map((l) =>
    l.replace("backbone.backbone.", "backbone.").replace("backbone.label_embedding.", "label_embedding.")
  )
  .join("\n");

function keysOf(cfg: TransformerConfig): string {
  const rows = [
    ...transformerParams(cfg).map((p) => `${p.name} [${p.shape.join(", ")}]`),
    ...transformerBuffers(cfg).map((b) => `${b.name} [${b.values.length}]`),
  ];
  return rows.sort().join("\n");
}

Deno.test("transformer: state-dict names and shapes are the reference's (denoiser and neural solver)", () => {
  const small = { width: 64, blocks: 1, heads: 2, modFeatures: 256 };
  const base = { channels: 8, spatial: 2 as const, labelDim: 5 };
  for (const [kind, want] of [["denoiser", DENOISER_KEYS], ["solver", SOLVER_KEYS]] as const) {
    const cfg = { ...transformerPreset("tiny", { ...base, kind }), ...small };
    const got = keysOf(cfg), expect = want.split("\n").sort().join("\n");
    if (got !== expect) throw new Error(`${kind} keys differ:\n${got}\n--- expected ---\n${expect}`);
  }
  // Without θ and noise level, a block has the learned (4, D) modulation table and no label embedding.
  const bare = { ...transformerPreset("tiny", { ...base, labelDim: 0, kind: "bare" }), ...small };
  const names = transformerParams(bare).map((p) => `${p.name} [${p.shape}]`);
  if (!names.includes("blocks.0.ada_zero [4,64]") || names.some((n) => n.includes("label_embedding"))) {
    throw new Error(`unconditioned keys: ${names.join(", ")}`);
  }
});

Deno.test("transformer: one block forward and backward match a float64 reference (tiny config)", async () => {
  await gpuReady();
  // The tiny preset's sizes (D 32, 2 heads, M 32) on a 3×4×4 window, so later tests reuse these pipelines.
  const B = 2, grid = [3, 4, 4], N = 48, D = 32, H = 2, M = 32, F = 4, A = 3;
  const coords = tokenCoords(grid);
  const tc = Tensor.fromData(coords, [N, A], { persistent: true });
  const shapes: [string, number[]][] = [
    ["h", [B, N, D]],
    ["s", [B, N, D]],
    ["m", [B, M]],
    ["theta", [A, D / 2]],
    ["mod0w", [M, M]],
    ["mod0b", [M]],
    ["mod2w", [4 * D, M]],
    ["mod2b", [4 * D]],
    ["qkv", [3 * D, D]],
    ["yw", [D, D]],
    ["yb", [D]],
    ["f0w", [F * D, D]],
    ["f0b", [F * D]],
    ["f3w", [D, F * D]],
    ["f3b", [D]],
  ];
  // Activations in ±1, weights at their init scale ±1/√fan_in (biases too), Θ in ±1.
  const inputs = shapes.map(([name, shape], i) => {
    const fanIn = /w$|^qkv$/.test(name) ? shape[1] : /b$/.test(name) ? shapes[i - 1][1][1] : 1;
    const b = 1 / Math.sqrt(fanIn);
    return { data: randArray(shape.reduce((a, c) => a * c, 1), 100 + i, -b, b), shape };
  });
  const gen = new Generator(0);
  try {
    const r = await checkOp({
      label: "transformer block",
      inputs,
      fn: ([h, s, m, theta, mod0w, mod0b, mod2w, mod2b, qkv, yw, yb, f0w, f0b, f3w, f3b]) => {
        const p: BlockParams = {
          theta,
          mod0: { weight: mod0w, bias: mod0b },
          mod2: { weight: mod2w, bias: mod2b },
          qkv,
          yProj: { weight: yw, bias: yb },
          ffn0: { weight: f0w, bias: f0b },
          ffn3: { weight: f3w, bias: f3b },
        };
        return blockForward(p, h, s, m, { heads: H, coords: tc, dropout: 0.05, training: false, gen }).h;
      },
      ref: ([h, s, m, theta, mod0w, mod0b, mod2w, mod2b, qkv, yw, yb, f0w, f0b, f3w, f3b]) =>
        blockReference(
          { theta, mod0w, mod0b, mod2w, mod2b, qkv, yw, yb, f0w, f0b, f3w, f3b },
          h,
          s,
          m,
          Float64Array.from(coords),
          { batch: B, tokens: N, width: D, heads: H, mod: M, axes: A, ffn: F },
        ),
      fwdTol: { atol: 1e-5, rtol: 1e-4 },
      gradTol: { atol: 1e-4, rtol: 1e-3 },
      maxProbes: 12,
    });
    console.log(
      `one block: max |err| forward ${r.fwd.toExponential(2)}, gradients ${r.grad.toExponential(2)}`,
    );
  } finally {
    tc.dispose();
  }
});

/** The tiny preset without dropout (the mapping is deterministic), a θ label of 2 values. */
function tinySolver(channels: number): TransformerConfig {
  return { ...transformerPreset("tiny", { channels, spatial: 2, labelDim: 2, kind: "solver" }), dropout: 0 };
}

Deno.test("transformer: a tiny model learns a token-to-token mapping with Adam (loss drops ≥ 100×)", async () => {
  await gpuReady();
  // Target at token (t, y, x), channel c = input at (t, y, x − 1 mod w), channel 1 − c: every output token has
  // to fetch another token, so only attention (through the learned RoPE directions) can solve it.
  const B = 2, C = 2, L = 3, h = 4, w = 4;
  const x = randArray(B * C * L * h * w, 7, -1, 1);
  const y = new Float64Array(x.length);
  const at = (b: number, c: number, t: number, i: number, j: number) =>
    (((b * C + c) * L + t) * h + i) * w + j;
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < C; c++) {
      for (let t = 0; t < L; t++) {
        for (let i = 0; i < h; i++) {
          for (let j = 0; j < w; j++) y[at(b, c, t, i, j)] = x[at(b, 1 - c, t, i, (j + w - 1) % w)];
        }
      }
    }
  }
  const model = new Transformer(tinySolver(C), 1);
  const tx = Tensor.fromData(Float32Array.from(x), [B, C, L, h, w], { persistent: true });
  const ty = Tensor.fromData(Float32Array.from(y), [B, C, L, h, w], { persistent: true });
  const mask = Tensor.fromData(new Float32Array(B * L).fill(1), [B, 1, L, 1, 1], { persistent: true });
  const label = Tensor.fromData(Float32Array.from(randArray(B * 2, 9)), [B, 2], { persistent: true });
  const opt = new Adam(model.parameters(), { lr: 3e-3, betas: [0.9, 0.99] });
  const steps = 200, losses: number[] = [];
  try {
    for (let s = 0; s < steps; s++) {
      const loss = scope(() => {
        const l = mean(square(sub(model.forward(tx, mask, { label }, { training: true }), ty)));
        backward(l);
        opt.step();
        zeroGrad(model.parameters());
        return l.keep();
      });
      if (s === 0 || s === steps - 1) losses.push(await loss.item());
      loss.dispose();
    }
    const ratio = losses[0] / losses[1];
    console.log(
      `loss ${losses[0].toFixed(4)} → ${losses[1].toExponential(3)} after ${steps} Adam steps (÷${
        ratio.toFixed(0)
      })`,
    );
    if (!(ratio >= 100)) throw new Error(`loss fell only ${ratio.toFixed(1)}× (need ≥ 100×)`);
  } finally {
    for (const t of [tx, ty, mask, label]) t.dispose();
    for (const t of [...opt.m, ...opt.v, opt.counters]) t.dispose();
    model.dispose();
  }
});

Deno.test("transformer: 3-D denoiser (time + θ, value residual) runs forward/backward; every parameter learns", async () => {
  await gpuReady();
  // Same batch, token count, width and channels as the learning test (48 tokens: 3 frames of 2×4×2), so most
  // pipelines are shared; what is new is the 4th token axis, the noise-level embedding and value residuals.
  const C = 2;
  const cfg: TransformerConfig = {
    ...transformerPreset("tiny", { channels: C, spatial: 3, labelDim: 2, kind: "denoiser" }),
    valueResidual: true,
  };
  const model = new Transformer(cfg, 2);
  const B = 2, grid = [3, 2, 4, 2];
  const n = grid.reduce((a, b) => a * b, 1);
  const x = Tensor.fromData(Float32Array.from(randArray(B * C * n, 41)), [B, C, ...grid], {
    persistent: true,
  });
  const mask = Tensor.fromData([1, 0, 0, 1, 1, 0], [B, 1, 3, 1, 1, 1], { persistent: true });
  const label = Tensor.fromData(Float32Array.from(randArray(B * 2, 42)), [B, 2], { persistent: true });
  const time = Tensor.fromData([-3.5, 12], [B], { persistent: true });
  try {
    const out = scope(() => {
      const o = model.forward(x, mask, { label, time }, { training: true });
      backward(mean(square(o)));
      return o.keep();
    });
    if (out.shape.join() !== [B, C, ...grid].join()) throw new Error(`output shape (${out.shape})`);
    const vals = await out.read();
    if (!vals.every(Number.isFinite)) throw new Error("non-finite output");
    out.dispose();
    const dead: string[] = [];
    for (const [name, p] of model.params) {
      const g = p.grad ? await p.grad.read() : null;
      if (!g || !g.some((v) => v !== 0) || !g.every(Number.isFinite)) dead.push(name);
    }
    if (dead.length) throw new Error(`parameters without a gradient: ${dead.join(", ")}`);
    console.log(`3-D denoiser: ${model.params.size} parameter tensors, all with finite non-zero gradients`);
  } finally {
    for (const t of [x, mask, label, time]) t.dispose();
    model.dispose();
  }
});

Deno.test("transformer: the whole model (2-D and 3-D, θ and noise embeddings) matches a float64 reference", async () => {
  await gpuReady();
  for (const spatial of [2, 3] as const) {
    const C = 2, B = 2;
    const cfg: TransformerConfig = {
      ...transformerPreset("tiny", { channels: C, spatial, labelDim: 2, kind: "denoiser" }),
      dropout: 0,
    };
    const grid = spatial === 2 ? [3, 4, 4] : [3, 2, 4, 2];
    const shape = [B, C, ...grid], n = shape.reduce((a, b) => a * b, 1);
    const model = new Transformer(cfg, 4);
    const xs = randArray(n, 51), label = randArray(B * 2, 52), time = Float64Array.from([-3.5, 12]);
    const frames = [1, 0, 0, 0, 1, 1];
    // The mask of entry i of the (B, C, L, …) layout: sample b, frame l.
    const maskFull = new Float64Array(n), per = n / (B * C * 3);
    for (let i = 0; i < n; i++) {
      maskFull[i] = frames[Math.floor(i / (C * 3 * per)) * 3 + (Math.floor(i / per) % 3)];
    }
    const P: Record<string, Float64Array> = {};
    for (const [k, t] of Object.entries(model.stateDict())) P[k] = Float64Array.from(await t.read());
    const x = Tensor.fromData(Float32Array.from(xs), shape, { persistent: true });
    const mask = Tensor.fromData(frames, [B, 1, 3, ...grid.slice(1).map(() => 1)], { persistent: true });
    const lab = Tensor.fromData(Float32Array.from(label), [B, 2], { persistent: true });
    const t = Tensor.fromData(Float32Array.from(time), [B], { persistent: true });
    try {
      const out = scope(() => model.forward(x, mask, { label: lab, time: t }).keep());
      const got = await out.read();
      out.dispose();
      const want = transformerReference(cfg, P, xs, shape, maskFull, { label, time });
      const scale = Math.max(...want.map(Math.abs));
      const e = assertClose(`${spatial}-D transformer vs float64`, got, want, {
        atol: 2e-4 * scale,
        rtol: 0,
      });
      console.log(`${spatial}-D: max error ${e.toExponential(2)} of max |y| ${scale.toFixed(3)}`);
    } finally {
      for (const v of [x, mask, lab, t]) v.dispose();
      model.dispose();
    }
  }
});

Deno.test("transformer: checkpointBlocks gives the same loss and gradients (dropout masks redrawn alike) in less memory", async () => {
  await gpuReady();
  const { pool } = await import("../../engine/index.ts");
  const C = 2;
  const cfg: TransformerConfig = {
    ...transformerPreset("tiny", { channels: C, spatial: 2, labelDim: 2, kind: "denoiser" }),
    blocks: 4,
    dropout: 0.3,
    valueResidual: true,
  };
  const B = 2, grid = [3, 4, 4];
  const n = grid.reduce((a, b) => a * b, 1);
  const x = Tensor.fromData(Float32Array.from(randArray(B * C * n, 51)), [B, C, ...grid], {
    persistent: true,
  });
  const mask = Tensor.fromData([1, 0, 0, 1, 1, 0], [B, 1, 3, 1, 1], { persistent: true });
  const label = Tensor.fromData(Float32Array.from(randArray(B * 2, 52)), [B, 2], { persistent: true });
  const time = Tensor.fromData([-1.5, 4], [B], { persistent: true });
  const run = async (ckpt: boolean) => {
    const model = new Transformer(cfg, 3);
    model.checkpointBlocks = ckpt;
    const base = pool.stats.bytesInUse;
    pool.stats.peakBytesInUse = base;
    const loss = scope(() => {
      const l = mean(square(model.forward(x, mask, { label, time }, { training: true })));
      backward(l, undefined, { freeActivations: true });
      return l.keep();
    });
    const peak = pool.stats.peakBytesInUse - base;
    const grads = new Map<string, Float32Array>();
    for (const [name, p] of model.params) grads.set(name, await p.grad!.read());
    const out = { loss: await loss.item(), grads, peak, calls: model.gen.state.calls };
    loss.dispose();
    zeroGrad(model.parameters());
    model.dispose();
    return out;
  };
  try {
    const plain = await run(false), ckpt = await run(true);
    let worst = 0;
    for (const [name, g] of plain.grads) {
      const h = ckpt.grads.get(name)!;
      const scale = Math.max(1e-3, ...g.map(Math.abs));
      for (let i = 0; i < g.length; i++) worst = Math.max(worst, Math.abs(g[i] - h[i]) / scale);
    }
    console.log(
      `loss ${plain.loss} vs ${ckpt.loss}; max gradient difference ${
        worst.toExponential(2)
      } of each tensor's max; ` +
        `peak ${(plain.peak / 2 ** 10).toFixed(0)} KiB → ${(ckpt.peak / 2 ** 10).toFixed(0)} KiB`,
    );
    if (plain.loss !== ckpt.loss) throw new Error(`loss ${plain.loss} != ${ckpt.loss} with checkpointing`);
    // Same kernels on the same inputs; only the order in which weight gradients are summed may differ.
    if (!(worst <= 1e-5)) throw new Error(`gradients differ by ${worst} with checkpointing`);
    if (plain.calls !== ckpt.calls) throw new Error(`generator at ${ckpt.calls} calls, not ${plain.calls}`);
    if (!(ckpt.peak < 0.8 * plain.peak)) throw new Error(`peak ${ckpt.peak} not below ${plain.peak}`);
  } finally {
    for (const t of [x, mask, label, time]) t.dispose();
  }
});
