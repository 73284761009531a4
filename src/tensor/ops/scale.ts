// scale(x, s) = s * x for a number s.

import { recordOp } from '../autograd.ts';
import type { Tensor } from '../tensor.ts';
import { checkFloat, empty } from './util.ts';

export function scale(x: Tensor, s: number): Tensor {
  const dtype = checkFloat('scale', 'x', x);
  const out = empty(x.shape, dtype, x.device);
  x.backend.scale(x.storage, out.storage, x.size, s, dtype, null);
  return recordOp('scale', out, [x], [], (_s, dy) => [scale(dy, s)]);
}
