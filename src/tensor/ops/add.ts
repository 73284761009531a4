// add(a, b) = a + b with numpy broadcasting.

import type { Tensor } from '../tensor.ts';
import { binaryOp } from './binary.ts';
import { sumToShape } from './sum.ts';

export function add(a: Tensor, b: Tensor): Tensor {
  return binaryOp('add', a, b, 'none', (_s, dy, needs) => [
    needs[0] ? sumToShape(dy, a.shape) : null,
    needs[1] ? sumToShape(dy, b.shape) : null,
  ]);
}
