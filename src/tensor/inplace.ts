// In-place updates outside autograd, for optimizers, loading and merging: assign, the fused
// AdamW step, sums of squares for the global gradient norm, scale/add/fill in place.

import type { AdamWHyper } from '../backends/index.ts';
import { XtunerError } from '../errors.ts';
import { empty } from './ops/util.ts';
import { fmt, sameShape } from './shape.ts';
import type { Tensor } from './tensor.ts';
import type { HostArray } from './dtype.ts';

/** Copy src (a tensor of the same size, any dtype, or host data) into dst. */
export function assign(dst: Tensor, src: Tensor | HostArray): Tensor {
  return dst.assign(src);
}

function checkSame(op: string, a: Tensor, b: Tensor, nameA: string, nameB: string): void {
  if (!sameShape(a.shape, b.shape) || a.device !== b.device) {
    throw new XtunerError(`${op}: ${nameB} ${fmt(b.shape)} on ${b.device} must match ${nameA} ${fmt(a.shape)} on ${a.device}`);
  }
}

/**
 * One AdamW step in place, torch.optim.AdamW semantics: param *= 1 - lr*weightDecay; moments
 * updated from grad; param -= lr/(1-beta1^step) * expAvg / (sqrt(expAvgSq)/sqrt(1-beta2^step) + eps).
 * `step` counts from 1.
 */
export function adamwUpdate(param: Tensor, grad: Tensor, expAvg: Tensor, expAvgSq: Tensor, hyper: AdamWHyper): void {
  checkSame('adamwUpdate', param, grad, 'param', 'grad');
  checkSame('adamwUpdate', param, expAvg, 'param', 'expAvg');
  checkSame('adamwUpdate', param, expAvgSq, 'param', 'expAvgSq');
  if (!(hyper.step >= 1)) throw new XtunerError(`adamwUpdate: step counts from 1, got ${hyper.step}`);
  param.backend.adamwUpdate(
    param.storage, grad.storage, expAvg.storage, expAvgSq.storage, param.size,
    { param: param.floatDtype, grad: grad.floatDtype, expAvg: expAvg.floatDtype, expAvgSq: expAvgSq.floatDtype },
    hyper,
  );
}

/** Sum of squares of all elements of all tensors (one device read for the lot). */
export function sumOfSquares(ts: Tensor | readonly Tensor[]): number {
  const list = Array.isArray(ts) ? (ts as readonly Tensor[]) : [ts as Tensor];
  if (list.length === 0) return 0;
  const out = empty([list.length], 'float32', list[0]!.device);
  list.forEach((t, i) => t.backend.sumOfSquares(t.storage, t.size, t.floatDtype, out.storage, i));
  const parts = out.toFloat32Array();
  out.dispose();
  let s = 0;
  for (const p of parts) s += p;
  return s;
}

/** t *= s in place. */
export function scaleInPlace(t: Tensor, s: number): Tensor {
  t.backend.scale(t.storage, t.storage, t.size, s, t.floatDtype);
  return t;
}

/** dst += alpha * src in place (same shape). */
export function addInPlace(dst: Tensor, src: Tensor, alpha = 1): Tensor {
  checkSame('addInPlace', dst, src, 'dst', 'src');
  let s = src;
  if (src.dtype !== dst.dtype) {
    s = empty(src.shape, dst.dtype, src.device);
    src.backend.cast(src.storage, src.dtype, s.storage, dst.dtype, src.size);
  }
  dst.backend.axpy(s.storage, dst.storage, dst.size, alpha, dst.floatDtype);
  if (s !== src) s.dispose();
  return dst;
}

/** Every element of t set to value, in place. */
export function fillInPlace(t: Tensor, value: number): Tensor {
  t.backend.fill(t.storage, t.dtype, 0, t.size, value);
  return t;
}
