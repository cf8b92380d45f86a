/**
 * The dense path of the fused attention op (engine/ops/attention.ts): the same QK-norm + RoPE prep and
 * post kernels, but the score products go through the engine's matmul with the N×N scores materialised for a
 * chunk of (batch·head) slices at a time, sized so one score buffer stays under the storage-binding limit and
 * the budget (DENSE_BUDGET). Nothing N×N is saved for the backward (it recomputes S from Q̃, K̂ and the saved
 * LSE), so memory is O(N²) per chunk, not per layer.
 *
 * Why it exists: on a CPU adapter (lavapipe) every load is a per-lane loop, so the flash kernels' inner
 * products cannot be cheaper than the tuned matmul's, and their backward costs 7 score-sized products (S and dP
 * in both the dQ and the dK/dV kernel) against 5 here (bench/kernels/attention.ts measures both). GPUs keep the
 * flash kernels.
 *
 * Conventions are the flash kernels' (kernels/attention.wgsl.ts): Q̃ = q̂·log2(e)/√d, LSE in log2 units, the
 * fixed softmax shift, raw sums dQ' = dS·K̂, dK' = dSᵀ·Q̃, dV = Pᵀ·dO for the shared post kernel.
 */
import {
  DENSE_WG,
  denseParams,
  denseScoresBwdKernel,
  denseSoftmaxKernel,
} from "../../kernels/attention_dense.wgsl.ts";
import { gpu } from "../device.ts";
import { copyBuffer, dispatch, grid1d, type Kernel, releaseBuffer, uniformBuffer } from "../runtime.ts";
import { Tensor } from "../tensor.ts";
import { matmulRaw, matmulSoftmaxGrad } from "./matmul.ts";

/** Bytes one chunk's score buffer may take (two of them live in the backward). */
export const DENSE_BUDGET = 64 * 2 ** 20;

let budget = DENSE_BUDGET;

/** Override the chunk budget (tests exercise several chunks at small sizes); `null` restores the default. */
export function setDenseBudget(bytes: number | null): void {
  budget = bytes ?? DENSE_BUDGET;
}

/** Bytes a chunk's score buffer may take on this adapter. */
function chunkCap(): number {
  return Math.min(gpu().limits.maxStorageBufferBindingSize, budget);
}

/** Whether one head's N×N scores fit a chunk (else only the flash kernels can run N tokens). */
export function denseFits(n: number): boolean {
  return n * n * 4 <= chunkCap();
}

/** Slices per chunk: G·N²·4 B within the binding limit and DENSE_BUDGET. */
export function denseChunk(slices: number, n: number): number {
  const per = n * n * 4;
  const cap = chunkCap();
  if (per > cap) {
    throw new Error(
      `attention (dense): one head's ${n}×${n} scores take ${per} B, over ${cap} B: use impl "flash"`,
    );
  }
  return Math.min(slices, Math.floor(cap / per));
}

/** Slices [g0, g0 + g) of a (slices, …) tensor: the tensor itself (a new reference) when that is all of it. */
function slicesOf(t: Tensor, g0: number, g: number): Tensor {
  const total = t.shape[0];
  if (g0 === 0 && g === total) return t.view(t.shape);
  const per = (t.size / total) * 4;
  const out = Tensor.empty([g, ...t.shape.slice(1)]);
  copyBuffer(t.buffer, g0 * per, out.buffer, 0, g * per);
  return out;
}

/** Collects per-chunk results into one (slices, …) tensor; a single chunk is kept as is. */
class Gathered {
  private full: Tensor | null = null;
  constructor(private shape: number[], private single: boolean) {}
  put(part: Tensor, g0: number): void {
    if (this.single) {
      this.full = part;
      return;
    }
    this.full ??= Tensor.empty(this.shape);
    copyBuffer(part.buffer, 0, this.full.buffer, g0 * (part.byteSize / part.shape[0]), part.byteSize);
    part.dispose();
  }
  get(): Tensor {
    return this.full!;
  }
}

/** One invocation per row (`perRow` false: per element, vec4s when N allows) over `rows` rows of length n. */
function rowDispatch(
  k: Kernel,
  buffers: GPUBuffer[],
  n: number,
  rows: number,
  row0: number,
  perRow: boolean,
) {
  const params = uniformBuffer(denseParams(n, rows, row0));
  const items = perRow ? rows : (rows * n) / (n % 4 === 0 ? 4 : 1);
  dispatch(k, [...buffers, params], grid1d(items, DENSE_WG));
  releaseBuffer(params);
}

