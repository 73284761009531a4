// rope(x[B, T, nH, D], cos, sin) = x * cos + rotate_half(x) * sin, Hugging Face's convention
// (rotate_half([x1, x2]) = [-x2, x1] over the two halves of D). cos/sin are [B, T, D] as the
// caller computed them for its position ids, or [1, T, D] / [T, D] shared by the batch. No
// gradient flows to cos/sin.

import { XtunerError } from '../../errors.ts';
import { recordOp } from '../autograd.ts';
import { fmt } from '../shape.ts';
import type { Tensor } from '../tensor.ts';
import { checkDevice, checkFloat, checkRank, empty, castRaw } from './util.ts';

export function rope(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
  const device = checkDevice('rope', x, cos, sin);
  const dtype = checkFloat('rope', 'x', x);
  checkRank('rope', 'x', x, 4, '[B, T, nH, D]');
  const [B, T, H, D] = x.shape as [number, number, number, number];
  const cs = cos.shape;
  const csB = cs.length === 3 ? cs[0]! : 1;
  const ok = (cs.length === 3 || cs.length === 2) && (csB === B || csB === 1) && cs[cs.length - 2] === T && cs[cs.length - 1] === D;
  if (!ok || fmt(sin.shape) !== fmt(cs) || D % 2 !== 0) {
    throw new XtunerError(`rope: x ${fmt(x.shape)} needs cos/sin [${B}, ${T}, ${D}] (or [1|T, ...]) and even D, got ${fmt(cs)} and ${fmt(sin.shape)}`);
  }
  const csStride = csB === 1 ? 0 : T * D;
  const c = castRaw(cos, dtype);
  const s = castRaw(sin, dtype);
  const out = empty(x.shape, dtype, device);
  x.backend.rope(x.storage, c.storage, s.storage, out.storage, B, T, H, D, csStride, false, dtype);
  recordOp('rope', out, [x], [c, s], ([sc, ss], dy) => {
    const dx = empty(x.shape, dtype, device);
    dy.backend.rope(dy.storage, sc!.storage, ss!.storage, dx.storage, B, T, H, D, csStride, true, dtype);
    return [dx];
  });
  if (c !== cos) c.dispose();
  if (s !== sin) s.dispose();
  return out;
}
