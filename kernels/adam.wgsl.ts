/**
 * Adam(W) update kernels. The step counter, the skip counter and the clip factor live on the GPU so a training
 * step never waits for the host: `adam_advance` bumps t (or the skip count when the global gradient norm is not
 * finite), and `adam_update` reads t and the norm, clips, applies bias-corrected Adam(W), or does nothing.
 */
import { cachedKernel, type Kernel, MATH_PRELUDE, workgroupBranches } from "./common.ts";

export const ADAM_WG = 256;

const HYPER =
  `struct Hyper { lr: f32, beta1: f32, beta2: f32, eps: f32, weight_decay: f32, max_norm: f32, decoupled: f32, pad: f32 };`;

/** state = [t, skipped]; gn = [global grad norm]. */
function buildAdamAdvanceKernel(): Kernel {
  return {
    name: "adam_advance",
    code: `${MATH_PRELUDE}
@group(0) @binding(0) var<storage, read_write> state: array<f32>;
@group(0) @binding(1) var<storage, read> gn: array<f32>;
@compute @workgroup_size(1)
fn main() {
  if (isfinite_(gn[0])) { state[0] = state[0] + 1.0; } else { state[1] = state[1] + 1.0; }
}`,
  };
}

/** Workgroups `adamUpdateKernel` gives a tensor of `n` floats (vec4 lanes where n % 4 = 0). */
const adamWorkgroups = (n: number) => Math.ceil(n / (n % 4 === 0 ? 4 : 1) / ADAM_WG);

/**
 * One Adam(W) step for several tensors in one dispatch: tensor j binds p, g, m, v at 3 + 4j … 6 + 4j and owns
 * workgroups [W_j, W_j+1) (chosen by workgroup id, so the branch is uniform); vec4 where its size is a multiple
 * of 4. One dispatch per group instead of one per tensor: on lavapipe a dispatch costs ~0.1–0.3 ms whatever
 * its size, and most of a transformer's 58 tensors are biases and norms of 128–512 floats.
 */
function buildAdamUpdateKernel(sizes: readonly number[]): Kernel {
  const decls = sizes.map((n, j) => {
    const t = n % 4 === 0 ? "vec4<f32>" : "f32", b = 3 + 4 * j;
    return ["p", "g", "m", "v"].map((x, o) =>
      `@group(0) @binding(${b + o}) var<storage, ${x === "g" ? "read" : "read_write"}> ${x}${j}: array<${t}>;`
    ).join("\n");
  });
  // The expressions are torch's order of operations, for f32 and vec4 alike (scalars broadcast).
  const branches = workgroupBranches(sizes.map(adamWorkgroups), (j, w0) => {
    const n = sizes[j];
    return `    let i = (g - ${w0}u) * ${ADAM_WG}u + lid;
    if (i < ${n % 4 === 0 ? n / 4 : n}u) {
      var grad = g${j}[i] * scale;
      var w = p${j}[i];
      if (h.decoupled > 0.5) { w = w * (1.0 - h.lr * h.weight_decay); } else { grad = grad + h.weight_decay * w; }
      let mi = h.beta1 * m${j}[i] + (1.0 - h.beta1) * grad;
      let vi = h.beta2 * v${j}[i] + (1.0 - h.beta2) * grad * grad;
      m${j}[i] = mi;
      v${j}[i] = vi;
      p${j}[i] = w - h.lr * (mi / bc1) / (sqrt(vi / bc2) + h.eps);
    }`;
  });
  return {
    name: `adam_update_${sizes.length}x${adamUpdateWorkgroups(sizes)}`,
    code: `${MATH_PRELUDE}
${HYPER}
@group(0) @binding(0) var<storage, read> state: array<f32>;
@group(0) @binding(1) var<storage, read> gn: array<f32>;
@group(0) @binding(2) var<uniform> h: Hyper;
${decls.join("\n")}
@compute @workgroup_size(${ADAM_WG})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let g = wid.x + wid.y * nwg.x;
  let norm = gn[0];
  if (!isfinite_(norm)) { return; }
  var scale = 1.0;
  if (h.max_norm > 0.0) { scale = min(1.0, h.max_norm / (norm + 1e-6)); }
  let t = state[0];
  let bc1 = 1.0 - pow(h.beta1, t);
  let bc2 = 1.0 - pow(h.beta2, t);
  ${branches}
}`,
  };
}

/** Workgroups `adamUpdateKernel(sizes)` takes. */
export function adamUpdateWorkgroups(sizes: readonly number[]): number {
  return sizes.reduce((a, n) => a + adamWorkgroups(n), 0);
}

// One Kernel object per arguments (kernels/common.ts cachedKernel).
export const adamAdvanceKernel = cachedKernel(buildAdamAdvanceKernel);
export const adamUpdateKernel = cachedKernel(buildAdamUpdateKernel);
