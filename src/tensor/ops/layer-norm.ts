// layerNorm(x[..., H], w[H], b[H] | null, eps) = (x - mean) / sqrt(var + eps) * w + b, fused.

import { XtunerError } from '../../errors.ts';
import { recordOp } from '../autograd.ts';
import { fmt } from '../shape.ts';
import type { Tensor } from '../tensor.ts';
import { checkDevice, checkFloat, empty, castRaw } from './util.ts';

export function layerNorm(x: Tensor, w: Tensor, b: Tensor | null, eps: number): Tensor {
  const device = checkDevice('layerNorm', x, w, b);
  const dtype = checkFloat('layerNorm', 'x', x);
  const wDtype = checkFloat('layerNorm', 'w', w);
  const H = x.shape[x.shape.length - 1];
  if (H === undefined || w.shape.length !== 1 || w.shape[0] !== H || (b && (b.shape.length !== 1 || b.shape[0] !== H))) {
    throw new XtunerError(`layerNorm: x ${fmt(x.shape)} needs weight and bias [${H}], got ${fmt(w.shape)}${b ? ` and ${fmt(b.shape)}` : ''}`);
  }
  const bb = b ? castRaw(b, wDtype) : null;
  const rows = x.size / H;
  const out = empty(x.shape, dtype, device);
  const mean = empty([rows], 'float32', device);
  const rstd = empty([rows], 'float32', device);
  x.backend.layerNorm(x.storage, w.storage, bb?.storage ?? null, out.storage, mean.storage, rstd.storage, rows, H, eps, dtype, wDtype);
  if (bb && bb !== b) bb.dispose();
  recordOp('layerNorm', out, [x, w, b], [x, w, mean, rstd], ([sx, sw, sm, sr], dy, needs) => {
    const dx = empty(x.shape, dtype, device);
    const dw = needs[1] ? empty([H], 'float32', device) : null;
    const db = needs[2] ? empty([H], 'float32', device) : null;
    dy.backend.layerNormBackward(
      sx!.storage, sw!.storage, sm!.storage, sr!.storage, dy.storage, dx.storage,
      dw?.storage ?? null, db?.storage ?? null, rows, H, dtype, wDtype,
    );
    return [needs[0] ? dx : null, dw ? castRaw(dw, wDtype) : null, db && b ? castRaw(db, b.dtype) : null];
  });
  mean.dispose();
  rstd.dispose();
  return out;
}
