/**
 * The contract between kernel benchmark files (bench/kernels/*.ts) and the runner (bench/main.ts).
 * Each file exports `benches: Bench[]`; the runner sets up each case, times `run()` over repeated submits
 * (with the GPU synced before and after), and reports GFLOP/s and GB/s against the adapter's measured ceilings.
 */
export interface BenchCase {
  /** Encode one execution of the kernel(s) under test (no sync inside). */
  run: () => void;
  /** Free what setup allocated. */
  dispose: () => void;
}

export interface Bench {
  /** Kernel family, e.g. "matmul", "softmax", "attention_fwd". Used by `--filter`. */
  kernel: string;
  /** Human-readable shape, e.g. "1024x1024x1024". */
  shape: string;
  /** Floating-point operations per run (an FMA counts 2); 0 for memory-bound kernels. */
  flops: number;
  /** Minimum bytes moved per run (each input read once, each output written once). */
  bytes: number;
  /** Allocate inputs and return the case (called once, after device init). */
  setup: () => BenchCase;
}
