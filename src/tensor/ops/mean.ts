// mean(x, dim?, keepDim?): sum divided by the number of elements summed; gradients through sum.

import { normDim } from '../shape.ts';
import type { Tensor } from '../tensor.ts';
import { scale } from './scale.ts';
import { sum } from './sum.ts';

export function mean(x: Tensor, dim?: number | readonly number[], keepDim = false): Tensor {
  const rank = x.shape.length;
  const dims = dim === undefined ? [...Array(rank).keys()] : (typeof dim === 'number' ? [dim] : dim).map((d) => normDim('mean', d, rank));
  const count = [...new Set(dims)].reduce((n, d) => n * x.shape[d]!, 1);
  const s = sum(x, dims, keepDim);
  const out = scale(s, 1 / count);
  s.dispose();
  return out;
}
