// scale(x, s) = s * x for a number s, or for a float32 single-element tensor s on x's device whose
// value the kernel reads there (a per-step factor that must not be a launch constant, e.g. the
// loss's 1 / targets in a captured step). s is a constant: no gradient flows to it.

import { XtunerError } from '../../errors.ts';
import { recordOp } from '../autograd.ts';
import { fmt } from '../shape.ts';
import type { Tensor } from '../tensor.ts';
import { checkDevice, checkFloat, empty } from './util.ts';

export function scale(x: Tensor, s: number | Tensor): Tensor {
  const dtype = checkFloat('scale', 'x', x);
  if (typeof s === 'number') {
    const out = empty(x.shape, dtype, x.device);
    x.backend.scale(x.storage, out.storage, x.size, s, dtype, null);
    return recordOp('scale', out, [x], [], (_s, dy) => [scale(dy, s)]);
  }
  checkDevice('scale', x, s);
  if (s.dtype !== 'float32' || s.size !== 1) throw new XtunerError(`scale: a tensor scale must be float32 with one element, got ${s.dtype} ${fmt(s.shape)}`);
  const out = empty(x.shape, dtype, x.device);
  x.backend.scale(x.storage, out.storage, x.size, 1, dtype, s.storage);
  // s is saved: the caller may let it go before the backward
  return recordOp('scale', out, [x], [s], ([by], dy) => [scale(dy, by!)]);
}
