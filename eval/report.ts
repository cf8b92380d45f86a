/**
 * report.md of an evaluation: the setup, the paper-style tables (plain means per method × lead-time window, as
 * Tables 6–10), the first-step errors against persistence, the findings of the paper checked against these
 * numbers (each stated as holding or not, with the numbers), and the figures. A finding that cannot be tested
 * by this evaluation says so and what would test it.
 */
import { join } from "node:path";
import type { EvaluationSummary } from "./evaluate.ts";

/** Diffusion and its guided variants: the methods with an ensemble (spread, spread/skill). */
export const isDiffusion = (m: string): boolean => m === "diffusion" || m.startsWith("diffusion guided by ");

export interface ReportMeta {
  title: string;
  notes: string[];
  dataset: string;
  fields: string[];
  contexts: number[];
  members: number;
  trajectories: number;
  steps: number;
  /** Figure name → path relative to the report. */
  figures: Record<string, string>;
  /** Rollout key → per-trajectory figure paths (absolute or relative to the report). */
  rollouts: Record<string, string[]>;
  /** Compression study: latent width → evaluation summary of that width (set by the pipeline). */
  compressions?: Record<number, EvaluationSummary>;
}

const f3 = (v: number | undefined) => (v === undefined || !Number.isFinite(v) ? "—" : v.toFixed(3));

function table(s: EvaluationSummary, metrics: [string, string][]): string {
  const methods = Object.keys(s.table);
  const lines: string[] = [];
  for (const [metric, label] of metrics) {
    lines.push(`**${label}**`, "");
    lines.push(`| method | ${s.windows.map((w) => `ℓ ${w.name}`).join(" | ")} | all |`);
    lines.push(`|---|${s.windows.map(() => "---").join("|")}|---|`);
    for (const m of methods) {
      if (metric.startsWith("spread") && !isDiffusion(m)) continue;
      lines.push(
        `| ${m} | ${s.windows.map((w) => f3(s.table[m][w.name]?.[metric])).join(" | ")} | ${
          f3(s.table[m].all?.[metric])
        } |`,
      );
    }
    lines.push("");
  }
  return lines.join("\n");
}

/** The paper's findings (i)–(iii) against these numbers. */
export function findings(s: EvaluationSummary, compressions?: Record<number, EvaluationSummary>): string[] {
  const t = s.table, last = s.windows[s.windows.length - 1].name;
  const out: string[] = [];
  const vr = (m: string, w = "all") => t[m]?.[w]?.VRMSE;
  // (i) compression
  if (compressions && Object.keys(compressions).length >= 2) {
    const widths = Object.keys(compressions).map(Number).sort((a, b) => b - a);
    const hi = compressions[widths[0]], lo = compressions[widths[widths.length - 1]];
    const ratio = (m: string) => (lo.table[m]?.all?.VRMSE ?? NaN) / (hi.table[m]?.all?.VRMSE ?? NaN);
    const ae = ratio("autoencoder"), dm = ratio("diffusion"), sv = ratio("latent solver");
    const holds = (dm <= ae || !Number.isFinite(dm)) && (sv <= ae || !Number.isFinite(sv));
    out.push(
      `(i) Compression from ${widths[0]} to ${
        widths[widths.length - 1]
      } latent channels multiplies the VRMSE of the ` +
        `autoencoder's reconstruction by ${f3(ae)}, of the diffusion emulator by ${
          f3(dm)
        } and of the latent solver by ` +
        `${f3(sv)}: the paper's finding that emulation degrades less than reconstruction **${
          holds ? "holds" : "does not hold"
        }** here.`,
    );
  } else {
    out.push(
      "(i) Emulation degrading less with compression than reconstruction: **not tested** by a single latent width " +
        "(run `deno task train --compressions 4,16,64`).",
    );
  }
  // (ii) latent emulators vs the pixel solver
  if (t["pixel solver"]) {
    const p = vr("pixel solver")!, d = vr("diffusion"), l = vr("latent solver");
    const best = Math.min(d ?? Infinity, l ?? Infinity);
    out.push(
      `(ii) Mean VRMSE over all lead times: diffusion ${f3(d)}, latent solver ${f3(l)}, pixel solver ${
        f3(p)
      }: the ` +
        `latent emulators **${
          best <= p * 1.05 ? "match or beat" : "do not match"
        }** the pixel-space solver ` +
        `(within 5%${best <= p * 1.05 ? "" : `; the best latent one is ${f3(best / p)}× worse`}).`,
    );
  } else {out.push(
      "(ii) Latent emulators against the pixel-space solver: **not tested** (no pixel solver given).",
    );}
  // (iii) diffusion vs the deterministic solver at long lead times, and calibration
  if (t.diffusion && t["latent solver"]) {
    const dv = t.diffusion[last]?.VRMSE, sv = t["latent solver"][last]?.VRMSE;
    const dh = t.diffusion[last]?.spectrum_error_high, sh = t["latent solver"][last]?.spectrum_error_high;
    const ss = t.diffusion.all?.spread_skill;
    const vOk = dv <= sv * 1.05, hOk = dh <= sh * 1.05, cal = ss >= 0.7 && ss <= 1.3;
    out.push(
      `(iii) At the longest lead times (ℓ ${last}) diffusion has VRMSE ${f3(dv)} against the solver's ${
        f3(sv)
      } ` +
        `(**${vOk ? "matches or beats" : "worse"}**) and high-frequency spectrum error ${f3(dh)} against ${
          f3(sh)
        } ` +
        `(**${hOk ? "matches or beats" : "worse"}**); its spread/skill averaged over lead times is ${
          f3(ss)
        } ` +
        `(**${
          cal ? "near 1" : ss < 1 ? "under-dispersed" : "over-dispersed"
        }**, taken as near 1 within 0.7–1.3).`,
    );
  } else {out.push(
      "(iii) Diffusion against the deterministic solver: **not tested** (needs both --dm and --solver).",
    );}
  // Guidance (method §8): the same rollouts, steered by observations of the truth.
  for (const m of Object.keys(t).filter((k) => k.startsWith("diffusion guided by "))) {
    const g = vr(m), u = vr("diffusion"), gl = vr(m, last), ul = vr("diffusion", last);
    const better = g !== undefined && u !== undefined && g < u;
    out.push(
      `Guidance: ${m.replace("diffusion ", "")} gives mean VRMSE ${f3(g)} against ${f3(u)} unguided (${
        f3(gl)
      } against ${f3(ul)} at ℓ ${last}): the observations **${better ? "improve" : "do not improve"}** ` +
        `the diffusion emulator's rollouts here${
          better ? "" : " (an emulator this briefly trained may not respond to guidance)"
        }.`,
    );
  }
  return out;
}

