// CPU elementwise kernels: fill, cast, strided copy, broadcasting binary ops, unary activations
// with their derivatives, scale, axpy and axis sums. One loop per op (the op is chosen outside the
// loop), float32 arithmetic on float32 views of bf16/f16 storage.

import type { BinaryOp, UnaryOp } from '../backend.ts';
import { f32ToHost, hostToF32, type DType, type FloatDType } from '../../tensor/dtype.ts';
import { commit, f32Of, f32Out, type CpuStorage } from './storage.ts';

export function fill(dst: CpuStorage, dtype: DType, offset: number, size: number, value: number): void {
  if (dtype === 'float32' || dtype === 'int32' || dtype === 'uint8') {
    (dst as Float32Array).fill(value, offset, offset + size);
  } else if (dtype === 'int64') {
    (dst as BigInt64Array).fill(BigInt(Math.trunc(value)), offset, offset + size);
  } else {
    const bits = f32ToHost(Float32Array.of(value), dtype) as Uint16Array;
    (dst as Uint16Array).fill(bits[0]!, offset, offset + size);
  }
}

export function cast(src: CpuStorage, srcDtype: DType, dst: CpuStorage, dstDtype: DType, size: number): void {
  if (srcDtype === dstDtype) {
    (dst as Float32Array).set((src as Float32Array).subarray(0, size));
    return;
  }
  // int64 <-> int32 without the float32 detour, which would lose integers above 2^24
  if (srcDtype === 'int64' && dstDtype === 'int32') {
    const s = src as BigInt64Array;
    const d = dst as Int32Array;
    for (let i = 0; i < size; i++) d[i] = Number(s[i]);
    return;
  }
  if (srcDtype === 'int32' && dstDtype === 'int64') {
    const s = src as Int32Array;
    const d = dst as BigInt64Array;
    for (let i = 0; i < size; i++) d[i] = BigInt(s[i]!);
    return;
  }
  const values = hostToF32(src.subarray(0, size) as CpuStorage, srcDtype);
  (dst as Float32Array).set(f32ToHost(values, dstDtype) as Float32Array);
}

/**
 * Merge adjacent dims that are contiguous in every stride set, and drop size-1 dims, so most
 * broadcasts and copies become one or two long loops.
 */
export function coalesce(shape: readonly number[], strides: readonly (readonly number[])[]): { shape: number[]; strides: number[][] } {
  const outShape: number[] = [];
  const outStrides: number[][] = strides.map(() => []);
  for (let d = 0; d < shape.length; d++) {
    const n = shape[d]!;
    if (n === 1) continue;
    const last = outShape.length - 1;
    if (last >= 0 && strides.every((s, k) => outStrides[k]![last] === s[d]! * n)) {
      outShape[last] = outShape[last]! * n;
      for (let k = 0; k < strides.length; k++) outStrides[k]![last] = strides[k]![d]!;
    } else {
      outShape.push(n);
      for (let k = 0; k < strides.length; k++) outStrides[k]!.push(strides[k]![d]!);
    }
  }
  if (outShape.length === 0) {
    outShape.push(1);
    for (const s of outStrides) s.push(0);
  }
  return { shape: outShape, strides: outStrides };
}

export function copyStrided(
  src: CpuStorage,
  srcOffset: number,
  srcStrides: readonly number[],
  dst: CpuStorage,
  dstOffset: number,
  dstStrides: readonly number[],
  shape: readonly number[],
): void {
  if (shape.some((n) => n === 0)) return;
  const { shape: sh, strides } = coalesce(shape, [srcStrides, dstStrides]);
  const [ss, ds] = strides as [number[], number[]];
  const rank = sh.length;
  const inner = sh[rank - 1]!;
  const sIn = ss[rank - 1]!;
  const dIn = ds[rank - 1]!;
  const idx = new Int32Array(rank);
  let si = srcOffset;
  let di = dstOffset;
  const s = src as Float32Array; // element moves only: any typed array behaves the same
  const d = dst as Float32Array;
  for (;;) {
    if (sIn === 1 && dIn === 1) d.set(s.subarray(si, si + inner), di);
    else for (let j = 0, a = si, b = di; j < inner; j++, a += sIn, b += dIn) d[b] = s[a]!;
    // advance the outer counters (odometer)
    let dim = rank - 2;
    for (; dim >= 0; dim--) {
      idx[dim]!++;
      si += ss[dim]!;
      di += ds[dim]!;
      if (idx[dim]! < sh[dim]!) break;
      si -= ss[dim]! * sh[dim]!;
      di -= ds[dim]! * sh[dim]!;
      idx[dim] = 0;
    }
    if (dim < 0) return;
  }
}

