// quickGelu(x) = x * sigmoid(1.702 x) (CLIP's activation).

import type { Tensor } from '../tensor.ts';
import { unaryOp } from './unary.ts';

export function quickGelu(x: Tensor): Tensor {
  return unaryOp('quickGelu', x);
}
