/**
 * The one error type of `data/`: a bad input the user can fix (missing path, not HDF5, missing group or attribute,
 * inconsistent files, a window longer than a trajectory, missing stats.yaml, …).
 *
 * Invariant: the message is one line that says what was wrong and what to do; the CLI prints it as
 * `error: <message>` and exits 1, so no stack trace is needed to act on it. Anything else thrown from `data/` is
 * a bug.
 */
export class DataError extends Error {
  constructor(message: string) {
    super(message.replace(/\s*\n\s*/g, " "));
    this.name = "DataError";
  }
}
