// slice(x, dim, start, end): elements [start, end) along `dim` (Python-style negative indices,
// clamped); a copy. The gradient scatters dy into zeros.

import { recordOp } from '../autograd.ts';
import { normDim, stridesOf } from '../shape.ts';
import { Tensor } from '../tensor.ts';
import { empty, zeroed } from './util.ts';

function clampIndex(i: number, n: number): number {
  const j = i < 0 ? i + n : i;
  return Math.min(Math.max(j, 0), n);
}

export function slice(x: Tensor, dim: number, start: number, end: number = x.shape[normDim('slice', dim, x.shape.length)]!): Tensor {
  const d = normDim('slice', dim, x.shape.length);
  const n = x.shape[d]!;
  const s = clampIndex(start, n);
  const e = Math.max(s, clampIndex(end, n));
  const outShape = [...x.shape];
  outShape[d] = e - s;
  const strides = stridesOf(x.shape);
  const out = empty(outShape, x.dtype, x.device);
  const outStrides = stridesOf(outShape);
  x.backend.copyStrided(x.storage, s * strides[d]!, strides, out.storage, 0, outStrides, outShape, x.dtype);
  return recordOp('slice', out, [x], [], (_s, dy) => {
    const dx = zeroed(x.shape, dy.dtype, dy.device); // only the slice's part is written
    dy.backend.copyStrided(dy.storage, 0, outStrides, dx.storage, s * strides[d]!, strides, outShape, dy.dtype);
    return [dx];
  });
}
