/**
 * PSGD-Kron on the GPU, the variant lola trained its autoencoders with (spec/psgd.md: heavyball 1.4.3
 * `ForeachCachedDelayedPSGDKron`): debiased momentum, a Kronecker preconditioner with one factor per axis
 * (dense upper-triangular up to `maxSizeTriangular`, diagonal otherwise), delayed and cached application
 * P·u = u ×_k C_k, stochastic "whitening" updates of the factors on a host-side schedule (balancing on ~1%),
 * the trust-region clip, decoupled weight decay.
 *
 * Deliberate choices (spec §1.5, §5): the cache starts at QᵀQ (1.4.3 left it uninitialised) and is refreshed
 * from the updated Q ("fresh"; `staleCache: true` reproduces 1.4.3's one-update-stale dense caches); factor
 * updates are skipped on the GPU when ‖G‖ is zero or not finite; the whole step is skipped on the GPU when the
 * global gradient norm is not finite (as in Adam). `step()` only encodes: it never reads the GPU.
 */
import {
  PSGD_WG,
  psgdApplyKernel,
  psgdControlKernel,
  psgdDiagStepKernel,
  psgdElementwise,
  psgdMomentumKernel,
} from "../../kernels/psgd.wgsl.ts";
import { noGrad } from "../autograd.ts";
import { gpu } from "../device.ts";
import { Generator } from "../random.ts";
import { copyBuffer, dispatch, grid1d, releaseBuffer, uniformBuffer } from "../runtime.ts";
import { scope, type Shape, shapeStr, Tensor } from "../tensor.ts";
import {
  applyCaches,
  applyFactors,
  type GroupState,
  type Slot,
  stackTensors,
  type UpdateContext,
  updateFactors,
} from "./psgd_update.ts";
import { modeChain } from "./psgd_ops.ts";
import { HEAVYBALL_SCHEDULE_SEED, lolaUpdateProbability, scheduleDraw } from "./psgd_schedule.ts";
import type { Optimizer, StepOptions } from "./optimizer.ts";

export interface PSGDKronOptions {
  lr: number;
  /** Momentum β (debiased EMA); 0 feeds the raw gradient. Default 0.9. */
  beta?: number;
  /** Decoupled, lr-scaled weight decay on every tensor. Default 0. */
  weightDecay?: number;
  /** η of the factor update. Default 0.1. */
  preconditionerLr?: number;
  /** Factors start at s^{1/K}·I. Default 1. */
  initScale?: number;
  /** Axes longer than this get a diagonal factor. Default 4096 (lola; heavyball's own default is 2048). */
  maxSizeTriangular?: number;
  /** Tensors with fewer axes are fully diagonal. Default 2. */
  minNdimTriangular?: number;
  /** Force diagonal factors: the largest axis ("one_diag", ties → last axis) or all. Default "none". */
  memorySaveMode?: "none" | "one_diag" | "all_diag";
  /** p(n) of the update schedule. Default lola's max(1/64, 0.999ⁿ). */
  updateProbability?: (n: number) => number;
  /** Balance when the step's draw is below this (and K > 1). Default 0.01. */
  balanceProbability?: number;
  /** Seed XOR-ed with the step for heavyball's per-step uniform draw. Default 0x172381. */
  scheduleSeed?: number;
  /** Override of the schedule (tests): decisions for step t and per-tensor count n. */
  schedule?: (t: number, n: number) => { update: boolean; balance: boolean };
  /** 1.4.3's one-update-stale dense caches instead of fresh ones. Default false. */
  staleCache?: boolean;
  /** Trust-region clip of P·u. Default true. */
  trustRegion?: boolean;
  /** 1.4.3's damping noise σ·Z on G before the factor update. Default true. */
  dampingNoise?: boolean;
  /** Skip factor updates when ‖G‖ is 0 or not finite (spec §5.2). Default true. */
  zeroGradGuard?: boolean;
  /** Seed of the GPU generator of the probes V and the damping noise Z. Default 0. */
  seed?: number;
  /** Diagonal block size of the blocked triangular inverse. Default 32. */
  inverseLeaf?: number;
  /** Inject the probe V for parameter `index` (tests); undefined → drawn on the GPU. */
  probes?: (index: number, shape: Shape) => Tensor | undefined;
  /**
   * Update the factors of same-shape tensors together, one dispatch per stage for the group (default true):
   * the same arithmetic per tensor, far fewer dispatches. The draws of the probes and the damping noise then
   * come per group, so a run's random stream differs from one with `false` (which updates tensor by tensor).
   * Such a group of tensors with ≥ 2 axes also applies P·u as one stacked chain, on stacked copies of its
   * factors and caches that its updates keep current.
   */
  groupUpdates?: boolean;
  /**
   * Fuse the small kernels (default true): each small dense factor's update (d ≤ 16: Gram finish, lb,
   * triangular step, cache) in one kernel, four dispatches fewer per factor, and a 1-D tensor's momentum, P·u
   * and parameter update in one pass, two fewer per step. The same results bit for bit as the separate
   * kernels (`false`).
   */
  fuseSmallUpdates?: boolean;
}

