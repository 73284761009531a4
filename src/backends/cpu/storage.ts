// CPU storage: a typed array per allocation (float32 as Float32Array, bf16/f16 as Uint16Array bits,
// int32 as Int32Array, int64 as BigInt64Array, uint8 as Uint8Array). Kernels compute in float32;
// these helpers give a float32 view of any float storage and write float32 results back.

import { allocHost, f32ToHalf, halfToF32, hostArrayMatches, type DType, type FloatDType, type HostArray } from '../../tensor/dtype.ts';

export type CpuStorage = HostArray;

export function cpuAlloc(dtype: DType, size: number): CpuStorage {
  return allocHost(dtype, size);
}

export function cpuWrite(dst: CpuStorage, dtype: DType, offset: number, src: HostArray): void {
  if (!hostArrayMatches(src, dtype) || !hostArrayMatches(dst, dtype)) {
    throw new Error(`cpu write: host array ${src.constructor.name} does not carry ${dtype}`);
  }
  (dst as Float32Array).set(src as Float32Array, offset);
}

export function cpuRead(src: CpuStorage, _dtype: DType, offset: number, size: number): HostArray {
  return src.slice(offset, offset + size);
}

/** Float32 values of a float storage: the array itself when float32, else a decoded copy. */
export function f32Of(s: CpuStorage, dtype: FloatDType): Float32Array {
  return dtype === 'float32' ? (s as Float32Array) : halfToF32(s as Uint16Array, dtype);
}

/**
 * A float32 array to compute an output into: `out` itself when float32, else scratch that
 * `commit` encodes back into `out`.
 */
export function f32Out(out: CpuStorage, dtype: FloatDType, size: number): Float32Array {
  return dtype === 'float32' ? (out as Float32Array) : new Float32Array(size);
}

export function commit(out: CpuStorage, dtype: FloatDType, values: Float32Array): void {
  if (dtype !== 'float32') (out as Uint16Array).set(f32ToHalf(values, dtype));
}
