// CPU cross-entropy over logits [N, V] with int32 labels [N]: per-row loss, and, when asked, the
// gradient (softmax - onehot) * gradScale from the same pass, so each logit costs one exp.

import type { FloatDType } from '../../tensor/dtype.ts';
import { commit, f32Of, f32Out, type CpuStorage } from './storage.ts';

export function crossEntropy(
  logitsS: CpuStorage, labelsS: CpuStorage, lossS: CpuStorage, dS: CpuStorage | null,
  N: number, V: number, ignoreIndex: number, gradScale: number, dtype: FloatDType,
): void {
  const x = f32Of(logitsS, dtype); // [N, V]
  const labels = labelsS as Int32Array; // [N]
  const loss = lossS as Float32Array; // [N]
  const d = dS === null ? null : f32Out(dS, dtype, N * V); // [N, V]
  for (let i = 0; i < N; i++) {
    const base = i * V;
    const y = labels[i]!;
    if (y === ignoreIndex) {
      loss[i] = 0;
      d?.fill(0, base, base + V);
      continue;
    }
    let max = -Infinity;
    for (let c = 0; c < V; c++) if (x[base + c]! > max) max = x[base + c]!;
    let sum = 0;
    if (d) {
      for (let c = 0; c < V; c++) {
        const e = Math.exp(x[base + c]! - max);
        d[base + c] = e;
        sum += e;
      }
      const k = gradScale / sum;
      for (let c = 0; c < V; c++) d[base + c]! *= k;
      d[base + y]! -= gradScale;
    } else {
      for (let c = 0; c < V; c++) sum += Math.exp(x[base + c]! - max);
    }
    loss[i] = max + Math.log(sum) - x[base + y]!;
  }
  if (d && dS) commit(dS, dtype, d);
}