function binaryRow(op: BinaryOp, a: Float32Array, ia: number, sa: number, b: Float32Array, ib: number, sb: number, o: Float32Array, io: number, n: number): void {
  switch (op) {
    case 'add':
      for (let j = 0; j < n; j++, ia += sa, ib += sb) o[io + j] = a[ia]! + b[ib]!;
      return;
    case 'sub':
      for (let j = 0; j < n; j++, ia += sa, ib += sb) o[io + j] = a[ia]! - b[ib]!;
      return;
    case 'mul':
      for (let j = 0; j < n; j++, ia += sa, ib += sb) o[io + j] = a[ia]! * b[ib]!;
      return;
    case 'div':
      for (let j = 0; j < n; j++, ia += sa, ib += sb) o[io + j] = a[ia]! / b[ib]!;
      return;
    default:
      return op satisfies never;
  }
}

export function binary(
  op: BinaryOp,
  aS: CpuStorage,
  aStrides: readonly number[],
  bS: CpuStorage,
  bStrides: readonly number[],
  out: CpuStorage,
  shape: readonly number[],
  dtype: FloatDType,
): void {
  let size = 1;
  for (const n of shape) size *= n;
  if (size === 0) return;
  const a = f32Of(aS, dtype);
  const b = f32Of(bS, dtype);
  const o = f32Out(out, dtype, size);
  const outStrides = new Array<number>(shape.length);
  for (let d = shape.length - 1, s = 1; d >= 0; d--) {
    outStrides[d] = s;
    s *= shape[d]!;
  }
  const { shape: sh, strides } = coalesce(shape, [aStrides, bStrides, outStrides]);
  const [as, bs] = strides as [number[], number[]];
  const rank = sh.length;
  const inner = sh[rank - 1]!;
  const idx = new Int32Array(rank);
  let ia = 0;
  let ib = 0;
  for (let io = 0; io < size; io += inner) {
    binaryRow(op, a, ia, as[rank - 1]!, b, ib, bs[rank - 1]!, o, io, inner);
    for (let dim = rank - 2; dim >= 0; dim--) {
      idx[dim]!++;
      ia += as[dim]!;
      ib += bs[dim]!;
      if (idx[dim]! < sh[dim]!) break;
      ia -= as[dim]! * sh[dim]!;
      ib -= bs[dim]! * sh[dim]!;
      idx[dim] = 0;
    }
  }
  commit(out, dtype, o);
}

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
const INV_SQRT_2 = Math.SQRT1_2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);
const INV_SQRT_PI = 1 / Math.sqrt(Math.PI);
const GELU_TANH_C = 0.044715;
const QUICK_GELU_C = 1.702;

/** erf to ~1e-15: Taylor series below 2, the continued fraction of erfc above. */
export function erf(x: number): number {
  const z = Math.abs(x);
  if (z < 2) {
    const x2 = x * x;
    let term = x;
    let sum = x;
    for (let n = 1; n < 60; n++) {
      term *= -x2 / n;
      const t = term / (2 * n + 1);
      sum += t;
      if (Math.abs(t) < 1e-17 * Math.abs(sum)) break;
    }
    return sum * 2 * INV_SQRT_PI;
  }
  let f = z;
  for (let k = 60; k >= 1; k--) f = z + k / 2 / f;
  const erfc = (Math.exp(-z * z) * INV_SQRT_PI) / f;
  return x > 0 ? 1 - erfc : erfc - 1;
}

export function unary(op: UnaryOp, xS: CpuStorage, out: CpuStorage, size: number, dtype: FloatDType): void {
  const x = f32Of(xS, dtype);
  const y = f32Out(out, dtype, size);
  switch (op) {
    case 'silu':
      for (let i = 0; i < size; i++) y[i] = x[i]! / (1 + Math.exp(-x[i]!));
      break;
    case 'gelu':
      for (let i = 0; i < size; i++) y[i] = 0.5 * x[i]! * (1 + erf(x[i]! * INV_SQRT_2));
      break;
    case 'geluTanh':
      for (let i = 0; i < size; i++) {
        const v = x[i]!;
        y[i] = 0.5 * v * (1 + Math.tanh(SQRT_2_OVER_PI * (v + GELU_TANH_C * v * v * v)));
      }
      break;
    case 'quickGelu':
      for (let i = 0; i < size; i++) y[i] = x[i]! / (1 + Math.exp(-QUICK_GELU_C * x[i]!));
      break;
    case 'relu':
      for (let i = 0; i < size; i++) y[i] = x[i]! > 0 ? x[i]! : 0;
      break;
    case 'sigmoid':
      for (let i = 0; i < size; i++) y[i] = 1 / (1 + Math.exp(-x[i]!));
      break;
    case 'tanh':
      for (let i = 0; i < size; i++) y[i] = Math.tanh(x[i]!);
      break;
    case 'exp':
      for (let i = 0; i < size; i++) y[i] = Math.exp(x[i]!);
      break;
    case 'log':
      for (let i = 0; i < size; i++) y[i] = Math.log(x[i]!);
      break;
    case 'sqrt':
      for (let i = 0; i < size; i++) y[i] = Math.sqrt(x[i]!);
      break;
    case 'neg':
      for (let i = 0; i < size; i++) y[i] = -x[i]!;
      break;
    default:
      return op satisfies never;
  }
  commit(out, dtype, y);
}

