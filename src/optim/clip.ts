// Gradient clipping by global norm, as torch.nn.utils.clip_grad_norm_ (norm_type 2): the norm of
// all gradients together; when it exceeds max_norm every gradient is scaled in place by
// max_norm / (norm + 1e-6). Returns the norm before clipping (what XTuner logs as grad_norm).
// Non-finite norms are returned as they are (XTuner sets error_if_nonfinite=False).

import { XtunerError } from '../errors.ts';
import { zeros, type Tensor } from '../tensor/index.ts';

/** Global L2 norm of the gradients of `params` (parameters without a gradient are skipped). */
export function gradNorm(params: Iterable<Tensor>): number {
  const grads = [...params].map((p) => p.grad).filter((g): g is Tensor => g !== null);
  if (grads.length === 0) return 0;
  let sum = 0;
  // one float32 slot per gradient, per device, so the squares need one read per device
  for (const device of new Set(grads.map((g) => g.device))) {
    const here = grads.filter((g) => g.device === device);
    const out = zeros([here.length], { device });
    try {
      here.forEach((g, i) => g.backend.sumOfSquares(g.storage, g.size, g.floatDtype, out.storage, i));
      for (const v of out.toFloat32Array()) sum += v;
    } finally {
      out.dispose();
    }
  }
  return Math.sqrt(sum);
}

/** Clips gradients to a global norm of `maxNorm`; returns the norm before clipping. */
export function clipGradNorm(params: Iterable<Tensor>, maxNorm: number): number {
  if (!(maxNorm > 0)) throw new XtunerError(`max_norm must be > 0, got ${maxNorm}`);
  const list = [...params];
  const norm = gradNorm(list);
  const coef = maxNorm / (norm + 1e-6);
  if (coef < 1) {
    for (const p of list) {
      const g = p.grad;
      if (g) g.backend.scale(g.storage, g.storage, g.size, coef, g.floatDtype);
    }
  }
  return norm;
}
