// CPU RMSNorm and LayerNorm over the last axis, forward and backward. Statistics are accumulated
// in float64 and saved as float32 per row (rstd, and mean for LayerNorm) for the backward.

import type { FloatDType } from '../../tensor/dtype.ts';
import { commit, f32Of, f32Out, type CpuStorage } from './storage.ts';

export function rmsNorm(
  xS: CpuStorage, wS: CpuStorage, out: CpuStorage, rstdS: CpuStorage,
  rows: number, cols: number, eps: number, dtype: FloatDType, wDtype: FloatDType,
): void {
  const x = f32Of(xS, dtype); // [rows, cols]
  const w = f32Of(wS, wDtype); // [cols]
  const y = f32Out(out, dtype, rows * cols);
  const rstd = rstdS as Float32Array; // [rows]
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    let ss = 0;
    for (let c = 0; c < cols; c++) ss += x[base + c]! * x[base + c]!;
    const rs = 1 / Math.sqrt(ss / cols + eps);
    rstd[r] = rs;
    for (let c = 0; c < cols; c++) y[base + c] = w[c]! * (x[base + c]! * rs);
  }
  commit(out, dtype, y);
}

export function rmsNormBackward(
  xS: CpuStorage, wS: CpuStorage, rstdS: CpuStorage, dyS: CpuStorage, dxS: CpuStorage, dwS: CpuStorage | null,
  rows: number, cols: number, dtype: FloatDType, wDtype: FloatDType, accumulate = false,
): void {
  const x = f32Of(xS, dtype);
  const w = f32Of(wS, wDtype);
  const dy = f32Of(dyS, dtype);
  const dx = accumulate ? f32Of(dxS, dtype) : f32Out(dxS, dtype, rows * cols);
  const rstd = rstdS as Float32Array;
  const dw = dwS === null ? null : new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    const rs = rstd[r]!;
    // dot = mean_c (dy * w) * xhat
    let dot = 0;
    for (let c = 0; c < cols; c++) dot += dy[base + c]! * w[c]! * x[base + c]!;
    const k = (dot * rs * rs) / cols;
    for (let c = 0; c < cols; c++) dx[base + c] = (accumulate ? dx[base + c]! : 0) + rs * (dy[base + c]! * w[c]! - x[base + c]! * k);
    if (dw) for (let c = 0; c < cols; c++) dw[c]! += dy[base + c]! * x[base + c]! * rs;
  }
  commit(dxS, dtype, dx);
  if (dw && dwS) {
    const acc = dwS as Float32Array;
    for (let c = 0; c < cols; c++) acc[c] = dw[c]!;
  }
}

export function layerNorm(
  xS: CpuStorage, wS: CpuStorage, bS: CpuStorage | null, out: CpuStorage, meanS: CpuStorage, rstdS: CpuStorage,
  rows: number, cols: number, eps: number, dtype: FloatDType, wDtype: FloatDType,
): void {
  const x = f32Of(xS, dtype); // [rows, cols]
  const w = f32Of(wS, wDtype);
  const b = bS === null ? null : f32Of(bS, wDtype);
  const y = f32Out(out, dtype, rows * cols);
  const mean = meanS as Float32Array;
  const rstd = rstdS as Float32Array;
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    let s = 0;
    for (let c = 0; c < cols; c++) s += x[base + c]!;
    const mu = s / cols;
    let v = 0;
    for (let c = 0; c < cols; c++) v += (x[base + c]! - mu) * (x[base + c]! - mu);
    const rs = 1 / Math.sqrt(v / cols + eps);
    mean[r] = mu;
    rstd[r] = rs;
    for (let c = 0; c < cols; c++) y[base + c] = (x[base + c]! - mu) * rs * w[c]! + (b ? b[c]! : 0);
  }
  commit(out, dtype, y);
}

export function layerNormBackward(
  xS: CpuStorage, wS: CpuStorage, meanS: CpuStorage, rstdS: CpuStorage, dyS: CpuStorage, dxS: CpuStorage,
  dwS: CpuStorage | null, dbS: CpuStorage | null, rows: number, cols: number, dtype: FloatDType, wDtype: FloatDType,
): void {
  const x = f32Of(xS, dtype);
  const w = f32Of(wS, wDtype);
  const dy = f32Of(dyS, dtype);
  const dx = f32Out(dxS, dtype, rows * cols);
  const mean = meanS as Float32Array;
  const rstd = rstdS as Float32Array;
  const dw = dwS === null ? null : new Float64Array(cols);
  const db = dbS === null ? null : new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    const mu = mean[r]!;
    const rs = rstd[r]!;
    // g = dy * w; dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
    let sg = 0;
    let sgx = 0;
    for (let c = 0; c < cols; c++) {
      const g = dy[base + c]! * w[c]!;
      sg += g;
      sgx += g * (x[base + c]! - mu) * rs;
    }
    sg /= cols;
    sgx /= cols;
    for (let c = 0; c < cols; c++) {
      const xhat = (x[base + c]! - mu) * rs;
      dx[base + c] = rs * (dy[base + c]! * w[c]! - sg - xhat * sgx);
      if (dw) dw[c]! += dy[base + c]! * xhat;
      if (db) db[c]! += dy[base + c]!;
    }
  }
  commit(dxS, dtype, dx);
  if (dw && dwS) for (let c = 0; c < cols; c++) (dwS as Float32Array)[c] = dw[c]!;
  if (db && dbS) for (let c = 0; c < cols; c++) (dbS as Float32Array)[c] = db[c]!;
}