/** The same options as every optimizer's step. */
export type PSGDStepOptions = StepOptions;

type Resolved =
  & Required<Omit<PSGDKronOptions, "schedule" | "probes">>
  & Pick<PSGDKronOptions, "schedule" | "probes">;

const DEFAULTS: Omit<Resolved, "lr"> = {
  beta: 0.9,
  weightDecay: 0,
  preconditionerLr: 0.1,
  initScale: 1,
  maxSizeTriangular: 4096,
  minNdimTriangular: 2,
  memorySaveMode: "none",
  updateProbability: lolaUpdateProbability,
  balanceProbability: 0.01,
  scheduleSeed: HEAVYBALL_SCHEDULE_SEED,
  staleCache: false,
  trustRegion: true,
  dampingNoise: true,
  zeroGradGuard: true,
  seed: 0,
  inverseLeaf: 32,
  groupUpdates: true,
  fuseSmallUpdates: true,
};

/** Which axes get a dense triangular factor (spec §1.2). */
export function denseAxes(
  shape: readonly number[],
  o: Pick<Resolved, "maxSizeTriangular" | "minNdimTriangular" | "memorySaveMode">,
): boolean[] {
  const dense = shape.map((d) => shape.length >= o.minNdimTriangular && d > 1 && d <= o.maxSizeTriangular);
  if (o.memorySaveMode === "all_diag") return dense.map(() => false);
  if (o.memorySaveMode === "one_diag" && shape.length) {
    let big = 0;
    shape.forEach((d, k) => big = d >= shape[big] ? k : big);
    dense[big] = false;
  }
  return dense;
}

const persistent = (data: Float32Array, shape: Shape) => Tensor.fromData(data, shape, { persistent: true });

/** What tensors must share to be updated or stacked together: shape and factor layout. */
const shapeKey = (s: Slot) => `${s.shape.join("x")}:${s.factors.map((f) => (f.dense ? "t" : "d")).join("")}`;

/**
 * Same-shape, same-layout tensors with ≥ 2 axes whose P·u runs as one stacked chain each step. `state` holds
 * stacked copies of the members' factors and caches (persistent), equal to theirs while `valid`: the group's
 * own factor updates write them in place (and copy back to the members); anything else that changes a
 * member's factors clears `valid`, and the next step copies them in again.
 */
interface ApplyGroup {
  members: Slot[];
  state: Omit<GroupState, "m">;
  valid: boolean;
}

export class PSGDKron implements Optimizer {
  readonly params: Tensor[];
  opts: Resolved;
  /** [t (applied steps), skipped steps, β^t] on the GPU. */
  readonly counters: Tensor;
  /** Host step count (schedule draws). */
  t = 0;
  private slots: Slot[];
  private live: Tensor;
  private finite: Tensor;
  private gen: Generator;
  private draw: { t: number; r: number } = { t: -1, r: 0 };
  private groups: ApplyGroup[] = [];

  constructor(params: Tensor[], opts: PSGDKronOptions) {
    this.params = params;
    this.opts = { ...DEFAULTS, ...opts };
    this.counters = persistent(new Float32Array([0, 0, 1]), [3]);
    this.live = persistent(new Float32Array(4), [4]);
    this.finite = persistent(new Float32Array(1), [1]);
    this.gen = new Generator(this.opts.seed);
    this.slots = params.map((p, i) => this.makeSlot(p, i));
    if (this.opts.groupUpdates) this.groups = this.makeGroups();
  }

