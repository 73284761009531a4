// NF4 on the CPU: the references of the `nf4Quantize`, `nf4Dequantize` and `nf4Matvec` kernels, and what every
// backend must share to give the same bits: the two code tables of the format (the 16 NF4 values
// and bitsandbytes' 8-bit dynamic map that the double-quantised block scales index), the midpoints
// between neighbouring codes that rounding to the nearest code compares against, and the order in
// which the mean of the absmax values is summed. They live here, below the tensor layer, so every
// backend reads the same float32 values; src/quant/nf4.ts (the layout, a typed-array
// quantiser checked against bitsandbytes) re-exports them.

import type { FloatDType } from '../../tensor/dtype.ts';
import type { Nf4WeightArgs } from '../backend.ts';
import { sgemm } from './gemm.ts';
import { commit, cpuAllocUninit, cpuFree, f32Of, f32Out, type CpuStorage } from './storage.ts';

/** The 16 NF4 values, exactly as bitsandbytes defines them (backends/utils.py, csrc/kernels.cu). */
export const NF4_CODE: Float32Array = Float32Array.of(
  -1.0,
  -0.6961928009986877,
  -0.5250730514526367,
  -0.39491748809814453,
  -0.28444138169288635,
  -0.18477343022823334,
  -0.09105003625154495,
  0.0,
  0.07958029955625534,
  0.16093020141124725,
  0.24611230194568634,
  0.33791524171829224,
  0.44070982933044434,
  0.5626170039176941,
  0.7229568362236023,
  1.0,
);

const fr = Math.fround;

/** torch.linspace(start, end, steps) in float32 (both halves, as ATen computes them). */
function linspaceF32(startValue: number, endValue: number, steps: number): Float32Array {
  const start = fr(startValue);
  const end = fr(endValue);
  const out = new Float32Array(steps);
  if (steps === 1) {
    out[0] = start;
    return out;
  }
  const step = fr(fr(end - start) / (steps - 1));
  const half = Math.floor(steps / 2);
  for (let i = 0; i < steps; i++) {
    out[i] = i < half ? fr(start + fr(step * i)) : fr(end - fr(step * (steps - 1 - i)));
  }
  return out;
}

/**
 * bitsandbytes' `create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)`: 256 sorted
 * values in [-0.99296875, 1], dense near 0 (7 decades), used for the 8-bit absmax codes.
 */
function makeDynamicCode(): Float32Array {
  const maxExponentBits = 7;
  const nonSignBits = 7;
  const data: number[] = [];
  for (let i = 0; i < maxExponentBits; i++) {
    const boundaries = linspaceF32(0.1, 1, 2 ** (i + nonSignBits - maxExponentBits) + 1);
    const decade = fr(10 ** (-(maxExponentBits - 1) + i));
    for (let k = 0; k + 1 < boundaries.length; k++) {
      const mean = fr(fr(boundaries[k]! + boundaries[k + 1]!) / 2);
      data.push(fr(decade * mean), -fr(decade * mean));
    }
  }
  data.push(0, 1);
  data.sort((a, b) => a - b);
  return Float32Array.from(data);
}

export const DYNAMIC_CODE: Float32Array = makeDynamicCode();

/** Midpoints of neighbouring codes, each rounded to float32 once: the rounding thresholds. */
function midpoints(code: Float32Array): Float32Array {
  const out = new Float32Array(code.length - 1);
  for (let i = 0; i + 1 < code.length; i++) out[i] = fr((code[i]! + code[i + 1]!) / 2);
  return out;
}

/** [15] thresholds between the NF4 codes. */
export const NF4_MIDS: Float32Array = midpoints(NF4_CODE);
/** [255] thresholds between the dynamic codes. */
export const DYNAMIC_MIDS: Float32Array = midpoints(DYNAMIC_CODE);
/** NF4 index of 0.0: what every element of a block with absmax 0 stores. */
export const NF4_ZERO = 7;

/**
 * Index of the value of a sorted code nearest to x, given its midpoints: the number of midpoints
 * strictly below x (binary search), so a tie goes to the lower value (torch argmin) and NaN to 0.
 */
export function nearestCode(mids: Float32Array, x: number): number {
  let lo = 0;
  let hi = mids.length;
  while (lo < hi) {
    const m = (lo + hi) >>> 1;
    if (x > mids[m]!) lo = m + 1;
    else hi = m;
  }
  return lo;
}

/**
 * Lanes of the absmax mean (the CUDA kernel's threads: native/cuda/nf4.cu NF4_MEAN_THREADS). The
 * sum is a reduction, so its order is fixed here for every backend: lane t adds values t, t + L,
 * t + 2L, ... in float64, then a halving tree adds lane t + h into lane t for h = L/2, ..., 1.
 * Sums of float32 values in float64 round rarely and then in float64's last bits, so the mean
 * rounded to float32 equals that of a sequential float64 sum (quantizeNf4's order before) unless
 * it lies within ~1e-16 (relative) of a float32 rounding boundary.
 */
export const NF4_MEAN_LANES = 1024;

/** fround(mean) of the absmax values, summed in float64 in the shared order above. */
export function absmaxMean(absmax: Float32Array): number {
  const lanes = new Float64Array(NF4_MEAN_LANES);
  for (let i = 0; i < absmax.length; i++) lanes[i & (NF4_MEAN_LANES - 1)] += absmax[i]!;
  for (let h = NF4_MEAN_LANES >> 1; h > 0; h >>= 1) for (let t = 0; t < h; t++) lanes[t] += lanes[t + h]!;
  return fr(lanes[0]! / absmax.length);
}

