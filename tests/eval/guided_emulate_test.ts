/**
 * Guided emulation (`deno task emulate --observe`, method §8) end to end on a tiny generated Euler dataset with
 * briefly trained tiny runs (autoencoder, latent diffusion): a guided rollout writes the files of an unguided one
 * plus the observation attributes, marks the observation pattern on its strip, and fits the observations better
 * than the unguided rollout of the same seed — by the residual ‖A(x̂) − y‖/√n it reports (against the baseline
 * `gmres: 0`, which draws the same y but does not guide and so reproduces the unguided rollout exactly) and by
 * ‖A(x̂) − A(x_true)‖/√n recomputed from the written files. Bad input is one line, from the library and the CLI.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { decode as decodePng } from "fast-png";
import { generateEulerDataset } from "../../data/euler_dataset.ts";
import { withH5 } from "../../data/h5.ts";
import { openNormalizedSplit } from "../../data/open_split.ts";
import { WellDataset } from "../../data/well_dataset.ts";
import { emulate, type EmulateOptions, type EmulateResult } from "../../eval/emulate_run.ts";
import { runEvaluation } from "../../eval/evaluate.ts";
import { trainAutoencoder } from "../../train/ae.ts";
import { trainEmulator } from "../../train/emulator.ts";
import { main } from "../../cli/main.ts";
import { captureConsole, gpuReady } from "../helpers.ts";

interface Runs {
  data: string;
  ae: string;
  dm: string;
  tmp: string;
}
let runs: Runs | null = null;

/** Dataset (16×16, 13 steps), tiny AE (4 latent channels, 4×4), tiny dm (L = 4, Δ = 2): as emulate_run_test. */
async function setup(): Promise<Runs> {
  if (runs) return runs;
  const t0 = performance.now();
  const tmp = await Deno.makeTempDir();
  const data = join(tmp, "euler_multi_quadrants");
  await generateEulerDataset({
    out: data,
    resolution: 16,
    trajectories: 12,
    steps: 13,
    tEnd: 0.4,
    gammas: 2,
    workers: 0,
  });
  const ae = join(tmp, "ae"), dm = join(tmp, "dm");
  await trainAutoencoder({
    preset: "tiny",
    data,
    latentChannels: 4,
    epochs: 1,
    stepsPerEpoch: 2,
    batch: 4,
    lr: 1e-3,
    optimizer: "adam",
    loss: "vrmse",
    seed: 0,
    out: ae,
    identityInit: true,
    validBatches: 1,
    logEvery: 2,
    maxNorm: 1,
    resume: false,
  });
  await trainEmulator({
    stage: "dm",
    ae,
    preset: "tiny",
    epochs: 1,
    stepsPerEpoch: 2,
    batch: 4,
    lr: 1e-3,
    seed: 0,
    out: dm,
    window: 4,
    stride: 2,
    maskPrior: "code",
    patch: 4,
    schedule: "ve",
    validBatches: 1,
    logEvery: 1,
    maxNorm: 1,
    resume: false,
  });
  console.log(`setup (dataset + AE + dm) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return runs = { data, ae, dm, tmp };
}

const S = 4; // subsample:4 on 16×16 → 4×4 observed pixels per field

/**
 * ‖A(x̂) − A(x_true)‖/√n over the generated frames t ≥ c of every member of a prediction file, on standardized
 * (normalised) frames, A = subsample every S pixels; averaged over members in quadrature.
 */
async function fileResidual(
  r: Runs,
  f: EmulateResult["files"][number],
  T: number,
  c: number,
): Promise<number> {
  const opened = await openNormalizedSplit(r.data, "test", { nSteps: 1 });
  const pred = await WellDataset.open(f.prediction, { nSteps: T });
  const truth = await WellDataset.open(f.truth, { nSteps: T });
  try {
    const { normalizer } = opened!;
    const [H, W] = truth.files[0].spatialShape, C = truth.files[0].channels.length, HW = H * W;
    const xt = normalizer.normalize(truth.readFrames(0, 0, 0, T), HW);
    let sum = 0, n = 0;
    for (let k = 0; k < pred.files[0].nTrajectories; k++) {
      const xk = normalizer.normalize(pred.readFrames(0, k, 0, T), HW);
      for (let t = c; t < T; t++) {
        for (let ch = 0; ch < C; ch++) {
          for (let i = 0; i < H; i += S) {
            for (let j = 0; j < W; j += S) {
              const o = (t * C + ch) * HW + i * W + j;
              sum += (xk[o] - xt[o]) ** 2;
              n++;
            }
          }
        }
      }
    }
    return Math.sqrt(sum / n);
  } finally {
    pred.close();
    truth.close();
    opened!.ds.close();
  }
}

const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;

Deno.test("guided emulate (--observe subsample:4): same files as unguided, attributes, a lower observation residual", async () => {
  await gpuReady();
  const r = await setup();
  // c = 1, L = 4, T = 6: window 0 generates frames 1–3, window 1 frames 4–6 of which 6 lies beyond the horizon.
  const base: EmulateOptions = {
    ae: r.ae,
    dm: r.dm,
    trajectory: 1,
    members: 2,
    context: 1,
    steps: 4,
    horizon: 6,
  };
  const timed = async (what: string, o: EmulateOptions) => {
    const t0 = performance.now();
    const res = await emulate(o);
    console.log(`  ${what}: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    return res;
  };
  const plain = await timed("unguided", { ...base, out: join(r.tmp, "plain") });
  const observed = await timed("observed, not guided (gmres 0)", {
    ...base,
    observe: "subsample:4",
    gmres: 0,
    out: join(r.tmp, "observed"),
  });
  const guided = await timed("guided (subsample:4, σ_y 0.1, GMRES 1)", {
    ...base,
    observe: "subsample:4",
    out: join(r.tmp, "guided"),
  });

  // Same files, same names.
  const names = (d: string) => [...Deno.readDirSync(d)].map((e) => e.name).sort();
  assert.deepEqual(names(guided.out), names(plain.out));
  assert.deepEqual(names(guided.out).filter((n) => !n.includes(".part-") && !n.includes(".tmp-")).length, 5);
  assert.equal(guided.files[0].figures.length, 2);
  console.log(`  guided figures: ${guided.files[0].figures.join(", ")}`);
  assert.equal(plain.observation, null);
  assert.equal(plain.files[0].observation, undefined);
  assert.deepEqual(guided.observation, { observe: "subsample:4", noise: 0.1, gmres: 1 });
  assert.deepEqual(guided.leadTimes, plain.leadTimes);

  // Attributes of the guided prediction file and emulate.json.
  const g = guided.files[0], ob = observed.files[0];
  const attrs = await withH5(g.prediction, (h) => ({
    observe: h.attrs["observe"].json_value,
    noise: h.attrs["observation_noise"].json_value,
    gmres: h.attrs["gmres_iterations"].json_value,
    residual: h.attrs["observation_residual"].json_value as number[],
    truth: h.attrs["observation_truth_residual"].json_value,
  }));
  assert.equal(attrs.observe, "subsample:4");
  assert.equal(attrs.noise, 0.1);
  assert.equal(attrs.gmres, 1);
  assert.deepEqual(attrs.residual, g.observation!.residual);
  assert.equal(attrs.truth, g.observation!.truthResidual);
  const settings = JSON.parse(Deno.readTextFileSync(join(guided.out, "emulate.json")));
  assert.deepEqual([settings.observe, settings.obs_noise, settings.gmres], ["subsample:4", 0.1, 1]);
  assert.deepEqual(settings.files[0].observation, g.observation);
  const plainAttrs = await withH5(plain.files[0].prediction, (h) => Object.keys(h.attrs));
  assert.ok(!plainAttrs.includes("observe"));

  // gmres 0 is the unguided rollout of the same seed, scored against the same observations.
  const read = async (p: string) => {
    const ds = await WellDataset.open(p, { nSteps: 6 });
    try {
      return [0, 1].map((k) => ds.readFrames(0, k, 0, 6));
    } finally {
      ds.close();
    }
  };
  const [p0, o0] = [await read(plain.files[0].prediction), await read(ob.prediction)];
  let d = 0;
  for (let k = 0; k < 2; k++) {
    for (let i = 0; i < p0[k].length; i++) d = Math.max(d, Math.abs(p0[k][i] - o0[k][i]));
  }
  assert.ok(d < 1e-5, `gmres 0 differs from the unguided rollout by ${d}`);
  assert.equal(ob.observation!.truthResidual, g.observation!.truthResidual, "the same observations y");
  // y = A(x_true) + σ_y η over 5 frames × 5 fields × 16 pixels: the truth's residual is ≈ σ_y.
  assert.ok(
    Math.abs(g.observation!.truthResidual - 0.1) < 0.02,
    `truth residual ${g.observation!.truthResidual}`,
  );

  // The guided rollout fits the observations better: reported ‖A(x̂) − y‖/√n and, from the files, ‖A(x̂) − A(x)‖/√n.
  const fPlain = await fileResidual(r, plain.files[0], 6, 1), fGuided = await fileResidual(r, g, 6, 1);
  console.log(
    `  ‖A(x̂) − y‖/√n per member (standardized; truth ${g.observation!.truthResidual.toFixed(3)}): unguided ` +
      `${ob.observation!.residual.map((v) => v.toFixed(3))}, guided ${
        g.observation!.residual.map((v) => v.toFixed(3))
      }` +
      `; from the files ‖A(x̂) − A(x)‖/√n: unguided ${fPlain.toFixed(3)}, guided ${fGuided.toFixed(3)}`,
  );
  assert.ok(
    mean(g.observation!.residual) < mean(ob.observation!.residual),
    `guided residual ${g.observation!.residual} not below unguided ${ob.observation!.residual}`,
  );
  assert.ok(fGuided < fPlain, `from the files: guided ${fGuided} not below unguided ${fPlain}`);

  // The strip marks the observed pixels: a dot (white centre, black rim) on pixel (0, 0) of the first truth panel
  // (left 64, top 40 + head 20 + head 20, 6 px per pixel, rim radius 2).
  const png = decodePng(Deno.readFileSync(g.figures.find((p) => p.endsWith(".png"))!));
  const px = (
    x: number,
    y: number,
  ) => [...png.data.slice((y * png.width + x) * 4, (y * png.width + x) * 4 + 3)];
  assert.deepEqual(px(64 + 3, 80 + 3), [255, 255, 255]);
  assert.deepEqual(px(64 + 1, 80 + 3), [0, 0, 0]);
});

