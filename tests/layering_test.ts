/**
 * The folders table of DESIGN.md as a test: reads every .ts file's imports (static `import … from`, `import "…"`,
 * `export … from`, and dynamic `import("…")` with a literal path) and fails, listing every offence, when a
 * folder imports one it may not. Same-folder imports are always allowed, and so are `npm:`/`node:` specifiers
 * and the import map's names (which resolve to npm); a relative path that leaves the repository is an offence.
 */
import assert from "node:assert/strict";
import { dirname, join, normalize, relative } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * PENDING: files that still break the table because they are being moved (models/ training loops → train/).
 * Remove an entry when its file moves; the test fails while an entry names a file that is gone or no longer
 * breaks the table, so this list cannot go stale.
 */
const PENDING: string[] = [];

/** Which folders each folder may import (DESIGN.md, "Folders"); "*" = everything. */
const MAY_IMPORT: Record<string, readonly string[] | "*"> = {
  kernels: [],
  engine: ["kernels"],
  models: ["engine"],
  data: ["engine"],
  eval: ["engine", "models", "data"],
  train: ["engine", "models", "data", "eval"],
  cli: "*",
  bench: "*",
  tests: "*",
};

const ROOT = normalize(fileURLToPath(new URL("../", import.meta.url)));
/** Not source: generated output and tool folders (dot-folders are skipped too). */
const SKIP = new Set(["node_modules", "runs", join("bench", "results")]);

async function sourceFiles(dir = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(join(ROOT, dir))) {
    const rel = join(dir, e.name);
    if (e.name.startsWith(".") || SKIP.has(rel)) continue;
    if (e.isDirectory) out.push(...await sourceFiles(rel));
    else if (e.isFile && e.name.endsWith(".ts")) out.push(rel);
  }
  return out.sort();
}

/**
 * Comments that open a line out (doc blocks, `//` lines), so examples in docs are not read as imports. Only
 * line-leading ones: a `/*` or `//` mid-line may sit in a string (a glob, a URL).
 */
function stripComments(src: string): string {
  return src.replace(/^\s*\/\*[\s\S]*?\*\//gm, "").replace(/^\s*\/\/.*$/gm, "");
}

const PATTERNS = [
  // import x from "…", import { a, type B } from "…", import * as m from "…", import type … from "…"
  /^\s*import\s+(?:type\s+)?(?:[\w$]+\s*,\s*)?(?:\{[^}]*\}|\*\s+as\s+[\w$]+|[\w$]+)\s+from\s+["']([^"']+)["']/gm,
  // import "…" (side effects)
  /^\s*import\s+["']([^"']+)["']/gm,
  // export { a } from "…", export * from "…", export * as m from "…", export type { A } from "…"
  /^\s*export\s+(?:type\s+)?(?:\{[^}]*\}|\*(?:\s+as\s+[\w$]+)?)\s+from\s+["']([^"']+)["']/gm,
  // import("…") with a literal path (quotes, or a backtick string without substitutions)
  /\bimport\(\s*(?:"([^"]+)"|'([^']+)'|`([^`$]+)`)\s*[,)]/g,
];

/** Every module specifier a source imports. */
function importsOf(src: string): string[] {
  const code = stripComments(src);
  const specs: string[] = [];
  for (const re of PATTERNS) {
    for (const m of code.matchAll(re)) specs.push(m.slice(1).find((g) => g !== undefined)!);
  }
  return specs;
}

const importMap: Record<string, string> =
  JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json"))).imports ?? {};

/** npm:/node: specifiers, and import-map names (or their subpaths, e.g. `h5wasm/node`) that map to one. */
function isExternal(spec: string): boolean {
  const key = Object.keys(importMap).find((k) => spec === k || spec.startsWith(`${k}/`));
  return /^(npm|node):/.test(key ? importMap[key] : spec);
}

const topFolder = (rel: string) => rel.includes("/") ? rel.slice(0, rel.indexOf("/")) : "(root)";

/** Every offence of one file (in a folder of the table) against the table, as readable lines. */
function offences(file: string, specs: string[]): string[] {
  const from = topFolder(file);
  const allowed = MAY_IMPORT[from];
  const out: string[] = [];
  for (const spec of new Set(specs)) {
    if (isExternal(spec)) continue;
    if (!spec.startsWith(".")) {
      out.push(`${file}: imports '${spec}', neither relative nor npm:/node: (nor in deno.json's import map)`);
      continue;
    }
    const target = relative(ROOT, join(ROOT, dirname(file), spec));
    if (target.startsWith("..")) {
      out.push(`${file}: imports '${spec}', outside the repository`);
      continue;
    }
    const to = topFolder(target);
    if (to === from || allowed === "*" || allowed.includes(to)) continue;
    out.push(
      `${file}: ${from}/ may not import ${to}/ ('${spec}'); ${from}/ may import ${
        allowed.join(", ") || "nothing"
      }`,
    );
  }
  return out;
}

Deno.test("layering: the import reader sees static, re-export, side-effect and literal dynamic imports only", () => {
  const src = [
    `import { a, type B } from "../engine/x.ts";`,
    `import type {\n  C,\n  D,\n} from "./y.ts";`,
    `import * as m from "../kernels/z.ts";`,
    `import def, { e } from "../data/w.ts";`,
    `import "../eval/side.ts";`,
    `export { f } from "../models/v.ts";`,
    `export * from "./u.ts";`,
    `export type { G } from "../train/t.ts";`,
    `const h = await import("../cli/s.ts");`,
    "const i = await import(`../bench/r.ts`);",
    "const j = await import(`./${name}.ts`); // not literal: not read",
    `// import { k } from "../commented/out.ts";`,
    `/** e.g. import("../doc/example.ts") */`,
    `const url = "https://example.com/a.ts"; // a URL is not a comment start`,
    `export const note = "import { x } from mid-line is not an import";`,
  ].join("\n");
  assert.deepEqual(importsOf(src).sort(), [
    "../bench/r.ts",
    "../cli/s.ts",
    "../data/w.ts",
    "../engine/x.ts",
    "../eval/side.ts",
    "../kernels/z.ts",
    "../models/v.ts",
    "../train/t.ts",
    "./u.ts",
    "./y.ts",
  ]);
});

Deno.test("layering: every folder imports only the folders DESIGN.md's table allows", async () => {
  const byFile = new Map<string, string[]>();
  const files = await sourceFiles();
  // A folder without a row (a scratch folder, or a new layer to add here and to DESIGN.md) is not checked.
  const unknown = new Set(files.map(topFolder).filter((f) => !MAY_IMPORT[f]));
  if (unknown.size) console.log(`not checked (no row in the table): ${[...unknown].join(", ")}`);
  for (const file of files.filter((f) => MAY_IMPORT[topFolder(f)])) {
    const found = offences(file, importsOf(await Deno.readTextFile(join(ROOT, file))));
    if (found.length) byFile.set(file, found);
  }
  const problems: string[] = [];
  for (const [file, found] of byFile) {
    if (PENDING.includes(file)) console.log(`pending (allowlisted):\n  ${found.join("\n  ")}`);
    else problems.push(...found);
  }
  for (const file of PENDING) {
    const exists = await Deno.stat(join(ROOT, file)).then(() => true, () => false);
    if (!exists) problems.push(`PENDING lists ${file}, which no longer exists: remove it from the list`);
    else if (!byFile.has(file)) {
      problems.push(`PENDING lists ${file}, which no longer breaks the table: remove it from the list`);
    }
  }
  assert.deepEqual(problems, [], `layering offences:\n${problems.join("\n")}`);
});