export function unaryBackward(op: UnaryOp, xS: CpuStorage, dyS: CpuStorage, dxS: CpuStorage, size: number, dtype: FloatDType): void {
  const x = f32Of(xS, dtype);
  const dy = f32Of(dyS, dtype);
  const dx = f32Out(dxS, dtype, size);
  switch (op) {
    case 'silu':
      for (let i = 0; i < size; i++) {
        const s = 1 / (1 + Math.exp(-x[i]!));
        dx[i] = dy[i]! * s * (1 + x[i]! * (1 - s));
      }
      break;
    case 'gelu':
      for (let i = 0; i < size; i++) {
        const v = x[i]!;
        dx[i] = dy[i]! * (0.5 * (1 + erf(v * INV_SQRT_2)) + v * INV_SQRT_2PI * Math.exp(-0.5 * v * v));
      }
      break;
    case 'geluTanh':
      for (let i = 0; i < size; i++) {
        const v = x[i]!;
        const t = Math.tanh(SQRT_2_OVER_PI * (v + GELU_TANH_C * v * v * v));
        dx[i] = dy[i]! * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * SQRT_2_OVER_PI * (1 + 3 * GELU_TANH_C * v * v));
      }
      break;
    case 'quickGelu':
      for (let i = 0; i < size; i++) {
        const s = 1 / (1 + Math.exp(-QUICK_GELU_C * x[i]!));
        dx[i] = dy[i]! * (s + QUICK_GELU_C * x[i]! * s * (1 - s));
      }
      break;
    case 'relu':
      for (let i = 0; i < size; i++) dx[i] = x[i]! > 0 ? dy[i]! : 0;
      break;
    case 'sigmoid':
      for (let i = 0; i < size; i++) {
        const s = 1 / (1 + Math.exp(-x[i]!));
        dx[i] = dy[i]! * s * (1 - s);
      }
      break;
    case 'tanh':
      for (let i = 0; i < size; i++) {
        const t = Math.tanh(x[i]!);
        dx[i] = dy[i]! * (1 - t * t);
      }
      break;
    case 'exp':
      for (let i = 0; i < size; i++) dx[i] = dy[i]! * Math.exp(x[i]!);
      break;
    case 'log':
      for (let i = 0; i < size; i++) dx[i] = dy[i]! / x[i]!;
      break;
    case 'sqrt':
      for (let i = 0; i < size; i++) dx[i] = (0.5 * dy[i]!) / Math.sqrt(x[i]!);
      break;
    case 'neg':
      for (let i = 0; i < size; i++) dx[i] = -dy[i]!;
      break;
    default:
      return op satisfies never;
  }
  commit(dxS, dtype, dx);
}

export function scale(xS: CpuStorage, out: CpuStorage, size: number, alpha: number, dtype: FloatDType, by: CpuStorage | null): void {
  // float32 products, as the CUDA kernel: a * x of two float32 values is exact in float64, then rounded once
  const a = by === null ? alpha : Math.fround(alpha * (by as Float32Array)[0]!);
  const x = f32Of(xS, dtype);
  const y = f32Out(out, dtype, size);
  for (let i = 0; i < size; i++) y[i] = a * x[i]!;
  commit(out, dtype, y);
}

export function axpy(xS: CpuStorage, yS: CpuStorage, size: number, alpha: number, dtype: FloatDType): void {
  const x = f32Of(xS, dtype);
  const y = f32Of(yS, dtype); // in place when float32, else a decoded copy committed below
  if (alpha === 1) for (let i = 0; i < size; i++) y[i]! += x[i]!;
  else for (let i = 0; i < size; i++) y[i]! += alpha * x[i]!;
  commit(yS, dtype, y);
}

export function reduceSum(xS: CpuStorage, out: CpuStorage, outer: number, mid: number, inner: number, dtype: FloatDType): void {
  const x = f32Of(xS, dtype);
  const o = f32Out(out, dtype, outer * inner);
  if (inner === 1) {
    // rows: one float64 accumulator per row
    for (let r = 0; r < outer; r++) {
      let s = 0;
      const base = r * mid;
      for (let m = 0; m < mid; m++) s += x[base + m]!;
      o[r] = s;
    }
  } else {
    // columns: accumulate rows into a float64 scratch line
    const acc = new Float64Array(inner);
    for (let r = 0; r < outer; r++) {
      acc.fill(0);
      for (let m = 0; m < mid; m++) {
        const base = (r * mid + m) * inner;
        for (let i = 0; i < inner; i++) acc[i]! += x[base + i]!;
      }
      for (let i = 0; i < inner; i++) o[r * inner + i] = acc[i]!;
    }
  }
  commit(out, dtype, o);
}
