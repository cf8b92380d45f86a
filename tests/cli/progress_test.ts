/** cli/progress.ts: the one progress bar's time format (the data commands and training share it). */
import assert from "node:assert/strict";
import { formatDuration } from "../../cli/progress.ts";

Deno.test("progress: durations read m:ss, XhYYm past an hour, --:-- when unknown", () => {
  assert.equal(formatDuration(5.7), "0:05");
  assert.equal(formatDuration(125), "2:05");
  assert.equal(formatDuration(3 * 3600 + 7 * 60), "3h07m");
  assert.equal(formatDuration(NaN), "--:--");
  assert.equal(formatDuration(Infinity), "--:--");
});
