/**
 * The texture path of matmul on software adapters (kernels/matmul_tex.wgsl.ts says why it is faster there):
 * both operands are copied into rgba32float texture arrays in the same command stream as the dispatch, then
 * one dispatch reads them. `dispatchMatmulTex` declines (returns false) whenever the path does not apply, and
 * matmul.ts falls back to its storage-buffer kernels.
 *
 * Invariants:
 * - Applies when this adapter has rules (MATMUL_TEX_RULES), the quads the kernel reads are aligned
 *   (`matmulTexAligned`: K % 4 = 0, and M or N where they are the contiguous axis), the flattened operands fit
 *   the adapter's 2-D texture limit, the output fits one storage binding (larger ones take matmul.ts's batch
 *   split), and no storage tile is forced (tests and sweeps force one).
 * - An operand's buffer is copied as is (one copy of whole texture rows, one for the remainder): no padding
 *   and no extra buffers.
 * - Textures are cached per (operand slot, rows) for the device's lifetime and reused by every later matmul of
 *   that size: the copy for the next call is encoded after the dispatch of this one, so WebGPU's ordering
 *   keeps them apart. They sit outside the buffer pool (its statistics do not count them); `clearMatmulTextures`
 *   frees them.
 */
import {
  matmulTexAligned,
  type MatmulTexConfig,
  matmulTexGrid,
  matmulTexKernel,
  matmulTexTexels,
  TEX_WIDTH,
  type Triangle,
} from "../../kernels/matmul_tex.wgsl.ts";
import type { MatmulConfig } from "../../kernels/matmul.wgsl.ts";
import { adapterTable } from "../adapter.ts";
import { gpu } from "../device.ts";
import { type Binding, copyBufferToTexture, dispatch } from "../runtime.ts";
import type { Tensor } from "../tensor.ts";

/** Outputs per invocation for problems of at least `minWork` multiply-adds; the first rule that fits wins. */
export interface TexRule {
  rm: number;
  rn: number;
  minWork: number;
  /** And at least this many outputs per batch entry (m·n); default 0. */
  minOutputs?: number;
  note: string;
}

/**
 * Per-adapter rules. lavapipe (2026-12-04, 2-core EPYC Zen 1, FMA ceiling 62 GFLOP/s): 1024³ at 16×16 outputs
 * per invocation 15.3 GFLOP/s, 32×32 21.3, 8×8 9.9, against 4.7 for the best storage-buffer tile. The bigger
 * tiles cost compile time for every new shape (llvmpipe compiles on first use; shapes are baked in): a fresh
 * process without Mesa's shader cache spends 111 s compiling the `default` solver step's pipelines at 16×16,
 * 21 s at 8×8 (30 s with the storage kernels), for a steady step of 3.6 s and 4.2 s (11.8 s). On a 2-core
 * EPYC Zen 5 (2026-12-04, FMA ceiling 128 GFLOP/s) 16×16 is 1.45× faster than 8×8 on the transformer's
 * linear layers (2560×128×512: 39.5 against 27.5 GFLOP/s) and 1.15× on its per-head attention products; the
 * `default` solver step takes 0.88 s against 1.03 s, for a cold first step of 18.5 s against 8.3 s (Mesa's
 * shader cache keeps the pipelines across processes, so a machine pays that once). So 16×16 from 2^24
 * multiply-adds, 8×8 from 2^18; below, the storage kernels stay (their pipelines compile faster and the work
 * is small). Since all batches' tiles run as one range (matmulTexLaunch), small outputs no longer leave lanes
 * idle: PSGD's Grams (8 × 64×576·576×64) take 1.8–2.1 ms at 16×16 against 2.2–3.0 at 8×8, the attention
 * values product (32 × 320×320·320×32) 6.9 against 9.6 (Zen 5, 2026-12-04; with a workgroup per batch they
 * were 5.2 against 2.7 and 12.5 against 14.1). Outputs under 2^13 per matrix (the Grams) still take 8×8: each
 * 16×16 pipeline costs 50–85 ms to create from a warm Mesa cache against 11–21 at 8×8, on every fresh process,
 * for ~0.5 ms a step. GPUs read storage buffers at full speed: no rules, no textures.
 */
export const MATMUL_TEX_RULES = adapterTable<readonly TexRule[]>({
  lavapipe: [
    {
      rm: 16,
      rn: 16,
      minWork: 2 ** 24,
      minOutputs: 2 ** 13,
      note: "1024³ 15.3 GFLOP/s (Zen 1); 2560×128×512 39.5 (Zen 5); compiles in 1.4–10 s a shape",
    },
    { rm: 8, rn: 8, minWork: 2 ** 18, note: "1024³ 9.9 GFLOP/s; compiles in ~0.5–1.5 s per shape" },
  ],
  default: [],
});

let enabled: boolean | null = null;
let forcedRule: TexRule | null = null;

/**
 * Force the texture path on (with `rule`'s tile for every size, else the rules by size) or off for every
 * matmul (tests); `null` goes back to the adapter's rules.
 */
