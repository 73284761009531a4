// The shared forward/backward of pointwise functions y = f(x): the kernel computes f, and
// dx = dy * f'(x) from the saved input.

import type { UnaryOp } from '../../backends/index.ts';
import { recordOp } from '../autograd.ts';
import type { Tensor } from '../tensor.ts';
import { checkFloat, empty } from './util.ts';

export function unaryOp(op: UnaryOp, x: Tensor): Tensor {
  const dtype = checkFloat(op, 'x', x);
  const out = empty(x.shape, dtype, x.device);
  x.backend.unary(op, x.storage, out.storage, x.size, dtype);
  return recordOp(op, out, [x], [x], ([sx], dy) => {
    const dx = empty(x.shape, dtype, x.device);
    dy.backend.unaryBackward(op, sx!.storage, dy.storage, dx.storage, x.size, dtype);
    return [dx];
  });
}
