// div(a, b) = a / b elementwise with numpy broadcasting.

import type { Tensor } from '../tensor.ts';
import { binaryOp } from './binary.ts';
import { mul } from './mul.ts';
import { scale } from './scale.ts';
import { sumToShape } from './sum.ts';

export function div(a: Tensor, b: Tensor): Tensor {
  return binaryOp('div', a, b, 'inputs', ([sa, sb], dy, needs) => [
    needs[0] ? sumToShape(div(dy, sb!), a.shape) : null,
    // d(a/b)/db = -a / b^2
    needs[1] ? sumToShape(scale(div(mul(dy, sa!), mul(sb!, sb!)), -1), b.shape) : null,
  ]);
}
