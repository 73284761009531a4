// The CPU GEMM paths (OpenBLAS through koffi, and the blocked JS kernel) against a naive float64
// triple loop: every transpose combination, offsets, leading dimensions wider than the matrix,
// alpha/beta, and sizes that cross the JS kernel's blocks.

import test from 'node:test';
import assert from 'node:assert/strict';
import { blasStatus } from '../../src/backends/cpu/blas.ts';
import { sgemmBlas, sgemmJs } from '../../src/backends/cpu/gemm.ts';
import { Rng } from '../../src/tensor/index.ts';

/** float32 products summed over K <= 600 terms: |error| <= K * 2^-24 * sum|a||b|; 1e-5 relative to
 * the scale of the result is well above that and far below any indexing mistake. */
const GEMM_TOL = 1e-5;

type Gemm = typeof sgemmJs;

function naive(tA: boolean, tB: boolean, m: number, n: number, k: number, alpha: number, a: Float32Array, aOff: number, lda: number, b: Float32Array, bOff: number, ldb: number, beta: number, c: Float32Array, cOff: number, ldc: number): Float64Array {
  const out = Float64Array.from(c);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) {
        const av = tA ? a[aOff + p * lda + i]! : a[aOff + i * lda + p]!;
        const bv = tB ? b[bOff + j * ldb + p]! : b[bOff + p * ldb + j]!;
        s += av * bv;
      }
      out[cOff + i * ldc + j] = alpha * s + (beta === 0 ? 0 : beta * c[cOff + i * ldc + j]!);
    }
  }
  return out;
}

function runCase(gemm: Gemm, rng: Rng, tA: boolean, tB: boolean, m: number, n: number, k: number, alpha: number, beta: number): void {
  const pad = 3;
  const lda = (tA ? m : k) + pad;
  const ldb = (tB ? k : n) + pad;
  const ldc = n + pad;
  const [aOff, bOff, cOff] = [5, 2, 7];
  const fill = (len: number) => Float32Array.from({ length: len }, () => rng.normal());
  const a = fill(aOff + (tA ? k : m) * lda);
  const b = fill(bOff + (tB ? n : k) * ldb);
  const c = fill(cOff + m * ldc);
  if (beta === 0) c.fill(NaN, cOff, cOff + ldc); // beta = 0 must ignore whatever C holds
  const want = naive(tA, tB, m, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc);
  gemm(tA, tB, m, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc);
  let scale = 1e-6;
  for (const v of want) if (Number.isFinite(v)) scale = Math.max(scale, Math.abs(v));
  // the reference copied C whole, so cells outside the m x n window must come back unchanged
  for (let i = 0; i < c.length; i++) {
    const w = want[i]!;
    if (Number.isNaN(w)) assert.ok(Number.isNaN(c[i]!), `padding at ${i} changed`);
    else assert.ok(Math.abs(c[i]! - w) <= GEMM_TOL * scale, `tA=${tA} tB=${tB} ${m}x${n}x${k} alpha=${alpha} beta=${beta}: C[${i}] = ${c[i]}, want ${w}`);
  }
}

function suite(gemm: Gemm): void {
  const rng = new Rng(1);
  for (const tA of [false, true]) {
    for (const tB of [false, true]) {
      runCase(gemm, rng, tA, tB, 5, 7, 3, 1, 0);
      runCase(gemm, rng, tA, tB, 9, 4, 11, 0.5, 1);
      runCase(gemm, rng, tA, tB, 1, 1, 1, 2, -0.5);
      runCase(gemm, rng, tA, tB, 70, 530, 300, 1, 0); // crosses the JS kernel's 256 x 512 panels
    }
  }
}

test('JS blocked sgemm matches the naive loop', () => {
  suite(sgemmJs);
});

const blas = blasStatus();
test('OpenBLAS sgemm matches the naive loop', { skip: blas.path ? false : `no OpenBLAS: ${blas.reason}` }, () => {
  suite(sgemmBlas);
});