  /**
   * Groups for the stacked P·u: ≥ 2 members whose size is a multiple of the storage-offset alignment (each
   * member's momentum and update bind its range of the stacked tensors).
   */
  private makeGroups(): ApplyGroup[] {
    const align = gpu().limits.minStorageBufferOffsetAlignment;
    const byKey = new Map<string, Slot[]>();
    for (const s of this.slots) {
      if (s.shape.length < 2 || (s.param.size * 4) % align !== 0) continue;
      const key = shapeKey(s);
      byKey.set(key, [...(byKey.get(key) ?? []), s]);
    }
    return [...byKey.values()].filter((m) => m.length > 1).map((members) => {
      const stack = (size: number) => Tensor.empty([members.length * size], { persistent: true });
      const f = members[0].factors;
      return {
        members,
        state: { q: f.map((x) => stack(x.q.size)), cache: f.map((x) => stack(x.cache.size)) },
        valid: false,
      };
    });
  }

  /** Copy the members' factors and caches into the group's stacked state. */
  private fillGroup(grp: ApplyGroup): void {
    grp.members.forEach((s, i) =>
      s.factors.forEach((f, k) => {
        copyBuffer(f.q.buffer, 0, grp.state.q[k].buffer, i * f.q.byteSize, f.q.byteSize);
        copyBuffer(f.cache.buffer, 0, grp.state.cache[k].buffer, i * f.cache.byteSize, f.cache.byteSize);
      })
    );
    grp.valid = true;
  }

  /** Momentum, P·u (delayed: the caches from before this step's update) and the parameter update of one tensor. */
  private applySlot(s: Slot, g: Tensor, hyper: GPUBuffer): void {
    const n = s.param.size;
    const grid = grid1d(psgdElementwise(n), PSGD_WG);
    if (this.opts.fuseSmallUpdates && s.factors.length === 1 && !s.factors[0].dense) {
      const kern = psgdDiagStepKernel(n, this.opts.trustRegion);
      const c = s.factors[0].cache;
      dispatch(kern, [s.m.buffer, g.buffer, this.live.buffer, c.buffer, s.param.buffer, hyper], grid);
      return;
    }
    dispatch(psgdMomentumKernel(n), [s.m.buffer, g.buffer, this.live.buffer], grid);
    const d = applyCaches(s, s.m);
    dispatch(
      psgdApplyKernel(n, this.opts.trustRegion),
      [s.param.buffer, d.buffer, this.live.buffer, hyper],
      grid,
    );
    d.dispose();
  }

  /**
   * Momentum and P·u for a group as one stacked chain (delayed: the caches from before this step's update),
   * then each member's parameter update; returns the stacked momentum u for the group's factor update.
   */
  private applyGroup(grp: ApplyGroup, hyper: GPUBuffer): Tensor {
    if (!grp.valid) this.fillGroup(grp);
    const { shape, factors } = grp.members[0];
    const n = grp.members[0].param.size, g = grp.members.length;
    const grid = grid1d(psgdElementwise(n), PSGD_WG);
    const range = (t: Tensor, i: number) => ({ buffer: t.buffer, offset: i * n * 4, size: n * 4 });
    const u = Tensor.empty([g * n]);
    const momentum = psgdMomentumKernel(n, true);
    grp.members.forEach((s, i) =>
      dispatch(momentum, [s.m.buffer, s.param.grad!.buffer, this.live.buffer, range(u, i)], grid)
    );
    const d = modeChain(u, shape, (k) => ({ m: grp.state.cache[k], op: factors[k].dense ? "mm" : "mul" }), g);
    const apply = psgdApplyKernel(n, this.opts.trustRegion);
    grp.members.forEach((s, i) =>
      dispatch(apply, [s.param.buffer, range(d, i), this.live.buffer, hyper], grid)
    );
    d.dispose();
    return u;
  }

  private makeSlot(p: Tensor, i: number): Slot {
    const shape = p.ndim ? [...p.shape] : [1];
    const dense = denseAxes(shape, this.opts);
    const s = this.opts.initScale ** (1 / shape.length);
    const factors = shape.map((d, k) => {
      const q = new Float32Array(dense[k] ? d * d : d);
      for (let j = 0; j < d; j++) q[dense[k] ? j * d + j : j] = s;
      const c = q.map((v) => v * v);
      const fshape = dense[k] ? [d, d] : [d];
      return { dense: dense[k], d, q: persistent(q, fshape), cache: persistent(c, fshape) };
    });
    return {
      param: p,
      index: i,
      key: p.name ?? String(i),
      shape,
      m: persistent(new Float32Array(p.size), p.shape),
      factors,
      ell: persistent(new Float32Array(shape.length), [shape.length]),
      n: 0,
    };
  }

