// dropout(x, p, { rng, training }): zero each element with probability p and scale the rest by
// 1/(1-p) while training; identity (x itself) otherwise. The mask comes from a seedable Rng, so a
// resumed run reproduces it.

import { XtunerError } from '../../errors.ts';
import { defaultRng, tensor } from '../create.ts';
import type { Rng } from '../rng.ts';
import type { Tensor } from '../tensor.ts';
import { mul } from './mul.ts';

export function dropout(x: Tensor, p: number, opts: { rng?: Rng; training?: boolean } = {}): Tensor {
  if (!(p >= 0 && p < 1)) throw new XtunerError(`dropout: p must be in [0, 1), got ${p}`);
  if (opts.training === false || p === 0) return x;
  const rng = opts.rng ?? defaultRng;
  const keep = 1 / (1 - p);
  const m = new Float32Array(x.size);
  for (let i = 0; i < m.length; i++) m[i] = rng.uniform() < p ? 0 : keep;
  const mask = tensor(m, x.shape, { device: x.device, dtype: x.dtype });
  const out = mul(x, mask);
  mask.dispose();
  return out;
}
