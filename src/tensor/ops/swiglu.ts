// swiglu(gate, up) = silu(gate) * up, fused (one pass forward, one backward).

import { XtunerError } from '../../errors.ts';
import { recordOp } from '../autograd.ts';
import { fmt, sameShape } from '../shape.ts';
import type { Tensor } from '../tensor.ts';
import { checkDevice, checkFloat, empty } from './util.ts';

export function swiglu(gate: Tensor, up: Tensor): Tensor {
  const device = checkDevice('swiglu', gate, up);
  const dtype = checkFloat('swiglu', 'gate', gate);
  if (up.dtype !== dtype || !sameShape(gate.shape, up.shape)) {
    throw new XtunerError(`swiglu: gate ${fmt(gate.shape)} ${gate.dtype} and up ${fmt(up.shape)} ${up.dtype} must match`);
  }
  const out = empty(gate.shape, dtype, device);
  gate.backend.swiglu(gate.storage, up.storage, out.storage, gate.size, dtype);
  return recordOp('swiglu', out, [gate, up], [gate, up], ([g, u], dy) => {
    const dg = empty(gate.shape, dtype, device);
    const du = empty(up.shape, dtype, device);
    dy.backend.swigluBackward(g!.storage, u!.storage, dy.storage, dg.storage, du.storage, gate.size, dtype);
    return [dg, du];
  });
}
