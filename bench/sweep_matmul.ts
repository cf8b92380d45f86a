/**
 * Matmul tile sweep (an llm.c-style dev harness): every candidate tile config is first checked against the
 * float64 CPU reference (a small awkward case, then the full benchmark shape), then timed on the benchmark
 * shapes through the engine's own dispatch. Winners go into MATMUL_TILES in engine/ops/matmul.ts.
 *
 *   deno run -A bench/sweep_matmul.ts [--shape 1024,1024,1024 ...] [--layout NN ...] [--only register] [--quick]
 */
import { parseArgs } from "node:util";
import { gpu, initDevice, Tensor } from "../engine/index.ts";
import { matmulRaw, reference, setMatmulTile } from "../engine/ops/matmul.ts";
import { DEFAULT_TILE, type MatmulTile, matmulTileName } from "../kernels/matmul.wgsl.ts";
import { timeRuns } from "./timing.ts";

const HELP = `deno run -A bench/sweep_matmul.ts [options]

Checks every matmul tile candidate against the float64 reference, then times it.
  --shape M,K,N    benchmark shape (repeatable; default 1024,1024,1024 4096,256,768 4096,768,256)
  --layout XY      N or T for A and B, e.g. NT (repeatable; default NN)
  --only KIND      register | workgroup (default both)
  --tile SPEC      sweep these instead of the built-in list (repeatable): reg:RM:RN:BK:TX:TY | wg:BM:BN:BK:RM:RN
  --rounds R       timing rounds over all candidates, best kept (default 2)
  --quick          short measurements
  --help           this text`;

function register(rm: number, rn: number, bk: number, tx: number, ty: number): MatmulTile {
  return { bm: rm * ty, bn: rn * tx, bk, rm, rn, staging: "register" };
}

function parseTile(spec: string): MatmulTile {
  const [kind, ...v] = spec.split(":");
  const x = v.map(Number);
  if (x.length !== 5 || x.some((d) => !(d > 0))) throw new Error(`bad --tile ${spec}`);
  if (kind === "reg") return register(x[0], x[1], x[2], x[3], x[4]);
  if (kind === "wg") return { bm: x[0], bn: x[1], bk: x[2], rm: x[3], rn: x[4], staging: "workgroup" };
  throw new Error(`bad --tile ${spec}: kind is reg or wg`);
}

/** The candidates: register tiles (CPU adapters) and workgroup-memory tiles (GPUs). */
export const CANDIDATES: MatmulTile[] = [
  register(8, 8, 4, 8, 8),
  register(16, 16, 4, 8, 8),
  register(16, 4, 4, 8, 8),
  register(32, 16, 4, 8, 4),
  register(32, 32, 4, 8, 4),
  register(64, 32, 4, 8, 2),
  DEFAULT_TILE,
  { bm: 64, bn: 64, bk: 32, rm: 8, rn: 8, staging: "workgroup" },
  { bm: 128, bn: 128, bk: 16, rm: 8, rn: 8, staging: "workgroup" },
];

function tensor(data: Float64Array, shape: number[]): Tensor {
  return Tensor.fromData(Float32Array.from(data), shape, { persistent: true });
}

function rand(n: number, seed: number): Float64Array {
  const a = new Float64Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = Math.fround(s / 2 ** 31 - 1);
  }
  return a;
}

interface Problem {
  m: number;
  k: number;
  n: number;
  transA: boolean;
  transB: boolean;
  a: Tensor;
  b: Tensor;
  want: Float64Array;
}

function problem(m: number, k: number, n: number, layout: string): Problem {
  const [transA, transB] = [layout[0] === "T", layout[1] === "T"];
  const as = transA ? [k, m] : [m, k], bs = transB ? [n, k] : [k, n];
  const a = rand(m * k, 1), b = rand(k * n, 2);
  return {
    m,
    k,
    n,
    transA,
    transB,
    a: tensor(a, as),
    b: tensor(b, bs),
    want: reference.matmul(a, as, b, bs, transA, transB),
  };
}

