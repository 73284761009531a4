// CPU cross-entropy over logits [N, V] with int32 labels [N]: per-row loss and log-sum-exp forward,
// and the gradient written straight into dlogits from the saved lse (no softmax copy).

import type { FloatDType } from '../../tensor/dtype.ts';
import { commit, f32Of, f32Out, type CpuStorage } from './storage.ts';

export function crossEntropy(
  logitsS: CpuStorage, labelsS: CpuStorage, lossS: CpuStorage, lseS: CpuStorage,
  N: number, V: number, ignoreIndex: number, dtype: FloatDType,
): void {
  const x = f32Of(logitsS, dtype); // [N, V]
  const labels = labelsS as Int32Array; // [N]
  const loss = lossS as Float32Array; // [N]
  const lse = lseS as Float32Array; // [N]
  for (let i = 0; i < N; i++) {
    const base = i * V;
    let max = -Infinity;
    for (let c = 0; c < V; c++) if (x[base + c]! > max) max = x[base + c]!;
    let sum = 0;
    for (let c = 0; c < V; c++) sum += Math.exp(x[base + c]! - max);
    const l = max + Math.log(sum);
    lse[i] = l;
    const y = labels[i]!;
    loss[i] = y === ignoreIndex ? 0 : l - x[base + y]!;
  }
}

export function crossEntropyBackward(
  logitsS: CpuStorage, labelsS: CpuStorage, lseS: CpuStorage, dS: CpuStorage,
  N: number, V: number, ignoreIndex: number, gradScale: number, dtype: FloatDType,
): void {
  const x = f32Of(logitsS, dtype);
  const labels = labelsS as Int32Array;
  const lse = lseS as Float32Array;
  const d = f32Out(dS, dtype, N * V);
  for (let i = 0; i < N; i++) {
    const base = i * V;
    const y = labels[i]!;
    if (y === ignoreIndex) {
      d.fill(0, base, base + V);
      continue;
    }
    const l = lse[i]!;
    for (let c = 0; c < V; c++) d[base + c] = Math.exp(x[base + c]! - l) * gradScale;
    d[base + y]! -= gradScale;
  }
  commit(dS, dtype, d);
}
