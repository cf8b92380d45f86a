/**
 * conv2d / conv3d (stride 1, same padding) vs the float64 reference: forward values, and the input, weight and
 * bias gradients vs central differences of the reference, on random non-zero inputs of awkward sizes (odd
 * spatial sizes, channel counts that are not multiples of the tiles), k = 3 and k = 1, zeros and circular
 * padding. Every case runs under the CPU-adapter table (direct loads, vec4 columns where the sizes allow) and
 * most also under workgroup-memory staging (the GPU strategy) with small tiles and/or a CPU tiling whose tiles
 * overhang the image edges; one case runs the GPU preset as is.
 * Tolerances: forward 2e-5 abs + 1e-5 rel; gradients 1e-4 abs + 1e-4 rel (the reference is linear in each
 * input, so its central differences are exact up to float64 rounding). Max errors are printed.
 */
import { throws as assertThrows } from "node:assert/strict";
import { Tensor } from "../../engine/index.ts";
import {
  conv2d,
  conv3d,
  type ConvTiles,
  reference,
  setConvTiles,
  tilePresets,
} from "../../engine/ops/conv.ts";
import { checkOp, gpuReady, randArray } from "../helpers.ts";

const FWD = { atol: 2e-5, rtol: 1e-5 };
const GRAD = { atol: 1e-4, rtol: 1e-4 };

type Tiling = "cpu" | "staged" | "overhang";

interface Case {
  claim: string;
  x: number[];
  cout: number;
  k: number;
  circular: boolean;
  bias?: boolean;
  /** Tilings besides the CPU table's (each costs a few pipeline compiles, 0.1–0.8 s apiece on lavapipe). */
  also: Tiling[];
}

const CASES: Case[] = [
  {
    claim: "3×3 zeros, odd 5×7 map, 3 → 5 channels",
    x: [2, 3, 5, 7],
    cout: 5,
    k: 3,
    circular: false,
    also: ["staged", "overhang"],
  },
  { claim: "3×3 circular, odd 5×7 map", x: [2, 3, 5, 7], cout: 5, k: 3, circular: true, also: ["overhang"] },
  {
    claim: "3×3 zeros, 5×12 map (vec4 columns), no bias",
    x: [2, 3, 5, 12],
    cout: 6,
    k: 3,
    circular: false,
    bias: false,
    also: ["overhang"],
  },
  {
    claim: "3×3 circular, 3×8 map (vec4 columns, wrapped halos)",
    x: [2, 3, 3, 8],
    cout: 5,
    k: 3,
    circular: true,
    also: ["staged"],
  },
  {
    claim: "1×1 zeros, 3×5 map, 6 → 7 channels",
    x: [2, 6, 3, 5],
    cout: 7,
    k: 1,
    circular: false,
    also: ["staged"],
  },
  { claim: "1×1 circular, 3×8 map", x: [1, 5, 3, 8], cout: 4, k: 1, circular: true, also: [] },
  {
    claim: "3×3×3 zeros, 3×4×5 volume",
    x: [1, 2, 3, 4, 5],
    cout: 3,
    k: 3,
    circular: false,
    also: ["staged"],
  },
  {
    claim: "3×3×3 circular, 3×3×8 volume (vec4 columns)",
    x: [2, 2, 3, 3, 8],
    cout: 5,
    k: 3,
    circular: true,
    also: ["staged"],
  },
  {
    claim: "1×1×1 zeros, 3×2×5 volume",
    x: [2, 3, 3, 2, 5],
    cout: 4,
    k: 1,
    circular: false,
    also: ["staged"],
  },
];

/** CPU tiling with 8-column, 3-row tiles: partial tiles at every edge, vec4 column tails on 12-wide maps. */
const OVERHANG: ConvTiles = {
  forward: (g) => ({ ...tilePresets.cpu.forward(g), ry: 3, rn: 8 }),
  weightGrad: (g) => ({ ...tilePresets.cpu.weightGrad(g), rn: 8, ry: 3, rc: g.spatial.length === 2 ? 3 : 1 }),
  wgradInvocations: 64,
};

