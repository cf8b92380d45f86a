/**
 * `deno task eval compare` (cli/eval.ts over eval/compare.ts), run as a subprocess like a user would: the JSON
 * holds exactly {fields, times, well, paper}, its numbers are the library's, the MSE is the float64 MSE of the
 * ensemble mean (members of truth trajectory b = PRED trajectories b·K … b·K+K−1), and mismatched files give
 * one `error:` line with exit code 1.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { compareWellFiles } from "../../eval/compare.ts";
import { encode, withTempDir, writeFixture } from "../data/fixtures.ts";
import { gpuReady } from "../helpers.ts";

await gpuReady();

const B = 2, K = 3, T = 4, SHAPE = [8, 6], S = 48;

/** Member m of truth trajectory b: the truth plus a member- and position-dependent perturbation. */
function member(k: number, b: number, t: number, s: number, c: number, nc: number, m: number): number {
  return encode(k, b, t, s, c, nc) + 0.05 * (m + 1) * Math.sin(s + 3 * k + c + t) - 0.02 * m;
}

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const main = new URL("../../cli/main.ts", import.meta.url).pathname;
  const p = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", main, "eval", ...args],
    env: { LOLA_QUIET: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: p.code, out: dec.decode(p.stdout), err: dec.decode(p.stderr) };
}

Deno.test("eval compare: --json is one object {fields, times, well, paper} holding the library's numbers", async () => {
  await withTempDir(async (dir) => {
    const truth = join(dir, "truth.hdf5"), pred = join(dir, "pred.hdf5");
    await writeFixture(truth, { B, T, shape: SHAPE });
    await writeFixture(pred, {
      B: B * K,
      T,
      shape: SHAPE,
      value: (k, b, t, s, c, nc) => member(k, Math.floor(b / K), t, s, c, nc, b % K),
    });
    const r = await cli(["compare", pred, truth, "--json", "--fields", "density,momentum"]);
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out);
    assert.deepEqual(Object.keys(j), ["fields", "times", "well", "paper"]);
    assert.deepEqual(j.fields, ["density", "momentum_x", "momentum_y"]);
    assert.equal(j.times.length, T);
    assert.equal(j.well.VRMSE.density.length, T);
    assert.ok("spread_skill" in j.paper && "spectral_error_nmse_per_bin_2" in j.well);

    // The library's numbers, in process.
    const lib = await compareWellFiles(pred, truth, { fields: ["density", "momentum"] });
    let worst = 0;
    for (const suite of ["well", "paper"] as const) {
      for (const [name, byField] of Object.entries(lib[suite])) {
        for (const [field, vals] of Object.entries(byField)) {
          vals.forEach((v, t) => {
            const got = j[suite][name][field][t];
            if (Number.isNaN(v)) assert.equal(got, null, `${suite}.${name}.${field}[${t}] is NaN → null`);
            else worst = Math.max(worst, Math.abs(got - v) / Math.max(Math.abs(v), 1e-30));
          });
        }
      }
    }
    console.log(`JSON vs library: max relative difference ${worst.toExponential(2)}`);
    assert.ok(worst < 1e-12);

    // float64 MSE of the ensemble mean for density (field k=1) and momentum_y (k=3, c=1), averaged over b.
    for (const [field, k, c, nc] of [["density", 1, 0, 1], ["momentum_y", 3, 1, 2]] as const) {
      const want = Array.from({ length: T }, (_, t) => {
        let acc = 0;
        for (let b = 0; b < B; b++) {
          let se = 0;
          for (let s = 0; s < S; s++) {
            const u = Math.fround(encode(k, b, t, s, c, nc));
            let vbar = 0;
            for (let m = 0; m < K; m++) vbar += Math.fround(member(k, b, t, s, c, nc, m)) / K;
            se += (vbar - u) ** 2;
          }
          acc += se / S / B;
        }
        return acc;
      });
      const got: number[] = j.well.MSE[field];
      const err = Math.max(...got.map((g, t) => Math.abs(g - want[t]) / want[t]));
      console.log(`${field} MSE vs float64: max relative error ${err.toExponential(2)}`);
      // Values near 2000–4000 in float32 (ulp ≈ 2.4e-4) minus each other: the differences carry ~1e-4 relative.
      assert.ok(err < 5e-3, `${field}: ${got} vs ${want}`);
    }
  });
});

Deno.test("eval compare: mismatched fields or grids are one error line and exit 1; --help exits 0", async () => {
  await withTempDir(async (dir) => {
    const truth = join(dir, "truth.hdf5"), other = join(dir, "other.hdf5"), grid = join(dir, "grid.hdf5");
    await writeFixture(truth, { B: 1, T: 2, shape: [4, 4] });
    await writeFixture(other, { B: 1, T: 2, shape: [4, 4], t0: ["energy", "density", "temperature"] });
    await writeFixture(grid, { B: 1, T: 2, shape: [4, 6] });
    for (
      const [file, pattern] of [[other, /^error: fields differ/], [
        grid,
        /^error: grid shapes differ/,
      ]] as const
    ) {
      const r = await cli(["compare", file, truth, "--json"]);
      assert.equal(r.code, 1);
      assert.equal(r.out, "");
      // The Vulkan loader of this machine may warn about XDG_RUNTIME_DIR; that line is not ours.
      const lines = r.err.trim().split("\n").filter((l) => !l.includes("XDG_RUNTIME_DIR"));
      assert.equal(lines.length, 1, r.err);
      assert.match(lines[0], pattern);
    }
    const bad = await cli(["compare", truth, truth, "--fields", "vorticity"]);
    assert.equal(bad.code, 1);
    assert.match(bad.err, /^error: unknown field 'vorticity'/m);
    const help = await cli(["compare", "--help"]);
    assert.equal(help.code, 0);
    assert.match(help.out, /b·K … b·K\+K−1/);
  });
});