export async function writeReport(s: EvaluationSummary, meta: ReportMeta): Promise<void> {
  const first = Object.fromEntries(
    Object.entries(s.curves).map(([m, c]) => [m, { lead: c.lead[0], v: c.VRMSE[0] }]),
  );
  const lines = [
    `# ${meta.title}: evaluation report`,
    "",
    `Dataset \`${meta.dataset}\` (fields ${
      meta.fields.join(", ")
    }), ${meta.trajectories} test trajectories, ` +
    `context frames c ∈ {${
      meta.contexts.join(", ")
    }}, diffusion with K = ${meta.members} members and ${meta.steps} ` +
    `Adams–Bashforth steps. All metrics in physical units (after the inverse transforms), per field and lead time ` +
    `ℓ (raw steps); tables are plain means over fields, trajectories and contexts per lead-time window (method §7). ` +
    `Evaluated in ${s.seconds.toFixed(0)} s; generated ${
      new Date().toISOString().slice(0, 16).replace("T", " ")
    } UTC.`,
    ...meta.notes.map((n) => `\n${n}`),
    "",
    "## Findings of the paper, checked here",
    "",
    ...findings(s, meta.compressions).map((f) => `- ${f}`),
    "",
    "## First generated frame against persistence",
    "",
    "| method | ℓ | VRMSE |",
    "|---|---|---|",
    ...Object.entries(first).map(([m, x]) => `| ${m} | ${x.lead} | ${f3(x.v)} |`),
    "",
    "## Tables (mean per lead-time window)",
    "",
    table(s, [
      ["VRMSE", "VRMSE (skill of the ensemble mean, normalised by the truth's variance)"],
      ["spread_skill", "Spread / skill (diffusion)"],
      ["spectrum_error_low", "Power-spectrum error, low frequencies"],
      ["spectrum_error_mid", "Power-spectrum error, mid frequencies"],
      ["spectrum_error_high", "Power-spectrum error, high frequencies"],
    ]),
  ];
  if (meta.compressions) {
    lines.push("## Compression study (mean VRMSE over all lead times)", "");
    const ws = Object.keys(meta.compressions).map(Number).sort((a, b) => b - a);
    const ms = [...new Set(ws.flatMap((w) => Object.keys(meta.compressions![w].table)))];
    lines.push(
      `| method | ${ws.map((w) => `C_z ${w}`).join(" | ")} |`,
      `|---|${ws.map(() => "---").join("|")}|`,
    );
    for (const m of ms) {
      lines.push(`| ${m} | ${ws.map((w) => f3(meta.compressions![w].table[m]?.all?.VRMSE)).join(" | ")} |`);
    }
    lines.push("");
  }
  lines.push("## Figures", "");
  const captions: Record<string, string> = {
    vrmse: "VRMSE against lead time, per field and averaged",
    spread: "Spread / skill of the diffusion ensemble against lead time",
    bands: "Relative power-spectrum error in the low, mid and high bands",
    spectra: "Isotropic power spectra at the last lead time",
  };
  for (const [k, p] of Object.entries(meta.figures)) {
    lines.push(`![${captions[k] ?? k}](${p})`, "", `*${captions[k] ?? k}.*`, "");
  }
  const strips = Object.entries(meta.rollouts).flatMap(([k, fs]) =>
    fs.filter((f) => f.endsWith(".png")).slice(0, 1).map((f) => [k, f])
  );
  if (strips.length) {
    lines.push("## Rollout snapshots", "");
    // Paths inside the evaluation folder are written relative to the report.
    const rel = (f: string) => (f.includes("rollouts/") ? f.slice(f.indexOf("rollouts/")) : f);
    for (const [k, f] of strips) lines.push(`![${k.replaceAll("_", " ")}](${rel(f)})`, "");
  }
  lines.push(
    `Per-row metrics: \`metrics.jsonl\`; aggregates: \`summary.json\`; rollouts as Well files: \`rollouts/\`.`,
    "",
  );
  const path = join(s.out, "report.md"), tmp = `${path}.tmp-${Deno.pid}`;
  await Deno.writeTextFile(tmp, lines.join("\n"));
  await Deno.rename(tmp, path);
}