  /** One optimizer step over every parameter that has a gradient (encodes only; never reads the GPU). */
  step(o: PSGDStepOptions = {}): void {
    if ((o.maxNorm ?? 0) > 0 && !o.gradNorm) throw new Error("PSGDKron.step: maxNorm needs gradNorm");
    const { beta, weightDecay } = this.opts;
    this.t++;
    noGrad(() =>
      scope(() => {
        const ctl = uniformBuffer(new Float32Array([o.maxNorm ?? 0, beta, 0, 0]));
        const gn = o.gradNorm ?? this.finite;
        dispatch(psgdControlKernel(), [this.counters.buffer, this.live.buffer, gn.buffer, ctl], [1]);
        releaseBuffer(ctl);
        const hyper = uniformBuffer(new Float32Array([o.lr ?? this.opts.lr, weightDecay, 0, 0]));
        // Tensors whose factors update this step, grouped by shape, factor layout and balancing.
        const due = new Map<string, { group: Slot[]; balance: boolean }>();
        for (const s of this.slots) {
          const g = s.param.grad;
          if (g && g.size !== s.param.size) {
            throw new Error(`PSGDKron: gradient ${shapeStr(g.shape)} of ${s.key}`);
          }
        }
        // Groups whose members all have a gradient run P·u stacked; the others go tensor by tensor.
        const stackedU = new Map<ApplyGroup, Tensor>();
        const done = new Set<Slot>();
        for (const grp of this.groups) {
          if (!grp.members.every((s) => s.param.grad)) continue;
          stackedU.set(grp, this.applyGroup(grp, hyper));
          for (const s of grp.members) done.add(s);
        }
        this.slots.forEach((s) => {
          const g = s.param.grad;
          if (!g) return;
          s.n++;
          if (!done.has(s)) this.applySlot(s, g, hyper);
          const dec = this.decide(s);
          if (!dec.update) return;
          const key = this.opts.groupUpdates ? `${shapeKey(s)}:${dec.balance}` : String(s.index);
          const entry = due.get(key) ?? { group: [], balance: dec.balance };
          entry.group.push(s);
          due.set(key, entry);
        });
        const ctx = this.context();
        for (const { group, balance } of due.values()) {
          // A due group that is a whole stacked group updates its stacked state in place.
          const grp = this.groups.find((x) =>
            stackedU.has(x) && x.members.length === group.length && x.members.every((s, i) => s === group[i])
          );
          if (grp) updateFactors(group, ctx, balance, { m: stackedU.get(grp)!, ...grp.state });
          else {
            updateFactors(group, ctx, balance);
            for (const x of this.groups) if (x.members.some((s) => group.includes(s))) x.valid = false;
          }
        }
        for (const u of stackedU.values()) u.dispose();
        releaseBuffer(hyper);
      })
    );
  }

  private decide(s: Slot): { update: boolean; balance: boolean } {
    if (this.opts.schedule) return this.opts.schedule(this.t, s.n);
    if (this.draw.t !== this.t) this.draw = { t: this.t, r: scheduleDraw(this.t, this.opts.scheduleSeed) };
    const update = this.draw.r < this.opts.updateProbability(s.n);
    return { update, balance: update && this.draw.r < this.opts.balanceProbability };
  }

  private context(): UpdateContext {
    const o = this.opts;
    const probe = (group: Slot[]) => {
      const given = o.probes && group.map((s) => o.probes!(s.index, s.shape));
      if (!given?.every((t) => t)) {
        given?.forEach((t) => t?.dispose());
        return this.gen.normal([group.length * group[0].param.size]);
      }
      const out = stackTensors(given as Tensor[]);
      if (out !== given[0]) { for (const t of given) t!.dispose(); }
      return out;
    };
    return {
      eta: o.preconditionerLr,
      staleCache: o.staleCache,
      zeroGradGuard: o.zeroGradGuard,
      inverseLeaf: o.inverseLeaf,
      fuseSmall: o.fuseSmallUpdates,
      live: this.live,
      noise: o.dampingNoise ? (size) => this.gen.normal([size]) : null,
      probe,
    };
  }