Deno.test("guided emulate: bad observation settings are one line, from the library and the CLI", async () => {
  await gpuReady();
  const r = await setup();
  const out = join(r.tmp, "out_bad");
  const base: EmulateOptions = { ae: r.ae, dm: r.dm, trajectory: 0, members: 1, steps: 2, out };
  const bad: [EmulateOptions, RegExp][] = [
    [{ ...base, observe: "sub:4" }, /--observe: observation "sub:4" is not subsample:N or pool:N/],
    [{ ...base, observe: "subsample:5" }, /--observe subsample:5: .* divisible by 5/],
    [{ ...base, observe: "pool:0" }, /factor must be ≥ 1/],
    [{ ...base, obsNoise: 0.2 }, /need --observe/],
    [{ ...base, observe: "pool:4", gmres: 1.5 }, /--gmres must be a non-negative integer/],
    [{ ...base, observe: "pool:4", obsNoise: -1 }, /--obs-noise must be a finite number ≥ 0/],
  ];
  for (const [o, re] of bad) {
    await assert.rejects(emulate(o), (e: Error) => {
      assert.match(e.message, re);
      assert.ok(!e.message.includes("\n"), e.message);
      return true;
    });
  }
  assert.throws(() => Deno.statSync(out));
  const cli = async (...args: string[]) => {
    const { r: code, err } = await captureConsole(() => main(["emulate", "--ae", r.ae, ...args]));
    return { code, lines: err.split("\n") };
  };
  for (
    const [args, re] of [
      [["--solver", r.dm, "--observe", "subsample:4"], /^error: --observe needs --dm/],
      [["--dm", r.dm, "--observe", "subsample"], /^error: --observe must be subsample:S or pool:S/],
      [["--dm", r.dm, "--observe", "pool:4", "--obs-noise", "x"], /^error: --obs-noise must be/],
    ] as [string[], RegExp][]
  ) {
    const { code, lines } = await cli(...args, "--out", out);
    assert.equal(code, 1, args.join(" "));
    assert.equal(lines.length, 1, lines.join("\n"));
    assert.match(lines[0], re);
  }
  assert.throws(() => Deno.statSync(out));
});

