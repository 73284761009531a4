// cast(x, dtype): convert elements (floats round to nearest even); the gradient casts back.
// castCopy(x, dtype): the same values without autograd, cached with x's storage until x is written.

import { isFloatDType, type DType } from '../dtype.ts';
import { recordOp } from '../autograd.ts';
import { dropCasts } from '../engine.ts';
import { Tensor } from '../tensor.ts';
import { empty, castRaw } from './util.ts';

/**
 * x cast to `dtype` (no autograd), kept with x's storage and made again only after x was written
 * in place (its version moved: assign, the in-place helpers, the optimizer step, through any
 * handle), so weights that change once per optimizer step are cast once per step, not per use.
 * adamwStep refreshes the copy in the same kernel as the step. Returns a handle of the caller's
 * own (dispose it as usual); the cached copy itself is freed with x's storage. A copy still held
 * elsewhere (saved by a pending backward) is never overwritten: a stale one is replaced by a new one.
 */
export function castCopy(x: Tensor, dtype: DType): Tensor {
  if (x.dtype === dtype) return x._share();
  const ref = x._live();
  ref.casts ??= new Map();
  let c = ref.casts.get(dtype);
  if (c && c.version !== ref.version) {
    if (c.copy._live().refs === 1) {
      x.backend.cast(ref.storage, x.dtype, c.copy.storage, dtype, x.size); // only the cache holds it: refresh in place
      c.version = ref.version;
    } else {
      c.copy.dispose();
      ref.casts.delete(dtype);
      c = undefined;
    }
  }
  if (!c) {
    const copy = Tensor._allocUninit(x.shape, dtype, x.device, false); // owned by the cache, outside any scope
    x.backend.cast(ref.storage, x.dtype, copy.storage, dtype, x.size);
    c = { version: ref.version, copy };
    ref.casts.set(dtype, c);
  }
  return c.copy._share();
}

/** Drop x's cached cast copies: the next castCopy makes them again (after work queued but never run). */
export function dropCastCopies(x: Tensor): void {
  dropCasts(x._live());
}

export function cast(x: Tensor, dtype: DType): Tensor {
  const out = empty(x.shape, dtype, x.device);
  x.backend.cast(x.storage, x.dtype, out.storage, dtype, x.size);
  if (!isFloatDType(x.dtype) || !isFloatDType(dtype)) return out;
  return recordOp('cast', out, [x], [], (_s, dy) => [castRaw(dy, x.dtype)]);
}
