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

const KC = 256; // rows of the packed B panel: KC x NC floats stay in L2
const NC = 512;
let panel = new Float32Array(KC * NC);

/**
 * Blocked JS kernel: B is packed panel by panel (KC x NC, transposes resolved while packing), then
 * four rows of C are updated at once from each packed row, so every load of B feeds four FMAs.
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
  if (panel.length < KC * NC) panel = new Float32Array(KC * NC);
  const bp = panel;
  // A(i, p) lives at aOff + i * ars + p * acs
  const ars = transA ? 1 : lda;
  const acs = transA ? lda : 1;
  for (let j0 = 0; j0 < n; j0 += NC) {
    const nc = Math.min(NC, n - j0);
    for (let p0 = 0; p0 < k; p0 += KC) {
      const kc = Math.min(KC, k - p0);
      // pack B[p0:p0+kc, j0:j0+nc] -> bp [kc, nc]
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
      let i = 0;
      for (; i + 4 <= m; i += 4) {
        const c0 = cOff + i * ldc + j0;
        const c1 = c0 + ldc;
        const c2 = c1 + ldc;
        const c3 = c2 + ldc;
        let ap = aOff + i * ars + p0 * acs;
        for (let p = 0; p < kc; p++, ap += acs) {
          const a0 = alpha * a[ap];
          const a1 = alpha * a[ap + ars];
          const a2 = alpha * a[ap + 2 * ars];
          const a3 = alpha * a[ap + 3 * ars];
          const bo = p * nc;
          for (let j = 0; j < nc; j++) {
            const bv = bp[bo + j];
            c[c0 + j] += a0 * bv;
            c[c1 + j] += a1 * bv;
            c[c2 + j] += a2 * bv;
            c[c3 + j] += a3 * bv;
          }
        }
      }
      for (; i < m; i++) {
        const c0 = cOff + i * ldc + j0;
        let ap = aOff + i * ars + p0 * acs;
        for (let p = 0; p < kc; p++, ap += acs) {
          const a0 = alpha * a[ap];
          const bo = p * nc;
          for (let j = 0; j < nc; j++) c[c0 + j] += a0 * bp[bo + j];
        }
      }
    }
  }
}
