/**
 * The built-in dataset: multi-quadrant Euler trajectories (`data/euler.ts`) written in The Well's layout with a
 * stats.yaml, so that `WellDataset` reads them like any Well dataset.
 *
 * Layout: `<out>/{stats.yaml, euler_dataset.json, data/{train,valid,test}/euler_multi_quadrants_<bc>BC_gamma_<γ>.hdf5}`,
 * one file per parameter set (γ, boundary), the same file name in every split, trajectories of a set split
 * ≈ 80/10/10 (at least one each), as The Well does. dataset_name "euler_multi_quadrants" selects the method's Euler
 * normalization (log1p on energy, density, pressure).
 *
 * Invariants:
 * - Same options and seed → same file contents, whatever the number of workers: each trajectory's initial condition
 *   comes from its own stream deriveSeed(seed, set, split, index), and files are written in a fixed order.
 * - Nothing half-written: everything goes to `<out>.tmp-<pid>/` and is renamed to `<out>` at the end.
 */
import { join } from "node:path";
import { EulerSolver, quadrantInitialCondition } from "./euler.ts";
import { DataError } from "./errors.ts";
import { ensureH5 } from "./h5.ts";
import { deriveSeed, Rng } from "./rng.ts";
import { computeStats, formatStats } from "./stats.ts";
import { type Split, SPLITS } from "./well_dataset.ts";
import { WellFileWriter } from "./well_writer.ts";

export type Boundary = "periodic" | "open";

export interface TrajectorySpec {
  resolution: number;
  /** Stored frames T, at t = k·tEnd/(T−1). */
  steps: number;
  tEnd: number;
  gamma: number;
  boundary: Boundary;
  seed: number;
}

export interface TrajectoryFields {
  energy: Float32Array;
  density: Float32Array;
  pressure: Float32Array;
  /** (T, N, N, 2): the Well's channels-last t1 layout. */
  momentum: Float32Array;
  substeps: number;
}

/** Simulates one trajectory from its seed; fields are (T, N, N) (momentum (T, N, N, 2)) float32. */
export function simulateTrajectory(s: TrajectorySpec): TrajectoryFields {
  const N = s.resolution, n = N * N, T = s.steps;
  const solver = new EulerSolver({ nx: N, ny: N, gamma: s.gamma, boundary: s.boundary });
  solver.setPrimitives(quadrantInitialCondition(new Rng(s.seed), N, N));
  const out = {
    energy: new Float32Array(T * n),
    density: new Float32Array(T * n),
    pressure: new Float32Array(T * n),
    momentum: new Float32Array(T * n * 2),
    substeps: 0,
  };
  for (let k = 0; k < T; k++) {
    if (k > 0) out.substeps += solver.advanceTo((k * s.tEnd) / (T - 1));
    const u = solver.u, g1 = s.gamma - 1;
    for (let c = 0; c < n; c++) {
      const r = u[c], mx = u[n + c], my = u[2 * n + c], e = u[3 * n + c];
      out.density[k * n + c] = r;
      out.energy[k * n + c] = e;
      out.pressure[k * n + c] = g1 * (e - (0.5 * (mx * mx + my * my)) / r);
      out.momentum[2 * (k * n + c)] = mx;
      out.momentum[2 * (k * n + c) + 1] = my;
    }
  }
  return out;
}

export interface EulerDatasetOptions {
  /** Dataset folder to create; must not exist. */
  out: string;
  resolution?: number;
  /** Total trajectories over all splits and parameter sets. */
  trajectories?: number;
  /** Stored frames per trajectory. */
  steps?: number;
  tEnd?: number;
  seed?: number;
  /** Number of γ values, drawn uniformly in [1.13, 1.76]. */
  gammas?: number;
  boundaries?: Boundary[];
  /** Simulation workers (default: the number of cores, at most 8). 0 runs in this thread. */
  workers?: number;
  onProgress?: (p: { done: number; total: number; elapsedSeconds: number }) => void;
}

export const EULER_DATASET_NAME = "euler_multi_quadrants";

export interface EulerPlanEntry {
  file: string;
  split: Split;
  gamma: number;
  boundary: Boundary;
  specs: TrajectorySpec[];
}

