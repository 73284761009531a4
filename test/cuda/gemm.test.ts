// CUDA GEMM (cuBLAS) against the CPU backend's sgemm: transposes, batches with strides (and a
// broadcast operand), offsets and leading dimensions larger than the matrix, beta accumulation,
// and every dtype combination the contract allows (mixed ones go through float32).

import test from 'node:test';
import type { GemmArgs } from '../../src/backends/backend.ts';
import type { FloatDType } from '../../src/tensor/dtype.ts';
import { compareWithCpu, F32_REDUCE_TOL, SKIP, tolFor, uniform, type Tol } from './helpers.ts';

interface Case {
  m: number;
  n: number;
  k: number;
  transA: boolean;
  transB: boolean;
  batch: number;
  /** extra leading-dimension padding and offsets */
  pad: number;
  beta: number;
  broadcastB?: boolean;
}

const CASES: Case[] = [
  { m: 1, n: 1, k: 1, transA: false, transB: false, batch: 1, pad: 0, beta: 0 },
  { m: 65, n: 33, k: 129, transA: false, transB: true, batch: 1, pad: 0, beta: 0 }, // linear: x w^T
  { m: 64, n: 96, k: 80, transA: true, transB: false, batch: 1, pad: 3, beta: 1 }, // weight grad, accumulate
  { m: 17, n: 40, k: 300, transA: true, transB: true, batch: 3, pad: 2, beta: 0.5 },
  { m: 48, n: 24, k: 32, transA: false, transB: false, batch: 4, pad: 0, beta: 0, broadcastB: true },
  { m: 256, n: 512, k: 1024, transA: false, transB: true, batch: 1, pad: 0, beta: 0 },
];

function run(c: Case, aDtype: FloatDType, bDtype: FloatDType, cDtype: FloatDType, tol: Tol): void {
  const aRows = c.transA ? c.k : c.m;
  const aCols = c.transA ? c.m : c.k;
  const bRows = c.transB ? c.n : c.k;
  const bCols = c.transB ? c.k : c.n;
  const lda = aCols + c.pad;
  const ldb = bCols + c.pad;
  const ldc = c.n + c.pad;
  const strideA = aRows * lda;
  const strideB = c.broadcastB ? 0 : bRows * ldb;
  const strideC = c.m * ldc;
  const off = c.pad;
  const bBatches = c.broadcastB ? 1 : c.batch;
  compareWithCpu(
    `gemm ${aDtype}x${bDtype}->${cDtype} ${JSON.stringify(c)}`,
    {
      a: { dtype: aDtype, data: uniform(aDtype, off + c.batch * strideA, -1, 1) },
      b: { dtype: bDtype, data: uniform(bDtype, off + bBatches * bRows * ldb, -1, 1) },
      c: { dtype: cDtype, data: uniform(cDtype, off + c.batch * strideC, -1, 1) },
    },
    ['c'],
    tol,
    (be, s) => {
      const g: GemmArgs<unknown> = {
        transA: c.transA, transB: c.transB, m: c.m, n: c.n, k: c.k, alpha: 0.75, beta: c.beta,
        a: s['a'], aOffset: off, lda, aDtype,
        b: s['b'], bOffset: off, ldb, bDtype,
        c: s['c'], cOffset: off, ldc, cDtype,
        batch: c.batch, strideA, strideB, strideC,
      };
      be.gemm(g as GemmArgs<never>);
    },
  );
}

test('gemm float32 (no TF32: matches the CPU sgemm)', { skip: SKIP }, () => {
  for (const c of CASES) run(c, 'float32', 'float32', 'float32', F32_REDUCE_TOL);
});

test('gemm bfloat16 and float16 operands, float32 accumulation, half or float32 output', { skip: SKIP }, () => {
  for (const dt of ['bfloat16', 'float16'] as FloatDType[]) {
    for (const c of CASES) {
      run(c, dt, dt, dt, tolFor(dt));
      run(c, dt, dt, 'float32', F32_REDUCE_TOL);
    }
  }
});

test('gemm with mixed operand dtypes goes through float32', { skip: SKIP }, () => {
  for (const c of CASES.slice(0, 4)) {
    run(c, 'float32', 'bfloat16', 'float32', F32_REDUCE_TOL);
    run(c, 'bfloat16', 'float32', 'bfloat16', tolFor('bfloat16'));
    run(c, 'float32', 'float32', 'bfloat16', tolFor('bfloat16'));
  }
});
