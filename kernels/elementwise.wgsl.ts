/**
 * Elementwise map kernels: out = f(in0, in1, ...) with NumPy broadcasting, shapes baked in as constants.
 *
 * Two forms: when every input either has the output's shape or is a single value, the kernel moves vec4s
 * (memory-bound ops are all about bytes per instruction); otherwise each input's index is rebuilt from the
 * output's multi-index with broadcast strides of 0. `expr` is a WGSL f32 expression in `in0..inK`.
 */
import { cachedKernel, type Kernel, linearIndex, MAIN_BUILTINS, MATH_PRELUDE, stridesOf } from "./common.ts";

export interface MapConfig {
  name: string;
  expr: string;
  inShapes: (readonly number[])[];
  outShape: readonly number[];
  /** Write the result over in0 (same shape) instead of a separate output: gradient accumulation, updates. */
  inplace?: boolean;
}

const WG = 256;

export function mapWorkgroupSize(): number {
  return WG;
}

/** Elements handled by one invocation (4 in vec4 form). */
export function mapVectorWidth(c: MapConfig): number {
  const n = c.outShape.reduce((a, b) => a * b, 1);
  const simple = c.inShapes.every((s) => sameShape(s, c.outShape) || s.reduce((a, b) => a * b, 1) === 1);
  return simple && n % 4 === 0 ? 4 : 1;
}

function sameShape(a: readonly number[], b: readonly number[]) {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function buildMapKernel(c: MapConfig): Kernel {
  const n = c.outShape.reduce((a, b) => a * b, 1);
  const vw = mapVectorWidth(c);
  const decls = c.inShapes.map((s, k) => {
    const scalar = s.reduce((a, b) => a * b, 1) === 1;
    const t = vw === 4 && !scalar ? "vec4<f32>" : "f32";
    const access = c.inplace && k === 0 ? "read_write" : "read";
    return `@group(0) @binding(${k}) var<storage, ${access}> in${k}_: array<${t}>;`;
  });
  const outT = vw === 4 ? "vec4<f32>" : "f32";
  if (!c.inplace) {
    decls.push(`@group(0) @binding(${c.inShapes.length}) var<storage, read_write> out: array<${outT}>;`);
  }
  let body: string;
  if (vw === 4) {
    const loads = c.inShapes.map((s, k) =>
      s.reduce((a, b) => a * b, 1) === 1 ? `let v${k} = vec4<f32>(in${k}_[0]);` : `let v${k} = in${k}_[i];`
    );
    const lanes = [0, 1, 2, 3].map((l) => {
      const e = substitute(c.expr, c.inShapes.length, (k) => `v${k}[${l}]`);
      return `(${e})`;
    });
    body = `${loads.join("\n  ")}\n  out[i] = vec4<f32>(${lanes.join(", ")});`;
  } else {
    const os = stridesOf(c.outShape);
    const nd = c.outShape.length;
    const idx = c.inShapes.map((s, k) => {
      const n_k = s.reduce((a, b) => a * b, 1);
      if (n_k === 1) return `let x${k} = in${k}_[0];`;
      if (sameShape(s, c.outShape)) return `let x${k} = in${k}_[i];`;
      // Align trailing dims (NumPy rule); broadcast dims get stride 0.
      const padded = [...new Array(nd - s.length).fill(1), ...s];
      const is = stridesOf(padded);
      const terms = [];
      for (let d = 0; d < nd; d++) {
        if (padded[d] === 1) continue;
        terms.push(`((i / ${os[d]}u) % ${c.outShape[d]}u) * ${is[d]}u`);
      }
      return `let x${k} = in${k}_[${terms.join(" + ") || "0u"}];`;
    });
    const e = substitute(c.expr, c.inShapes.length, (k) => `x${k}`);
    body = `${idx.join("\n  ")}\n  out[i] = ${e};`;
  }
  if (c.inplace) body = body.replace("out[i] =", "in0_[i] =");
  const count = n / vw;
  const code = `${MATH_PRELUDE}
${decls.join("\n")}
@compute @workgroup_size(${WG})
fn main(${MAIN_BUILTINS}) {
  ${linearIndex(WG)}
  if (i >= ${count}u) { return; }
  ${body}
}`;
  return { name: `map_${c.name}${c.inplace ? "_inplace" : ""}_${vw === 4 ? "v4" : "bcast"}_${n}`, code };
}

/** Replace the whole identifiers in0 … in{n-1} of `expr` (so in1 never eats the prefix of in10). */
function substitute(expr: string, n: number, to: (k: number) => string): string {
  return expr.replace(/\bin(\d+)\b/g, (m, k) => (Number(k) < n ? to(Number(k)) : m));
}

// One Kernel object per arguments (kernels/common.ts cachedKernel).
export const mapKernel = cachedKernel(buildMapKernel);
