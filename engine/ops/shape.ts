/**
 * Shape ops: reshape (a view), permute, slice, concat, pad (constant or circular). Forward through the gather /
 * scatter kernels; each backward is another shape op (permute ↔ inverse permute, slice ↔ zero pad, concat ↔
 * slices, circular pad ↔ wrapped sums); each JVP is the op itself applied to the tangent (they are linear;
 * pad fills the tangent with 0 whatever the value); the float64 references index the same way on the CPU.
 */
import { GATHER_WG, type GatherConfig, gatherKernel, scatterBlockKernel } from "../../kernels/gather.wgsl.ts";
import { record } from "../autograd.ts";
import { dispatch, grid1d } from "../runtime.ts";
import { numel, type Shape, shapeStr, Tensor } from "../tensor.ts";
import { add, zeros } from "./elementwise.ts";

const zerosLike = (t: Tensor) => zeros(t.shape);

/** Index-remapping copy without autodiff (see kernels/gather.wgsl.ts for perm and offset). */
export function gather(x: Tensor, c: Omit<GatherConfig, "inShape">): Tensor {
  const out = Tensor.empty(c.outShape);
  dispatch(gatherKernel({ ...c, inShape: x.shape }), [x.buffer, out.buffer], grid1d(out.size, GATHER_WG));
  return out;
}

const identityPerm = (n: number) => [...Array(n).keys()];

/** Same data, new shape (one dim may be -1). */
export function reshape(x: Tensor, shape: number[]): Tensor {
  const known = shape.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
  const resolved = shape.map((d) => (d === -1 ? x.size / known : d));
  if (numel(resolved) !== x.size) {
    throw new Error(`reshape: cannot view ${shapeStr(x.shape)} as ${shapeStr(shape)}`);
  }
  return record(x.view(resolved), "reshape", [x], (g) => [g.view(x.shape)], ([t]) => t!.view(resolved));
}

export function permute(x: Tensor, perm: number[], grad = true): Tensor {
  if (perm.length !== x.ndim || [...perm].sort().some((p, i) => p !== i)) {
    throw new Error(`permute: ${JSON.stringify(perm)} is not a permutation of ${x.ndim} axes`);
  }
  const outShape = perm.map((p) => x.shape[p]);
  const out = gather(x, { outShape, perm, offset: perm.map(() => 0), mode: "constant", fill: 0 });
  if (!grad) return out;
  const inv = perm.map((_, i) => perm.indexOf(i));
  return record(out, "permute", [x], (g) => [permute(g, inv)], ([t]) => permute(t!, perm));
}

/** x.transpose(a, b). */
export function transpose(x: Tensor, a: number, b: number): Tensor {
  const p = identityPerm(x.ndim);
  const ax = a < 0 ? a + x.ndim : a, bx = b < 0 ? b + x.ndim : b;
  [p[ax], p[bx]] = [p[bx], p[ax]];
  return permute(x, p);
}

/** x[start:end] along `axis` (step 1). */
export function slice(x: Tensor, axis: number, start: number, end: number): Tensor {
  const ax = axis < 0 ? axis + x.ndim : axis;
  if (start < 0 || end > x.shape[ax] || start >= end) {
    throw new Error(`slice: [${start}:${end}] out of range for axis ${ax} of ${shapeStr(x.shape)}`);
  }
  const outShape = x.shape.map((d, i) => (i === ax ? end - start : d));
  const offset = x.shape.map((_, i) => (i === ax ? start : 0));
  const out = gather(x, { outShape, perm: identityPerm(x.ndim), offset, mode: "constant", fill: 0 });
  return record(out, "slice", [x], (g) => {
    const pads = x.shape.map((_, i) => (i === ax ? [start, x.shape[ax] - end] : [0, 0]) as [number, number]);
    return [pad(g, pads)];
  }, ([t]) => slice(t!, ax, start, end));
}

