/**
 * One axis of a complex DFT: a Stockham radix-2 FFT for power-of-two lengths (no bit reversal: each stage
 * reads one buffer and writes the other in sorted order), a direct O(N²) DFT for other lengths (The Well's 12
 * and 6). Two kernels: `fftAxisKernel` holds each line in workgroup memory, `fftLineKernel` gives each line to
 * one invocation as unrolled straight-line code. engine/ops/fft.ts runs one dispatch per transformed axis.
 *
 * Layout and invariants:
 * - Complex tensors are planar, (M, 2, S): plane 0 holds the real parts, plane 1 the imaginary parts, S the
 *   product of the spatial axes; a real input is (M, S) and reads 0 for the imaginary part. Output is always
 *   (M, 2, S), never in place.
 * - The axis has length `n` and element stride `stride` inside S, so one line is base + k·stride for k < n
 *   and there are M·S/n lines. A workgroup transforms `lines per workgroup` whole lines, so nothing leaves it
 *   between stages but a barrier; every barrier is in uniform control flow (invalid lines still reach it).
 * - Twiddles come from a table tw[k] = (cos, −sin)(2πk/n) computed in float64 and rounded once
 *   (e^{−2πi k/n}, numpy's sign), so their error does not grow with the stage or with n; the direct DFT
 *   indexes it at j·k mod n.
 * - `scale` multiplies every output (1/√n per axis for norm="ortho").
 */
import { cachedKernel, f32, type Kernel } from "./common.ts";

export interface FftAxisConfig {
  /** Leading batch count M (each owns one (2, S) or (S) block). */
  batch: number;
  /** Product of the spatial axes. */
  plane: number;
  /** Length of the transformed axis and its element stride inside the plane. */
  n: number;
  stride: number;
  /** Input is real (M, S) rather than planar complex (M, 2, S). */
  realInput: boolean;
  scale: number;
}

/** Threads per line and lines per workgroup: ≤ 64 invocations, enough lines to fill them at small n. */
export function fftLayout(n: number): { threads: number; linesPerGroup: number; radix2: boolean } {
  const radix2 = (n & (n - 1)) === 0;
  const threads = Math.min(64, Math.max(1, radix2 ? Math.floor(n / 2) : n));
  return { threads, linesPerGroup: Math.max(1, Math.floor(64 / threads)), radix2 };
}

/** Bytes of workgroup memory the kernel for length n needs (the caller checks the adapter's limit). */
export function fftSharedBytes(n: number): number {
  const { linesPerGroup, radix2 } = fftLayout(n);
  return (radix2 ? 2 : 1) * linesPerGroup * n * 8;
}

function buildFftAxisKernel(c: FftAxisConfig): Kernel {
  const { n, stride, plane } = c;
  const { threads: T, linesPerGroup: L, radix2 } = fftLayout(n);
  const lines = (c.batch * plane) / n;
  const perBatch = plane / n;
  const inBatch = c.realInput ? plane : 2 * plane;
  const im = c.realInput ? "0.0" : `x[ib + ${plane}u + k * ${stride}u]`;
  const logn = Math.round(Math.log2(n));
  const body = radix2
    ? `var src = 0u;
  var dst = ${L * n}u;
  var s = 1u;
  for (var stage = 0u; stage < ${logn}u; stage++) {
    let hn = ${n}u / (2u * s);
    for (var j = t; j < ${Math.floor(n / 2)}u; j += ${T}u) {
      let p = j / s;
      let q = j % s;
      let a = buf[sb + src + q + s * p];
      let b = buf[sb + src + q + s * (p + hn)];
      buf[sb + dst + q + s * 2u * p] = a + b;
      buf[sb + dst + q + s * (2u * p + 1u)] = cmul(a - b, tw[p * s]);
    }
    workgroupBarrier();
    let tmp = src;
    src = dst;
    dst = tmp;
    s = s * 2u;
  }
  if (valid) {
    for (var k = t; k < ${n}u; k += ${T}u) {
      let v = buf[sb + src + k] * ${f32(c.scale)};
      out[ob + k * ${stride}u] = v.x;
      out[ob + ${plane}u + k * ${stride}u] = v.y;
    }
  }`
    : `if (valid) {
    for (var k = t; k < ${n}u; k += ${T}u) {
      var acc = vec2f(0.0, 0.0);
      for (var j = 0u; j < ${n}u; j++) { acc += cmul(buf[sb + j], tw[(j * k) % ${n}u]); }
      let v = acc * ${f32(c.scale)};
      out[ob + k * ${stride}u] = v.x;
      out[ob + ${plane}u + k * ${stride}u] = v.y;
    }
  }`;
  const code = `@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> tw: array<vec2f>;
var<workgroup> buf: array<vec2f, ${fftSharedBytes(n) / 8}>;

fn cmul(a: vec2f, b: vec2f) -> vec2f { return vec2f(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x); }

@compute @workgroup_size(${T * L})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3u,
        @builtin(num_workgroups) nwg: vec3u) {
  let t = lid % ${T}u;
  let line = (wid.x + wid.y * nwg.x) * ${L}u + lid / ${T}u;
  let valid = line < ${lines}u;
  let m = line / ${perBatch}u;
  let r = line % ${perBatch}u;
  let off = (r / ${stride}u) * ${n * stride}u + r % ${stride}u;
  let ib = m * ${inBatch}u + off;
  let ob = m * ${2 * plane}u + off;
  let sb = (lid / ${T}u) * ${n}u;
  if (valid) {
    for (var k = t; k < ${n}u; k += ${T}u) { buf[sb + k] = vec2f(x[ib + k * ${stride}u], ${im}); }
  }
  workgroupBarrier();
  ${body}
}`;
  const tag = `${c.batch}x${plane}_n${n}s${stride}${c.realInput ? "_r" : ""}`;
  return { name: `fft_axis_${tag}`, code };
}

