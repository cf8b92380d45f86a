/**
 * The emulate pipeline (eval/emulate_run.ts, `deno task emulate`) end to end on a tiny generated Euler dataset
 * with briefly trained tiny runs (autoencoder, latent diffusion, pixel solver): the written predictions and
 * truths read back through the project's Well reader (same fields, grid and scalars, K members as trajectories,
 * physical units, provenance attributes), figures are written, `data info` describes the folder, and bad input
 * fails with one line before anything is written.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { generateEulerDataset } from "../../data/euler_dataset.ts";
import { withH5 } from "../../data/h5.ts";
import { describeDataset } from "../../data/info.ts";
import { WellDataset } from "../../data/well_dataset.ts";
import { emulate } from "../../eval/emulate_run.ts";
import { trainAutoencoder } from "../../train/ae.ts";
import { trainEmulator, type TrainEmulatorConfig } from "../../train/emulator.ts";
import { main } from "../../cli/main.ts";
import { gpuReady } from "../helpers.ts";

interface Runs {
  data: string;
  ae: string;
  dm: string;
  pixel: string;
  tmp: string;
}
let runs: Runs | null = null;

/** Dataset (16×16, 13 steps), tiny AE (4 latent channels, 4×4), tiny dm and pixel solver (L = 4, Δ = 2). */
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
  const ae = join(tmp, "ae");
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
  const em = (stage: "dm" | "pixel", out: string): TrainEmulatorConfig => ({
    stage,
    ae: stage === "pixel" ? undefined : ae,
    data: stage === "pixel" ? data : undefined,
    preset: "tiny",
    epochs: 1,
    stepsPerEpoch: 2,
    batch: 4,
    lr: 1e-3,
    seed: 0,
    out,
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
  const dm = join(tmp, "dm"), pixel = join(tmp, "pixel");
  await trainEmulator(em("dm", dm));
  await trainEmulator(em("pixel", pixel));
  console.log(`setup (dataset + 3 tiny runs) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return runs = { data, ae, dm, pixel, tmp };
}

Deno.test("emulate (diffusion): Well files the reader reads back, members as trajectories, provenance, figures", async () => {
  await gpuReady();
  const r = await setup();
  const out = join(r.tmp, "out_dm");
  const t0 = performance.now();
  const progress: number[] = [];
  const res = await emulate({
    ae: r.ae,
    dm: r.dm,
    trajectory: 1,
    members: 2,
    context: 2,
    steps: 4,
    out,
    onProgress: (done, total) => progress.push(done / total),
  });
  console.log(
    `emulate dm (1 trajectory, K = 2, 3 windows) in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  // c = 2, Δ = 2: first frame at step 0, start = 2, 13 steps → 7 frames, windows 4 + 2 + 2 (truncated to 7).
  assert.equal(res.horizon, 7);
  assert.deepEqual(res.leadTimes, [-2, 0, 2, 4, 6, 8, 10]);
  assert.deepEqual(progress, [1 / 3, 2 / 3, 1]);
  assert.equal(res.files.length, 1);
  const f = res.files[0];
  assert.equal(f.figures.length, 2);
  console.log(`figures: ${f.figures.join(", ")}`);
  for (const p of f.figures) assert.ok(Deno.statSync(p).size > 100, p);
  assert.deepEqual([...Deno.readDirSync(out)].map((e) => e.name).filter((n) => n.includes(".part-")), []);

  const pred = await WellDataset.open(f.prediction, { nSteps: 7 });
  const truth = await WellDataset.open(f.truth, { nSteps: 7 });
  const src = await WellDataset.open(join(r.data, "data", "test"), { nSteps: 1 });
  let srcTrajectory: { trajectory: number; path: string } | null = null;
  try {
    const pi = pred.files[0], ti = truth.files[0], si = src.files[0];
    assert.equal(pi.nTrajectories, 2);
    assert.equal(ti.nTrajectories, 1);
    assert.equal(pi.nSteps, 7);
    assert.deepEqual(pi.channels, si.channels);
    assert.deepEqual(pi.spatialShape, si.spatialShape);
    assert.equal(pi.datasetName, si.datasetName);
    assert.deepEqual(pi.boundaryConditions, si.boundaryConditions);
    assert.deepEqual(pi.scalars.map((s) => s.name), si.scalars.map((s) => s.name));
    // Time: the source's times at steps 0, 2, …, 12.
    assert.deepEqual(
      [...pi.time!].map((t) => +t.toFixed(5)),
      [0, 2, 4, 6, 8, 10, 12].map((s) => +si.time![s].toFixed(5)),
    );
    // The truth file holds the source frames; the context frames of the members match them (physical units).
    const tr = src.trajectories()[1];
    srcTrajectory = { trajectory: tr.trajectory, path: src.files[tr.fileIndex].path };
    const want = src.readFrames(tr.fileIndex, tr.trajectory, 0, 7, 2);
    assert.deepEqual(truth.readFrames(0, 0, 0, 7), want);
    const m0 = pred.readFrames(0, 0, 0, 7), m1 = pred.readFrames(0, 1, 0, 7);
    assert.ok(m0.every(Number.isFinite) && m1.every(Number.isFinite));
    const n = want.length / 7;
    let diffGen = 0;
    for (let i = 2 * n; i < 7 * n; i++) diffGen = Math.max(diffGen, Math.abs(m0[i] - m1[i]));
    assert.ok(diffGen > 0, "members differ on generated frames");
    // Energy, density, pressure are positive after the inverse log1p transform.
    assert.ok(m0.subarray(0, 3 * 256).every((v) => v > -1));
  } finally {
    pred.close();
    truth.close();
    src.close();
  }
  const attrs = await withH5(f.prediction, (h) => ({
    member: h.attrs["member"].json_value,
    source: h.attrs["source_trajectory"].json_value,
    lead: h.attrs["lead_steps"].json_value,
    stage: h.attrs["emulator_stage"].json_value,
    file: h.attrs["source_file"].json_value,
  }));
  // Trajectory 1 of the split is trajectory `tr.trajectory` of file `tr.fileIndex`: the attributes name both.
  const tr = srcTrajectory!;
  assert.deepEqual(attrs, {
    member: [0, 1],
    source: [tr.trajectory, tr.trajectory],
    file: tr.path,
    lead: [-2, 0, 2, 4, 6, 8, 10],
    stage: "dm",
  });
  const summary = await describeDataset(out);
  assert.ok(JSON.stringify(summary).includes("euler_multi_quadrants"));
});

Deno.test("emulate (pixel solver): no autoencoder, deterministic, horizon and start respected", async () => {
  await gpuReady();
  const r = await setup();
  const out = join(r.tmp, "out_pixel");
  const res = await emulate({
    pixelSolver: r.pixel,
    trajectories: 1,
    start: 2,
    horizon: 5,
    out,
    figures: false,
  });
  assert.deepEqual(res.leadTimes, [0, 2, 4, 6, 8]);
  const ds = await WellDataset.open(res.files[0].prediction, { nSteps: 5 });
  try {
    assert.equal(ds.files[0].nTrajectories, 1);
    assert.ok(ds.readFrames(0, 0, 0, 5).every(Number.isFinite));
  } finally {
    ds.close();
  }
});

Deno.test("emulate: bad input is one line and writes nothing", async () => {
  await gpuReady();
  const r = await setup();
  const out = join(r.tmp, "out_bad");
  const bad: [Parameters<typeof emulate>[0], RegExp][] = [
    [{ ae: r.ae, dm: r.dm, context: 4, out }, /1 ≤ c < L = 4/],
    [{ ae: r.ae, dm: r.dm, trajectory: 99, out }, /--trajectory 99 is out of range/],
    [{ ae: r.ae, dm: r.dm, horizon: 50, out }, /--horizon 50/],
    [{ ae: r.ae, dm: r.dm, start: 1, context: 2, out }, /--start 1/],
    [{ ae: r.ae, dm: join(r.tmp, "nope"), out }, /not an emulator run/],
    [{ dm: r.dm, out }, /needs --ae RUN/],
    [{ ae: r.ae, dm: r.pixel, out }, /is a 'pixel' run/],
    [{ ae: r.ae, dm: r.dm, solver: r.pixel, out }, /exactly one emulator/],
    [{ pixelSolver: r.pixel, members: 3, out }, /deterministic/],
    [{ ae: r.dm, dm: r.dm, out }, /is not an autoencoder run/],
  ];
  for (const [o, re] of bad) {
    await assert.rejects(emulate(o), (e: Error) => {
      assert.match(e.message, re);
      assert.ok(!e.message.includes("\n"), e.message);
      return true;
    });
  }
  assert.throws(() => Deno.statSync(out));
  // Through the CLI: one `error:` line, exit 1; --help exits 0.
  assert.equal(await main(["emulate", "--ae", r.ae, "--dm", r.dm, "--context", "0"]), 1);
  assert.equal(await main(["emulate", "--help"]), 0);
});
