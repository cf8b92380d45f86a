/**
 * The transformer block's broadcast affine maps, fused (engine/ops/modulation.ts): `modulate` y = (1 + a)·x + b
 * and `gate` y = (x + g·r)/√(1 + g²), with x, r (B, N, D) and a, b, g per (batch, column) — (B, 1, D), or
 * (1, 1, D) shared by every batch. Composed from broadcast maps they cost 3 dispatches forward and ~6 backward
 * each (the column gradients through a map and a reduction apiece); here one forward and one backward pass.
 *
 * Invariants:
 * - vec4 along D when D % 4 = 0 (one quad of columns per invocation), else one column.
 * - Forward: one invocation per output element (quad). Backward: one invocation per (batch, row chunk, column)
 *   walks the chunk's rows, writes the row-shaped gradients and one partial sum per column gradient, at
 *   ((b · chunks + c) · D + d): with one chunk those partials are the (B, 1, D) gradients themselves.
 */
import { cachedKernel, type Kernel } from "./common.ts";

export interface ModulationConfig {
  op: "modulate" | "gate";
  batch: number;
  rows: number;
  width: number;
  /** The column operands are (1, 1, D), shared by every batch. */
  shared: boolean;
  /** Row chunks per batch in the backward (1 in the forward). */
  chunks: number;
  pass: "forward" | "backward";
}

export const MODULATION_WG = 64;

const quad = (c: ModulationConfig) => (c.width % 4 === 0 ? 4 : 1);

/** Invocations to launch. */
export function modulationInvocations(c: ModulationConfig): number {
  const cols = c.width / quad(c);
  return c.pass === "forward" ? c.batch * c.rows * cols : c.batch * c.chunks * cols;
}

/** Storage bindings in order: inputs, then outputs (row-shaped gradients, then column partials). */
const BINDINGS = {
  modulate: { forward: ["x", "a", "b", "y"], backward: ["x", "a", "gy", "dx", "pa", "pb"] },
  gate: { forward: ["x", "g", "r", "y"], backward: ["x", "g", "r", "gy", "dx", "dr", "pg"] },
} as const;
const INPUTS = { modulate: { forward: 3, backward: 3 }, gate: { forward: 3, backward: 4 } };

function buildModulationKernel(c: ModulationConfig): Kernel {
  const q = quad(c), t = q === 4 ? "vec4<f32>" : "f32", cols = c.width / q;
  const names = BINDINGS[c.op][c.pass], inputs = INPUTS[c.op][c.pass];
  const decls = names.map((n, i) =>
    `@group(0) @binding(${i}) var<storage, ${i < inputs ? "read" : "read_write"}> ${n}: array<${t}>;`
  );
  const total = modulationInvocations(c);
  const col = c.shared ? "d" : `bi * ${cols}u + d`;
  let body: string;
  if (c.pass === "forward") {
    const y = c.op === "modulate"
      ? "(a[cb] + 1.0) * x[i] + b[cb]"
      : "(x[i] + g[cb] * r[i]) / sqrt(g[cb] * g[cb] + 1.0)";
    body = `let bi = i / ${c.rows * cols}u;
  let d = i % ${cols}u;
  let cb = ${col};
  y[i] = ${y};`;
  } else {
    const len = Math.ceil(c.rows / c.chunks);
    const head = `let d = i % ${cols}u;
  let c = (i / ${cols}u) % ${c.chunks}u;
  let bi = i / ${c.chunks * cols}u;
  let cb = ${col};
  let n1 = min(${c.rows}u, (c + 1u) * ${len}u);`;
    const loop = (inner: string) =>
      `for (var n = c * ${len}u; n < n1; n++) {
    let k = (bi * ${c.rows}u + n) * ${cols}u + d;
    let G = gy[k];
    ${inner}
  }`;
    const out = (p: string, acc: string) => `${p}[i] = ${acc};`;
    body = c.op === "modulate"
      ? `${head}
  let s = a[cb] + 1.0;
  var sa = ${t}(0.0);
  var sb = ${t}(0.0);
  ${loop("dx[k] = G * s;\n    sa += G * x[k];\n    sb += G;")}
  ${out("pa", "sa")}
  ${out("pb", "sb")}`
      // dy/dg = (r − y·g/s)/s with y = (x + g·r)/s, s = √(1 + g²).
      : `${head}
  let gc = g[cb];
  let inv = 1.0 / sqrt(gc * gc + 1.0);
  var sg = ${t}(0.0);
  ${
        loop(
          "let rv = r[k];\n    let y = (x[k] + gc * rv) * inv;\n    dx[k] = G * inv;\n    dr[k] = G * gc * inv;\n    sg += G * (rv - y * gc * inv) * inv;",
        )
      }
  ${out("pg", "sg")}`;
  }
  return {
    name: `${c.op}_${c.pass === "forward" ? "fwd" : `bwd_c${c.chunks}`}_${c.batch}x${c.rows}x${c.width}${
      c.shared ? "_shared" : ""
    }`,
    code: `${decls.join("\n")}
@compute @workgroup_size(${MODULATION_WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * (nwg.x * ${MODULATION_WG}u);
  if (i >= ${total}u) { return; }
  ${body}
}`,
  };
}

// One Kernel object per arguments (kernels/common.ts cachedKernel).
export const modulationKernel = cachedKernel(buildModulationKernel);
