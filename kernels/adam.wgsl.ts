/**
 * Adam(W) update kernels. The step counter, the skip counter and the clip factor live on the GPU so a training
 * step never waits for the host: `adam_advance` bumps t (or the skip count when the global gradient norm is not
 * finite), and `adam_update` reads t and the norm, clips, applies bias-corrected Adam(W), or does nothing.
 */
import { cachedKernel, type Kernel, MATH_PRELUDE } from "./common.ts";

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

function buildAdamUpdateKernel(n: number): Kernel {
  return {
    name: `adam_update_${n}`,
    code: `${MATH_PRELUDE}
${HYPER}
@group(0) @binding(0) var<storage, read_write> p: array<f32>;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<storage, read> state: array<f32>;
@group(0) @binding(5) var<storage, read> gn: array<f32>;
@group(0) @binding(6) var<uniform> h: Hyper;
@compute @workgroup_size(${ADAM_WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * (nwg.x * ${ADAM_WG}u);
  if (i >= ${n}u) { return; }
  let norm = gn[0];
  if (!isfinite_(norm)) { return; }
  var scale = 1.0;
  if (h.max_norm > 0.0) { scale = min(1.0, h.max_norm / (norm + 1e-6)); }
  let t = state[0];
  var grad = g[i] * scale;
  var w = p[i];
  if (h.decoupled > 0.5) { w = w * (1.0 - h.lr * h.weight_decay); } else { grad = grad + h.weight_decay * w; }
  let mi = h.beta1 * m[i] + (1.0 - h.beta1) * grad;
  let vi = h.beta2 * v[i] + (1.0 - h.beta2) * grad * grad;
  m[i] = mi;
  v[i] = vi;
  let mhat = mi / (1.0 - pow(h.beta1, t));
  let vhat = vi / (1.0 - pow(h.beta2, t));
  p[i] = w - h.lr * mhat / (sqrt(vhat) + h.eps);
}`,
  };
}

// One Kernel object per arguments (kernels/common.ts cachedKernel).
export const adamAdvanceKernel = cachedKernel(buildAdamAdvanceKernel);
export const adamUpdateKernel = cachedKernel(buildAdamUpdateKernel);
