/**
 * Index-remapping copies: one gather kernel serves permute, slice, constant pad and circular pad; one
 * scatter kernel writes a block into a larger tensor (concat).
 *
 * Gather: for each output multi-index o, input coordinate along input axis perm[d] is o[d] + offset[d];
 * out of range gives `fill` (constant) or wraps (circular). All shapes, strides and offsets are constants.
 */
import { cachedKernel, f32, type Kernel, linearIndex, MAIN_BUILTINS, stridesOf } from "./common.ts";

export interface GatherConfig {
  inShape: readonly number[];
  outShape: readonly number[];
  /** Output axis d reads input axis perm[d]. */
  perm: readonly number[];
  offset: readonly number[];
  mode: "constant" | "circular";
  fill: number;
}

export const GATHER_WG = 256;

function buildGatherKernel(c: GatherConfig): Kernel {
  const nd = c.outShape.length;
  const os = stridesOf(c.outShape);
  const is = stridesOf(c.inShape);
  const n = c.outShape.reduce((a, b) => a * b, 1);
  const lines: string[] = [];
  const checks: string[] = [];
  for (let d = 0; d < nd; d++) {
    const ax = c.perm[d];
    const size = c.inShape[ax];
    const off = c.offset[d];
    const od = nd === 1 ? "i" : d === 0 ? `(i / ${os[d]}u)` : `((i / ${os[d]}u) % ${c.outShape[d]}u)`;
    // Signed arithmetic only where an offset can leave the input's range.
    const inRange = off === 0 && c.outShape[d] <= size;
    if (inRange) {
      lines.push(`src += ${od} * ${is[ax]}u;`);
    } else if (c.mode === "circular") {
      lines.push(`src += u32((i32(${od}) + ${off % size + size}) % ${size}) * ${is[ax]}u;`);
    } else {
      lines.push(`let c${d} = i32(${od}) + ${off};`);
      checks.push(`c${d} < 0 || c${d} >= ${size}`);
      lines.push(`src += u32(max(c${d}, 0)) * ${is[ax]}u;`);
    }
  }
  const store = checks.length ? `select(x[src], ${f32(c.fill)}, ${checks.join(" || ")})` : "x[src]";
  const code = `@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(${GATHER_WG})
fn main(${MAIN_BUILTINS}) {
  ${linearIndex(GATHER_WG)}
  if (i >= ${n}u) { return; }
  var src = 0u;
  ${lines.join("\n  ")}
  out[i] = ${store};
}`;
  const tag = `${c.inShape.join("x")}_to_${c.outShape.join("x")}_p${c.perm.join("")}_${c.mode[0]}`;
  return { name: `gather_${tag}`, code };
}

/** Write x (shape `inShape`) into out (shape `outShape`) starting at `offset` along `axis`. */
function buildScatterBlockKernel(
  inShape: readonly number[],
  outShape: readonly number[],
  axis: number,
  offset: number,
): Kernel {
  const n = inShape.reduce((a, b) => a * b, 1);
  const inner = inShape.slice(axis + 1).reduce((a, b) => a * b, 1);
  const len = inShape[axis];
  const outLen = outShape[axis];
  const code = `@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(${GATHER_WG})
fn main(${MAIN_BUILTINS}) {
  ${linearIndex(GATHER_WG)}
  if (i >= ${n}u) { return; }
  let j = i % ${inner}u;
  let a = (i / ${inner}u) % ${len}u;
  let o = i / ${inner * len}u;
  out[(o * ${outLen}u + a + ${offset}u) * ${inner}u + j] = x[i];
}`;
  return { name: `scatter_${inShape.join("x")}_into_${outShape.join("x")}_a${axis}_o${offset}`, code };
}

// One Kernel object per arguments (kernels/common.ts cachedKernel).
export const gatherKernel = cachedKernel(buildGatherKernel);
export const scatterBlockKernel = cachedKernel(buildScatterBlockKernel);
