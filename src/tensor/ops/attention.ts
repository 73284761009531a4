// attention(q[B, Tq, Hq, D], k[B, Tk, Hkv, D], v[B, Tk, Hkv, D], opts) -> [B, Tq, Hq, D]:
// softmax(scale * q k^T) v per head, fused (the kernel never holds more than a block of score
// rows). GQA: Hq a multiple of Hkv. Causal masks align bottom-right, so Tq < Tk is decoding with a
// KV cache. cuSeqlens [0, ..., B*T] cuts the flattened token axis into independent samples
// (packed rows): no token attends across a cut.

import { XtunerError } from '../../errors.ts';
import { isRecording, recordOp } from '../autograd.ts';
import { fmt } from '../shape.ts';
import type { Tensor } from '../tensor.ts';
import { checkDevice, checkFloat, checkRank, empty } from './util.ts';

export interface AttentionOptions {
  causal?: boolean;
  /** Default 1 / sqrt(D). */
  scale?: number;
  cuSeqlens?: Int32Array | null;
  /**
   * The same boundaries already on q's device (int32 [capacity >= cuSeqlens.length], padded with
   * B*T), e.g. uploaded once per training step with the step's other inputs: the CUDA backend then
   * copies nothing per call and sizes its grids by the capacity. Its values are not read back to
   * be checked against cuSeqlens (that would wait on the device).
   */
  cuSeqlensOnDevice?: Tensor;
  /**
   * int32 [1] on q's device: k and v are a KV cache of Tk rows (a capacity) filled to this length,
   * read where the kernel runs, so a captured decoding step replays at any length; causal masks
   * align at it. No cuSeqlens; no backward (decoding).
   */
  kvLength?: Tensor;
}

function checkCuSeqlens(cu: Int32Array, total: number): void {
  const bad = (why: string): never => {
    throw new XtunerError(`attention: cuSeqlens ${why} (got [${[...cu.slice(0, 8)].join(', ')}${cu.length > 8 ? ', ...' : ''}])`);
  };
  if (cu.length < 2 || cu[0] !== 0) bad('must start with 0 and have at least two entries');
  if (cu[cu.length - 1] !== total) bad(`must end at B*T = ${total}`);
  for (let i = 1; i < cu.length; i++) if (cu[i]! < cu[i - 1]!) bad('must be non-decreasing');
}

export function attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  const device = checkDevice('attention', q, k, v);
  const dtype = checkFloat('attention', 'q', q);
  checkRank('attention', 'q', q, 4, '[B, Tq, Hq, D]');
  checkRank('attention', 'k', k, 4, '[B, Tk, Hkv, D]');
  const [B, Tq, Hq, D] = q.shape as [number, number, number, number];
  const [Bk, Tk, Hkv, Dk] = k.shape as [number, number, number, number];
  if (Bk !== B || Dk !== D || fmt(v.shape) !== fmt(k.shape) || Hkv === 0 || Hq % Hkv !== 0) {
    throw new XtunerError(`attention: q ${fmt(q.shape)}, k ${fmt(k.shape)}, v ${fmt(v.shape)} do not fit (need k = v = [B, Tk, Hkv, D], Hq a multiple of Hkv)`);
  }
  if (k.dtype !== dtype || v.dtype !== dtype) throw new XtunerError(`attention: q, k, v dtypes differ (${q.dtype}, ${k.dtype}, ${v.dtype})`);
  const causal = opts.causal ?? false;
  if (causal && Tq > Tk) throw new XtunerError(`attention: causal needs Tq <= Tk, got Tq = ${Tq}, Tk = ${Tk}`);
  const cuSeqlens = opts.cuSeqlens ?? null;
  if (cuSeqlens) {
    if (Tq !== Tk) throw new XtunerError(`attention: cuSeqlens needs Tq == Tk, got ${Tq} and ${Tk}`);
    checkCuSeqlens(cuSeqlens, B * Tq);
  }
  const cuDev = opts.cuSeqlensOnDevice;
  if (cuDev) {
    if (!cuSeqlens) throw new XtunerError('attention: cuSeqlensOnDevice needs cuSeqlens (the host copy, checked here)');
    if (cuDev.dtype !== 'int32' || cuDev.device !== device || cuDev.shape.length !== 1 || cuDev.shape[0]! < cuSeqlens.length) {
      throw new XtunerError(`attention: cuSeqlensOnDevice must be int32 [>= ${cuSeqlens.length}] on ${device}, got ${cuDev.dtype} ${fmt(cuDev.shape)} on ${cuDev.device}`);
    }
  }
  const kvLength = opts.kvLength;
  if (kvLength) {
    if (kvLength.dtype !== 'int32' || kvLength.device !== device || fmt(kvLength.shape) !== '[1]') {
      throw new XtunerError(`attention: kvLength must be int32 [1] on ${device}, got ${kvLength.dtype} ${fmt(kvLength.shape)} on ${kvLength.device}`);
    }
    if (cuSeqlens) throw new XtunerError('attention: kvLength and cuSeqlens do not go together');
    if (isRecording([q, k, v])) throw new XtunerError('attention: kvLength is for decoding, without gradients (run it under noGrad)');
  }
  const shape = { B, Tq, Tk, Hq, Hkv, D, scale: opts.scale ?? 1 / Math.sqrt(D), causal, cuSeqlens, dtype };
  const onDevice = (t: Tensor | undefined) => (t ? { storage: t.storage, length: t.shape[0]! } : null);
  const out = empty(q.shape, dtype, device);
  const lse = empty([B, Hq, Tq], 'float32', device);
  const be = q.backend;
  be.attention({ ...shape, cuSeqlensOnDevice: onDevice(cuDev), kvLength: kvLength?.storage ?? null, q: q.storage, k: k.storage, v: v.storage, out: out.storage, lse: lse.storage });
  // the device cuSeqlens is saved too: the backward reads it after the caller may have let it go
  recordOp('attention', out, [q, k, v], [q, k, v, out, lse, ...(cuDev ? [cuDev] : [])], ([sq, sk, sv, so, sl, sc], dy) => {
    const dq = empty(q.shape, dtype, device);
    const dk = empty(k.shape, dtype, device);
    const dv = empty(v.shape, dtype, device);
    be.attentionBackward({
      ...shape,
      cuSeqlensOnDevice: onDevice(sc),
      q: sq!.storage, k: sk!.storage, v: sv!.storage, out: so!.storage, dout: dy.storage, lse: sl!.storage,
      dq: dq.storage, dk: dk.storage, dv: dv.storage,
    });
    return [dq, dk, dv];
  });
  lse.dispose();
  return out;
}