/** Workgroups the kernel needs for `c` (one per `linesPerGroup` lines). */
export function fftGroups(c: FftAxisConfig): number {
  return Math.ceil((c.batch * c.plane) / c.n / fftLayout(c.n).linesPerGroup);
}

/**
 * The same transform with one invocation per line and nothing in workgroup memory: the whole line is
 * straight-line code over `let` values (fully unrolled Stockham stages, or the direct DFT for other lengths)
 * with the twiddles baked in as literals, so the only memory traffic is the line's load and store. Code grows
 * like n·log n (n² for the direct DFT), so it serves short axes; on the software adapters, where every memory
 * access is a per-lane loop, it is the faster kernel there (`FFT_LINE_MAX` in engine/ops/fft.ts).
 */
export const FFT_LINE_WG = 64;

function buildFftLineKernel(c: FftAxisConfig): Kernel {
  const { n, stride, plane } = c;
  const WG = FFT_LINE_WG;
  const lines = (c.batch * plane) / n;
  const perBatch = plane / n;
  const inBatch = c.realInput ? plane : 2 * plane;
  const tw = (k: number) => {
    const ang = (2 * Math.PI * (k % n)) / n;
    return [Math.cos(ang), -Math.sin(ang)];
  };
  /** v·w for a baked twiddle index (exact for w = 1 and w = −i). */
  const mul = (v: string, k: number) => {
    const j = k % n;
    if (j === 0) return v;
    if (4 * j === n) return `vec2f(${v}.y, -${v}.x)`;
    const [cr, ci] = tw(j);
    return `vec2f(${v}.x * ${f32(cr)} - ${v}.y * ${f32(ci)}, ${v}.x * ${f32(ci)} + ${v}.y * ${f32(cr)})`;
  };
  const lines_: string[] = [];
  for (let k = 0; k < n; k++) {
    const im = c.realInput ? "0.0" : `x[ib + ${plane + k * stride}u]`;
    lines_.push(`let a${k} = vec2f(x[ib + ${k * stride}u], ${im});`);
  }
  let cur = "a";
  if ((n & (n - 1)) === 0) {
    let len = n, s = 1, stage = 0;
    while (len > 1) {
      const m = len / 2, nx = `b${stage}_`;
      for (let p = 0; p < m; p++) {
        for (let q = 0; q < s; q++) {
          const a = `${cur}${q + s * p}`, b = `${cur}${q + s * (p + m)}`;
          lines_.push(`let ${nx}${q + s * 2 * p} = ${a} + ${b};`);
          lines_.push(`let d${stage}_${q + s * (2 * p + 1)} = ${a} - ${b};`);
          lines_.push(`let ${nx}${q + s * (2 * p + 1)} = ${mul(`d${stage}_${q + s * (2 * p + 1)}`, p * s)};`);
        }
      }
      cur = nx;
      len = m;
      s *= 2;
      stage++;
    }
  } else {
    for (let k = 0; k < n; k++) {
      lines_.push(`let y${k} = ${Array.from({ length: n }, (_, j) => mul(`a${j}`, j * k)).join(" + ")};`);
    }
    cur = "y";
  }
  for (let k = 0; k < n; k++) {
    const v = c.scale === 1 ? `${cur}${k}` : `(${cur}${k} * ${f32(c.scale)})`;
    lines_.push(`let o${k} = ${v};`);
    lines_.push(`out[ob + ${k * stride}u] = o${k}.x;`);
    lines_.push(`out[ob + ${plane + k * stride}u] = o${k}.y;`);
  }
  const code = `@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let line = gid.x + gid.y * (nwg.x * ${WG}u);
  if (line >= ${lines}u) { return; }
  let m = line / ${perBatch}u;
  let r = line % ${perBatch}u;
  let off = (r / ${stride}u) * ${n * stride}u + r % ${stride}u;
  let ib = m * ${inBatch}u + off;
  let ob = m * ${2 * plane}u + off;
  ${lines_.join("\n  ")}
}`;
  const tag = `${c.batch}x${plane}_n${n}s${stride}${c.realInput ? "_r" : ""}${c.scale === 1 ? "" : "_o"}`;
  return { name: `fft_line_${tag}`, code };
}

// One Kernel object per arguments (kernels/common.ts cachedKernel).
export const fftAxisKernel = cachedKernel(buildFftAxisKernel);
export const fftLineKernel = cachedKernel(buildFftLineKernel);
