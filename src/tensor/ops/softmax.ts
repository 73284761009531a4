// softmax(x, dim = -1) over the last axis.

import { XtunerError } from '../../errors.ts';
import { recordOp } from '../autograd.ts';
import { normDim } from '../shape.ts';
import type { Tensor } from '../tensor.ts';
import { checkFloat, empty } from './util.ts';

export function softmax(x: Tensor, dim = -1): Tensor {
  const dtype = checkFloat('softmax', 'x', x);
  const rank = Math.max(1, x.shape.length);
  if (normDim('softmax', dim, rank) !== rank - 1) throw new XtunerError('softmax: only the last dim is supported; transpose first');
  const cols = x.shape[rank - 1] ?? 1;
  const rows = cols === 0 ? 0 : x.size / cols;
  const out = empty(x.shape, dtype, x.device);
  x.backend.softmax(x.storage, out.storage, rows, cols, dtype);
  return recordOp('softmax', out, [x], [out], ([y], dy) => {
    const dx = empty(x.shape, dtype, x.device);
    dy.backend.softmaxBackward(y!.storage, dy.storage, dx.storage, rows, cols, dtype);
    return [dx];
  });
}
