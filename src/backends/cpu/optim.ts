// CPU optimizer kernels: the AdamW step (PyTorch semantics) and sums of squares for the global
// gradient norm. Both work in place on storage, outside autograd.

import type { AdamWHyper } from '../backend.ts';
import type { FloatDType } from '../../tensor/dtype.ts';
import { commit, f32Of, type CpuStorage } from './storage.ts';

export function adamwUpdate(
  paramS: CpuStorage, gradS: CpuStorage, mS: CpuStorage, vS: CpuStorage, size: number,
  dtypes: { param: FloatDType; grad: FloatDType; expAvg: FloatDType; expAvgSq: FloatDType },
  h: AdamWHyper,
): void {
  const p = f32Of(paramS, dtypes.param); // in place when float32, else decoded and committed
  const g = f32Of(gradS, dtypes.grad);
  const m = f32Of(mS, dtypes.expAvg);
  const v = f32Of(vS, dtypes.expAvgSq);
  // torch.optim.AdamW (foreach=False): p *= 1 - lr*wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
  // p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
  const decay = 1 - h.lr * h.weightDecay;
  const stepSize = h.lr / (1 - h.beta1 ** h.step);
  const bc2Sqrt = Math.sqrt(1 - h.beta2 ** h.step);
  const b1 = h.beta1;
  const b2 = h.beta2;
  for (let i = 0; i < size; i++) {
    const gi = g[i]!;
    const mi = b1 * m[i]! + (1 - b1) * gi;
    const vi = b2 * v[i]! + (1 - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i]! * decay - (stepSize * mi) / (Math.sqrt(vi) / bc2Sqrt + h.eps);
  }
  commit(paramS, dtypes.param, p);
  commit(mS, dtypes.expAvg, m);
  commit(vS, dtypes.expAvgSq, v);
}

export function sumOfSquares(xS: CpuStorage, size: number, dtype: FloatDType, outS: CpuStorage, outIndex: number): void {
  const x = f32Of(xS, dtype);
  let s = 0;
  for (let i = 0; i < size; i++) s += x[i]! * x[i]!;
  (outS as Float32Array)[outIndex] = s;
}
