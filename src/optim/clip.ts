// Gradient clipping by global norm, as torch.nn.utils.clip_grad_norm_ (norm_type 2): the norm of
// all gradients together; when it exceeds max_norm every gradient is scaled in place by
// max_norm / (norm + 1e-6). Returns the norm before clipping (what XTuner logs as grad_norm).
// Non-finite norms are returned as they are (XTuner sets error_if_nonfinite=False).

import { XtunerError } from '../errors.ts';
import { scaleInPlace, sumOfSquares, type Tensor } from '../tensor/index.ts';

/** Global L2 norm of the gradients of `params` (parameters without a gradient are skipped). */
export function gradNorm(params: Iterable<Tensor>): number {
  const grads = [...params].map((p) => p.grad).filter((g): g is Tensor => g !== null);
  let sum = 0;
  // one read per device for all the squares there
  for (const device of new Set(grads.map((g) => g.device))) sum += sumOfSquares(grads.filter((g) => g.device === device));
  return Math.sqrt(sum);
}

/** Clips gradients to a global norm of `maxNorm`; returns the norm before clipping. */
export function clipGradNorm(params: Iterable<Tensor>, maxNorm: number): number {
  if (!(maxNorm > 0)) throw new XtunerError(`max_norm must be > 0, got ${maxNorm}`);
  const list = [...params];
  const norm = gradNorm(list);
  const coef = maxNorm / (norm + 1e-6);
  if (coef < 1) for (const p of list) if (p.grad) scaleInPlace(p.grad, coef);
  return norm;
}
