/**
 * Normalization and the conditioning vector θ (`shared/spec/method.md` §0, `shared/spec/well-format.md` §3).
 *
 * Two ways to normalize a channel, x' = (T(x) − μ) / s:
 * - "method": the reference code's per-dataset transform T and fixed constants μ, s (Euler: log1p on energy,
 *   density, pressure; TGC: log(x + 1e-6) on density, pressure, temperature; Rayleigh–Bénard: none). Used for
 *   those datasets, including the built-in Euler simulator's, whose dataset_name starts with
 *   `euler_multi_quadrants`.
 * - "stats": The Well's ZScoreNormalization from stats.yaml, T = identity, s = max(std, 1e-4), for any other
 *   dataset. A std of exactly 0 (a field constant over the train split) is an error, not a silent floor: dividing
 *   by 1e-4 blows any variation up 10⁴-fold (a density VRMSE of 541 in practice).
 * Both act in place on channels-first data (…, C, S) and `denormalize` is the exact inverse (up to float32).
 *
 * θ = [constant scalars in field_names order (Rayleigh and Prandtl log-transformed, as lola's LogScalars);
 *      boundary codes flattened row-major from the (D, 2) tensor], as float32.
 */
import { DataError } from "./errors.ts";
import { channelStats, type WellStats } from "./stats.ts";
import type { FieldInfo } from "./well_file.ts";

export type FieldTransform = "log1p" | "log_eps" | null;

const INVERSE: Record<Exclude<FieldTransform, null>, (y: number) => number> = {
  log1p: Math.expm1,
  log_eps: (y) => Math.exp(y) - 1e-6,
};

interface MethodPreset {
  matches: (datasetName: string) => boolean;
  channels: string[];
  transforms: FieldTransform[];
  mean: number[];
  std: number[];
}

/** lola `experiments/configs/dataset/*.yaml`. */
export const METHOD_PRESETS: Record<
  "euler" | "rayleigh_benard" | "turbulence_gravity_cooling",
  MethodPreset
> = {
  euler: {
    matches: (n) => n.startsWith("euler_multi_quadrants") || n === "euler_all",
    channels: ["energy", "density", "pressure", "momentum_x", "momentum_y"],
    transforms: ["log1p", "log1p", "log1p", null, null],
    mean: [1.2, 0.6, 0.58, 0, 0],
    std: [0.51, 0.27, 0.29, 0.53, 0.52],
  },
  rayleigh_benard: {
    matches: (n) => n.startsWith("rayleigh_benard"),
    channels: ["buoyancy", "pressure", "velocity_x", "velocity_y"],
    transforms: [null, null, null, null],
    mean: [0.38, 0.01, 0, 0],
    std: [0.25, 0.15, 0.21, 0.18],
  },
  turbulence_gravity_cooling: {
    matches: (n) => n === "turbulence_gravity_cooling",
    channels: ["density", "pressure", "temperature", "velocity_x", "velocity_y", "velocity_z"],
    transforms: ["log_eps", "log_eps", "log_eps", null, null, null],
    mean: [-1.75, -4.2, 5.5, 0, 0, 0],
    std: [0.95, 1.75, 1.1, 0.5, 0.5, 0.5],
  },
};

export function methodPresetFor(datasetName: string): MethodPreset | null {
  return Object.values(METHOD_PRESETS).find((p) => p.matches(datasetName)) ?? null;
}

export interface NormalizationSpec {
  channels: string[];
  transforms: FieldTransform[];
  mean: ArrayLike<number>;
  std: ArrayLike<number>;
  source: "method" | "stats";
}

export class Normalizer {
  readonly channels: string[];
  readonly transforms: FieldTransform[];
  readonly mean: Float64Array;
  readonly std: Float64Array;
  readonly source: "method" | "stats";

  constructor(spec: NormalizationSpec) {
    const C = spec.channels.length;
    if (spec.transforms.length !== C || spec.mean.length !== C || spec.std.length !== C) {
      throw new Error(
        `Normalizer: ${C} channels but ${spec.transforms.length}/${spec.mean.length}/${spec.std.length} entries`,
      );
    }
    this.channels = [...spec.channels];
    this.transforms = [...spec.transforms];
    this.mean = Float64Array.from(spec.mean);
    this.std = Float64Array.from(spec.std);
    this.source = spec.source;
  }

