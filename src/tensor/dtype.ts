// Element types and the conversions between them on the host.
// bfloat16 and float16 live on the host as raw 16-bit patterns in a Uint16Array; arithmetic on the
// CPU backend happens in float32. Conversions round to nearest even, as PyTorch does.

export type DType = 'float32' | 'bfloat16' | 'float16' | 'int32' | 'int64' | 'uint8';

export const FLOAT_DTYPES: readonly DType[] = ['float32', 'bfloat16', 'float16'];

/** Bytes per element. */
export function dtypeBytes(dtype: DType): number {
  switch (dtype) {
    case 'float32':
    case 'int32':
      return 4;
    case 'bfloat16':
    case 'float16':
      return 2;
    case 'int64':
      return 8;
    case 'uint8':
      return 1;
    default:
      return dtype satisfies never;
  }
}

export function isFloatDType(dtype: DType): boolean {
  return dtype === 'float32' || dtype === 'bfloat16' || dtype === 'float16';
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 -> bfloat16 bits, round to nearest even; NaN stays NaN. */
export function f32ToBf16Bits(x: number): number {
  f32[0] = x;
  const bits = u32[0]!;
  if ((bits & 0x7fffffff) > 0x7f800000) return ((bits >>> 16) | 0x40) & 0xffff; // quiet NaN
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

export function bf16BitsToF32(h: number): number {
  u32[0] = h << 16;
  return f32[0]!;
}

/** float32 -> IEEE half bits, round to nearest even, overflow to inf, subnormals kept. */
export function f32ToF16Bits(x: number): number {
  f32[0] = x;
  const bits = u32[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  let mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = mant & ((1 << shift) - 1);
    let m = mant >>> shift;
    if (rest > half || (rest === half && m & 1)) m++;
    return sign | m;
  }
  let m = mant >>> 13;
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && m & 1)) {
    m++;
    if (m === 0x400) {
      m = 0;
      e++;
      if (e >= 0x1f) return sign | 0x7c00;
    }
  }
  return sign | (e << 10) | m;
}

export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** Decode 16-bit float patterns into float32. */
export function halfToF32(bits: Uint16Array, dtype: 'bfloat16' | 'float16'): Float32Array {
  const out = new Float32Array(bits.length);
  if (dtype === 'bfloat16') {
    // bf16 is the top half of an f32: widen by shifting into a Uint32 view.
    const o32 = new Uint32Array(out.buffer);
    for (let i = 0; i < bits.length; i++) o32[i] = bits[i]! << 16;
  } else {
    for (let i = 0; i < bits.length; i++) out[i] = f16BitsToF32(bits[i]!);
  }
  return out;
}

/** Encode float32 values as 16-bit float patterns. */
export function f32ToHalf(values: Float32Array, dtype: 'bfloat16' | 'float16'): Uint16Array {
  const out = new Uint16Array(values.length);
  const conv = dtype === 'bfloat16' ? f32ToBf16Bits : f32ToF16Bits;
  for (let i = 0; i < values.length; i++) out[i] = conv(values[i]!);
  return out;
}

/** Host arrays that carry each dtype (16-bit floats as raw bit patterns). */
export type HostArray = Float32Array | Uint16Array | Int32Array | BigInt64Array | Uint8Array;

/** Float dtypes the compute kernels take. */
export type FloatDType = 'float32' | 'bfloat16' | 'float16';

/** A zero-filled host array of `size` elements for `dtype`. */
export function allocHost(dtype: DType, size: number): HostArray {
  switch (dtype) {
    case 'float32':
      return new Float32Array(size);
    case 'bfloat16':
    case 'float16':
      return new Uint16Array(size);
    case 'int32':
      return new Int32Array(size);
    case 'int64':
      return new BigInt64Array(size);
    case 'uint8':
      return new Uint8Array(size);
    default:
      return dtype satisfies never;
  }
}

/** Whether `arr` is the host array type that carries `dtype`. */
export function hostArrayMatches(arr: HostArray, dtype: DType): boolean {
  switch (dtype) {
    case 'float32':
      return arr instanceof Float32Array;
    case 'bfloat16':
    case 'float16':
      return arr instanceof Uint16Array;
    case 'int32':
      return arr instanceof Int32Array;
    case 'int64':
      return arr instanceof BigInt64Array;
    case 'uint8':
      return arr instanceof Uint8Array;
    default:
      return dtype satisfies never;
  }
}

/** Decode any host array of `dtype` into float32 values (a copy, or `arr` itself when float32). */
export function hostToF32(arr: HostArray, dtype: DType): Float32Array {
  switch (dtype) {
    case 'float32':
      return arr as Float32Array;
    case 'bfloat16':
    case 'float16':
      return halfToF32(arr as Uint16Array, dtype);
    case 'int64': {
      const src = arr as BigInt64Array;
      const out = new Float32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = Number(src[i]!);
      return out;
    }
    case 'int32':
    case 'uint8':
      return Float32Array.from(arr as Int32Array | Uint8Array);
    default:
      return dtype satisfies never;
  }
}

/** Encode float32 values as a host array of `dtype` (integers truncate toward zero). */
export function f32ToHost(values: Float32Array, dtype: DType): HostArray {
  switch (dtype) {
    case 'float32':
      return values;
    case 'bfloat16':
    case 'float16':
      return f32ToHalf(values, dtype);
    case 'int32':
      return Int32Array.from(values, Math.trunc);
    case 'int64': {
      const out = new BigInt64Array(values.length);
      for (let i = 0; i < values.length; i++) out[i] = BigInt(Math.trunc(values[i]!));
      return out;
    }
    case 'uint8':
      return Uint8Array.from(values, Math.trunc);
    default:
      return dtype satisfies never;
  }
}

/** The dtype a host array carries by its type (Uint16Array is ambiguous: `half` says which). */
export function dtypeOfHost(arr: HostArray, half: 'bfloat16' | 'float16' | null = null): DType | null {
  if (arr instanceof Float32Array) return 'float32';
  if (arr instanceof Int32Array) return 'int32';
  if (arr instanceof BigInt64Array) return 'int64';
  if (arr instanceof Uint8Array) return 'uint8';
  return half;
}

/**
 * `arr` converted to the host array of `dtype` (itself when it already matches). A Uint16Array is
 * taken as bits of `dtype` when that is a 16-bit float, else rejected.
 */
export function toHostOf(arr: HostArray, dtype: DType): HostArray {
  if (hostArrayMatches(arr, dtype)) return arr;
  const from = dtypeOfHost(arr);
  if (from === null) throw new Error(`a Uint16Array holds bfloat16/float16 bits and cannot become ${dtype}`);
  if (from === 'int64' && dtype === 'int32') return Int32Array.from(arr as BigInt64Array, (v) => Number(v));
  if (from === 'int32' && dtype === 'int64') return BigInt64Array.from(arr as Int32Array, (v) => BigInt(v));
  return f32ToHost(hostToF32(arr, from), dtype);
}
