// embedding(w[V, H], ids int32[...]) -> [..., H]: row lookup. The gradient scatter-adds rows of dy
// into a float32 [V, H] buffer (then cast to w's dtype).

import { XtunerError } from '../../errors.ts';
import { recordOp } from '../autograd.ts';
import { tensor } from '../create.ts';
import { fmt } from '../shape.ts';
import type { Tensor } from '../tensor.ts';
import { cast } from './cast.ts';
import { checkFloat, empty, castRaw } from './util.ts';

/** ids as an int32 tensor on w's device, every id checked to lie in [0, V). */
function checkedIds(op: string, ids: Tensor | Int32Array | readonly number[], V: number, device: Tensor['device']): { ids: Tensor; owned: boolean } {
  let t: Tensor;
  let owned = true;
  if (ids instanceof Int32Array || Array.isArray(ids)) t = tensor(ids instanceof Int32Array ? ids : Int32Array.from(ids as number[]), undefined, { device });
  else if ((ids as Tensor).dtype === 'int32') {
    t = ids as Tensor;
    owned = false;
  } else if ((ids as Tensor).dtype === 'int64') t = cast(ids as Tensor, 'int32');
  else throw new XtunerError(`${op}: ids must be int32 (or int64), got ${(ids as Tensor).dtype}`);
  const host = t.toInt32Array();
  for (let i = 0; i < host.length; i++) {
    const id = host[i]!;
    if (id < 0 || id >= V) {
      if (owned) t.dispose();
      throw new XtunerError(`${op}: id ${id} at position ${i} is outside the vocabulary [0, ${V})`);
    }
  }
  return { ids: t, owned };
}

export function embedding(w: Tensor, idsIn: Tensor | Int32Array | readonly number[]): Tensor {
  const dtype = checkFloat('embedding', 'w', w);
  if (w.shape.length !== 2) throw new XtunerError(`embedding: weight must be [V, H], got ${fmt(w.shape)}`);
  const [V, H] = w.shape as [number, number];
  const { ids, owned } = checkedIds('embedding', idsIn, V, w.device);
  const n = ids.size;
  const out = empty([...ids.shape, H], dtype, w.device);
  w.backend.embedding(w.storage, ids.storage, out.storage, n, H, dtype);
  recordOp('embedding', out, [w], [ids], ([sids], dy) => {
    const dw = empty([V, H], 'float32', w.device);
    const dy32 = castRaw(dy, 'float32');
    dy.backend.embeddingBackward(dy32.storage, sids!.storage, dw.storage, n, H, 'float32');
    return [castRaw(dw, dtype)];
  });
  if (owned) ids.dispose();
  return out;
}