  /**
   * The normalizer a dataset uses: the method's preset when its name has one ("auto" or "method"), else z-score
   * from stats.yaml ("auto" or "stats"). `statsPath` is only used in messages.
   */
  static forDataset(
    ds: { datasetName: string; channels: string[]; fields: FieldInfo[] },
    stats: WellStats | null,
    opts: { mode?: "auto" | "method" | "stats"; statsPath?: string; datasetRoot?: string } = {},
  ): Normalizer {
    const mode = opts.mode ?? "auto";
    const preset = methodPresetFor(ds.datasetName);
    if (mode === "method" || (mode === "auto" && preset)) {
      if (!preset) {
        throw new DataError(`no method normalization preset for dataset '${ds.datasetName}': use stats.yaml`);
      }
      if (preset.channels.join() !== ds.channels.join()) {
        throw new DataError(
          `dataset '${ds.datasetName}' has channels [${ds.channels}], the method preset expects [${preset.channels}]`,
        );
      }
      return new Normalizer({ ...preset, channels: ds.channels, source: "method" });
    }
    if (!stats) {
      if (!opts.statsPath) {
        throw new DataError(
          `dataset '${ds.datasetName}' needs stats.yaml for normalization, but its files are not inside a dataset ` +
            `root (ROOT/data/<split>/*.hdf5 beside ROOT/stats.yaml): pass the dataset root`,
        );
      }
      throw new DataError(
        `missing ${opts.statsPath}: compute it with \`deno task data stats ${
          opts.datasetRoot ?? "DATASET_ROOT"
        }\``,
      );
    }
    const mean = channelStats(stats, "mean", ds.fields, opts.statsPath);
    const rawStd = channelStats(stats, "std", ds.fields, opts.statsPath);
    rawStd.forEach((s, c) => {
      if (!(s > 0)) {
        throw new DataError(
          `${opts.statsPath ?? "stats.yaml"}: the std of channel '${
            ds.channels[c]
          }' is ${s}: the channel is ` +
            `constant over the train split, so z-score normalization cannot scale it; check the data and ` +
            `recompute stats.yaml with \`deno task data stats ${
              opts.datasetRoot ?? "DATASET_ROOT"
            } --force\``,
        );
      }
    });
    const std = rawStd.map((s) => Math.max(s, 1e-4));
    return new Normalizer({
      channels: ds.channels,
      transforms: ds.channels.map(() => null),
      mean,
      std,
      source: "stats",
    });
  }

  /** In place on data laid out (…, C, S), S = points per channel (product of spatial sizes). Returns data. */
  normalize(data: Float32Array, S: number): Float32Array {
    this.each(data, S, (c, base) => {
      const t = this.transforms[c], m = this.mean[c], inv = 1 / this.std[c], end = base + S;
      // Inlined per transform: this loop is the hot part of batch assembly. log(1 + x) instead of log1p (2× faster
      // in V8): its absolute error (~1e-16) is far below float32 resolution of the normalized output.
      if (t === "log1p") { for (let s = base; s < end; s++) data[s] = (Math.log(1 + data[s]) - m) * inv; }
      else if (t === "log_eps") {
        for (let s = base; s < end; s++) data[s] = (Math.log(data[s] + 1e-6) - m) * inv;
      } else for (let s = base; s < end; s++) data[s] = (data[s] - m) * inv;
    });
    return data;
  }

  /** Exact inverse of normalize, in place. */
  denormalize(data: Float32Array, S: number): Float32Array {
    this.each(data, S, (c, base) => {
      const t = this.transforms[c], m = this.mean[c], sd = this.std[c];
      const fn = t ? INVERSE[t] : null;
      for (let s = base; s < base + S; s++) {
        const y = data[s] * sd + m;
        data[s] = fn ? fn(y) : y;
      }
    });
    return data;
  }

  private each(data: Float32Array, S: number, fn: (c: number, base: number) => void) {
    const C = this.channels.length;
    if (data.length % (C * S) !== 0) {
      throw new Error(`normalize: ${data.length} values are not a whole number of (${C}, ${S}) blocks`);
    }
    for (let k = 0; k < data.length / S; k++) fn(k % C, k * S);
  }

  toJSON() {
    return {
      source: this.source,
      channels: this.channels,
      transforms: this.transforms,
      mean: [...this.mean],
      std: [...this.std],
    };
  }
}

const LOG_SCALARS = new Set(["rayleigh", "prandtl"]);

/** θ for one window: constant scalars (log of Rayleigh/Prandtl) then the flattened (D, 2) boundary codes. */
export function thetaVector(
  scalars: { name: string; value: number }[],
  boundaryConditions: number[][],
): Float32Array {
  const s = scalars.map(({ name, value }) => (LOG_SCALARS.has(name.toLowerCase()) ? Math.log(value) : value));
  return Float32Array.from([...s, ...boundaryConditions.flat()]);
}

/** Names of the θ entries, e.g. ["gamma", "bc_x_lower", "bc_x_upper", "bc_y_lower", "bc_y_upper"]. */
export function thetaNames(scalarNames: string[], spatialDims: string[]): string[] {
  const s = scalarNames.map((n) => (LOG_SCALARS.has(n.toLowerCase()) ? `log_${n}` : n));
  return [...s, ...spatialDims.flatMap((d) => [`bc_${d}_lower`, `bc_${d}_upper`])];
}
