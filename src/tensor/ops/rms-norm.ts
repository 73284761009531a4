// rmsNorm(x[..., H], w[H], eps) = x / sqrt(mean(x^2) + eps) * w (Llama's RMSNorm), fused.

import { XtunerError } from '../../errors.ts';
import { recordOp } from '../autograd.ts';
import { fmt } from '../shape.ts';
import type { Tensor } from '../tensor.ts';
import { checkDevice, checkFloat, empty, castRaw, gatheredOr } from './util.ts';

export function rmsNorm(x: Tensor, w: Tensor, eps: number): Tensor {
  const device = checkDevice('rmsNorm', x, w);
  const dtype = checkFloat('rmsNorm', 'x', x);
  const wDtype = checkFloat('rmsNorm', 'w', w);
  const H = x.shape[x.shape.length - 1];
  if (H === undefined || w.shape.length !== 1 || w.shape[0] !== H) {
    throw new XtunerError(`rmsNorm: x ${fmt(x.shape)} needs a weight [${H}], got ${fmt(w.shape)}`);
  }
  const rows = x.size / H;
  const out = empty(x.shape, dtype, device);
  const rstd = empty([rows], 'float32', device);
  x.backend.rmsNorm(x.storage, w.storage, out.storage, rstd.storage, rows, H, eps, dtype, wDtype);
  recordOp('rmsNorm', out, [x, w], [x, w, rstd], ([sx, sw, sr], dy, needs, into) => {
    // dx is added into x's gradient where one is gathered (the residual stream's, from the add after the layer)
    const dx = gatheredOr(into[0], x); // into[0] is null where x needs no gradient
    const dw = needs[1] ? empty([H], 'float32', device) : null;
    dy.backend.rmsNormBackward(sx!.storage, sw!.storage, sr!.storage, dy.storage, dx.storage, dw?.storage ?? null, rows, H, dtype, wDtype, dx === into[0]);
    return [needs[0] ? dx : null, dw ? castRaw(dw, wDtype) : null];
  });
  rstd.dispose();
  return out;
}
