// The shared forward of the broadcasting elementwise ops (add, sub, mul, div): numpy broadcasting,
// float dtype promotion, one kernel call. Each op's file holds its own backward.

import type { BinaryOp } from '../../backends/index.ts';
import { recordOp, type BackwardFn } from '../autograd.ts';
import { broadcastShapes, broadcastStrides } from '../shape.ts';
import type { Tensor } from '../tensor.ts';
import { cast } from './cast.ts';
import { checkDevice, checkFloat, empty, promote } from './util.ts';

export function binaryOp(op: BinaryOp, a: Tensor, b: Tensor, save: 'none' | 'inputs', backward: BackwardFn): Tensor {
  const device = checkDevice(op, a, b);
  const dtype = promote(checkFloat(op, 'a', a), checkFloat(op, 'b', b));
  // mixed dtypes: compute in the promoted one; the casts carry the gradients back
  const a2 = a.dtype === dtype ? a : cast(a, dtype);
  const b2 = b.dtype === dtype ? b : cast(b, dtype);
  const shape = broadcastShapes(op, a.shape, b.shape);
  const out = empty(shape, dtype, device);
  a.backend.binary(op, a2.storage, broadcastStrides(a.shape, shape), b2.storage, broadcastStrides(b.shape, shape), out.storage, shape, dtype);
  recordOp(op, out, [a2, b2], save === 'inputs' ? [a2, b2] : [], backward);
  if (a2 !== a) a2.dispose();
  if (b2 !== b) b2.dispose();
  return out;
}
