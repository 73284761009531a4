// cast(x, dtype): convert elements (floats round to nearest even); the gradient casts back.

import { isFloatDType, type DType } from '../dtype.ts';
import { recordOp } from '../autograd.ts';
import { Tensor } from '../tensor.ts';
import { empty, castRaw } from './util.ts';

export function cast(x: Tensor, dtype: DType): Tensor {
  const out = empty(x.shape, dtype, x.device);
  x.backend.cast(x.storage, x.dtype, out.storage, dtype, x.size);
  if (!isFloatDType(x.dtype) || !isFloatDType(dtype)) return out;
  return recordOp('cast', out, [x], [], (_s, dy) => [castRaw(dy, x.dtype)]);
}