/** The files to write, in writing order, with every trajectory's spec (including its seed). */
export function planEulerDataset(
  o: Required<Omit<EulerDatasetOptions, "out" | "workers" | "onProgress">>,
): EulerPlanEntry[] {
  const sets: { gamma: number; boundary: Boundary }[] = [];
  const gRng = new Rng(deriveSeed(o.seed, 0x9a77a));
  const gammas = Array.from({ length: o.gammas }, () => Math.round(gRng.uniform(1.13, 1.76) * 1000) / 1000)
    .sort();
  for (const gamma of gammas) for (const boundary of o.boundaries) sets.push({ gamma, boundary });
  const P = sets.length;
  if (P === 0) throw new DataError(`need at least one γ value and one boundary type`);
  if (o.trajectories < 3 * P) {
    throw new DataError(
      `${o.trajectories} trajectories cannot fill train/valid/test for ${P} parameter sets: use --trajectories ≥ ${
        3 * P
      }`,
    );
  }
  const plan: EulerPlanEntry[] = [];
  sets.forEach(({ gamma, boundary }, p) => {
    const n = Math.floor(o.trajectories / P) + (p < o.trajectories % P ? 1 : 0);
    const held = Math.max(1, Math.round(0.1 * n));
    const counts: Record<Split, number> = { train: n - 2 * held, valid: held, test: held };
    const file = `${EULER_DATASET_NAME}_${boundary}BC_gamma_${gamma}.hdf5`;
    SPLITS.forEach((split, si) => {
      const specs = Array.from({ length: counts[split] }, (_, b) => ({
        resolution: o.resolution,
        steps: o.steps,
        tEnd: o.tEnd,
        gamma,
        boundary,
        seed: deriveSeed(o.seed, p, si, b),
      }));
      plan.push({ file, split, gamma, boundary, specs });
    });
  });
  return plan;
}

/**
 * Defaults = the default dataset: 64 trajectories of 64×64, 31 frames over t ∈ [0, 0.9] (dt 0.03), 4 γ values × 2
 * boundary types → 48/8/8 train/valid/test, ~156 MB, about 70 s of CPU (≈ 40 s on 2 free cores).
 */
export const EULER_DEFAULTS = {
  resolution: 64,
  trajectories: 64,
  steps: 31,
  tEnd: 0.9,
  seed: 0,
  gammas: 4,
  boundaries: ["periodic", "open"] as Boundary[],
};

/** Generates the dataset at o.out (temp folder, then rename). Returns the dataset root and the time taken. */
export async function generateEulerDataset(
  opts: EulerDatasetOptions,
): Promise<{ root: string; seconds: number }> {
  const o = { ...EULER_DEFAULTS, ...opts };
  const minimum = { resolution: 8, steps: 2, trajectories: 1 } as const;
  for (const [k, min] of Object.entries(minimum) as [keyof typeof minimum, number][]) {
    if (!(Number.isInteger(o[k]) && o[k] >= min)) {
      throw new DataError(`--${k} must be an integer ≥ ${min}, got ${o[k]}`);
    }
  }
  if (exists(o.out)) throw new DataError(`${o.out} already exists: choose another --out or remove it`);
  const plan = planEulerDataset(o);
  const t0 = performance.now();
  await ensureH5();
  const tmp = `${o.out.replace(/\/+$/, "")}.tmp-${Deno.pid}`;
  Deno.mkdirSync(tmp, { recursive: true });
  try {
    const jobs = plan.flatMap((e) => e.specs);
    const sim = simulator(o.workers ?? Math.min(8, navigator.hardwareConcurrency || 1));
    try {
      let done = 0;
      const results = sim.run(jobs, () => {
        done++;
        o.onProgress?.({ done, total: jobs.length, elapsedSeconds: (performance.now() - t0) / 1000 });
      });
      for (const e of plan) {
        Deno.mkdirSync(join(tmp, "data", e.split), { recursive: true });
        const w = WellFileWriter.create(join(tmp, "data", e.split, e.file), fileSpec(o, e));
        try {
          for (let b = 0; b < e.specs.length; b++) {
            const { value: r } = await results.next();
            if (!r) throw new Error("simulator ended early");
            w.writeTrajectory({
              energy: r.energy,
              density: r.density,
              pressure: r.pressure,
              momentum: r.momentum,
            });
          }
          w.close();
        } catch (err) {
          w.abort();
          throw err;
        }
      }
    } finally {
      sim.close();
    }
    const { stats } = await computeStats(tmp);
    Deno.writeTextFileSync(join(tmp, "stats.yaml"), formatStats(stats));
    const { workers: _w, onProgress: _p, out: _o, ...recorded } = o;
    Deno.writeTextFileSync(
      join(tmp, "euler_dataset.json"),
      JSON.stringify({ generator: "lola-webgpu data/euler_dataset.ts", ...recorded }, null, 2) + "\n",
    );
    Deno.renameSync(tmp, o.out);
  } catch (e) {
    Deno.removeSync(tmp, { recursive: true });
    throw e;
  }
  return { root: o.out, seconds: (performance.now() - t0) / 1000 };
}

