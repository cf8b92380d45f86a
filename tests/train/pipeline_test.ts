/**
 * `deno task train` as a library call (train/pipeline.ts) at tiny sizes on a small generated Euler dataset: every
 * stage writes its outputs and the evaluation writes metrics, figures and a report that states the paper's
 * findings; a run stopped after a stage continues at the next one on rerun and ends with the same checkpoints and
 * metrics as an uninterrupted run; a rerun of a finished run skips everything; a retrained autoencoder redoes the
 * stages that read it.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadSafetensors } from "../../engine/checkpoint.ts";
import { generateEulerDataset } from "../../data/euler_dataset.ts";
import { type PipelineOptions, runPipeline } from "../../train/pipeline.ts";
import { gpuReady } from "../helpers.ts";

let data: string | null = null;
async function dataset(): Promise<string> {
  if (!data) {
    data = join(await Deno.makeTempDir(), "euler_multi_quadrants");
    await generateEulerDataset({
      out: data,
      resolution: 16,
      trajectories: 12,
      steps: 13,
      tEnd: 0.4,
      gammas: 2,
      workers: 0,
    });
  }
  return data;
}

function options(root: string, over: Partial<PipelineOptions> = {}): PipelineOptions {
  const steps = {
    epochs: 1,
    stepsPerEpoch: 2,
    batch: 4,
    budgetMinutes: undefined,
    logEvery: 1,
    validBatches: 1,
  };
  return {
    name: "tiny",
    root,
    data: data!,
    aePreset: "tiny",
    emulatorPreset: "tiny",
    stages: ["ae", "dm", "solver", "pixel", "eval"],
    budgetMinutes: 1,
    compressions: [4],
    seed: 1,
    ae: { ...steps, optimizer: "adam", lr: 1e-3 },
    emulator: { ...steps, window: 4, stride: 2, patch: 4 },
    evaluation: { trajectories: 2, members: 2, steps: 4, contexts: [1] },
    ...over,
  };
}

const STAGE_FILES = [
  "checkpoint.safetensors",
  "config.json",
  "done.json",
  "metrics.jsonl",
  "model.safetensors",
];

async function checkpoints(folder: string): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const s of ["ae", "dm", "solver", "pixel"]) {
    const { tensors } = await loadSafetensors(join(folder, s, "checkpoint.safetensors"));
    for (const [k, t] of tensors) out.set(`${s}/${k}`, t.data);
  }
  return out;
}

const metrics = async (folder: string) => await Deno.readTextFile(join(folder, "eval", "metrics.jsonl"));

Deno.test("pipeline: every stage's outputs and a report; a stopped run continues at the next stage with the same final files", async () => {
  await gpuReady();
  await dataset();
  const root = await Deno.makeTempDir();
  const t0 = performance.now();
  const full = await runPipeline(options(root, { name: "full" }));
  console.log(`tiny pipeline: ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  assert.equal(full.stopped, false);
  for (const s of ["ae", "dm", "solver", "pixel"]) {
    const names = [...Deno.readDirSync(join(full.folder, s))].map((e) => e.name);
    for (const f of STAGE_FILES) assert.ok(names.includes(f), `${s}/${f} missing (${names})`);
  }
  const ev = [...Deno.readDirSync(join(full.folder, "eval"))].map((e) => e.name).sort();
  for (const f of ["done.json", "figures", "metrics.jsonl", "report.md", "rollouts", "summary.json"]) {
    assert.ok(ev.includes(f), `eval/${f} missing (${ev})`);
  }
  const figs = [...Deno.readDirSync(join(full.folder, "eval", "figures"))].map((e) => e.name).sort();
  assert.deepEqual(figs, [
    "power_spectra.png",
    "spectral_band_errors.png",
    "spread_skill.png",
    "vrmse_vs_lead.png",
  ]);
  const report = await Deno.readTextFile(full.report!);
  for (
    const want of [
      "## Findings of the paper",
      "(i)",
      "(ii)",
      "(iii)",
      "| diffusion |",
      "| pixel solver |",
      "persistence",
    ]
  ) {
    assert.ok(report.includes(want), `report lacks '${want}'`);
  }
  const rows = (await metrics(full.folder)).trim().split("\n").map((l) => JSON.parse(l));
  const methods = new Set(rows.map((r) => r.method));
  assert.deepEqual([...methods].sort(), [
    "autoencoder",
    "diffusion",
    "latent solver",
    "persistence",
    "pixel solver",
  ]);
  assert.ok(full.evaluation && Number.isFinite(full.evaluation.table.diffusion.all.VRMSE));

  // Stop once the first stage is complete, then rerun: the rest continues and ends where the full run did.
  let stageCount = 0;
  const part = await runPipeline(
    options(root, { name: "split", onStage: () => stageCount++, shouldStop: () => stageCount >= 2 }),
  );
  assert.equal(part.stopped, true);
  assert.deepEqual(part.stages.map((s) => s.status), ["done", "stopped"]);
  const rest = await runPipeline(options(root, { name: "split" }));
  assert.equal(rest.stopped, false);
  assert.equal(rest.stages[0].status, "skipped");
  const [a, b] = [await checkpoints(full.folder), await checkpoints(rest.folder)];
  assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
  for (const [k, v] of a) assert.deepEqual(b.get(k), v, `${k} differs between the full and the resumed run`);
  assert.equal(await metrics(rest.folder), await metrics(full.folder), "evaluation rows differ");

  // A finished run is skipped whole; a retrained autoencoder redoes what reads it.
  const again = await runPipeline(options(root, { name: "split", stages: ["ae", "dm", "pixel"] }));
  assert.deepEqual(again.stages.map((s) => s.status), ["skipped", "skipped", "skipped"]);
  const retrained = await runPipeline(options(root, {
    name: "split",
    stages: ["ae", "dm"],
    ae: {
      epochs: 1,
      stepsPerEpoch: 3,
      batch: 4,
      budgetMinutes: undefined,
      logEvery: 1,
      validBatches: 1,
      optimizer: "adam",
      lr: 1e-3,
    },
  }));
  assert.deepEqual(retrained.stages.map((s) => [s.stage, s.status]), [["autoencoder", "done"], [
    "diffusion",
    "done",
  ]]);
});