/** Max |v| over v[start, end), NaN skipped (comparisons), 0 when all are 0. */
function absMax(v: Float32Array, start: number, end: number): number {
  let m = 0;
  for (let i = start; i < end; i++) {
    const a = Math.abs(v[i]!);
    if (a > m) m = a;
  }
  return m;
}

/**
 * See Backend.nf4Quantize. Written as the CUDA kernels compute: per block its absmax, the reciprocal
 * rounded to float32, each product rounded to float32, its nearest code (a binary search here, a
 * branch-free count of the thresholds below it on the device: the same index); then the mean in
 * the shared order, the centred absmax per block of `absBlockSize`, and its dynamic 8-bit codes.
 */
export function nf4Quantize(
  x: CpuStorage,
  packed: CpuStorage,
  absmax: CpuStorage,
  absCodes: CpuStorage | null,
  absScales: CpuStorage | null,
  offset: CpuStorage | null,
  n: number,
  blockSize: number,
  absBlockSize: number,
  dtype: FloatDType,
): void {
  const v = f32Of(x, dtype);
  const p = packed as Uint8Array;
  const am = absmax as Float32Array;
  const nBlocks = Math.ceil(n / blockSize);
  for (let b = 0; b < nBlocks; b++) {
    const start = b * blockSize;
    const end = Math.min(n, start + blockSize);
    const m = absMax(v, start, end);
    am[b] = m;
    const inv = m === 0 ? 0 : fr(1 / m); // 0 also for m = inf: the block stores zeros
    // blocks are even-sized, so a pair never straddles two; an odd tail's low nibble is 0
    for (let i = start; i < end; i += 2) {
      const hi = inv === 0 ? NF4_ZERO : nearestCode(NF4_MIDS, fr(v[i]! * inv));
      const lo = i + 1 >= end ? 0 : inv === 0 ? NF4_ZERO : nearestCode(NF4_MIDS, fr(v[i + 1]! * inv));
      p[i >> 1] = (hi << 4) | lo;
    }
  }
  if (!absCodes) return;
  const codes = absCodes as Uint8Array;
  const scales = absScales as Float32Array;
  const off = absmaxMean(am.subarray(0, nBlocks));
  (offset as Float32Array)[0] = off;
  const centred = new Float32Array(Math.min(absBlockSize, nBlocks));
  for (let c = 0; c * absBlockSize < nBlocks; c++) {
    const start = c * absBlockSize;
    const len = Math.min(nBlocks, start + absBlockSize) - start;
    for (let k = 0; k < len; k++) centred[k] = fr(am[start + k]! - off);
    const s = absMax(centred, 0, len);
    scales[c] = s;
    const inv = fr(1 / s);
    for (let k = 0; k < len; k++) codes[start + k] = nearestCode(DYNAMIC_MIDS, s === 0 ? 0 : fr(centred[k]! * inv));
  }
}

/** See Backend.nf4Dequantize. Each product is rounded to float32 on its own (no fused multiply-add). */
export function nf4Dequantize(
  packed: CpuStorage,
  absCodes: CpuStorage | null,
  absScales: CpuStorage,
  offset: number,
  out: CpuStorage,
  n: number,
  blockSize: number,
  absBlockSize: number,
  dtype: FloatDType,
): void {
  const p = packed as Uint8Array;
  const codes = absCodes as Uint8Array | null;
  const scales = absScales as Float32Array;
  const o = f32Out(out, dtype, n);
  const nBlocks = Math.ceil(n / blockSize);
  for (let b = 0; b < nBlocks; b++) {
    const s = codes ? fr(fr(DYNAMIC_CODE[codes[b]!]! * scales[Math.floor(b / absBlockSize)]!) + offset) : scales[b]!;
    const end = Math.min(n, (b + 1) * blockSize);
    for (let i = b * blockSize; i < end; i++) {
      const byte = p[i >> 1]!;
      o[i] = fr(NF4_CODE[i & 1 ? byte & 0x0f : byte >> 4]! * s);
    }
  }
  commit(out, dtype, o);
}

/** See Backend.nf4Matvec: the weight dequantised as nf4Dequantize gives it, then one float32 GEMM (OpenBLAS when present). */
export function nf4Matvec(
  w: Nf4WeightArgs<CpuStorage>,
  x: CpuStorage,
  bias: CpuStorage | null,
  out: CpuStorage,
  rows: number,
  outFeatures: number,
  inFeatures: number,
  dtype: FloatDType,
): void {
  const n = outFeatures * inFeatures;
  const weight = cpuAllocUninit(dtype, n);
  nf4Dequantize(w.packed, w.absCodes, w.absScales, w.offset, weight, n, w.blockSize, w.absBlockSize, dtype);
  const wv = f32Of(weight, dtype); // [out, in]
  const xv = f32Of(x, dtype); // [rows, in]
  const bv = bias ? f32Of(bias, dtype) : null;
  const o = f32Out(out, dtype, rows * outFeatures);
  sgemm(false, true, rows, outFeatures, inFeatures, 1, xv, 0, inFeatures, wv, 0, inFeatures, 0, o, 0, outFeatures); // [rows, out]
  if (bv) for (let i = 0; i < o.length; i++) o[i] = Math.fround(o[i]! + bv[i % outFeatures]!);
  commit(out, dtype, o);
  cpuFree(weight);
}