function exists(p: string): boolean {
  try {
    Deno.statSync(p);
    return true;
  } catch {
    return false;
  }
}

function fileSpec(o: typeof EULER_DEFAULTS & EulerDatasetOptions, e: EulerPlanEntry) {
  const N = o.resolution, T = o.steps;
  const coords = Float32Array.from({ length: N }, (_, i) => (i + 0.5) / N);
  const type = e.boundary === "periodic" ? "PERIODIC" as const : "OPEN" as const;
  return {
    datasetName: EULER_DATASET_NAME,
    spatialDims: ["x", "y"],
    spatialShape: [N, N],
    coordinates: [coords, coords],
    nTrajectories: e.specs.length,
    time: Float32Array.from({ length: T }, (_, k) => (k * o.tEnd) / (T - 1)),
    boundaryConditions: ["x", "y"].map((dim) => ({ name: `${dim}_${e.boundary}`, type, dim })),
    parameters: [{ name: "gamma", value: e.gamma }],
    t0Fields: ["energy", "density", "pressure"],
    t1Fields: ["momentum"],
  };
}

/**
 * Runs trajectory jobs on a pool of workers (or inline), yielding results in job order; at most 2·workers
 * results are held ahead of the consumer.
 */
function simulator(nWorkers: number) {
  const workers: Worker[] = [];
  for (let k = 0; k < nWorkers; k++) {
    workers.push(new Worker(new URL("./euler_worker.ts", import.meta.url).href, { type: "module" }));
  }
  async function* run(jobs: TrajectorySpec[], onDone: () => void): AsyncGenerator<TrajectoryFields> {
    if (workers.length === 0) {
      for (const j of jobs) {
        const r = simulateTrajectory(j);
        onDone();
        yield r;
        await new Promise((res) => setTimeout(res, 0)); // let progress printing and signals through
      }
      return;
    }
    const pending = new Map<number, Promise<TrajectoryFields>>();
    const idle = [...workers];
    let next = 0, consumed = 0;
    // Hands jobs to idle workers, keeping at most 2·workers results ahead of the consumer.
    const pump = () => {
      while (next < jobs.length && next < consumed + 2 * workers.length && idle.length > 0) {
        launch(idle.shift()!, next++);
      }
    };
    const launch = (w: Worker, i: number) => {
      const p = new Promise<TrajectoryFields>((resolve, reject) => {
        w.onmessage = (ev: MessageEvent) => {
          idle.push(w);
          try {
            onDone();
            if (ev.data.error) reject(new Error(ev.data.error));
            else resolve(ev.data as TrajectoryFields);
            pump();
          } catch (e) {
            reject(e); // e.g. a progress callback that throws: surfaces in order, like a failed job
          }
        };
        w.onerror = (ev) => {
          ev.preventDefault();
          reject(new Error(`simulation worker failed: ${ev.message}`));
        };
        w.postMessage(jobs[i]);
      });
      p.catch(() => {}); // surfaced when awaited in order
      pending.set(i, p);
    };
    for (let k = 0; k < jobs.length; k++) {
      consumed = k;
      pump();
      const r = await pending.get(k)!;
      pending.delete(k);
      yield r;
    }
  }
  return {
    run,
    close: () => workers.forEach((w) => w.terminate()),
  };
}
