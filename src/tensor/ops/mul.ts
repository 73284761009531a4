// mul(a, b) = a * b elementwise with numpy broadcasting.

import type { Tensor } from '../tensor.ts';
import { binaryOp } from './binary.ts';
import { sumToShape } from './sum.ts';

export function mul(a: Tensor, b: Tensor): Tensor {
  return binaryOp('mul', a, b, 'inputs', ([sa, sb], dy, needs) => [
    needs[0] ? sumToShape(mul(dy, sb!), a.shape) : null,
    needs[1] ? sumToShape(mul(dy, sa!), b.shape) : null,
  ]);
}
