/**
 * Stop requests for long runs: Ctrl-C (SIGINT) and SIGTERM (what `timeout`, Slurm and other schedulers send) ask
 * the run to save a checkpoint after the current step and stop; a second Ctrl-C quits at once. The exit code is
 * the shell's convention for the signal (130, 143), so a scheduler sees the run was interrupted.
 */
export interface StopSignals {
  /** Polled by the training loop between steps. */
  shouldStop(): boolean;
  /** 130 (SIGINT) or 143 (SIGTERM) once a signal arrived, else 0. */
  exitCode(): number;
  dispose(): void;
}

export function listenForStop(what = "saving a checkpoint after this step"): StopSignals {
  let signal: "SIGINT" | "SIGTERM" | null = null;
  const handlers = (["SIGINT", "SIGTERM"] as const).map((sig) => {
    const h = () => {
      if (signal) Deno.exit(sig === "SIGINT" ? 130 : 143);
      signal = sig;
      console.error(
        `\n${sig === "SIGINT" ? "interrupt" : "SIGTERM"}: ${what} (Ctrl-C again to quit at once)`,
      );
    };
    try {
      Deno.addSignalListener(sig, h);
    } catch { /* a platform without this signal (SIGTERM on Windows) */ }
    return [sig, h] as const;
  });
  return {
    shouldStop: () => signal !== null,
    exitCode: () => (signal === "SIGINT" ? 130 : signal === "SIGTERM" ? 143 : 0),
    dispose: () => {
      for (const [sig, h] of handlers) {
        try {
          Deno.removeSignalListener(sig, h);
        } catch { /* never added */ }
      }
    },
  };
}
