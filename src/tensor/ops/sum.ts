// sum(x, dim?, keepDim?): sum over all elements (default), one dim, or several dims.
// Also sumToShape, the reduction that undoes broadcasting (used by the broadcasting ops' backward).

import { recordOp } from '../autograd.ts';
import { normDim, sizeOf } from '../shape.ts';
import { Tensor } from '../tensor.ts';
import { expand } from './expand.ts';
import { checkFloat, empty } from './util.ts';

/** Sum `x` over the dims flagged in `reduce` (keeping them as size 1), merging adjacent runs. */
function reduceDims(x: Tensor, reduce: readonly boolean[]): Tensor {
  const dtype = checkFloat('sum', 'x', x);
  let cur = x;
  let shape = [...x.shape];
  for (let d = 0; d < shape.length; ) {
    if (!reduce[d] || shape[d] === 1) {
      d++;
      continue;
    }
    let e = d;
    while (e < shape.length && reduce[e]) e++;
    // view as [outer, mid, inner] with mid = dims d..e-1
    const outer = sizeOf(shape.slice(0, d));
    const mid = sizeOf(shape.slice(d, e));
    const inner = sizeOf(shape.slice(e));
    const nextShape = shape.map((n, i) => (i >= d && i < e ? 1 : n));
    const next = empty(nextShape, dtype, x.device);
    cur.backend.reduceSum(cur.storage, next.storage, outer, mid, inner, dtype);
    if (cur !== x) cur.dispose();
    cur = next;
    shape = nextShape;
    d = e;
  }
  return cur === x ? x._share() : cur;
}

/** Sum a broadcast result `g` back down to `shape` (leading dims dropped, size-1 dims summed). */
export function sumToShape(g: Tensor, shape: readonly number[]): Tensor {
  const off = g.shape.length - shape.length;
  const reduce = g.shape.map((n, i) => i < off || (shape[i - off] === 1 && n !== 1));
  const r = reduceDims(g, reduce);
  const out = r._share(shape);
  r.dispose();
  return out;
}

export function sum(x: Tensor, dim?: number | readonly number[], keepDim = false): Tensor {
  const rank = x.shape.length;
  const dims = dim === undefined ? [...Array(rank).keys()] : (typeof dim === 'number' ? [dim] : dim).map((d) => normDim('sum', d, rank));
  const reduce = x.shape.map((_, i) => dims.includes(i));
  const kept = reduceDims(x, reduce);
  const keptShape = kept.shape;
  const outShape = keepDim ? keptShape : x.shape.filter((_, i) => !reduce[i]);
  const out = kept._share(outShape);
  kept.dispose();
  return recordOp('sum', out, [x], [], (_s, dy) => [expand(dy._share(keptShape), x.shape)]);
}
