// CPU optimizer kernels, the twins of native/cuda/optim.cu: the global gradient norm with its clip
// coefficient, and the AdamW step over many tensors (PyTorch semantics). Both work in place on
// storage, outside autograd.

import type { AdamWHyper, AdamWTensor, FloatSpan } from '../backend.ts';
import { cast } from './elementwise.ts';
import { commit, f32Of, type CpuStorage } from './storage.ts';

/** torch.nn.utils.clip_grad_norm_'s guard against a zero norm: coef = maxNorm / (norm + 1e-6). */
export const CLIP_EPS = 1e-6;

export function gradNormClip(xs: readonly FloatSpan<CpuStorage>[], maxNorm: number, normS: CpuStorage, coefS: CpuStorage): void {
  let sum = 0; // float64 over every element of every tensor
  for (const { x, size, dtype } of xs) {
    const v = f32Of(x, dtype);
    for (let i = 0; i < size; i++) sum += v[i]! * v[i]!;
  }
  const norm = Math.fround(Math.sqrt(sum));
  // float32 arithmetic, as the CUDA kernel does it from the same float32 norm
  const c = Math.fround(Math.fround(maxNorm) / Math.fround(norm + Math.fround(CLIP_EPS)));
  (normS as Float32Array)[0] = norm;
  (coefS as Float32Array)[0] = c < 1 ? c : 1; // NaN: 1 (left unclipped)
}

/** Decoupled weight decay's factor, 1 - lr * wd (the same for every tensor of a step). */
export function adamwDecay(h: AdamWHyper): number {
  return 1 - h.lr * h.weightDecay;
}

/**
 * A tensor's bias-correction terms at its step t: stepSize = lr / (1 - b1^t), bc2Sqrt = sqrt(1 -
 * b2^t), in float64 (the CUDA launcher passes them on as float32).
 */
export function adamwBiasTerms(h: AdamWHyper, step: number): { stepSize: number; bc2Sqrt: number } {
  return { stepSize: h.lr / (1 - h.beta1 ** step), bc2Sqrt: Math.sqrt(1 - h.beta2 ** step) };
}

export function adamwStep(tensors: readonly AdamWTensor<CpuStorage>[], h: AdamWHyper, gradScaleS: CpuStorage | null): void {
  const s = gradScaleS === null ? 1 : (gradScaleS as Float32Array)[0]!;
  for (const t of tensors) adamwTensor(t, h, s);
}

function adamwTensor(t: AdamWTensor<CpuStorage>, h: AdamWHyper, s: number): void {
  const p = f32Of(t.param, t.dtypes.param); // in place when float32, else decoded and committed
  const g = f32Of(t.grad, t.dtypes.grad);
  const m = f32Of(t.expAvg, t.dtypes.expAvg);
  const v = f32Of(t.expAvgSq, t.dtypes.expAvgSq);
  // torch.optim.AdamW (foreach=False): p *= 1 - lr*wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
  // p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
  const decay = adamwDecay(h);
  const { stepSize, bc2Sqrt } = adamwBiasTerms(h, t.step);
  const b1 = h.beta1;
  const b2 = h.beta2;
  for (let i = 0; i < t.size; i++) {
    // the scaled gradient rounded to float32, as clipping in place used to leave a float32 grad
    const gi = Math.fround(g[i]! * s);
    const mi = b1 * m[i]! + (1 - b1) * gi;
    const vi = b2 * v[i]! + (1 - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i]! * decay - (stepSize * mi) / (Math.sqrt(vi) / bc2Sqrt + h.eps);
  }
  commit(t.param, t.dtypes.param, p);
  if (t.copy) cast(t.param, t.dtypes.param, t.copy.to, t.copy.dtype, t.size);
  commit(t.expAvg, t.dtypes.expAvg, m);
  commit(t.expAvgSq, t.dtypes.expAvgSq, v);
}