/**
 * Bytes of one layer's probabilities P the forward may keep for its backward (all slices in one chunk): the
 * backward then skips recomputing S = Q̃·K̂ᵀ and its exp2 (the `default` solver's 32 × 320² scores, 13 MB a
 * block: ~25% of its attention backward on lavapipe). Larger P (more tokens) is recomputed as before.
 */
export const DENSE_SAVE_BUDGET = 16 * 2 ** 20;

let saveBudget = DENSE_SAVE_BUDGET;

/** Override the saved-P budget (tests take both backward paths); `null` restores the default. */
export function setDenseSaveBudget(bytes: number | null): void {
  saveBudget = bytes ?? DENSE_SAVE_BUDGET;
}

/**
 * O (B·H, N, d) and LSE (written into `lse`, (B·H, N)) from Q̃, K̂, V (B·H, N, d), and P (B·H, N, N) when it
 * fits DENSE_SAVE_BUDGET in one chunk (else null): the caller owns it.
 */
export function denseForward(
  qt: Tensor,
  kt: Tensor,
  v: Tensor,
  lse: Tensor,
): { out: Tensor; p: Tensor | null } {
  const [slices, n, d] = qt.shape;
  const chunk = denseChunk(slices, n);
  const save = chunk === slices && slices * n * n * 4 <= saveBudget;
  const out = new Gathered([slices, n, d], chunk === slices);
  let p: Tensor | null = null;
  for (let g0 = 0; g0 < slices; g0 += chunk) {
    const g = Math.min(chunk, slices - g0);
    const q = slicesOf(qt, g0, g), k = slicesOf(kt, g0, g), vv = slicesOf(v, g0, g);
    const s = matmulRaw(q, k, false, true);
    rowDispatch(denseSoftmaxKernel(d, n), [s.buffer, lse.buffer], n, g * n, g0 * n, true);
    out.put(matmulRaw(s, vv, false, false), g0);
    for (const t of [q, k, vv]) t.dispose();
    if (save) p = s;
    else s.dispose();
  }
  return { out: out.get(), p };
}

/**
 * The raw sums dQ', dK', dV (B·H, N, d) from dO (B·H, N, d), LSE and Δ (B·H, N), and either the forward's saved
 * P (`saved`, all slices) or the scores recomputed from Q̃ and K̂ a chunk at a time.
 */
export function denseBackward(
  qt: Tensor,
  kt: Tensor,
  v: Tensor,
  go: Tensor,
  lse: Tensor,
  delta: Tensor,
  saved: Tensor | null = null,
): { dq: Tensor; dk: Tensor; dv: Tensor } {
  const [slices, n, d] = qt.shape;
  const chunk = saved ? slices : denseChunk(slices, n);
  const single = chunk === slices;
  const dq = new Gathered([slices, n, d], single), dk = new Gathered([slices, n, d], single);
  const dv = new Gathered([slices, n, d], single);
  for (let g0 = 0; g0 < slices; g0 += chunk) {
    const g = Math.min(chunk, slices - g0);
    const q = slicesOf(qt, g0, g), k = slicesOf(kt, g0, g), vv = slicesOf(v, g0, g);
    const gc = slicesOf(go, g0, g);
    const s = saved ? saved.view(saved.shape) : matmulRaw(q, k, false, true);
    // dS = P∘(dP − Δ): in the product's store where the texture path takes it (saved P: all slices, so the
    // rows of dP are Δ's), else the product and a row pass.
    let dp = saved ? matmulSoftmaxGrad(gc, vv, false, true, s, delta) : null;
    if (!dp) {
      dp = matmulRaw(gc, vv, false, true);
      rowDispatch(
        denseScoresBwdKernel(n, !!saved),
        saved ? [s.buffer, dp.buffer, delta.buffer] : [s.buffer, dp.buffer, lse.buffer, delta.buffer],
        n,
        g * n,
        g0 * n,
        false,
      );
    }
    dv.put(matmulRaw(s, gc, true, false), g0);
    dq.put(matmulRaw(dp, k, false, false), g0);
    dk.put(matmulRaw(dp, q, true, false), g0);
    for (const t of [q, k, vv, gc, s, dp]) t.dispose();
  }
  return { dq: dq.get(), dk: dk.get(), dv: dv.get() };
}
