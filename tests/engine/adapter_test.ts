/**
 * The one adapter classification (engine/adapter.ts) and the per-adapter tables that key on it: example
 * `adapter.info` strings map to the right kind, and matmul, conv and attention all give every software adapter
 * (SwiftShader included) their CPU choice and GPUs their GPU choice. No GPU needed: tables are looked up by kind.
 */
import assert from "node:assert/strict";
import {
  type AdapterInfoLike,
  type AdapterKind,
  adapterTable,
  classifyAdapter,
} from "../../engine/adapter.ts";
import { ATTENTION_TILES, attentionImpl } from "../../engine/ops/attention_tiles.ts";
import { CONV_TILES, convTiles, tilePresets } from "../../engine/ops/conv.ts";
import { MATMUL_TILES, type MatmulProblem, matmulTile } from "../../engine/ops/matmul.ts";
import { DEFAULT_TILE } from "../../kernels/matmul.wgsl.ts";

const EXAMPLES: [AdapterInfoLike, AdapterKind][] = [
  // Deno (wgpu) on Mesa lavapipe, as this machine reports it.
  [
    { vendor: "65541", architecture: "", device: "0", description: "llvmpipe (LLVM 15.0.6, 256 bits)" },
    "lavapipe",
  ],
  [
    { vendor: "mesa", architecture: "", device: "", description: "lavapipe", isFallbackAdapter: true },
    "lavapipe",
  ],
  // Dawn's SwiftShader (Chrome's fallback), named in the architecture or the description.
  [{ vendor: "google", architecture: "swiftshader", device: "0xc0de", description: "" }, "swiftshader"],
  [{ vendor: "", architecture: "", device: "", description: "SwiftShader Device (Subzero)" }, "swiftshader"],
  // Another software or fallback adapter.
  [
    { vendor: "microsoft", description: "Microsoft Basic Render Driver", isFallbackAdapter: true },
    "cpu-other",
  ],
  [{ vendor: "", description: "Some Software Rasterizer" }, "cpu-other"],
  // GPUs.
  [{ vendor: "nvidia", architecture: "hopper", device: "0x2335", description: "NVIDIA H200" }, "gpu"],
  [{ vendor: "amd", architecture: "rdna-3", description: "AMD Radeon RX 7900 XTX (RADV NAVI31)" }, "gpu"],
  [{ vendor: "apple", architecture: "metal-3", description: "Apple M2 Max" }, "gpu"],
  [{ vendor: "intel", architecture: "xe-lpg", description: "Intel(R) Arc(TM) Graphics" }, "gpu"],
  [{}, "gpu"],
];

const CPU_KINDS: AdapterKind[] = ["lavapipe", "swiftshader", "cpu-other"];

Deno.test("adapter: adapter.info strings classify as lavapipe, swiftshader, another CPU adapter or a GPU", () => {
  for (const [info, want] of EXAMPLES) {
    assert.equal(classifyAdapter(info), want, JSON.stringify(info));
  }
});

Deno.test("adapter: a table looks up the exact kind, then `cpu` for software adapters, then `default`", () => {
  const t = adapterTable({ lavapipe: "lp", cpu: "cpu", default: "gpu" });
  assert.deepEqual(["lavapipe", "swiftshader", "cpu-other", "gpu"].map((k) => t.for(k as AdapterKind)), [
    "lp",
    "cpu",
    "cpu",
    "gpu",
  ]);
  assert.equal(adapterTable({ default: 1 }).for("swiftshader"), 1);
  assert.deepEqual(t.values().sort(), ["cpu", "gpu", "lp"]);
});

Deno.test("adapter: matmul, conv and attention give every software adapter (SwiftShader too) their CPU choice", () => {
  // A square product big enough for the big register tile: on GPUs it falls to DEFAULT_TILE.
  const p: MatmulProblem = {
    batch: 1,
    m: 1024,
    n: 1024,
    k: 1024,
    transA: false,
    transB: false,
    strideA: 0,
    strideB: 0,
    bias: false,
  };
  const cpuTile = matmulTile(p, "lavapipe");
  assert.equal(cpuTile.staging, "register");
  for (const kind of CPU_KINDS) {
    assert.equal(MATMUL_TILES.for(kind), MATMUL_TILES.for("lavapipe"), `matmul rules on ${kind}`);
    assert.deepEqual(matmulTile(p, kind), cpuTile, `matmul tile on ${kind}`);
    assert.equal(CONV_TILES.for(kind), tilePresets.cpu, `conv tiles on ${kind}`);
    assert.equal(convTiles(kind), tilePresets.cpu, `conv tiles on ${kind}`);
    assert.equal(ATTENTION_TILES.for(kind), ATTENTION_TILES.for("lavapipe"), `attention rule on ${kind}`);
  }
  assert.deepEqual(matmulTile(p, "gpu"), DEFAULT_TILE);
  assert.equal(convTiles("gpu"), tilePresets.gpu);
  const saved = Deno.env.get("LOLA_ATTENTION");
  Deno.env.delete("LOLA_ATTENTION");
  try {
    for (const kind of CPU_KINDS) {
      assert.equal(attentionImpl(undefined, kind), "dense", `attention on ${kind}`);
    }
    assert.equal(attentionImpl(undefined, "gpu"), "flash");
  } finally {
    if (saved !== undefined) Deno.env.set("LOLA_ATTENTION", saved);
  }
});

Deno.test("adapter: no op reads the adapter's name or info itself (every table goes through adapterKind)", async () => {
  const dir = new URL("../../engine/ops/", import.meta.url);
  const offenders: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (!e.name.endsWith(".ts")) continue;
    const src = await Deno.readTextFile(new URL(e.name, dir));
    if (/\b(adapterName|adapterInfo|isCpu)\b|\.info\b/.test(src)) offenders.push(e.name);
  }
  assert.deepEqual(offenders, []);
});
