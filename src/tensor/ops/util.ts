// Helpers shared by the op files: output allocation, dtype promotion and checks. Not ops.

import { XtunerError } from '../../errors.ts';
import { isFloatDType, type DType, type FloatDType } from '../dtype.ts';
import { fmt } from '../shape.ts';
import { Tensor } from '../tensor.ts';

/**
 * An output tensor owned by the current scope, contents unspecified: for kernels that write their
 * outputs whole (every kernel of backends/backend.ts unless its doc says it accumulates). An op
 * that writes only part of its output (a slice's gradient) takes `zeroed`.
 */
export function empty(shape: readonly number[], dtype: DType, device: Tensor['device']): Tensor {
  return Tensor._allocUninit(shape, dtype, device);
}

/** A zero-filled tensor owned by the current scope. */
export function zeroed(shape: readonly number[], dtype: DType, device: Tensor['device']): Tensor {
  return Tensor._alloc(shape, dtype, device);
}

export function checkFloat(op: string, name: string, t: Tensor): FloatDType {
  t._live();
  if (!isFloatDType(t.dtype)) throw new XtunerError(`${op}: ${name} must be a float tensor, got ${t.dtype} ${fmt(t.shape)}`);
  return t.dtype as FloatDType;
}

export function checkDevice(op: string, ...ts: (Tensor | null | undefined)[]): Tensor['device'] {
  const devs = new Set(ts.filter((t): t is Tensor => t != null).map((t) => t.device));
  if (devs.size > 1) throw new XtunerError(`${op}: tensors on different devices (${[...devs].join(', ')})`);
  return [...devs][0] ?? 'cpu';
}

/** PyTorch-style promotion between float dtypes: equal stays, mixed goes to float32. */
export function promote(a: FloatDType, b: FloatDType): FloatDType {
  return a === b ? a : 'float32';
}

export function checkRank(op: string, name: string, t: Tensor, rank: number, layout: string): void {
  if (t.shape.length !== rank) {
    throw new XtunerError(`${op}: ${name} must be ${layout}, got shape ${fmt(t.shape)}`);
  }
}

/** `g` converted to `dtype` outside autograd (`g` itself when it already is; else a new tensor, `g` left to its scope). */
export function castRaw(g: Tensor, dtype: DType): Tensor {
  if (g.dtype === dtype) return g;
  const out = empty(g.shape, dtype, g.device);
  g.backend.cast(g.storage, g.dtype, out.storage, dtype, g.size);
  return out;
}

/**
 * c = alpha * op(a) op(b) + beta * c for row-major 2-D operands, op = transpose where asked:
 * op(a) [m, k], op(b) [k, n], c [m, n]; each operand in its own float dtype (the backend's mixed
 * GEMMs: bf16 x bf16 -> float32, bf16 x float32 weights, ...).
 */
export function gemm2d(transA: boolean, transB: boolean, m: number, n: number, k: number, alpha: number, beta: number, a: Tensor, b: Tensor, c: Tensor): void {
  c.backend.gemm({
    transA, transB, m, n, k, alpha, beta,
    a: a.storage, aOffset: 0, lda: transA ? m : k, aDtype: a.floatDtype,
    b: b.storage, bOffset: 0, ldb: transB ? k : n, bDtype: b.floatDtype,
    c: c.storage, cOffset: 0, ldc: n, cDtype: c.floatDtype,
    batch: 1, strideA: 0, strideB: 0, strideC: 0,
  });
}

/**
 * Where a backward writes the gradient of `x`: `into` (the gradient gathered for x so far, to add
 * to: BackwardFn) when it has x's dtype, else a new tensor of x's shape and dtype.
 */
export function gatheredOr(into: Tensor | null | undefined, x: Tensor): Tensor {
  return into && into.dtype === x.dtype ? into : empty(x.shape, x.dtype, x.device);
}