export function setMatmulTexture(on: boolean | null, rule: TexRule | null = null): void {
  enabled = on;
  forcedRule = on ? rule : null;
}

const textures = new Map<string, GPUTexture>();
/** One view per cached texture, so a dispatch that binds the same textures finds its bind group again. */
const views = new WeakMap<GPUTexture, GPUTextureView>();

/** Frees the cached operand textures (the next matmul recreates what it needs). */
export function clearMatmulTextures(): void {
  for (const t of textures.values()) t.destroy();
  textures.clear();
}

/** The cached texture of `slot` with `rows` rows of TEX_WIDTH texels. */
function texture(slot: string, rows: number): GPUTexture {
  const key = `${slot}:${rows}`;
  let t = textures.get(key);
  if (!t) {
    t = gpu().device.createTexture({
      label: `matmul_${slot}_${TEX_WIDTH}x${rows}`,
      size: [TEX_WIDTH, rows, 1],
      format: "rgba32float",
      usage: GPUTextureUsage.TEXTURE_BINDING | GPUTextureUsage.COPY_DST,
    });
    textures.set(key, t);
  }
  return t;
}

/** Rows of TEX_WIDTH texels holding `texels`, or null over the adapter's 2-D limit. */
export function texRows(texels: number): number | null {
  const rows = Math.ceil(texels / TEX_WIDTH);
  return TEX_WIDTH <= gpu().limits.maxTextureDimension2D && rows <= gpu().limits.maxTextureDimension2D
    ? rows
    : null;
}

/**
 * Copy all of `t` (size % 4 = 0) into the cached texture of `slot` with `rows` rows (`texRows` of the texels
 * the reader needs): whole rows in one copy, the remainder in a second. Shared with the convolution's texture
 * pass, under its own slot names.
 */
export function upload(t: Tensor, slot: string, rows: number): GPUTextureView {
  const tex = texture(slot, rows);
  const texels = t.size / 4, full = Math.floor(texels / TEX_WIDTH), rest = texels - full * TEX_WIDTH;
  if (full > 0) {
    copyBufferToTexture({ buffer: t.buffer, bytesPerRow: TEX_WIDTH * 16 }, { texture: tex }, [
      TEX_WIDTH,
      full,
      1,
    ]);
  }
  if (rest > 0) {
    copyBufferToTexture(
      { buffer: t.buffer, offset: full * TEX_WIDTH * 16 },
      { texture: tex, origin: [0, full, 0] },
      [rest, 1, 1],
    );
  }
  let view = views.get(tex);
  if (!view) views.set(tex, view = tex.createView());
  return view;
}

/** What decides the path: matmul.ts's problem without the bias. */
export type MatmulTexProblem = Omit<MatmulConfig, "tile" | "bias">;

/** The tile this adapter would use for a problem, or null when the texture path does not apply. */
export function matmulTexTile(p: MatmulTexProblem): TexRule | null {
  const rules = MATMUL_TEX_RULES.for(gpu().adapterKind);
  if (enabled === false || (enabled === null && rules.length === 0) || !matmulTexAligned(p)) return null;
  const all = rules.length ? rules : MATMUL_TEX_RULES.for("lavapipe");
  if (forcedRule) return forcedRule;
  // Forced on (tests), the smallest rule serves any size.
  const fit = all.find((r) => p.batch * p.m * p.n * p.k >= r.minWork && p.m * p.n >= (r.minOutputs ?? 0));
  return fit ?? (enabled ? all[all.length - 1] : null);
}

/**
 * Encode op(a)·op(b) (+ bias) into `out` through textures (`triB`: op(b)'s exact zeros off that triangle are
 * skipped; `softmaxGrad`: store P∘(C − Δ[row]), see kernels/matmul_tex.wgsl.ts); false (nothing encoded) when
 * the path does not apply.
 */
export function dispatchMatmulTex(
  p: MatmulTexProblem,
  a: Tensor,
  b: Tensor,
  out: Tensor,
  bias?: Tensor,
  triB?: Triangle,
  softmaxGrad?: { p: Tensor; delta: Tensor },
): boolean {
  const rule = matmulTexTile(p);
  if (!rule || out.byteSize > gpu().limits.maxStorageBufferBindingSize) return false;
  if (softmaxGrad && (p.n % 4 !== 0 || bias)) return false;
  const c: MatmulTexConfig = {
    ...p,
    broadcastA: p.strideA === 0,
    broadcastB: p.strideB === 0,
    bias: !!bias,
    rm: rule.rm,
    rn: rule.rn,
    triB,
    ...(softmaxGrad ? { softmaxGrad: true } : {}),
  };
  const texels = matmulTexTexels(c);
  const ra = texRows(texels.a), rb = texRows(texels.b);
  if (ra === null || rb === null) return false;
  const bindings: Binding[] = [upload(a, "a", ra), upload(b, "b", rb), out.buffer];
  if (bias) bindings.push(bias.buffer);
  if (softmaxGrad) bindings.push(softmaxGrad.p.buffer, softmaxGrad.delta.buffer);
  dispatch(matmulTexKernel(c), bindings, matmulTexGrid(c));
  return true;
}
