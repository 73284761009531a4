// Gradient clipping by global norm, as torch.nn.utils.clip_grad_norm_ (norm_type 2): the norm of
// all gradients together; above max_norm every gradient is scaled by max_norm / (norm + 1e-6).
// Two ways to apply it: clipCoefficient leaves the norm and the coefficient on the device for
// AdamW.step to multiply the gradients by (the trainer's path: no read-back, no pass over the
// gradients of its own); clipGradNorm scales the gradients in place and returns the norm before
// clipping (PyTorch's function; one read-back). Non-finite norms (XTuner sets
// error_if_nonfinite=False): NaN leaves the gradients unscaled, +inf scales them by 0.

import { XtunerError } from '../errors.ts';
import { gradNormClip, readScalars, scaleInPlace, type Tensor } from '../tensor/index.ts';

/** The gradients of `params` (parameters without one are skipped) and the device they are on. */
function gradsOf(params: Iterable<Tensor>): { grads: Tensor[]; device: Tensor['device'] } {
  const list = [...params];
  const devices = new Set(list.map((p) => p.device));
  if (devices.size > 1) throw new XtunerError(`gradient clipping: parameters on several devices (${[...devices].join(', ')})`);
  return { grads: list.map((p) => p.grad).filter((g): g is Tensor => g !== null), device: list[0]?.device ?? 'cpu' };
}

/**
 * The global norm of the gradients and the clip coefficient min(1, maxNorm / (norm + 1e-6)), as
 * float32 [1] tensors on the parameters' device (the caller disposes them); nothing is read back.
 */
export function clipCoefficient(params: Iterable<Tensor>, maxNorm: number): { norm: Tensor; coef: Tensor } {
  if (!(maxNorm > 0)) throw new XtunerError(`max_norm must be > 0, got ${maxNorm}`);
  const { grads, device } = gradsOf(params);
  return gradNormClip(grads, maxNorm, device);
}

/** Global L2 norm of the gradients of `params` (parameters without a gradient are skipped). */
export function gradNorm(params: Iterable<Tensor>): number {
  const { grads, device } = gradsOf(params);
  const { norm, coef } = gradNormClip(grads, Infinity, device);
  const value = norm.item();
  norm.dispose();
  coef.dispose();
  return value;
}

/** Clips gradients in place to a global norm of `maxNorm`; returns the norm before clipping. */
export function clipGradNorm(params: Iterable<Tensor>, maxNorm: number): number {
  const list = [...params];
  const { norm, coef } = clipCoefficient(list, maxNorm);
  const [n, c] = readScalars([norm, coef]);
  norm.dispose();
  coef.dispose();
  if (c! < 1) for (const p of list) if (p.grad) scaleInPlace(p.grad, c!);
  return n!;
}
