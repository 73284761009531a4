// concat(xs, dim): join tensors along `dim` (other dims equal). The gradient slices dy back.

import { XtunerError } from '../../errors.ts';
import { recordOp } from '../autograd.ts';
import { fmt, normDim, stridesOf } from '../shape.ts';
import { Tensor } from '../tensor.ts';
import { checkDevice, empty } from './util.ts';
import { slice } from './slice.ts';

export function concat(xs: readonly Tensor[], dim: number): Tensor {
  if (xs.length === 0) throw new XtunerError('concat: no tensors');
  const first = xs[0]!;
  const rank = first.shape.length;
  const d = normDim('concat', dim, rank);
  checkDevice('concat', ...xs);
  let total = 0;
  for (const x of xs) {
    if (x.dtype !== first.dtype) throw new XtunerError(`concat: dtypes differ (${first.dtype}, ${x.dtype})`);
    if (x.shape.length !== rank || x.shape.some((n, i) => i !== d && n !== first.shape[i])) {
      throw new XtunerError(`concat: shapes ${fmt(first.shape)} and ${fmt(x.shape)} differ outside dim ${d}`);
    }
    total += x.shape[d]!;
  }
  const outShape = [...first.shape];
  outShape[d] = total;
  const out = empty(outShape, first.dtype, first.device);
  const outStrides = stridesOf(outShape);
  const starts: number[] = [];
  let at = 0;
  for (const x of xs) {
    starts.push(at);
    x.backend.copyStrided(x.storage, 0, stridesOf(x.shape), out.storage, at * outStrides[d]!, outStrides, x.shape, x.dtype);
    at += x.shape[d]!;
  }
  return recordOp('concat', out, xs, [], (_s, dy, needs) =>
    xs.map((x, i) => (needs[i] ? slice(dy, d, starts[i]!, starts[i]! + x.shape[d]!) : null)),
  );
}
