/**
 * The one progress bar of the CLI: a line with rate, elapsed time and ETA on stderr, redrawn in place on a
 * terminal; when stderr is a file or pipe, printed every ~10% (or every 10 s of slow work) and at the end, so CI
 * logs stay short and stdout stays clean for `--json`. The total may be learned or change as work goes on.
 */
const enc = new TextEncoder();

/** Seconds as `m:ss` (or `XhYYm` past an hour); `--:--` when unknown. */
export function formatDuration(s: number): string {
  if (!Number.isFinite(s) || s < 0) return "--:--";
  const m = Math.floor(s / 60), sec = Math.floor(s % 60);
  return m >= 60
    ? `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`
    : `${m}:${String(sec).padStart(2, "0")}`;
}

export class Progress {
  private start = performance.now();
  private lastDraw = -Infinity;
  private lastPct = -1;
  private open = false;
  private tty = Deno.stderr.isTerminal();

  constructor(private label: string, private total = 0, private unit = "it") {}

  /** Draws `done` of the total (`total` replaces the current one when given); `info` is appended. */
  update(done: number, info = "", total?: number): void {
    if (total !== undefined) this.total = total;
    const now = performance.now();
    const pct = this.total > 0 ? Math.floor((100 * done) / this.total) : 100;
    const final = done >= this.total;
    const due = this.tty
      ? now - this.lastDraw >= 100
      : Math.floor(pct / 10) !== Math.floor(this.lastPct / 10) || now - this.lastDraw >= 10_000;
    if (!due && !final) return;
    this.lastDraw = now;
    this.lastPct = pct;
    const el = (now - this.start) / 1000;
    const rate = done / Math.max(el, 1e-9);
    const eta = done > 0 ? (this.total - done) / rate : NaN;
    const w = 24, fill = this.total > 0 ? Math.min(w, Math.round((w * done) / this.total)) : w;
    const bar = "█".repeat(fill) + "░".repeat(w - fill);
    const line =
      `${this.label} ${bar} ${done}/${this.total} ${rate.toFixed(rate < 10 ? 2 : 0)} ${this.unit}/s ` +
      `elapsed ${formatDuration(el)} eta ${formatDuration(eta)}${info ? ` · ${info}` : ""}`;
    Deno.stderr.writeSync(enc.encode(this.tty ? `\r\x1b[2K${line}${final ? "\n" : ""}` : `${line}\n`));
    this.open = this.tty && !final;
  }

  /** Ends a line left open on a terminal (work stopped before the total). */
  end(): void {
    if (this.open) Deno.stderr.writeSync(enc.encode("\n"));
    this.open = false;
  }
}
