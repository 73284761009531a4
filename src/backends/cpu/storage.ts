// CPU storage: a typed array per allocation (float32 as Float32Array, bf16/f16 as Uint16Array bits,
// int32 as Int32Array, int64 as BigInt64Array, uint8 as Uint8Array). Kernels compute in float32;
// these helpers give a float32 view of any float storage and write float32 results back.

import { allocHost, f32ToHalf, halfToF32, hostArrayMatches, type DType, type FloatDType, type HostArray } from '../../tensor/dtype.ts';

export type CpuStorage = HostArray;

// A caching allocator: freed arrays wait, by type and length, for the next allocation of the same
// size. Training repeats the same shapes every step, so after step 1 almost nothing is allocated,
// which spares the zero-filling of fresh pages and the garbage collector's work. Small arrays are
// cheap to make and are not kept; the cache is bounded.
const MIN_POOLED = 4096; // elements
const POOL_LIMIT_BYTES = Number(process.env['XTUNER_CPU_CACHE_MB'] ?? 1024) * 2 ** 20;
const pool = new Map<string, HostArray[]>();
let pooledBytes = 0;

function poolKey(arr: HostArray): string {
  return `${arr.constructor.name}:${arr.length}`;
}

/** XTUNER_POISON_UNINIT=1: uninitialised storage reads as NaN (see Backend.allocUninit). */
const POISON_UNINIT = process.env['XTUNER_POISON_UNINIT'] === '1';

export function cpuAlloc(dtype: DType, size: number): CpuStorage {
  const hit = size >= MIN_POOLED ? popPooled(dtype, size) : null;
  if (!hit) return allocHost(dtype, size);
  if (hit instanceof BigInt64Array) hit.fill(0n);
  else hit.fill(0);
  return hit;
}

/** A pooled array as it was left (a fresh one is zeroed by JavaScript anyway). */
export function cpuAllocUninit(dtype: DType, size: number): CpuStorage {
  const s = size >= MIN_POOLED ? popPooled(dtype, size) : null;
  const out = s ?? allocHost(dtype, size);
  if (POISON_UNINIT) new Uint8Array(out.buffer, out.byteOffset, out.byteLength).fill(0xff);
  return out;
}

function popPooled(dtype: DType, size: number): CpuStorage | null {
  const hit = pool.get(allocKeyOf(dtype, size))?.pop();
  if (!hit) return null;
  pooledBytes -= hit.byteLength;
  return hit;
}

export function cpuFree(s: CpuStorage): void {
  if (s.length < MIN_POOLED || s.byteOffset !== 0 || pooledBytes + s.byteLength > POOL_LIMIT_BYTES) return;
  const key = poolKey(s);
  let list = pool.get(key);
  if (!list) pool.set(key, (list = []));
  list.push(s);
  pooledBytes += s.byteLength;
}

function allocKeyOf(dtype: DType, size: number): string {
  switch (dtype) {
    case 'float32':
      return `Float32Array:${size}`;
    case 'bfloat16':
    case 'float16':
      return `Uint16Array:${size}`;
    case 'int32':
      return `Int32Array:${size}`;
    case 'int64':
      return `BigInt64Array:${size}`;
    case 'uint8':
      return `Uint8Array:${size}`;
    default:
      return dtype satisfies never;
  }
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
