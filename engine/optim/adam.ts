/**
 * Adam / AdamW on the GPU (torch.optim semantics), with global-norm clipping and non-finite step skipping done
 * on the device: `step({ gradNorm, maxNorm })` never syncs. Moments and the [t, skipped] counters are
 * persistent tensors and part of `stateDict()` so a resumed run continues exactly.
 */
import { adamAdvanceKernel, adamUpdateKernel, adamUpdateWorkgroups } from "../../kernels/adam.wgsl.ts";
import {
  bindingGroups,
  copyBuffer,
  dispatch,
  flush,
  grid1d,
  releaseBuffer,
  uniformBuffer,
  writeBuffer,
} from "../runtime.ts";
import { Tensor } from "../tensor.ts";
import type { Optimizer, StepOptions } from "./optimizer.ts";

export type { StepOptions };

export interface AdamOptions {
  lr: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
  /** true: AdamW (decoupled decay, the default); false: L2 added to the gradient like torch.optim.Adam. */
  decoupled?: boolean;
}

export class Adam implements Optimizer {
  readonly params: Tensor[];
  readonly m: Tensor[];
  readonly v: Tensor[];
  /** [t, skipped steps] */
  readonly counters: Tensor;
  private finite: Tensor;
  opts: Required<AdamOptions>;

  constructor(params: Tensor[], opts: AdamOptions) {
    // One dispatch binds several tensors' state writable: a tensor listed twice would alias its own bindings.
    if (new Set(params).size !== params.length) {
      throw new Error("Adam: a parameter is listed twice; pass each once");
    }
    this.params = params;
    this.opts = { betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0, decoupled: true, ...opts };
    const zeros = (t: Tensor) => Tensor.fromData(new Float32Array(t.size), t.shape, { persistent: true });
    this.m = params.map(zeros);
    this.v = params.map(zeros);
    this.counters = Tensor.fromData([0, 0], [2], { persistent: true });
    this.finite = Tensor.fromData([0], [1], { persistent: true });
  }

  step(o: StepOptions = {}): void {
    const { betas, eps, weightDecay, decoupled } = this.opts;
    const gn = o.gradNorm ?? this.finite;
    const hyper = uniformBuffer(
      new Float32Array([
        o.lr ?? this.opts.lr,
        betas[0],
        betas[1],
        eps,
        weightDecay,
        o.maxNorm ?? 0,
        decoupled ? 1 : 0,
        0,
      ]),
    );
    dispatch(adamAdvanceKernel(), [this.counters.buffer, gn.buffer], [1]);
    // Several tensors a dispatch (4 storage bindings each beside the counters and the norm).
    const live = this.params.flatMap((p, i) => (p.grad ? [i] : []));
    const { params, m, v } = this;
    const state = (i: number) => [params[i].buffer, params[i].grad!.buffer, m[i].buffer, v[i].buffer];
    for (const group of bindingGroups(live, 4, 2)) {
      const sizes = group.map((i) => params[i].size);
      const bindings = [this.counters.buffer, gn.buffer, hyper, ...group.flatMap(state)];
      dispatch(adamUpdateKernel(sizes), bindings, grid1d(adamUpdateWorkgroups(sizes), 1));
    }
    releaseBuffer(hyper);
  }

  /** [completed steps, skipped steps] (a sync: call only when logging). */
  async stepCounts(): Promise<{ steps: number; skipped: number }> {
    const [steps, skipped] = await this.counters.read();
    return { steps, skipped };
  }

  stateDict(): Record<string, Tensor> {
    const out: Record<string, Tensor> = { "adam.counters": this.counters };
    this.params.forEach((p, i) => {
      const key = p.name ?? String(i);
      out[`adam.exp_avg.${key}`] = this.m[i];
      out[`adam.exp_avg_sq.${key}`] = this.v[i];
    });
    return out;
  }

  /** Restore from `stateDict()` output or its deserialised form (host arrays); every key must be present. */
  loadStateDict(sd: Record<string, Tensor | ArrayLike<number> | number>): void {
    flush(); // queued writes must not overtake encoded steps that still read the old state
    for (const [key, target] of Object.entries(this.stateDict())) {
      const v = sd[key];
      if (v === undefined || typeof v === "number") {
        throw new Error(`Adam.loadStateDict: missing tensor ${key}`);
      }
      if (v instanceof Tensor) {
        if (v.size !== target.size) {
          throw new Error(`Adam.loadStateDict: ${key} has ${v.size} values, expected ${target.size}`);
        }
        copyBuffer(v.buffer, 0, target.buffer, 0, target.byteSize);
      } else {
        if (v.length !== target.size) {
          throw new Error(`Adam.loadStateDict: ${key} has ${v.length} values, expected ${target.size}`);
        }
        writeBuffer(target.buffer, Float32Array.from(v));
      }
    }
  }

  dispose(): void {
    for (const t of [...this.m, ...this.v, this.counters, this.finite]) t.dispose();
  }
}
