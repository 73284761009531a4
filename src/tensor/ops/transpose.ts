// transpose(x, d0, d1): swap two axes (a contiguous copy).

import { normDim } from '../shape.ts';
import type { Tensor } from '../tensor.ts';
import { permute } from './permute.ts';

export function transpose(x: Tensor, d0: number, d1: number): Tensor {
  const rank = x.shape.length;
  const dims = [...Array(rank).keys()];
  const a = normDim('transpose', d0, rank);
  const b = normDim('transpose', d1, rank);
  [dims[a], dims[b]] = [dims[b]!, dims[a]!];
  return permute(x, dims);
}
