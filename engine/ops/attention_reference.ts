/**
 * Float64 reference of engine/ops/attention.ts (tests, models' references): the same computation composed from
 * the reference matmul, softmax and rms_norm plus the rotation, and its analytic backward composed the same way.
 */
import { reference as matmulRef } from "./matmul.ts";
import { reference as normRef } from "./norm.ts";

export interface AttnRefShape {
  batch: number;
  tokens: number;
  heads: number;
  headDim: number;
  axes: number;
}

/** Rotate adjacent pairs of each d-row of x (rows, d) by `phi(row, i)`; `sign` −1 applies R(−φ). */
function rotate(x: Float64Array, phi: (row: number, i: number) => number, d: number, sign = 1): Float64Array {
  const out = new Float64Array(x.length);
  for (let r = 0; r < x.length / d; r++) {
    for (let i = 0; i < d / 2; i++) {
      const a = x[r * d + 2 * i], b = x[r * d + 2 * i + 1];
      const f = phi(r, i), c = Math.cos(f), sn = sign * Math.sin(f);
      out[r * d + 2 * i] = a * c - b * sn;
      out[r * d + 2 * i + 1] = a * sn + b * c;
    }
  }
  return out;
}

/** φ (N, D/2) = coords (N, A) · Θ (A, D/2). */
function angles(theta: Float64Array, coords: Float64Array, s: AttnRefShape): Float64Array {
  const half = (s.heads * s.headDim) / 2;
  return matmulRef.matmul(coords, [s.tokens, s.axes], theta, [s.axes, half]);
}

/** Per (b, h): the (N, d) block `part` (0 q, 1 k, 2 v) of qkv (B, N, 3, H, d). */
function headBlock(qkv: Float64Array, s: AttnRefShape, b: number, h: number, part: number): Float64Array {
  const { tokens: N, heads: H, headDim: d } = s;
  const out = new Float64Array(N * d);
  for (let n = 0; n < N; n++) {
    const src = (((b * N + n) * 3 + part) * H + h) * d;
    out.set(qkv.subarray(src, src + d), n * d);
  }
  return out;
}

interface HeadForward {
  qn: Float64Array;
  kn: Float64Array;
  qr: Float64Array;
  kr: Float64Array;
  v: Float64Array;
  p: Float64Array;
  o: Float64Array;
  phiOf: (row: number, i: number) => number;
}

function headForward(
  qkv: Float64Array,
  phi: Float64Array,
  s: AttnRefShape,
  b: number,
  h: number,
  eps: number,
) {
  const { tokens: N, headDim: d, heads: H } = s;
  const half = (H * d) / 2;
  const phiOf = (row: number, i: number) => phi[row * half + h * (d / 2) + i];
  const qn = normRef.rms_norm(headBlock(qkv, s, b, h, 0), [N, d], undefined, eps);
  const kn = normRef.rms_norm(headBlock(qkv, s, b, h, 1), [N, d], undefined, eps);
  const v = headBlock(qkv, s, b, h, 2);
  const qr = rotate(qn, phiOf, d), kr = rotate(kn, phiOf, d);
  const scores = matmulRef.matmul(qr, [N, d], kr, [N, d], false, true).map((x) => x / Math.sqrt(d));
  const p = normRef.softmax(scores, [N, N]);
  const o = matmulRef.matmul(p, [N, N], v, [N, d]);
  return { qn, kn, qr, kr, v, p, o, phiOf } satisfies HeadForward;
}

/** RMS-norm backward over rows of d: dx = r·(g − x̂·mean(g∘x̂)), r = 1/√(mean(x²) + eps). */
function rmsBackward(
  x: Float64Array,
  xn: Float64Array,
  g: Float64Array,
  d: number,
  eps: number,
): Float64Array {
  const out = new Float64Array(x.length);
  for (let r = 0; r < x.length / d; r++) {
    let dot = 0, ms = 0;
    for (let i = 0; i < d; i++) {
      dot += g[r * d + i] * xn[r * d + i];
      ms += x[r * d + i] ** 2 / d;
    }
    const k = 1 / Math.sqrt(ms + eps);
    for (let i = 0; i < d; i++) out[r * d + i] = k * (g[r * d + i] - (xn[r * d + i] * dot) / d);
  }
  return out;
}

