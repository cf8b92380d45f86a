/**
 * `deno task data …` (cli/data.ts): info text and JSON, stats, euler, --help, and bad inputs as one `error:` line
 * with exit code 1.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { dataCommand } from "../../cli/data.ts";
import { withTempDir, writeDatasetRoot } from "./fixtures.ts";
import { captureConsole } from "../helpers.ts";

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const { r: code, out, err } = await captureConsole(() => dataCommand(args));
  return { code, out, err };
}

Deno.test("cli: data info --json reports the dataset summary of a root, a split folder and a file", async () => {
  await withTempDir(async (dir) => {
    await writeDatasetRoot(dir, {
      train: [{ name: "a.hdf5", opts: { B: 3, T: 9 } }, { name: "b.hdf5", opts: { B: 2, T: 9, gamma: 1.6 } }],
      valid: [{ name: "a.hdf5", opts: { B: 1, T: 9 } }],
      test: [{ name: "a.hdf5", opts: { B: 1, T: 9 } }],
    });
    const r = await run(["info", dir, "--json"]);
    assert.equal(r.code, 0, r.err);
    const s = JSON.parse(r.out);
    assert.equal(s.dataset_name, "euler_multi_quadrants_periodicBC");
    assert.equal(s.n_spatial_dims, 2);
    assert.deepEqual(s.spatial_shape, [8, 6]);
    assert.deepEqual(s.channels, ["energy", "density", "pressure", "momentum_x", "momentum_y"]);
    assert.equal(s.n_steps, 9);
    assert.deepEqual(s.scalars, { gamma: [Math.fround(1.4), Math.fround(1.6)] });
    assert.deepEqual(s.boundary_conditions, [[2, 2], [2, 2]]);
    assert.deepEqual(s.splits, {
      train: { files: 2, trajectories: 5 },
      valid: { files: 1, trajectories: 1 },
      test: { files: 1, trajectories: 1 },
    });
    assert.equal(s.has_stats, false);
    assert.deepEqual(s.theta, ["gamma", "bc_x_lower", "bc_x_upper", "bc_y_lower", "bc_y_upper"]);

    const split = JSON.parse((await run(["info", join(dir, "data", "valid"), "--json"])).out);
    assert.deepEqual(split.splits, { valid: { files: 1, trajectories: 1 } });
    assert.equal(split.stats_path, join(dir, "stats.yaml"), "a split folder inside a root finds the root");
    const file = JSON.parse((await run(["info", join(dir, "data", "train", "b.hdf5"), "--json"])).out);
    assert.deepEqual(file.splits, { train: { files: 1, trajectories: 2 } });
    assert.equal(file.scalars.gamma, Math.fround(1.6));

    const text = await run(["info", dir]);
    assert.match(text.out, /channels +5: energy, density, pressure, momentum_x, momentum_y/);
    assert.match(text.out, /stats\.yaml +missing \(compute with `deno task data stats /);
  });
});

Deno.test("cli: data stats writes stats.yaml, then refuses to overwrite it", async () => {
  await withTempDir(async (dir) => {
    await writeDatasetRoot(dir, {
      train: [{ name: "a.hdf5", opts: { value: (k, b, t, s, c) => k + b * t + s * c } }],
    });
    const r = await run(["stats", dir]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /wrote .*stats\.yaml/);
    assert.equal(JSON.parse((await run(["info", dir, "--json"])).out).has_stats, true);
    const again = await run(["stats", dir]);
    assert.equal(again.code, 1);
    assert.match(again.err, /^error: .*stats\.yaml already exists: pass --force/);
  });
});

Deno.test("cli: an invalid stats.yaml is reported as invalid (not missing) and replaced with --force", async () => {
  await withTempDir(async (dir) => {
    await writeDatasetRoot(dir, { train: [{ name: "a.hdf5", opts: { datasetName: "custom_physics" } }] });
    Deno.writeTextFileSync(join(dir, "stats.yaml"), "mean: {density: .nan}\nstd: {density: 1.0}\n");
    const info = await run(["info", dir]);
    assert.match(
      info.out,
      /stats\.yaml +invalid stats file: .*mean\.density is not finite.*data stats .* --force/,
    );
    const refused = await run(["stats", dir]);
    assert.equal(refused.code, 1);
    assert.match(
      refused.err,
      /^error: .*stats\.yaml exists but is invalid \(.*not finite \(NaN\)\): pass --force to replace it$/,
    );
    const forced = await run(["stats", dir, "--force"]);
    assert.equal(forced.code, 0, forced.err);
    assert.equal(JSON.parse((await run(["info", dir, "--json"])).out).stats_error, undefined);
  });
});

Deno.test("cli: bad inputs print one error line and return 1", async () => {
  await withTempDir(async (dir) => {
    Deno.writeTextFileSync(join(dir, "x.hdf5"), "not hdf5");
    const cases: [string[], RegExp][] = [
      [["info", join(dir, "missing")], /does not exist/],
      [["info", join(dir, "x.hdf5")], /is not an HDF5 file/],
      [["info"], /takes one PATH/],
      [["info", dir, "--bogus"], /Unknown option '--bogus'/],
      [["stats", join(dir, "x.hdf5")], /not a dataset root/],
      [["euler"], /needs --out PATH/],
      [["euler", "--out", join(dir, "e"), "--resolution", "abc"], /--resolution must be an integer ≥ 8/],
      [
        ["euler", "--out", join(dir, "e"), "--boundaries", "wall"],
        /--boundaries takes periodic and\/or open/,
      ],
      [
        ["euler", "--out", join(dir, "e"), "--trajectories", "2", "--gammas", "1", "--boundaries", "open"],
        /use --trajectories ≥ 3/,
      ],
      [["frobnicate"], /unknown data command 'frobnicate'/],
    ];
    for (const [args, re] of cases) {
      const r = await run(args);
      assert.equal(r.code, 1, `${args.join(" ")}: exit code`);
      assert.match(r.err, re, args.join(" "));
      assert.match(r.err, /^error: [^\n]+$/, `${args.join(" ")}: one line`);
    }
    assert.deepEqual(
      [...Deno.readDirSync(dir)].map((e) => e.name),
      ["x.hdf5"],
      "nothing written by failed commands",
    );
  });
});

Deno.test("cli: every command has --help", async () => {
  for (
    const args of [["--help"], ["info", "--help"], ["stats", "-h"], ["euler", "--help"], [
      "default",
      "--help",
    ]]
  ) {
    const r = await run(args);
    assert.equal(r.code, 0);
    assert.match(r.out, /usage: deno task data/);
  }
});

Deno.test("cli: data euler generates a dataset that data info describes", async () => {
  await withTempDir(async (dir) => {
    const out = join(dir, "eu");
    const r = await run([
      "euler",
      "--out",
      out,
      "--resolution",
      "16",
      "--trajectories",
      "6",
      "--steps",
      "3",
      "--t-end",
      "0.1",
      "--gammas",
      "1",
      "--seed",
      "2",
      "--workers",
      "0",
    ]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /wrote .*eu in [\d.]+ s/);
    const s = JSON.parse((await run(["info", out, "--json"])).out);
    assert.equal(s.dataset_name, "euler_multi_quadrants");
    assert.deepEqual(s.spatial_shape, [16, 16]);
    assert.equal(s.n_steps, 3);
    assert.equal(s.has_stats, true);
    assert.deepEqual(s.boundary_conditions_variants, [[[1, 1], [1, 1]], [[2, 2], [2, 2]]]);
    assert.deepEqual(s.splits, {
      train: { files: 2, trajectories: 2 },
      valid: { files: 2, trajectories: 2 },
      test: { files: 2, trajectories: 2 },
    });
  });
});

Deno.test("cli: as a process, a bad input exits 1 with a single stderr line", async () => {
  const cmd = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("../../cli/data.ts", import.meta.url).pathname, "info", "/no/such/dataset"],
    stdout: "piped",
    stderr: "piped",
  });
  const { code, stdout, stderr } = await cmd.output();
  const err = new TextDecoder().decode(stderr).trim();
  assert.equal(code, 1);
  assert.equal(new TextDecoder().decode(stdout), "");
  assert.equal(err, "error: /no/such/dataset does not exist: check the path");
});
