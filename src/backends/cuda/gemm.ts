// The contract's row-major strided-batched GEMM on cuBLAS. Row-major C = op(A) op(B) is the
// column-major C^T = op(B)^T op(A)^T, so A and B swap places and no data moves. cuBLAS takes A and
// B of one dtype and C of that dtype or float32; other combinations (a float32 activation times a
// bf16 weight, say) compute in float32 through scratch copies.

import type { GemmArgs } from '../backend.ts';
import type { FloatDType } from '../../tensor/dtype.ts';
import { at, dtypeCode, type CudaRuntime, type CudaStorage } from './runtime.ts';

/** Elements from a matrix's first to its last element: `rows` x `cols` at `ld`, `batch` at `stride`. */
function span(rows: number, cols: number, ld: number, batch: number, stride: number): number {
  return (batch - 1) * stride + (rows - 1) * ld + cols;
}

export function gemm(rt: CudaRuntime, g: GemmArgs<CudaStorage>): void {
  if (g.m === 0 || g.n === 0 || g.batch === 0) return;
  const native = g.aDtype === g.bDtype && (g.cDtype === g.aDtype || g.cDtype === 'float32');
  if (native) {
    rowMajor(rt, g, at(g.a, g.aDtype, g.aOffset), at(g.b, g.bDtype, g.bOffset), at(g.c, g.cDtype, g.cOffset), g.aDtype, g.cDtype);
    return;
  }
  // float32 copies of the operands that are not float32 already
  const scratch: CudaStorage[] = [];
  const asF32 = (s: CudaStorage, dtype: FloatDType, offset: number, n: number, what: string): number => {
    if (dtype === 'float32') return at(s, dtype, offset);
    const tmp = rt.scratchF32(n, `a float32 copy of GEMM operand ${what} (${n} elements)`);
    scratch.push(tmp);
    rt.launch('elementwise', 'cast_any', [rt.blocksFor(n)], [256], 0, 'pipil', [at(s, dtype, offset), dtypeCode(dtype), tmp.ptr, 0, n]);
    return tmp.ptr;
  };
  const aN = span(g.transA ? g.k : g.m, g.transA ? g.m : g.k, g.lda, g.batch, g.strideA);
  const bN = span(g.transB ? g.n : g.k, g.transB ? g.k : g.n, g.ldb, g.batch, g.strideB);
  const cN = span(g.m, g.n, g.ldc, g.batch, g.strideC);
  const a = g.k > 0 ? asF32(g.a, g.aDtype, g.aOffset, aN, 'A') : at(g.a, g.aDtype, g.aOffset);
  const b = g.k > 0 ? asF32(g.b, g.bDtype, g.bOffset, bN, 'B') : at(g.b, g.bDtype, g.bOffset);
  const c = asF32(g.c, g.cDtype, g.cOffset, cN, 'C');
  rowMajor(rt, g, a, b, c, 'float32', 'float32');
  if (g.cDtype !== 'float32') {
    rt.launch('elementwise', 'cast_any', [rt.blocksFor(cN)], [256], 0, 'pipil', [c, 0, at(g.c, g.cDtype, g.cOffset), dtypeCode(g.cDtype), cN]);
  }
  for (const s of scratch) rt.free(s);
}

function rowMajor(rt: CudaRuntime, g: GemmArgs<CudaStorage>, a: number, b: number, c: number, abDtype: FloatDType, cDtype: FloatDType): void {
  const counters = rt.driver.counters;
  const key = `cublas ${abDtype}->${cDtype}${g.aDtype !== abDtype || g.bDtype !== abDtype ? ` (from ${g.aDtype} x ${g.bDtype})` : ''}`;
  counters.gemms++;
  counters.byKernel.set(key, (counters.byKernel.get(key) ?? 0) + 1);
  rt.driver.around(key, () =>
    rt.cublas.gemm({
      transA: g.transB, transB: g.transA, m: g.n, n: g.m, k: g.k, alpha: g.alpha, beta: g.beta,
      a: b, lda: g.ldb, strideA: g.strideB,
      b: a, ldb: g.lda, strideB: g.strideA,
      c, ldc: g.ldc, strideC: g.strideC,
      batch: g.batch, abDtype, cDtype,
    }),
  );
}
