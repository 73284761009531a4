// sub(a, b) = a - b with numpy broadcasting.

import type { Tensor } from '../tensor.ts';
import { binaryOp } from './binary.ts';
import { scale } from './scale.ts';
import { sumToShape } from './sum.ts';

export function sub(a: Tensor, b: Tensor): Tensor {
  return binaryOp('sub', a, b, 'none', (_s, dy, needs) => [
    needs[0] ? sumToShape(dy, a.shape) : null,
    needs[1] ? sumToShape(scale(dy, -1), b.shape) : null,
  ]);
}