Deno.test("eval --guided subsample:4: guided diffusion rows, curves and a guidance line in the report", async () => {
  await gpuReady();
  const r = await setup();
  const out = join(r.tmp, "eval_guided");
  const res = await runEvaluation({
    ae: r.ae,
    dm: r.dm,
    trajectories: 1,
    members: 2,
    contexts: [1],
    steps: 4,
    guided: ["subsample:4"],
    obsNoise: 0.1,
    out,
  });
  const g = "diffusion guided by subsample:4";
  const rows = (await Deno.readTextFile(join(out, "metrics.jsonl"))).trim().split("\n").map((l) =>
    JSON.parse(l)
  );
  const count = (m: string) => rows.filter((x) => x.method === m).length;
  assert.ok(count("diffusion") > 0);
  assert.equal(count(g), count("diffusion"), "guided rows should mirror the unguided ones");
  const gv = res.table[g].all.VRMSE, uv = res.table.diffusion.all.VRMSE;
  console.log(`VRMSE guided ${gv.toFixed(4)} vs unguided ${uv.toFixed(4)}`);
  assert.ok(Number.isFinite(gv) && Number.isFinite(res.table[g].all.spread_skill));
  assert.ok(res.curves[g].lead.length > 0);
  // Same seed, same draws: only the guidance differs, so the rows must differ somewhere.
  assert.notEqual(gv, uv, "guided and unguided rollouts are identical: the guidance did nothing");
  const report = await Deno.readTextFile(res.report);
  assert.match(report, /Guidance: guided by subsample:4 gives mean VRMSE/);
  assert.match(report, /Guided rollouts \(subsample:4\): .*σ_y = 0\.1, MMPS with 1 GMRES/);
  Deno.statSync(join(out, "rollouts", "diffusion_guided_by_subsample4_c1"));
  const args = ["eval", "--ae", r.ae, "--solver", r.dm, "--guided", "pool:4", "--out", out + "_x"];
  const { r: code, err } = await captureConsole(() => main(args));
  assert.equal(code, 1);
  assert.equal(err.split("\n").length, 1, err);
  assert.match(err, /^error: --guided steers the diffusion emulator: it needs --dm RUN/);
});
