// Float32 row-major GEMM on the CPU: C = alpha * op(A) op(B) + beta * C at element offsets and
// leading dimensions. OpenBLAS when loaded, else a cache-blocked JS kernel (also used when
// XTUNER_BLAS=js). Both are exported so a test can run each against a naive loop.

import { blasSgemm, CBLAS_NO_TRANS, CBLAS_ROW_MAJOR, CBLAS_TRANS } from './blas.ts';

export function sgemm(
  transA: boolean,
  transB: boolean,
  m: number,
  n: number,
  k: number,
  alpha: number,
  a: Float32Array,
  aOff: number,
  lda: number,
  b: Float32Array,
  bOff: number,
  ldb: number,
  beta: number,
  c: Float32Array,
  cOff: number,
  ldc: number,
): void {
  if (m === 0 || n === 0) return;
  const blas = blasSgemm();
  if (blas && k > 0) {
    sgemmBlas(transA, transB, m, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc);
  } else {
    sgemmJs(transA, transB, m, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc);
  }
}

/** OpenBLAS path; throws when the library is absent. */
export function sgemmBlas(
  transA: boolean,
  transB: boolean,
  m: number,
  n: number,
  k: number,
  alpha: number,
  a: Float32Array,
  aOff: number,
  lda: number,
  b: Float32Array,
  bOff: number,
  ldb: number,
  beta: number,
  c: Float32Array,
  cOff: number,
  ldc: number,
): void {
  const blas = blasSgemm();
  if (!blas) throw new Error('OpenBLAS is not loaded');
  // Views begin at the offsets; koffi passes their data pointers without copying.
  blas(
    CBLAS_ROW_MAJOR,
    transA ? CBLAS_TRANS : CBLAS_NO_TRANS,
    transB ? CBLAS_TRANS : CBLAS_NO_TRANS,
    m,
    n,
    k,
    alpha,
    aOff === 0 ? a : a.subarray(aOff),
    lda,
    bOff === 0 ? b : b.subarray(bOff),
    ldb,
    beta,
    cOff === 0 ? c : c.subarray(cOff),
    ldc,
  );
}

const KC = 256; // depth of a packed panel: KC x NC floats of B stay in L2
const NC = 512;
let bPanel = new Float32Array(KC * NC);
const aPanel = new Float32Array(KC * 4);

/**
 * Blocked JS kernel. B is packed panel by panel (KC x NC, transposes resolved while packing),
 * four rows of A at a time are packed interleaved and scaled by alpha, and a 4 x 4 block of C is
 * accumulated in local variables (registers, float64) over the whole panel depth, so each pair
 * of loads feeds several multiply-adds and C is touched once per panel.
 */
export function sgemmJs(
  transA: boolean,
  transB: boolean,
  m: number,
  n: number,
  k: number,
  alpha: number,
  a: Float32Array,
  aOff: number,
  lda: number,
  b: Float32Array,
  bOff: number,
  ldb: number,
  beta: number,
  c: Float32Array,
  cOff: number,
  ldc: number,
): void {
  // C *= beta (beta == 0 overwrites, as BLAS does, so garbage or NaN in C never leaks through)
  for (let i = 0; i < m; i++) {
    const row = cOff + i * ldc;
    if (beta === 0) c.fill(0, row, row + n);
    else if (beta !== 1) for (let j = 0; j < n; j++) c[row + j] *= beta;
  }
  if (k === 0 || alpha === 0) return;
  if (bPanel.length < KC * NC) bPanel = new Float32Array(KC * NC);
  const bp = bPanel;
  const ap = aPanel;
  // A(i, p) lives at aOff + i * ars + p * acs
  const ars = transA ? 1 : lda;
  const acs = transA ? lda : 1;
  for (let j0 = 0; j0 < n; j0 += NC) {
    const nc = Math.min(NC, n - j0);
    for (let p0 = 0; p0 < k; p0 += KC) {
      const kc = Math.min(KC, k - p0);
      // B[p0:p0+kc, j0:j0+nc] -> bp [kc, nc]
      for (let p = 0; p < kc; p++) {
        const dst = p * nc;
        if (transB) {
          let src = bOff + j0 * ldb + (p0 + p);
          for (let j = 0; j < nc; j++, src += ldb) bp[dst + j] = b[src];
        } else {
          const src = bOff + (p0 + p) * ldb + j0;
          for (let j = 0; j < nc; j++) bp[dst + j] = b[src + j];
        }
      }
      for (let i = 0; i < m; i += 4) {
        const mr = Math.min(4, m - i);
        // alpha * A[i:i+4, p0:p0+kc] -> ap [kc, 4] (rows past m are zeros)
        for (let p = 0; p < kc; p++) {
          const src = aOff + i * ars + (p0 + p) * acs;
          for (let r = 0; r < 4; r++) ap[p * 4 + r] = r < mr ? alpha * a[src + r * ars] : 0;
        }
        const o = cOff + i * ldc + j0;
        let j = 0;
        for (; j + 4 <= nc; j += 4) {
          let c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
          let c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;
          for (let p = 0, bo = j, ao = 0; p < kc; p++, bo += nc, ao += 4) {
            const b0 = bp[bo], b1 = bp[bo + 1], b2 = bp[bo + 2], b3 = bp[bo + 3];
            const a0 = ap[ao], a1 = ap[ao + 1], a2 = ap[ao + 2], a3 = ap[ao + 3];
            c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3;
            c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3;
            c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3;
            c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3;
          }
          const q = o + j;
          c[q] += c00; c[q + 1] += c01; c[q + 2] += c02; c[q + 3] += c03;
          if (mr > 1) { c[q + ldc] += c10; c[q + ldc + 1] += c11; c[q + ldc + 2] += c12; c[q + ldc + 3] += c13; }
          if (mr > 2) { const q2 = q + 2 * ldc; c[q2] += c20; c[q2 + 1] += c21; c[q2 + 2] += c22; c[q2 + 3] += c23; }
          if (mr > 3) { const q3 = q + 3 * ldc; c[q3] += c30; c[q3 + 1] += c31; c[q3 + 2] += c32; c[q3 + 3] += c33; }
        }
        // the last nc % 4 columns, one at a time
        for (; j < nc; j++) {
          for (let r = 0; r < mr; r++) {
            let sum = 0;
            for (let p = 0; p < kc; p++) sum += ap[p * 4 + r] * bp[p * nc + j];
            c[o + r * ldc + j] += sum;
          }
        }
      }
    }
  }
}
