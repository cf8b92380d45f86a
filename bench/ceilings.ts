/**
 * The adapter's ceilings, measured in the same run as the kernels they judge: an FMA-bound kernel (independent
 * chains of vec4 fma kept in registers, nothing loaded in the loop) and a copy kernel (vec4 buffer copy,
 * read + write bytes counted). Each is the best of a few shapes of the same kernel, so a ceiling is never
 * held down by one unlucky configuration.
 */
import { dispatch, type Kernel } from "../engine/runtime.ts";
import { gpu, Tensor } from "../engine/index.ts";
import type { Bench } from "./types.ts";

/** `accs` independent vec4 accumulators, `unroll` fmas each per loop trip, `iters` trips; one vec4 written. */
export function fmaKernel(accs: number, unroll: number, iters: number, wg: number): Kernel {
  const init = Array.from({ length: accs }, (_, i) => `var a${i} = vec4<f32>(f32(i) * ${i + 1}e-7);`).join(
    " ",
  );
  const step = Array.from({ length: accs }, (_, i) => `a${i} = fma(a${i}, m, c);`).join(" ");
  const body = Array.from({ length: unroll }, () => step).join("\n    ");
  const code = `@group(0) @binding(0) var<storage, read_write> out: array<vec4<f32>>;
@compute @workgroup_size(${wg})
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let m = vec4<f32>(0.999, 0.998, 0.997, 0.996); let c = vec4<f32>(1e-3);
  let i = gid.x;
  ${init}
  for (var it = 0u; it < ${iters}u; it++) {
    ${body}
  }
  out[i] = ${Array.from({ length: accs }, (_, i) => `a${i}`).join(" + ")};
}`;
  return { name: `ceiling_fma_a${accs}_u${unroll}_i${iters}_w${wg}`, code };
}

/** out = in as vec4, `per` vec4 per invocation (consecutive), 2-D grid of `wg`-wide workgroups. */
export function copyKernel(vec4s: number, per: number, wg: number): Kernel {
  const body = Array.from({ length: per }, (_, j) => `out[t * ${per}u + ${j}u] = inp[t * ${per}u + ${j}u];`);
  const code = `@group(0) @binding(0) var<storage, read> inp: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;
@compute @workgroup_size(${wg})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = gid.x + gid.y * nwg.x * ${wg}u;
  if (t >= ${vec4s / per}u) { return; }
  ${body.join("\n  ")}
}`;
  return { name: `ceiling_copy_${vec4s}_p${per}_w${wg}`, code };
}

function grid(groups: number): [number, number] {
  const max = gpu().limits.maxComputeWorkgroupsPerDimension;
  const y = Math.ceil(groups / max);
  return [Math.ceil(groups / y), y];
}

/** FMA ceiling variants (the runner keeps the best). */
export function fmaBenches(quick: boolean): Bench[] {
  const shapes = quick ? [[2, 32]] : [[2, 32], [4, 16], [8, 8]];
  return shapes.map(([accs, unroll]) => {
    const wg = 64, iters = 128;
    const groups = gpu().isCpu ? 256 : 16384;
    const k = fmaKernel(accs, unroll, iters, wg);
    return {
      kernel: "fma_peak",
      shape: `a${accs}_u${unroll}`,
      flops: groups * wg * iters * unroll * accs * 8,
      bytes: 0,
      setup: () => {
        const out = Tensor.empty([groups * wg * 4], { persistent: true });
        return { run: () => dispatch(k, [out.buffer], grid(groups)), dispose: () => out.dispose() };
      },
    };
  });
}

/** Copy-bandwidth variants over 64 MiB (the runner keeps the best). */
export function copyBenches(quick: boolean): Bench[] {
  const n = 16 * 2 ** 20;
  const shapes = quick ? [[4, 64]] : [[1, 256], [4, 64], [4, 256]];
  return shapes.map(([per, wg]) => {
    const k = copyKernel(n / 4, per, wg);
    return {
      kernel: "copy_bw",
      shape: `p${per}_w${wg}`,
      flops: 0,
      bytes: 2 * n * 4,
      setup: () => {
        const src = Tensor.fromData(new Float32Array(n).fill(1), [n], { persistent: true });
        const dst = Tensor.empty([n], { persistent: true });
        return {
          run: () => dispatch(k, [src.buffer, dst.buffer], grid(Math.ceil(n / 4 / per / wg))),
          dispose: () => {
            src.dispose();
            dst.dispose();
          },
        };
      },
    };
  });
}
