/**
 * Counter-based RNG: Philox-4x32-10 (Salmon et al., SC'11). Invocation i hashes counter (i, call_lo, call_hi, 0)
 * under key (seed_lo, seed_hi) into 4 words; element e takes word e % 4 of invocation e / 4. Seed and call index
 * come from a uniform, and so does the element count, so two pipelines a kind (quad stores or not) serve every
 * draw of every size (a pipeline per size cost PSGD's first step 13 pipelines, ~0.1 s); results are identical
 * across runs and adapters.
 */
import { cachedKernel, type Kernel, MAIN_BUILTINS } from "./common.ts";

export const RNG_WG = 64;

const PHILOX = `
struct Params { key: vec2u, ctr: vec2u, n: u32, pad0: u32, pad1: u32, pad2: u32 };
@group(0) @binding(0) var<uniform> params: Params;
fn mulhilo(a: u32, b: u32) -> vec2u {
  let a0 = a & 0xffffu; let a1 = a >> 16u; let b0 = b & 0xffffu; let b1 = b >> 16u;
  let p00 = a0 * b0; let p01 = a0 * b1; let p10 = a1 * b0; let p11 = a1 * b1;
  let mid = (p00 >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
  let hi = p11 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u);
  return vec2u(hi, a * b);
}
fn philox(c_in: vec4u, k_in: vec2u) -> vec4u {
  var c = c_in; var k = k_in;
  for (var r = 0u; r < 10u; r++) {
    let p0 = mulhilo(0xD2511F53u, c.x);
    let p1 = mulhilo(0xCD9E8D57u, c.z);
    c = vec4u(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
    k = k + vec2u(0x9E3779B9u, 0xBB67AE85u);
  }
  return c;
}
fn to_unit(u: u32) -> f32 { return f32(u >> 8u) * 5.9604644775390625e-8; }
`;

/** kind "uniform": [0, 1); "normal": standard normal by Box–Muller on word pairs. */
function buildRandomKernel(kind: "uniform" | "normal", vec: boolean): Kernel {
  const write = kind === "uniform"
    ? `let v = vec4f(to_unit(w.x), to_unit(w.y), to_unit(w.z), to_unit(w.w));`
    : `let u1 = to_unit(w.x) + 5.9604644775390625e-8; let u2 = to_unit(w.y);
let u3 = to_unit(w.z) + 5.9604644775390625e-8; let u4 = to_unit(w.w);
let r1 = sqrt(-2.0 * log(u1)); let r2 = sqrt(-2.0 * log(u3));
let v = vec4f(r1 * cos(6.283185307179586 * u2), r1 * sin(6.283185307179586 * u2),
              r2 * cos(6.283185307179586 * u4), r2 * sin(6.283185307179586 * u4));`;
  // One quad store per invocation where n % 4 = 0 (a storage store is a loop over the SIMD lanes on lavapipe).
  const store = vec
    ? "out[i] = v;"
    : `for (var l = 0u; l < 4u; l++) { if (i * 4u + l < params.n) { out[i * 4u + l] = v[l]; } }`;
  const code = `${PHILOX}
@group(0) @binding(1) var<storage, read_write> out: array<${vec ? "vec4f" : "f32"}>;
@compute @workgroup_size(${RNG_WG})
fn main(${MAIN_BUILTINS}) {
let i = gid.x + gid.y * (nwg.x * ${RNG_WG}u);
if (i * 4u >= params.n) { return; }
let w = philox(vec4u(i, params.ctr.x, params.ctr.y, 0u), params.key);
${write}
${store}
}`;
  return { name: `random_${kind}${vec ? "_v4" : ""}`, code };
}

// One Kernel object per arguments (kernels/common.ts cachedKernel).
export const randomKernel = cachedKernel(buildRandomKernel);
