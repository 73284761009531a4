// CPU dropout and the counter-based generator behind it, Philox4x32-10 (Salmon et al., "Parallel
// random numbers: as easy as 1, 2, 3", SC 2011; the generator of cuRAND and of PyTorch's CUDA
// dropout). Element i of a call is dropped when word i % 4 of Philox(counter = [i / 4 as 64 bits,
// call, 0], key = the step's 64-bit base seed) is below p * 2^32, so any element's mask bit is a pure
// function of (seed, call, i): the backward regenerates the mask instead of storing it, and native/cuda/dropout.cu
// computes the same bits (the CUDA tests compare them exactly).

import type { FloatDType } from '../../tensor/dtype.ts';
import { commit, f32Of, f32Out, type CpuStorage } from './storage.ts';

const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;

/** High 32 bits of the 64-bit product of uint32 a and m (both halves of m exact in a double). */
function mulhi(a: number, m: number): number {
  return Math.floor((a * (m >>> 16) + Math.floor((a * (m & 0xffff)) / 65536)) / 65536) >>> 0;
}

/** Philox4x32-10 of counter `c` (4 uint32, overwritten by the output) under key [k0, k1]. */
export function philox4x32(c: Uint32Array, k0: number, k1: number): void {
  let c0 = c[0]!;
  let c1 = c[1]!;
  let c2 = c[2]!;
  let c3 = c[3]!;
  for (let r = 0; r < 10; r++) {
    if (r > 0) {
      k0 = (k0 + W0) >>> 0;
      k1 = (k1 + W1) >>> 0;
    }
    const hi0 = mulhi(c0, M0);
    const lo0 = Math.imul(c0, M0) >>> 0;
    const hi1 = mulhi(c2, M1);
    const lo1 = Math.imul(c2, M1) >>> 0;
    c0 = (hi1 ^ c1 ^ k0) >>> 0;
    c1 = lo1;
    c2 = (hi0 ^ c3 ^ k1) >>> 0;
    c3 = lo0;
  }
  c[0] = c0;
  c[1] = c1;
  c[2] = c2;
  c[3] = c3;
}

/** Words below this are dropped: floor(p * 2^32) (p in [0, 1)). */
export function dropoutThreshold(p: number): number {
  return Math.min(Math.floor(p * 2 ** 32), 0xffffffff);
}

/** The float32 factor kept elements are multiplied by: 1 / (1 - p) rounded to float32. */
export function dropoutScale(p: number): number {
  return Math.fround(1 / (1 - p));
}

export function dropout(
  xS: CpuStorage, out: CpuStorage, size: number, p: number, seedS: CpuStorage, call: number, dtype: FloatDType, accumulate = false,
): void {
  const seed0 = (seedS as Int32Array)[0]! >>> 0;
  const seed1 = (seedS as Int32Array)[1]! >>> 0;
  const x = f32Of(xS, dtype);
  const y = accumulate ? f32Of(out, dtype) : f32Out(out, dtype, size);
  const thresh = dropoutThreshold(p);
  const scale = dropoutScale(p);
  const c = new Uint32Array(4);
  for (let g = 0; 4 * g < size; g++) {
    c[0] = g % 2 ** 32;
    c[1] = Math.floor(g / 2 ** 32);
    c[2] = call;
    c[3] = 0;
    philox4x32(c, seed0, seed1);
    const end = Math.min(4, size - 4 * g);
    for (let j = 0; j < end; j++) {
      const v = x[4 * g + j]! * (c[j]! < thresh ? 0 : scale);
      // the masked value in float32 first, as the kernel adds it: the same bits
      y[4 * g + j] = accumulate ? y[4 * g + j]! + Math.fround(v) : v;
    }
  }
  commit(out, dtype, y);
}
