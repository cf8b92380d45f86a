/**
 * Small helpers shared by the WGSL generators: exact float literals, shape constants, and the linear
 * invocation index of a 2-D dispatch grid (1-D problems larger than 65535 workgroups spill into y).
 */

/** A WGSL compute shader ready to build: the pipeline cache keys on `code`, profiles and errors show `name`. */
export interface Kernel {
  /** Readable pipeline name, e.g. `matmul_f32_64x64_t4x4`. */
  name: string;
  code: string;
}

/**
 * A kernel builder that returns the same Kernel object for the same arguments (builders are pure: the WGSL
 * depends on the arguments only). Encoding a training step calls builders once per dispatch; regenerating a
 * texture kernel's 10–30 KB of source and hashing it in the pipeline cache every time was ~15% of the host's
 * encode time (lavapipe's `default` AE step), and the runtime finds the pipeline of a known Kernel object
 * without hashing its source.
 */
export function cachedKernel<A extends unknown[]>(build: (...args: A) => Kernel): (...args: A) => Kernel {
  const cache = new Map<string, Kernel>();
  return (...args: A) => {
    const key = JSON.stringify(args);
    let k = cache.get(key);
    if (!k) {
      k = build(...args);
      cache.set(key, k);
    }
    return k;
  };
}

/** An exact f32 literal: the bit pattern, so baked constants round-trip and never print as `1e-7` vs `1e-07`. */
export function f32(x: number): string {
  if (Number.isInteger(x) && Math.abs(x) < 2 ** 24) return `${x}.0`;
  const b = new Float32Array([x]);
  const u = new Uint32Array(b.buffer)[0];
  return `bitcast<f32>(0x${u.toString(16)}u)`;
}

export function u32(x: number): string {
  if (!Number.isInteger(x) || x < 0 || x > 0xffffffff) throw new Error(`not a u32: ${x}`);
  return `${x}u`;
}

/** Row-major strides of a shape. */
export function stridesOf(shape: readonly number[]): number[] {
  const s = new Array(shape.length).fill(1);
  for (let i = shape.length - 2; i >= 0; i--) s[i] = s[i + 1] * shape[i + 1];
  return s;
}

/** WGSL statement computing `let i: u32` from a 2-D grid of `wg`-wide workgroups. */
export function linearIndex(wg: number): string {
  return `let i = gid.x + gid.y * (nwg.x * ${wg}u);`;
}

export const MAIN_BUILTINS = "@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u";

/** WGSL helpers for functions the language lacks or gets wrong at the extremes. */
export const MATH_PRELUDE = `
fn log1p_(x: f32) -> f32 { let u = 1.0 + x; if (u == 1.0) { return x; } return log(u) * x / (u - 1.0); }
fn tanh_(x: f32) -> f32 { let e = exp(-2.0 * abs(x)); return sign(x) * (1.0 - e) / (1.0 + e); }
fn sigmoid_(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }
fn isfinite_(x: f32) -> bool { return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u; }
`;

/**
 * WGSL choosing, by the flat workgroup index `g`, which of several tensors a workgroup works on: tensor j owns
 * workgroups [W_j, W_j+1) with W_{j+1} − W_j = counts[j], so the branch is uniform across the workgroup (the
 * multi-tensor kernels). `body(j, w0)` is tensor j's code, with its first workgroup w0. Workgroups past the
 * last range take no branch.
 */
export function workgroupBranches(
  counts: readonly number[],
  body: (j: number, w0: number) => string,
): string {
  let w0 = 0;
  return counts.map((n, j) => {
    const branch = `if (g < ${w0 + n}u) {\n${body(j, w0)}\n  }`;
    w0 += n;
    return branch;
  }).join(" else ");
}