export const reference = {
  angles,
  rotate,

  /** Forward: y (B, N, H·d). */
  attention(qkv: Float64Array, theta: Float64Array, coords: Float64Array, s: AttnRefShape, eps = 1e-5) {
    const { batch: B, tokens: N, heads: H, headDim: d } = s;
    const phi = angles(theta, coords, s);
    const y = new Float64Array(B * N * H * d);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        const { o } = headForward(qkv, phi, s, b, h, eps);
        for (let n = 0; n < N; n++) y.set(o.subarray(n * d, n * d + d), ((b * N + n) * H + h) * d);
      }
    }
    return y;
  },

  /** Backward for upstream gradient gy (B, N, H·d): d(qkv) (B, N, 3·H·d) and dΘ (A, H·d/2). */
  attentionBackward(
    qkv: Float64Array,
    theta: Float64Array,
    coords: Float64Array,
    gy: Float64Array,
    s: AttnRefShape,
    eps = 1e-5,
  ) {
    const { batch: B, tokens: N, heads: H, headDim: d, axes: A } = s;
    const half = (H * d) / 2, sq = Math.sqrt(d);
    const phi = angles(theta, coords, s);
    const dqkv = new Float64Array(qkv.length);
    const dphi = new Float64Array(B * N * half);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        const f = headForward(qkv, phi, s, b, h, eps);
        const go = new Float64Array(N * d);
        for (let n = 0; n < N; n++) {
          const src = ((b * N + n) * H + h) * d;
          go.set(gy.subarray(src, src + d), n * d);
        }
        const dv = matmulRef.matmul(f.p, [N, N], go, [N, d], true, false);
        const dp = matmulRef.matmul(go, [N, d], f.v, [N, d], false, true);
        const ds = new Float64Array(N * N);
        for (let i = 0; i < N; i++) {
          let dot = 0;
          for (let j = 0; j < N; j++) dot += dp[i * N + j] * f.p[i * N + j];
          for (let j = 0; j < N; j++) ds[i * N + j] = (f.p[i * N + j] * (dp[i * N + j] - dot)) / sq;
        }
        const gqr = matmulRef.matmul(ds, [N, N], f.kr, [N, d]);
        const gkr = matmulRef.matmul(ds, [N, N], f.qr, [N, d], true, false);
        const parts = [
          rmsBackward(headBlock(qkv, s, b, h, 0), f.qn, rotate(gqr, f.phiOf, d, -1), d, eps),
          rmsBackward(headBlock(qkv, s, b, h, 1), f.kn, rotate(gkr, f.phiOf, d, -1), d, eps),
          dv,
        ];
        for (let n = 0; n < N; n++) {
          for (let part = 0; part < 3; part++) {
            dqkv.set(parts[part].subarray(n * d, n * d + d), (((b * N + n) * 3 + part) * H + h) * d);
          }
          for (let i = 0; i < d / 2; i++) {
            const a = n * d + 2 * i;
            dphi[(b * N + n) * half + h * (d / 2) + i] = gqr[a + 1] * f.qr[a] - gqr[a] * f.qr[a + 1] +
              gkr[a + 1] * f.kr[a] - gkr[a] * f.kr[a + 1];
          }
        }
      }
    }
    const dtheta = new Float64Array(A * half);
    for (let b = 0; b < B; b++) {
      const blk = dphi.subarray(b * N * half, (b + 1) * N * half);
      const part = matmulRef.matmul(coords, [N, A], blk, [N, half], true, false);
      for (let i = 0; i < part.length; i++) dtheta[i] += part[i];
    }
    return { dqkv, dtheta };
  },
};
