/**
 * A one-line progress bar with rate and ETA on stderr (redrawn in place on a terminal, printed every ~10% and
 * at the end when stderr is a file or pipe, so CI logs stay short).
 */
const enc = new TextEncoder();

function fmtTime(s: number): string {
  if (!Number.isFinite(s)) return "--:--";
  const m = Math.floor(s / 60), sec = Math.floor(s % 60);
  return m >= 60
    ? `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`
    : `${m}:${String(sec).padStart(2, "0")}`;
}

export class Progress {
  private start = performance.now();
  private lastDraw = 0;
  private lastPct = -1;
  private tty = Deno.stderr.isTerminal();

  constructor(private label: string, private total: number, private unit = "it") {}

  update(done: number, info = ""): void {
    const now = performance.now();
    const pct = Math.floor((100 * done) / this.total);
    const final = done >= this.total;
    if (
      this.tty
        ? now - this.lastDraw < 100 && !final
        : Math.floor(pct / 10) === Math.floor(this.lastPct / 10) && !final
    ) {
      return;
    }
    this.lastDraw = now;
    this.lastPct = pct;
    const el = (now - this.start) / 1000;
    const rate = done / Math.max(el, 1e-9);
    const eta = (this.total - done) / Math.max(rate, 1e-9);
    const w = 24, fill = Math.round((w * done) / this.total);
    const bar = "█".repeat(fill) + "░".repeat(w - fill);
    const line =
      `${this.label} ${bar} ${done}/${this.total} ${rate.toFixed(rate < 10 ? 2 : 0)} ${this.unit}/s ` +
      `elapsed ${fmtTime(el)} eta ${fmtTime(eta)}${info ? ` · ${info}` : ""}`;
    Deno.stderr.writeSync(enc.encode(this.tty ? `\r\x1b[2K${line}${final ? "\n" : ""}` : `${line}\n`));
  }
}