/**
 * The staged (GPU) code path with small tiles: 2 reduction channels per step, so channel counts of 3–6 take
 * several steps and a padded last one. (The GPU preset's own tiles unroll 8 channels per step, which takes
 * lavapipe's compiler ~20 s per 3-D kernel; one 2-D case below runs the preset as is.)
 */
const STAGED: ConvTiles = {
  forward: () => ({ stage: true, rm: 4, ry: 2, rn: 2, wg: 1, tm: 2, ty: 2, tx: 2, bk: 2 }),
  weightGrad: () => ({ stage: true, rm: 2, rc: 1, rn: 4, ry: 1, wg: 1, tm: 2, tc: 2 }),
  wgradInvocations: 64,
};

const TILINGS: Record<Tiling, ConvTiles> = { cpu: tilePresets.cpu, staged: STAGED, overhang: OVERHANG };

async function checkConv(c: Omit<Case, "claim" | "also">, label: string) {
  const n = c.x.length - 2, cin = c.x[1];
  const wShape = [c.cout, cin, ...Array(n).fill(c.k)];
  const numel = (s: number[]) => s.reduce((a, b) => a * b, 1);
  const withBias = c.bias ?? true;
  const inputs = [
    { data: randArray(numel(c.x), 11, -1, 1), shape: c.x },
    { data: randArray(numel(wShape), 12, -1, 1), shape: wShape },
  ];
  if (withBias) inputs.push({ data: randArray(c.cout, 13, -1, 1), shape: [c.cout] });
  const conv = n === 2 ? conv2d : conv3d;
  const opts = { padding_mode: c.circular ? "circular" as const : "zeros" as const };
  const r = await checkOp({
    label,
    inputs,
    fn: ([x, w, b]) => conv(x, w, b, opts),
    ref: ([x, w, b]) => reference.conv(x, c.x, w, wShape, b ?? null, c.circular),
    fwdTol: FWD,
    gradTol: GRAD,
    maxProbes: 48,
  });
  console.log(`${label}: max error forward ${r.fwd.toExponential(2)}, gradients ${r.grad.toExponential(2)}`);
}

for (const c of CASES) {
  const op = c.x.length === 4 ? "conv2d" : "conv3d";
  Deno.test(`${op}: ${c.claim} — forward and x/weight/bias gradients match float64`, async () => {
    await gpuReady();
    try {
      for (const name of ["cpu", ...c.also] as Tiling[]) {
        setConvTiles(TILINGS[name]);
        await checkConv(
          c,
          `${op} ${c.x.join("x")}→${c.cout} k${c.k} ${c.circular ? "circular" : "zeros"} [${name}]`,
        );
      }
    } finally {
      setConvTiles(null);
    }
  });
}

Deno.test("conv2d: the GPU preset tiles (workgroup-memory staging) give the same results", async () => {
  await gpuReady();
  try {
    setConvTiles(tilePresets.gpu);
    await checkConv({ x: [2, 3, 5, 7], cout: 5, k: 3, circular: true }, "conv2d gpu preset");
  } finally {
    setConvTiles(null);
  }
});

Deno.test("conv2d: the weight gradient is the same without split-K (one split over all pixel rows)", async () => {
  await gpuReady();
  try {
    setConvTiles({ ...tilePresets.cpu, wgradInvocations: 1 });
    await checkConv({ x: [2, 3, 5, 7], cout: 5, k: 3, circular: false }, "conv2d one split");
  } finally {
    setConvTiles(null);
  }
});

Deno.test("conv2d/conv3d: mismatched shapes, even kernels and unknown padding modes are rejected", async () => {
  await gpuReady();
  const t = (s: number[]) => Tensor.fromData(new Float32Array(s.reduce((a, b) => a * b, 1)), s);
  const x = t([1, 3, 4, 4]);
  assertThrows(() => conv2d(x, t([2, 4, 3, 3])), /C_in/);
  assertThrows(() => conv2d(x, t([2, 3, 2, 2])), /odd k/);
  assertThrows(() => conv2d(x, t([2, 3, 3, 3]), t([3])), /bias/);
  assertThrows(() => conv3d(x, t([2, 3, 3, 3])), /conv3d/);
  assertThrows(
    () => conv2d(x, t([2, 3, 3, 3]), undefined, { padding_mode: "reflect" as "zeros" }),
    /padding_mode/,
  );
});
