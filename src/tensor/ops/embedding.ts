// embedding(w[V, H], ids int32[...]) -> [..., H]: row lookup. The gradient scatter-adds rows of dy
// into a float32 [V, H] buffer (then cast to w's dtype). Ids from the host (an Int32Array or
// number[], 1-D, or { data, shape }) are checked there before the upload, so a training step
// reads nothing back here. Ids already in a device tensor are checked by reading them back (one
// host wait on CUDA): the error must name the bad id and its position when the op is called, and
// nothing in the training path passes device ids alone: CausalLM passes host ids, with `onDevice`
// the same ids already uploaded with the step's other inputs (checked from `data`, not copied).

import { XtunerError } from '../../errors.ts';
import { recordOp } from '../autograd.ts';
import { tensor } from '../create.ts';
import { fmt, sizeOf } from '../shape.ts';
import { Tensor } from '../tensor.ts';
import { cast } from './cast.ts';
import { checkFloat, empty, castRaw } from './util.ts';

/** Ids on the host with their shape (row-major), e.g. [B, T]. */
export interface HostIds {
  data: Int32Array;
  shape: readonly number[];
  /** The same ids already on the weight's device (int32, `shape`), used instead of an upload. */
  onDevice?: Tensor;
}

export type EmbeddingIds = Tensor | Int32Array | readonly number[] | HostIds;

function checkRange(op: string, host: Int32Array, V: number): void {
  for (let i = 0; i < host.length; i++) {
    const id = host[i]!;
    if (id < 0 || id >= V) throw new XtunerError(`${op}: id ${id} at position ${i} is outside the vocabulary [0, ${V})`);
  }
}

/** ids as an int32 tensor on w's device, every id checked to lie in [0, V). */
function checkedIds(op: string, ids: EmbeddingIds, V: number, device: Tensor['device']): { ids: Tensor; owned: boolean } {
  if (!(ids instanceof Tensor)) {
    const host = ids instanceof Int32Array ? { data: ids, shape: [ids.length] } : Array.isArray(ids) ? { data: Int32Array.from(ids as number[]), shape: [ids.length] } : (ids as HostIds);
    if (sizeOf(host.shape) !== host.data.length) throw new XtunerError(`${op}: ids shape ${fmt(host.shape)} does not match ${host.data.length} values`);
    checkRange(op, host.data, V); // before the upload: no read-back
    const dev = host.onDevice;
    if (dev) {
      if (dev.dtype !== 'int32' || dev.device !== device || fmt(dev.shape) !== fmt(host.shape)) {
        throw new XtunerError(`${op}: ids onDevice must be int32 ${fmt(host.shape)} on ${device}, got ${dev.dtype} ${fmt(dev.shape)} on ${dev.device}`);
      }
      return { ids: dev, owned: false };
    }
    return { ids: tensor(host.data, host.shape, { device, dtype: 'int32' }), owned: true };
  }
  let t: Tensor;
  let owned = true;
  if (ids.dtype === 'int32') {
    t = ids;
    owned = false;
  } else if (ids.dtype === 'int64') t = cast(ids, 'int32');
  else throw new XtunerError(`${op}: ids must be int32 (or int64), got ${ids.dtype}`);
  try {
    checkRange(op, t.toInt32Array(), V); // the read-back a device tensor needs (see the header)
  } catch (e) {
    if (owned) t.dispose();
    throw e;
  }
  return { ids: t, owned };
}

export function embedding(w: Tensor, idsIn: EmbeddingIds): Tensor {
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