export function concat(xs: Tensor[], axis: number): Tensor {
  const ax = axis < 0 ? axis + xs[0].ndim : axis;
  for (const t of xs) {
    if (t.ndim !== xs[0].ndim || t.shape.some((d, i) => i !== ax && d !== xs[0].shape[i])) {
      throw new Error(
        `concat: shapes ${xs.map((t) => shapeStr(t.shape)).join(", ")} differ outside axis ${ax}`,
      );
    }
  }
  const total = xs.reduce((s, t) => s + t.shape[ax], 0);
  const outShape = xs[0].shape.map((d, i) => (i === ax ? total : d));
  const out = Tensor.empty(outShape);
  let off = 0;
  const offsets: number[] = [];
  for (const t of xs) {
    offsets.push(off);
    dispatch(
      scatterBlockKernel(t.shape, outShape, ax, off),
      [t.buffer, out.buffer],
      grid1d(t.size, GATHER_WG),
    );
    off += t.shape[ax];
  }
  return record(
    out,
    "concat",
    xs,
    (g) => xs.map((t, i) => slice(g, ax, offsets[i], offsets[i] + t.shape[ax])),
    (ts) => concat(ts.map((t, i) => t ?? zerosLike(xs[i])), ax),
  );
}

/**
 * Pad with `pads[d] = [before, after]` per axis (all axes listed). "constant" fills with `value`; "circular"
 * wraps (as torch.nn.functional.pad mode="circular"; each pad ≤ the axis size).
 */
export function pad(
  x: Tensor,
  pads: [number, number][],
  mode: "constant" | "circular" = "constant",
  value = 0,
): Tensor {
  if (pads.length !== x.ndim) {
    throw new Error(`pad: need ${x.ndim} [before, after] pairs, got ${pads.length}`);
  }
  const outShape = x.shape.map((d, i) => d + pads[i][0] + pads[i][1]);
  if (mode === "circular" && pads.some(([a, b], i) => a > x.shape[i] || b > x.shape[i])) {
    throw new Error(`pad: circular pads ${JSON.stringify(pads)} exceed the axes of ${shapeStr(x.shape)}`);
  }
  const offset = pads.map(([lo]) => -lo);
  const out = gather(x, { outShape, perm: identityPerm(x.ndim), offset, mode, fill: value });
  return record(
    out,
    "pad",
    [x],
    (g) => [mode === "constant" ? unpad(g, pads) : circularPadBackward(g, pads)],
    ([t]) => pad(t!, pads, mode, 0),
  );
}

function unpad(g: Tensor, pads: [number, number][]): Tensor {
  let cur = g;
  pads.forEach(([lo, hi], ax) => {
    if (lo || hi) cur = slice(cur, ax, lo, cur.shape[ax] - hi);
  });
  return cur;
}

/** Adjoint of circular padding: the wrapped borders add back onto the opposite edges. */
function circularPadBackward(g: Tensor, pads: [number, number][]): Tensor {
  let cur = g;
  pads.forEach(([lo, hi], ax) => {
    if (!lo && !hi) return;
    const n = cur.shape[ax] - lo - hi;
    let center = slice(cur, ax, lo, lo + n);
    if (lo) {
      const wrapped = slice(cur, ax, 0, lo); // came from the last lo entries
      center = add(
        center,
        pad(wrapped, cur.shape.map((_, i) => (i === ax ? [n - lo, 0] : [0, 0]) as [number, number])),
      );
    }
    if (hi) {
      const wrapped = slice(cur, ax, lo + n, lo + n + hi); // came from the first hi entries
      center = add(
        center,
        pad(wrapped, cur.shape.map((_, i) => (i === ax ? [0, n - hi] : [0, 0]) as [number, number])),
      );
    }
    cur = center;
  });
  return cur;
}

/** Float64 references: gather by explicit index arithmetic. */
export const reference = {
  gather(
    x: Float64Array,
    inShape: Shape,
    outShape: Shape,
    perm: number[],
    offset: number[],
    circular = false,
  ) {
    const out = new Float64Array(numel(outShape));
    const nd = outShape.length;
    const is = inShape.map((_, i) => inShape.slice(i + 1).reduce((a, b) => a * b, 1));
    for (let i = 0; i < out.length; i++) {
      let rem = i, src = 0, ok = true;
      for (let d = nd - 1; d >= 0; d--) {
        const o = rem % outShape[d];
        rem = Math.floor(rem / outShape[d]);
        const ax = perm[d];
        let c = o + offset[d];
        if (circular) c = ((c % inShape[ax]) + inShape[ax]) % inShape[ax];
        if (c < 0 || c >= inShape[ax]) ok = false;
        src += c * is[ax];
      }
      out[i] = ok ? x[src] : 0;
    }
    return out;
  },
};
