// reshape(x, shape): the same storage seen with another shape (one dim may be -1).

import { XtunerError } from '../../errors.ts';
import { recordOp } from '../autograd.ts';
import { fmt, sizeOf } from '../shape.ts';
import { Tensor } from '../tensor.ts';

export function resolveShape(op: string, size: number, shape: readonly number[]): number[] {
  const free = shape.indexOf(-1);
  const out = [...shape];
  if (free >= 0) {
    const known = sizeOf(shape.filter((_, i) => i !== free));
    if (known === 0 || size % known !== 0) throw new XtunerError(`${op}: cannot infer -1 in ${fmt(shape)} for ${size} elements`);
    out[free] = size / known;
  }
  if (out.some((d) => !Number.isInteger(d) || d < 0) || sizeOf(out) !== size) {
    throw new XtunerError(`${op}: shape ${fmt(shape)} does not hold ${size} elements`);
  }
  return out;
}

export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const out = x._share(resolveShape('reshape', x.size, shape));
  return recordOp('reshape', out, [x], [], (_s, dy) => [dy._share(x.shape)]);
}
