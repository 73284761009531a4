// matmul(a[..., M, K], b[..., K, N] | [K, N]) -> [..., M, N]. Batch dims of a and b must match
// when b has them; a 2-D b is shared by every batch (one GEMM over all rows of a). Transposes in
// the backward are GEMM flags, not copies.

import { XtunerError } from '../../errors.ts';
import { recordOp } from '../autograd.ts';
import { fmt, sizeOf } from '../shape.ts';
import type { Tensor } from '../tensor.ts';
import { checkDevice, checkFloat, empty, castRaw, promote } from './util.ts';

export function matmul(a: Tensor, b: Tensor): Tensor {
  const device = checkDevice('matmul', a, b);
  const aDtype = checkFloat('matmul', 'a', a);
  const bDtype = checkFloat('matmul', 'b', b);
  const dtype = promote(aDtype, bDtype);
  if (a.shape.length < 2 || b.shape.length < 2) {
    throw new XtunerError(`matmul: a and b need at least 2 dims, got ${fmt(a.shape)} and ${fmt(b.shape)}`);
  }
  const M = a.shape[a.shape.length - 2]!;
  const K = a.shape[a.shape.length - 1]!;
  const N = b.shape[b.shape.length - 1]!;
  const batchShape = a.shape.slice(0, -2);
  const shared = b.shape.length === 2;
  if (b.shape[b.shape.length - 2] !== K || (!shared && fmt(b.shape.slice(0, -2)) !== fmt(batchShape))) {
    throw new XtunerError(`matmul: ${fmt(a.shape)} @ ${fmt(b.shape)} do not fit (need [..., M, K] @ [..., K, N] or [K, N])`);
  }
  const batch = sizeOf(batchShape);
  const out = empty([...batchShape, M, N], dtype, device);
  const be = a.backend;
  // a 2-D b: all batches are one [batch*M, K] x [K, N] product
  const [gb, gm] = shared ? [1, batch * M] : [batch, M];
  be.gemm({
    transA: false, transB: false, m: gm, n: N, k: K, alpha: 1, beta: 0,
    a: a.storage, aOffset: 0, lda: K, aDtype,
    b: b.storage, bOffset: 0, ldb: N, bDtype,
    c: out.storage, cOffset: 0, ldc: N, cDtype: dtype,
    batch: gb, strideA: M * K, strideB: K * N, strideC: M * N,
  });
  return recordOp('matmul', out, [a, b], [a, b], ([sa, sb], dy, needs) => {
    let da: Tensor | null = null;
    let db: Tensor | null = null;
    if (needs[0]) {
      // dA = dC B^T
      da = empty(a.shape, dtype, device);
      be.gemm({
        transA: false, transB: true, m: gm, n: K, k: N, alpha: 1, beta: 0,
        a: dy.storage, aOffset: 0, lda: N, aDtype: dtype,
        b: sb!.storage, bOffset: 0, ldb: N, bDtype,
        c: da.storage, cOffset: 0, ldc: K, cDtype: dtype,
        batch: gb, strideA: M * N, strideB: K * N, strideC: M * K,
      });
      da = castRaw(da, aDtype);
    }
    if (needs[1]) {
      // dB = A^T dC (summed over batches when b is shared)
      db = empty(b.shape, dtype, device);
      be.gemm({
        transA: true, transB: false, m: K, n: N, k: gm, alpha: 1, beta: 0,
        a: sa!.storage, aOffset: 0, lda: K, aDtype,
        b: dy.storage, bOffset: 0, ldb: N, bDtype: dtype,
        c: db.storage, cOffset: 0, ldc: N, cDtype: dtype,
        batch: gb, strideA: M * K, strideB: M * N, strideC: K * N,
      });
      db = castRaw(db, bDtype);
    }
    return [da, db];
  });
}