  /** P·x for parameter `index` (diagnostics, tests): from the caches (what the step uses) or the factors. */
  precondition(index: number, x: Tensor, source: "cache" | "factors" = "cache"): Tensor {
    const s = this.slots[index];
    if (x.size !== s.param.size) throw new Error(`precondition: ${shapeStr(x.shape)} vs ${s.key}`);
    return noGrad(() => {
      const y = source === "cache" ? applyCaches(s, x) : applyFactors(s, x);
      const out = y.view(s.param.shape);
      y.dispose();
      return out;
    });
  }

  /** Factor layout per parameter, e.g. for logs: "dense" or "diag" per axis. */
  layout(): { key: string; shape: number[]; factors: ("dense" | "diag")[] }[] {
    return this.slots.map((s) => ({
      key: s.key,
      shape: s.shape,
      factors: s.factors.map((f) => f.dense ? "dense" : "diag"),
    }));
  }

  /** Live state tensors of parameter `index` (tests, diagnostics): do not dispose. */
  slotState(index: number): { m: Tensor; q: Tensor[]; cache: Tensor[]; ell: Tensor } {
    const s = this.slots[index];
    return { m: s.m, q: s.factors.map((f) => f.q), cache: s.factors.map((f) => f.cache), ell: s.ell };
  }

  /** [applied steps, skipped steps] (a sync: call only when logging). */
  async stepCounts(): Promise<{ steps: number; skipped: number }> {
    const [steps, skipped] = await this.counters.read();
    return { steps, skipped };
  }

  /**
   * The live state (tensors are not copies; do not dispose). Keys: `psgd.counters` [t, skipped, β^t],
   * `psgd.exp_avg.<p>` (debiased momentum, the parameter's shape), `psgd.Q.<p>.<k>` ([d, d] upper-triangular,
   * dense storage, or [d] diagonal; k is the parameter's axis),
   * `psgd.cache.<p>.<k>`; numbers `psgd.step`, `psgd.rng_calls`, `psgd.n.<p>`.
   */
  stateDict(): Record<string, Tensor | number> {
    const out: Record<string, Tensor | number> = {
      "psgd.counters": this.counters,
      "psgd.step": this.t,
      "psgd.rng_calls": this.gen.state.calls,
    };
    for (const s of this.slots) {
      out[`psgd.exp_avg.${s.key}`] = s.m;
      out[`psgd.n.${s.key}`] = s.n;
      s.factors.forEach((f, k) => {
        out[`psgd.Q.${s.key}.${k}`] = f.q;
        out[`psgd.cache.${s.key}.${k}`] = f.cache;
      });
    }
    return out;
  }

  /** Restore from `stateDict()` output (or its deserialised form: tensors or flat float arrays). */
  loadStateDict(sd: Record<string, Tensor | ArrayLike<number> | number>): void {
    const mine = this.stateDict();
    for (const [key, target] of Object.entries(mine)) {
      const v = sd[key];
      if (v === undefined) throw new Error(`PSGDKron.loadStateDict: missing ${key}`);
      if (typeof target === "number") {
        if (typeof v !== "number") throw new Error(`PSGDKron.loadStateDict: ${key} should be a number`);
        continue;
      }
      if (typeof v === "number") throw new Error(`PSGDKron.loadStateDict: ${key} should be a tensor`);
      const src = v instanceof Tensor ? v : Tensor.fromData(Float32Array.from(v), [v.length]);
      if (src.size !== target.size) {
        throw new Error(`PSGDKron.loadStateDict: ${key} has ${src.size} values, expected ${target.size}`);
      }
      copyBuffer(src.buffer, 0, target.buffer, 0, target.byteSize);
      if (src !== v) src.dispose();
    }
    for (const grp of this.groups) grp.valid = false;
    this.t = sd["psgd.step"] as number;
    this.gen.state = { seed: this.opts.seed, calls: sd["psgd.rng_calls"] as number };
    for (const s of this.slots) s.n = sd[`psgd.n.${s.key}`] as number;
  }

  dispose(): void {
    for (const s of this.slots) {
      for (const t of [s.m, s.ell, ...s.factors.flatMap((f) => [f.q, f.cache])]) t.dispose();
    }
    for (const t of [this.counters, this.live, this.finite]) t.dispose();
    for (const grp of this.groups) for (const t of [...grp.state.q, ...grp.state.cache]) t.dispose();
  }
}
