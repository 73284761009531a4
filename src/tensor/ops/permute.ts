// permute(x, dims): reorder axes (a contiguous copy). transpose.ts swaps two of them.

import { XtunerError } from '../../errors.ts';
import { recordOp } from '../autograd.ts';
import { fmt, normDim, stridesOf } from '../shape.ts';
import { Tensor } from '../tensor.ts';
import { empty } from './util.ts';

export function permute(x: Tensor, dims: readonly number[]): Tensor {
  const rank = x.shape.length;
  const perm = dims.map((d) => normDim('permute', d, rank));
  if (perm.length !== rank || new Set(perm).size !== rank) {
    throw new XtunerError(`permute: ${fmt(dims)} is not a permutation of the ${rank} dims of ${fmt(x.shape)}`);
  }
  const src = stridesOf(x.shape);
  const outShape = perm.map((d) => x.shape[d]!);
  const out = empty(outShape, x.dtype, x.device);
  x.backend.copyStrided(x.storage, 0, perm.map((d) => src[d]!), out.storage, 0, stridesOf(outShape), outShape, x.dtype);
  const inverse = new Array<number>(rank);
  perm.forEach((d, i) => (inverse[d] = i));
  return recordOp('permute', out, [x], [], (_s, dy) => [permute(dy, inverse)]);
}
