/**
 * A run folder (`runs/<name>/<stage>/`): the lock that keeps two runs out of one folder, the cleanup of what a
 * killed save left behind, `metrics.jsonl` (truncated to the checkpoint's step on resume, so a killed run's extra
 * rows never appear twice), and the comparison of a resumed run's settings with the checkpoint's.
 *
 * Invariants:
 * - `.lock` holds the owner's PID; a second run on the folder fails at once; a lock whose PID is dead is taken
 *   over with a message.
 * - Checkpoint pairs (`checkpoint` and `model` safetensors) are written as `*.pending` first, then renamed model
 *   first, checkpoint last; at open, a lone `checkpoint.safetensors.pending` (killed between the two renames) is
 *   completed, every other `*.pending` or `*.tmp-PID` is removed. So both files always come from one step.
 */
import { join } from "node:path";
import { saveSafetensors } from "../engine/checkpoint.ts";
import type { Tensor } from "../engine/tensor.ts";

export class RunLockedError extends Error {
  override name = "RunLockedError";
}

function exists(p: string): boolean {
  try {
    Deno.statSync(p);
    return true;
  } catch {
    return false;
  }
}

function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  if (Deno.build.os !== "linux") return true; // no cheap probe elsewhere: never take a lock by guess
  return exists(`/proc/${pid}`);
}

export class RunDir {
  private locked = false;
  readonly metricsPath: string;

  private constructor(readonly path: string, private readonly log: (line: string) => void) {
    this.metricsPath = join(path, "metrics.jsonl");
  }

  /** Creates the folder, takes its lock and cleans what an interrupted save left. */
  static open(path: string, log: (line: string) => void = () => {}): RunDir {
    Deno.mkdirSync(path, { recursive: true });
    const dir = new RunDir(path, log);
    dir.lock();
    dir.cleanStale();
    return dir;
  }

  file(name: string): string {
    return join(this.path, name);
  }

  has(name: string): boolean {
    return exists(this.file(name));
  }

  private lock(): void {
    const lock = this.file(".lock");
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const f = Deno.openSync(lock, { createNew: true, write: true });
        f.writeSync(new TextEncoder().encode(`${Deno.pid}\n`));
        f.close();
        this.locked = true;
        return;
      } catch (e) {
        if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
      }
      let pid = NaN;
      try {
        pid = Number(Deno.readTextFileSync(lock).trim());
      } catch { /* vanished meanwhile: retry */ }
      if (pid === Deno.pid || pidAlive(pid)) {
        throw new RunLockedError(
          `${this.path} is in use by another run (PID ${pid}, ${lock}): wait for it, or choose another --out`,
        );
      }
      this.log(`taking over the stale lock of ${this.path} (PID ${pid} is not running)`);
      try {
        Deno.removeSync(lock);
      } catch { /* another process took it over first: the retry tells */ }
    }
    throw new RunLockedError(`${this.path}: could not take the run lock ${lock}`);
  }

  /** Removes the lock (at the end of the run, also after an error). */
  release(): void {
    if (!this.locked) return;
    this.locked = false;
    try {
      Deno.removeSync(this.file(".lock"));
    } catch { /* already gone */ }
  }

  private cleanStale(): void {
    const names = [...Deno.readDirSync(this.path)].map((e) => e.name);
    const ck = "checkpoint.safetensors.pending", md = "model.safetensors.pending";
    if (names.includes(ck) && !names.includes(md)) {
      Deno.renameSync(this.file(ck), this.file("checkpoint.safetensors")); // killed between the two renames
      this.log(`completed the interrupted save of ${this.file("checkpoint.safetensors")}`);
    }
    for (const n of [...Deno.readDirSync(this.path)].map((e) => e.name)) {
      if (n.endsWith(".pending") || /\.tmp-\d+$/.test(n)) {
        Deno.removeSync(this.file(n));
        this.log(`removed ${this.file(n)} left by an interrupted save`);
      }
    }
  }

  /**
   * Writes several safetensors files so that they change together: all as `.pending`, then renamed in the
   * given order (put the checkpoint last: its presence marks a complete pair). A failure removes the pendings.
   */
  async saveTogether(
    files: { name: string; tensors: Record<string, Tensor>; metadata: Record<string, string> }[],
  ): Promise<void> {
    const pending = files.map((f) => this.file(`${f.name}.pending`));
    try {
      for (const [i, f] of files.entries()) await saveSafetensors(pending[i], f.tensors, f.metadata);
    } catch (e) {
      for (const p of pending) {
        try {
          Deno.removeSync(p);
        } catch { /* not written */ }
      }
      throw new Error(`could not save in ${this.path}: ${(e as Error).message.split("\n")[0]}`);
    }
    for (const [i, f] of files.entries()) Deno.renameSync(pending[i], this.file(f.name));
  }

  startMetrics(): void {
    Deno.writeTextFileSync(this.metricsPath, "");
  }

  appendMetrics(row: Record<string, unknown>): void {
    Deno.writeTextFileSync(this.metricsPath, JSON.stringify(row) + "\n", { append: true });
  }

  /** Keeps the rows of steps ≤ `step` (those the checkpoint includes); returns how many were dropped. */
  truncateMetrics(step: number): number {
    let text = "";
    try {
      text = Deno.readTextFileSync(this.metricsPath);
    } catch { /* none yet */ }
    const lines = text.split("\n").filter((l) => l.trim());
    const keep = lines.filter((l) => {
      try {
        return (JSON.parse(l).step ?? 0) <= step;
      } catch {
        return false; // a row cut by the kill
      }
    });
    Deno.writeTextFileSync(this.metricsPath, keep.map((l) => l + "\n").join(""));
    return lines.length - keep.length;
  }
}

/**
 * Settings whose change does not change the results of a run (so a resume may change them freely); the budget
 * only sizes a run, whose epochs are fixed in the checkpoint once measured.
 */
const NEUTRAL = new Set(["out", "resume", "logEvery", "override", "budgetMinutes"]);

/** The settings that differ between a saved and a new resolved config, as `key=saved, not new` strings. */
export function configChanges(saved: Record<string, unknown>, now: Record<string, unknown>): string[] {
  const keys = new Set([...Object.keys(saved), ...Object.keys(now)]);
  const out: string[] = [];
  for (const k of keys) {
    if (NEUTRAL.has(k) || k === "overrides") continue;
    const a = JSON.stringify(saved[k]), b = JSON.stringify(now[k]);
    if (a !== b) out.push(`${k}=${short(a)}, not ${short(b)}`);
  }
  return out;
}

function short(s: string | undefined): string {
  if (s === undefined) return "(unset)";
  const v = s.startsWith('"') ? s.slice(1, -1) : s;
  return v.length > 60 ? v.slice(0, 57) + "..." : v;
}
