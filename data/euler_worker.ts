/**
 * Worker entry for the built-in simulator: receives a TrajectorySpec, posts back the trajectory's fields
 * (buffers transferred, not copied) or `{ error }`. Stateless, so results depend only on the spec.
 */
import { simulateTrajectory, type TrajectorySpec } from "./euler_dataset.ts";

const ctx = self as unknown as {
  onmessage: ((ev: MessageEvent<TrajectorySpec>) => void) | null;
  postMessage(msg: unknown, transfer?: Transferable[]): void;
};

ctx.onmessage = (ev) => {
  try {
    const r = simulateTrajectory(ev.data);
    const buffers = [r.energy, r.density, r.pressure, r.momentum].map((a) => a.buffer as ArrayBuffer);
    ctx.postMessage(r, buffers);
  } catch (e) {
    ctx.postMessage({ error: e instanceof Error ? e.message : String(e) });
  }
};
