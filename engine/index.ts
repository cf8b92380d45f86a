/** Public surface of the engine: device, tensors and scopes, autodiff, ops, RNG, optimizers. */
export { checkGpuErrors, type Gpu, gpu, GpuError, initDevice } from "./device.ts";
export { counters, flush, pool, sync } from "./runtime.ts";
export { numel, scope, type Shape, Tensor } from "./tensor.ts";
export { backward, checkpoint, detach, isGradEnabled, type JvpRule, noGrad, zeroGrad } from "./autograd.ts";
export { type Fn, jvp, type Pullback, TAPE_OPS, type TapeOp, vjp, vjpFn } from "./jvp.ts";
export * from "./ops/index.ts";
export { dropout, Generator, silu_dropout } from "./random.ts";
export { Adam, type AdamOptions, type StepOptions } from "./optim/adam.ts";
export type { Optimizer } from "./optim/optimizer.ts";
export { cosineLr, gradNorm } from "./optim/clip.ts";
export { profileReport } from "./profile.ts";
export { PSGDKron, type PSGDKronOptions } from "./optim/psgd.ts";
export { loadInto, loadSafetensors, saveSafetensors } from "./checkpoint.ts";
export { f32 } from "../kernels/common.ts";
