// dropout(x, p, { rng, training }): zero each element with probability p and scale the rest by
// 1/(1-p) while training; identity (x itself) otherwise. Each call draws one 64-bit seed from a
// seedable Rng (so a resumed run reproduces its masks); the mask is a pure function of that seed
// and the element index (the backends' counter-based `dropout` kernel), computed on the tensor's
// device and regenerated in the backward, never stored or sent from the host.

import { XtunerError } from '../../errors.ts';
import { recordOp } from '../autograd.ts';
import { defaultRng } from '../create.ts';
import type { Rng } from '../rng.ts';
import type { Tensor } from '../tensor.ts';
import { checkFloat, empty } from './util.ts';

/** One call's 64-bit mask seed, two words from `rng` (so a saved Rng state replays every mask). */
export function drawDropoutSeed(rng: Rng): [number, number] {
  const seed0 = rng.nextUint32();
  return [seed0, rng.nextUint32()];
}

export function dropout(x: Tensor, p: number, opts: { rng?: Rng; training?: boolean } = {}): Tensor {
  if (!(p >= 0 && p < 1)) throw new XtunerError(`dropout: p must be in [0, 1), got ${p}`);
  if (opts.training === false || p === 0) return x;
  const dtype = checkFloat('dropout', 'x', x);
  const [seed0, seed1] = drawDropoutSeed(opts.rng ?? defaultRng);
  const out = empty(x.shape, dtype, x.device);
  x.backend.dropout(x.storage, out.storage, x.size, p, seed0, seed1, dtype);
  return recordOp('dropout', out, [x], [], (_saved, dy) => {
    const dx = empty(dy.shape, dy.floatDtype, dy.device);
    dy.backend.dropout(dy.storage, dx.storage, dy.size, p, seed0, seed1, dy.floatDtype);
    return [dx];
  });
}
