// CPU softmax over the last axis and its backward. Max-subtracted, float64 row sums.

import type { FloatDType } from '../../tensor/dtype.ts';
import { commit, f32Of, f32Out, type CpuStorage } from './storage.ts';

export function softmax(xS: CpuStorage, out: CpuStorage, rows: number, cols: number, dtype: FloatDType): void {
  const x = f32Of(xS, dtype); // [rows, cols]
  const y = f32Out(out, dtype, rows * cols);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    let max = -Infinity;
    for (let c = 0; c < cols; c++) if (x[base + c]! > max) max = x[base + c]!;
    let sum = 0;
    for (let c = 0; c < cols; c++) {
      const e = Math.exp(x[base + c]! - max);
      y[base + c] = e;
      sum += e;
    }
    const inv = 1 / sum;
    for (let c = 0; c < cols; c++) y[base + c]! *= inv;
  }
  commit(out, dtype, y);
}

export function softmaxBackward(yS: CpuStorage, dyS: CpuStorage, dxS: CpuStorage, rows: number, cols: number, dtype: FloatDType): void {
  const y = f32Of(yS, dtype);
  const dy = f32Of(dyS, dtype);
  const dx = f32Out(dxS, dtype, rows * cols);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    let dot = 0;
    for (let c = 0; c < cols; c++) dot += dy[base + c]! * y[base + c]!;
    for (let c = 0; c < cols; c++) dx[base + c] = y[base + c]! * (dy[base + c]! - dot);
  }
  commit(dxS, dtype, dx);
}
