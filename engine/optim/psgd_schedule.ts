/**
 * Host-side schedule of PSGD-Kron's preconditioner updates (spec/psgd.md §2.1). heavyball 1.4.3 draws one
 * uniform R_t per optimizer step as the first `random.random()` of Python's Mersenne Twister seeded with
 * (0x172381 XOR t); every tensor updates iff R_t < p(n) and balances iff R_t < 0.01. `pythonRandom` reproduces
 * that draw bit for bit, so the decisions match heavyball's exactly and cost the GPU nothing.
 */

/** The schedule seed heavyball 1.4.3 XORs with the step. */
export const HEAVYBALL_SCHEDULE_SEED = 0x172381;

/** lola's update probability p(n) = max(1/64, 0.999^n) (precondition_frequency 64, decay 0.999). */
export function lolaUpdateProbability(n: number): number {
  return Math.max(1 / 64, 0.999 ** n);
}

/** heavyball ≥1.4.4 / HEAD default: max(0.03, 0.999^max(n − 1000, 0)). */
export function heavyballUpdateProbability(n: number): number {
  return Math.max(0.03, 0.999 ** Math.max(n - 1000, 0));
}

const N = 624, M = 397;

function initGenrand(mt: Uint32Array, s: number) {
  mt[0] = s >>> 0;
  for (let i = 1; i < N; i++) {
    const prev = mt[i - 1] ^ (mt[i - 1] >>> 30);
    mt[i] = (Math.imul(1812433253, prev) + i) >>> 0;
  }
}

/** CPython's init_by_array (the key is the seed's 32-bit words, least significant first). */
function initByArray(key: number[]): Uint32Array {
  const mt = new Uint32Array(N);
  initGenrand(mt, 19650218);
  let i = 1, j = 0;
  for (let k = Math.max(N, key.length); k > 0; k--) {
    const prev = mt[i - 1] ^ (mt[i - 1] >>> 30);
    mt[i] = ((mt[i] ^ Math.imul(prev, 1664525)) + key[j] + j) >>> 0;
    i++;
    j++;
    if (i >= N) {
      mt[0] = mt[N - 1];
      i = 1;
    }
    if (j >= key.length) j = 0;
  }
  for (let k = N - 1; k > 0; k--) {
    const prev = mt[i - 1] ^ (mt[i - 1] >>> 30);
    mt[i] = ((mt[i] ^ Math.imul(prev, 1566083941)) - i) >>> 0;
    i++;
    if (i >= N) {
      mt[0] = mt[N - 1];
      i = 1;
    }
  }
  mt[0] = 0x80000000;
  return mt;
}

function twist(mt: Uint32Array) {
  for (let i = 0; i < N; i++) {
    const y = (mt[i] & 0x80000000) | (mt[(i + 1) % N] & 0x7fffffff);
    mt[i] = (mt[(i + M) % N] ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0)) >>> 0;
  }
}

function temper(y: number): number {
  y ^= y >>> 11;
  y ^= (y << 7) & 0x9d2c5680;
  y ^= (y << 15) & 0xefc60000;
  y ^= y >>> 18;
  return y >>> 0;
}

/** `random.seed(seed); random.random()` of CPython, for a non-negative integer seed < 2⁵³. */
export function pythonRandom(seed: number): number {
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new Error(`pythonRandom: seed ${seed} is not a safe integer ≥ 0`);
  }
  const key = seed < 2 ** 32 ? [seed] : [seed % 2 ** 32, Math.floor(seed / 2 ** 32)];
  const mt = initByArray(key);
  twist(mt);
  const a = temper(mt[0]) >>> 5, b = temper(mt[1]) >>> 6;
  return (a * 67108864 + b) / 9007199254740992;
}

/** heavyball's R_t: the seed XOR t (as Python ints, so no 32-bit wrap for large seeds). */
export function scheduleDraw(t: number, seed = HEAVYBALL_SCHEDULE_SEED): number {
  const lo = ((seed % 2 ** 32) ^ (t % 2 ** 32)) >>> 0;
  const hi = (Math.floor(seed / 2 ** 32) ^ Math.floor(t / 2 ** 32)) >>> 0;
  return pythonRandom(hi * 2 ** 32 + lo);
}
