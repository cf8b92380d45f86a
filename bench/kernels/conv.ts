/**
 * Convolution benchmarks at the autoencoder's shapes (method §1): forward, input gradient and weight gradient of
 * the 3×3 convs of the first three 2-D levels at batch 8 and of the first 3-D level at batch 2. FLOPs per pass
 * are 2·B·C_out·C_in·k^N·pixels for every pass. `sweeps` times alternative tiles on the same shapes (the runner
 * imports `benches`; a sweep is run by filtering on its kernel name), which is how the per-adapter table in
 * engine/ops/conv.ts was filled.
 */
import {
  convFlops,
  convForwardRaw,
  convInputGradRaw,
  type ConvTiles,
  convWeightGradRaw,
  setConvTiles,
  tilePresets,
} from "../../engine/ops/conv.ts";
import type { Bench, BenchCase } from "../types.ts";
import { input } from "../inputs.ts";

type Pass = "fwd" | "igrad" | "wgrad";

interface Shape {
  batch: number;
  cin: number;
  cout: number;
  spatial: number[];
  k: number;
}

const SHAPES: Shape[] = [
  { batch: 8, cin: 64, cout: 64, spatial: [64, 64], k: 3 },
  { batch: 8, cin: 128, cout: 128, spatial: [32, 32], k: 3 },
  { batch: 8, cin: 256, cout: 256, spatial: [16, 16], k: 3 },
  { batch: 2, cin: 64, cout: 64, spatial: [32, 32, 32], k: 3 },
];

function convBench(s: Shape, pass: Pass, tiles?: { name: string; tiles: ConvTiles }): Bench {
  const n = s.spatial.length;
  const xShape = [s.batch, s.cin, ...s.spatial];
  const yShape = [s.batch, s.cout, ...s.spatial];
  const wShape = [s.cout, s.cin, ...Array(n).fill(s.k)];
  const numel = (sh: number[]) => sh.reduce((a, b) => a * b, 1);
  const io =
    { fwd: [xShape, wShape, yShape], igrad: [yShape, wShape, xShape], wgrad: [xShape, yShape, wShape] }[pass];
  return {
    kernel: `conv${n}d_${pass}${tiles ? `[${tiles.name}]` : ""}`,
    shape: `B${s.batch} ${s.cin}->${s.cout} ${s.spatial.join("x")} k${s.k}`,
    flops: convFlops(xShape, wShape),
    bytes: 4 * io.reduce((acc, sh) => acc + numel(sh), 0),
    setup(): BenchCase {
      const x = input(xShape, 1), w = input(wShape, 2), b = input([s.cout], 3), g = input(yShape, 4);
      const encode = {
        fwd: () => convForwardRaw(x, w, b, false),
        igrad: () => convInputGradRaw(g, w, false),
        wgrad: () => convWeightGradRaw(x, g, wShape, false),
      }[pass];
      return {
        run: () => {
          if (tiles) setConvTiles(tiles.tiles);
          try {
            encode().dispose();
          } finally {
            if (tiles) setConvTiles(null);
          }
        },
        dispose: () => [x, w, b, g].forEach((t) => t.dispose()),
      };
    },
  };
}

export const benches: Bench[] = SHAPES.flatMap((s) =>
  (["fwd", "igrad", "wgrad"] as Pass[]).map((p) => convBench(s, p))
);

/** Alternative tiles on the 2-D shapes: the register tile variants that were close, and the GPU (staged) tiles. */
function variant(
  name: string,
  fwd: Partial<ReturnType<ConvTiles["forward"]>>,
  wg: Partial<ReturnType<ConvTiles["weightGrad"]>>,
) {
  const base = tilePresets.cpu;
  return {
    name,
    tiles: {
      forward: (g) => ({ ...base.forward(g), ...fwd }),
      weightGrad: (g) => ({ ...base.weightGrad(g), ...wg }),
      wgradInvocations: base.wgradInvocations,
    } satisfies ConvTiles,
  };
}

const VARIANTS = [
  variant("cpu_r4x2x8", { ry: 2 }, { rc: 1 }),
  variant("cpu_r8x4x8", { rm: 8 }, { rc: 4 }),
  variant("cpu_r4x4x4", { rn: 4 }, { rn: 4 }),
  { name: "gpu", tiles: tilePresets.gpu },
];

export const sweeps: Bench[] = SHAPES.slice(0, 3).flatMap((s) =>
  VARIANTS.flatMap((v) => (["fwd", "wgrad"] as Pass[]).map((p) => convBench(s, p, v)))
);
