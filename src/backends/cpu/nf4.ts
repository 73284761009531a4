// NF4 dequantisation on the CPU (the reference of the `nf4Dequantize` kernel), and the two code
// tables of the format: the 16 NF4 values and bitsandbytes' 8-bit dynamic map that the
// double-quantised block scales index. They live here, below the tensor layer, so every backend
// reads the same float32 values; src/quant/nf4.ts (quantisation, the data layout) re-exports them.

import type { FloatDType } from '../../tensor/dtype.ts';
import { commit, f32Out, type CpuStorage } from './storage.ts';

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
