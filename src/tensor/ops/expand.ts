// expand(x, shape): broadcast x to `shape` (numpy rules), materialised; the gradient sums back.

import { XtunerError } from '../../errors.ts';
import { recordOp } from '../autograd.ts';
import { broadcastShapes, broadcastStrides, fmt, sameShape, stridesOf } from '../shape.ts';
import { Tensor } from '../tensor.ts';
import { sumToShape } from './sum.ts';
import { empty } from './util.ts';

export function expand(x: Tensor, shape: readonly number[]): Tensor {
  if (!sameShape(broadcastShapes('expand', x.shape, shape), shape)) {
    throw new XtunerError(`expand: ${fmt(x.shape)} does not broadcast to ${fmt(shape)}`);
  }
  const out = empty(shape, x.dtype, x.device);
  x.backend.copyStrided(x.storage, 0, broadcastStrides(x.shape, shape), out.storage, 0, stridesOf(shape), shape, x.dtype);
  return recordOp('expand', out, [x], [], (_s, dy) => [sumToShape(dy, x.shape)]);
}
