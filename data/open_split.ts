/**
 * One split of a dataset, opened and normalized the way every stage reads it (autoencoder training, encoding,
 * emulator training): WellDataset + stats.yaml + the dataset's Normalizer + channel kinds for augmentation.
 *
 * Invariants:
 * - "Missing" and "broken" are told apart: a split whose folder is absent or holds no .hdf5/.h5 files is null
 *   (the caller decides whether that is fine, e.g. no validation split); a split that exists but cannot be read,
 *   is inconsistent, has no window of the requested length, or cannot be normalized (missing or invalid
 *   stats.yaml, a constant channel) is a one-line DataError naming the file.
 * - A lone file or a split folder is the split it sits in (`…/data/valid/x.hdf5` is "valid"); one outside a
 *   `train|valid|test` folder is "train". stats.yaml is looked up only in the dataset root
 *   (`ROOT/data/<split>/*.hdf5` beside `ROOT/stats.yaml`), never beside or inside a file.
 * - Windows are checked for NaN/±Inf as they load (`checkFinite`), so bad data stops a run with the file, field,
 *   trajectory and step instead of a non-finite loss.
 */
import { basename, dirname, join } from "node:path";
import { type ChannelKind, channelKinds } from "./augment.ts";
import { DataError } from "./errors.ts";
import { readStatsIfPresent } from "./stats.ts";
import { Normalizer } from "./transforms.ts";
import { resolveLayout, type Split, SPLITS, WellDataset } from "./well_dataset.ts";
import type { FieldInfo } from "./well_file.ts";

export interface NormalizedSplit {
  ds: WellDataset;
  normalizer: Normalizer;
  /** Time-varying fields, in channel order. */
  fields: FieldInfo[];
  /** The dataset root (holding stats.yaml and data/), or `data` itself when its files are not inside one. */
  root: string;
  /** Per channel: scalar or vector component (for augmentation). */
  kinds: ChannelKind[];
}

/**
 * The files of split `split` named by `data` (a dataset root, a split folder or a file), or null when the split
 * does not exist there. A path that does not exist at all is a DataError.
 */
export function splitFiles(data: string, split: Split): string[] | null {
  const layout = resolveLayout(data);
  let files: string[] | undefined;
  if (layout.kind === "root") files = layout.splits[split];
  else {
    const [key, paths] = Object.entries(layout.splits)[0];
    const named = SPLITS.includes(key as Split) ? key : "train";
    files = named === split ? paths : undefined;
  }
  return files && files.length > 0 ? files : null;
}

/**
 * Opens split `split` of `data` (a dataset root, a split folder or a file) with windows of nSteps frames every
 * `stride`; returns null when the split does not exist (missing folder / no files), throws a one-line DataError
 * naming the file when it exists but is corrupt or unreadable, or when its windows cannot be formed.
 */
export async function openNormalizedSplit(
  data: string,
  split: Split,
  opts: { nSteps?: number; stride?: number } = {},
): Promise<NormalizedSplit | null> {
  const files = splitFiles(data, split);
  if (!files) return null;
  const layout = resolveLayout(data);
  // Open exactly the split's files: a file or split folder is opened as itself.
  const path = layout.kind === "root" ? data : layout.kind === "file" ? files[0] : dirname(files[0]);
  const ds = await WellDataset.open(path, {
    split,
    nSteps: opts.nSteps,
    stride: opts.stride,
    checkFinite: true,
  });
  try {
    if (ds.length === 0) {
      const where = ds.files.map((f) => basename(f.path)).join(", ");
      throw new DataError(
        `the ${split} split of ${data} has no trajectories (${where}): add data or remove the empty files`,
      );
    }
    const statsPath = layout.root ? join(layout.root, "stats.yaml") : undefined;
    const stats = statsPath ? readStatsIfPresent(statsPath, layout.root!) : null;
    const fields = ds.files[0].fields;
    const normalizer = Normalizer.forDataset(
      { datasetName: ds.datasetName, channels: ds.channels, fields },
      stats,
      { statsPath, datasetRoot: layout.root ?? undefined },
    );
    return {
      ds,
      normalizer,
      fields,
      root: layout.root ?? data,
      kinds: channelKinds(fields, ds.nSpatialDims),
    };
  } catch (e) {
    ds.close();
    throw e;
  }
}
