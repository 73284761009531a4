// silu(x) = x * sigmoid(x).

import type { Tensor } from '../tensor.ts';
import { unaryOp } from './unary.ts';

export function silu(x: Tensor): Tensor {
  return unaryOp('silu', x);
}
