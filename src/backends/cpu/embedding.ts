// CPU embedding lookup (row gather) and its backward (row scatter-add into a float32 grad).

import type { FloatDType } from '../../tensor/dtype.ts';
import type { CpuStorage } from './storage.ts';

export function embedding(wS: CpuStorage, idsS: CpuStorage, out: CpuStorage, n: number, H: number, _dtype: FloatDType): void {
  // rows move as raw elements, so bf16/f16 bits are copied unchanged
  const w = wS as Float32Array; // [V, H]
  const ids = idsS as Int32Array; // [n]
  const o = out as Float32Array; // [n, H]
  for (let i = 0; i < n; i++) {
    const src = ids[i]! * H;
    o.set(w.subarray(src, src + H), i * H);
  }
}

export function embeddingBackward(dyS: CpuStorage, idsS: CpuStorage, dwS: CpuStorage, n: number, H: number, dtype: FloatDType): void {
  const dy = dtype === 'float32' ? (dyS as Float32Array) : null;
  const ids = idsS as Int32Array;
  const dw = dwS as Float32Array; // [V, H] float32
  if (dy === null) throw new Error(`embeddingBackward: dy must be float32 on the CPU, got ${dtype}`);
  dw.fill(0);
  for (let i = 0; i < n; i++) {
    const dst = ids[i]! * H;
    const src = i * H;
    for (let h = 0; h < H; h++) dw[dst + h]! += dy[src + h]!;
  }
}
