// CPU optimizer kernels, the twins of native/cuda/optim.cu: the global gradient norm with its clip
// coefficient, and the AdamW step over many tensors (PyTorch semantics). Both work in place on
// storage, outside autograd.

import { ADAMW_STATE_WORDS, type AdamWHyper, type AdamWState, type AdamWTensor, type FloatSpan } from '../backend.ts';
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

function readAdamWState(s: CpuStorage): AdamWState {
  const w = s as Int32Array;
  const [lr, step, beta1, beta2, eps, weightDecay] = new Float64Array(w.buffer.slice(w.byteOffset, w.byteOffset + 4 * ADAMW_STATE_WORDS));
  return { lr: lr!, step: step!, beta1: beta1!, beta2: beta2!, eps: eps!, weightDecay: weightDecay! };
}

/** Decoupled weight decay's factor, 1 - lr * wd (the same for every tensor of a step). */
export function adamwDecay(h: AdamWHyper): number {
  return 1 - h.lr * h.weightDecay;
}

/**
 * b^t for an integer t >= 0 by squaring, in float64: the same sequence of correctly rounded products
 * as optim.cu's powi, so both sides get the same bits (Math.pow and CUDA's pow need not agree).
 */
export function powi(b: number, t: number): number {
  let r = 1;
  for (let x = b; t > 0; t = Math.floor(t / 2), x *= x) if (t % 2 === 1) r *= x;
  return r;
}

/**
 * A tensor's bias-correction terms at its step t: stepSize = lr / (1 - b1^t), bc2Sqrt = sqrt(1 -
 * b2^t), in float64 (optim.cu computes the same float64 values from the step state, then rounds
 * them to float32).
 */
export function adamwBiasTerms(h: AdamWHyper, step: number): { stepSize: number; bc2Sqrt: number } {
  return { stepSize: h.lr / (1 - powi(h.beta1, step)), bc2Sqrt: Math.sqrt(1 - powi(h.beta2, step)) };
}

export function adamwStep(tensors: readonly AdamWTensor<CpuStorage>[], stateS: CpuStorage, gradScaleS: CpuStorage | null): void {
  const st = readAdamWState(stateS);
  const s = gradScaleS === null ? 1 : (gradScaleS as Float32Array)[0]!;
  for (const t of tensors) adamwTensor(t, st, st.step - t.stepLag, s);
}

function adamwTensor(t: AdamWTensor<CpuStorage>, h: AdamWHyper, step: number, s: number): void {
  const p = f32Of(t.param, t.dtypes.param); // in place when float32, else decoded and committed
  const g = f32Of(t.grad, t.dtypes.grad);
  const m = f32Of(t.expAvg, t.dtypes.expAvg);
  const v = f32Of(t.expAvgSq, t.dtypes.expAvgSq);
  // torch.optim.AdamW (foreach=False): p *= 1 - lr*wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
  // p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
  const decay = adamwDecay(h);
  const { stepSize, bc2Sqrt } = adamwBiasTerms(h, step);
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