/** Max |got − want| / (1 + |want|) of one tile on one problem. */
async function error(p: Problem): Promise<number> {
  const out = matmulRaw(p.a, p.b, p.transA, p.transB);
  const got = await out.read();
  out.dispose();
  let e = 0;
  for (let i = 0; i < got.length; i++) {
    const d = Math.abs(got[i] - p.want[i]) / (1 + Math.abs(p.want[i]));
    e = Number.isNaN(d) ? Infinity : Math.max(e, d);
  }
  return e;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      shape: { type: "string", multiple: true },
      layout: { type: "string", multiple: true },
      only: { type: "string" },
      tile: { type: "string", multiple: true },
      quick: { type: "boolean", default: false },
      rounds: { type: "string", default: "2" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) return console.log(HELP);
  await initDevice();
  console.log(`adapter: ${gpu().adapterName} · load average ${Deno.loadavg()[0].toFixed(2)}`);
  const shapes = (values.shape ?? ["1024,1024,1024", "4096,256,768", "4096,768,256"]).map((s) =>
    s.split(",").map(Number)
  );
  const layouts = values.layout ?? ["NN"];
  const rounds = Number(values.rounds);
  const tiles = (values.tile?.map(parseTile) ?? CANDIDATES).filter((t) =>
    !values.only || (t.staging ?? "workgroup") === values.only
  );
  // Off-grid edges with vec4 loads for every tile; odd sizes (scalar loads) only for tiles small enough to
  // compile them quickly (the table never gives a big register tile a non-vec4 problem).
  const edges = layouts.map((l) => problem(68, 44, 76, l));
  const odd = layouts.map((l) => problem(37, 29, 53, l));
  const results: { tile: string; shape: string; ms: number; gflops: number; cpuGflops: number }[] = [];
  for (const [m, k, n] of shapes) {
    for (const layout of layouts) {
      const p = problem(m, k, n, layout);
      const shape = `M${m}xK${k}xN${n} ${layout}`;
      const ok: MatmulTile[] = [];
      const compile = new Map<string, number>();
      for (const tile of tiles) {
        setMatmulTile(tile);
        const t0 = performance.now();
        const big = await error(p); // the first run compiles the pipeline
        const compileMs = performance.now() - t0;
        const small = tile.rm * tile.rn <= 256 ? [...edges, ...odd] : edges;
        const err = Math.max(big, ...(await Promise.all(small.map(error))));
        compile.set(matmulTileName(tile), compileMs);
        if (err < 1e-4) ok.push(tile);
        else {console.log(
            `${shape}  ${matmulTileName(tile).padEnd(24)} WRONG: max relative error ${err.toExponential(2)}`,
          );}
      }
      // Round-robin rounds, best of each: a shared machine's noise hits every tile alike.
      const best = new Map<string, { ms: number; gflops: number; cpuGflops: number }>();
      for (let round = 0; round < rounds; round++) {
        for (const tile of ok) {
          setMatmulTile(tile);
          const t = await timeRuns(() => matmulRaw(p.a, p.b, p.transA, p.transB), {
            minSeconds: values.quick ? 0.1 : 0.3,
            repeats: 1,
          });
          const flops = 2 * m * n * k;
          // Throughput per unit of CPU received (lavapipe runs on every core): robust on a shared machine.
          const r = {
            ms: t.ms,
            gflops: flops / t.ms / 1e6,
            cpuGflops: flops / (t.cpuMs / navigator.hardwareConcurrency) / 1e6,
          };
          const name = matmulTileName(tile), prev = best.get(name);
          if (!prev || r.gflops > prev.gflops) {
            best.set(name, { ...r, cpuGflops: Math.max(r.cpuGflops, prev?.cpuGflops ?? 0) });
          } else prev.cpuGflops = Math.max(prev.cpuGflops, r.cpuGflops);
        }
      }
      for (const [name, r] of best) {
        results.push({ tile: name, shape, ...r });
        console.log(
          `${shape}  ${name.padEnd(24)} ${r.ms.toFixed(2).padStart(9)} ms ${
            r.gflops.toFixed(2).padStart(7)
          } GFLOP/s ${r.cpuGflops.toFixed(2).padStart(7)} per-CPU  (first run ${
            compile.get(name)!.toFixed(0)
          } ms)`,
        );
      }
      setMatmulTile(null);
      p.a.dispose();
      p.b.dispose();
    }
  }
  console.log("\nbest per shape:");
  for (const s of new Set(results.map((r) => r.shape))) {
    const key = gpu().isCpu ? "cpuGflops" : "gflops";
    const best = results.filter((r) => r.shape === s).sort((x, y) => y[key] - x[key])[0];
    console.log(
      `  ${s}: ${best.tile} ${best.gflops.toFixed(2)} GFLOP/s (${best.cpuGflops.toFixed(2)} per-CPU)`,
    );
  }
}

if (import.meta.main) await main();
