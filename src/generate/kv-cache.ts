// Preallocated key/value cache for decoding: per layer, one device tensor [B, maxLen, nKv, D] for
// keys and one for values, allocated once. A step's position and the length after it sit in a
// two-int buffer on the device, written once per step (begin); each layer copies its keys and
// values in at that position and attention reads the length there, over the whole cache. So the
// device work of a step does not depend on the position, and one captured decoding step replays
// at every position (./decode-graph.ts). A cache kept for a conversation that outgrows it moves its
// keys and values into a larger one (resized), one device copy per tensor.
// Not here: sampling (./sampling.ts), the decoding loop (./decode.ts).

import { XtunerError } from '../errors.ts';
import { cast, keep, zeros, type DType, type Device, type Tensor } from '../tensor/index.ts';
import type { KvCache } from '../models/decoder.ts';
import type { DecodeGraph } from './decode-graph.ts';

export interface KvCacheShape {
  numLayers: number;
  batch: number;
  maxLen: number;
  numKvHeads: number;
  headDim: number;
}

export class PreallocatedKvCache implements KvCache {
  readonly #shape: KvCacheShape;
  readonly #keys: Tensor[];
  readonly #values: Tensor[];
  /** int32 [position of the step, length after it] on the device. */
  readonly #at: Tensor;
  #length = 0;
  /** The CUDA graph of a decoding step over this cache (made by the model that decodes); freed with the cache. */
  decodeGraph: DecodeGraph | null = null;

  constructor(shape: KvCacheShape, dtype: DType = 'float32', device: Device = 'cpu') {
    this.#shape = shape;
    const full = [shape.batch, shape.maxLen, shape.numKvHeads, shape.headDim]; // [B, maxLen, nKv, D]
    const made: Tensor[] = [];
    const make = (s: number[], dt: DType): Tensor => {
      const t = keep(zeros(s, { dtype: dt, device }));
      made.push(t);
      return t;
    };
    try {
      this.#keys = Array.from({ length: shape.numLayers }, () => make(full, dtype));
      this.#values = Array.from({ length: shape.numLayers }, () => make(full, dtype));
      this.#at = make([2], 'int32');
    } catch (e) {
      for (const t of made) t.dispose(); // out of memory part way: nothing is left held
      throw e;
    }
  }

  get length(): number {
    return this.#length;
  }

  get capacity(): number {
    return this.#shape.maxLen;
  }

  truncate(length: number): void {
    if (!(Number.isInteger(length) && length >= 0 && length <= this.#length)) throw new XtunerError(`KV cache: cannot truncate ${this.#length} positions to ${length}`);
    this.#length = length;
  }

  resized(capacity: number): PreallocatedKvCache {
    if (!(Number.isInteger(capacity) && capacity >= this.#length)) throw new XtunerError(`KV cache: cannot hold its ${this.#length} positions in ${capacity}`);
    const keys = this.#keys[0]!;
    const next = new PreallocatedKvCache({ ...this.#shape, maxLen: capacity }, keys.dtype, keys.device);
    const { batch: b, maxLen, numKvHeads: h, headDim: d } = this.#shape;
    const row = h * d;
    const copy = (src: Tensor, dst: Tensor) => {
      // [B, length, nKv, D] of [B, maxLen, nKv, D] into [B, capacity, nKv, D]
      if (this.#length > 0) src.backend.copyStrided(src.storage, 0, [maxLen * row, row, d, 1], dst.storage, 0, [capacity * row, row, d, 1], [b, this.#length, h, d], src.dtype);
    };
    this.#keys.forEach((k, i) => copy(k, next.#keys[i]!));
    this.#values.forEach((v, i) => copy(v, next.#values[i]!));
    next.#length = this.#length;
    return next;
  }

  begin(t: number): number {
    const at = this.#length;
    if (at + t > this.#shape.maxLen) throw new XtunerError(`KV cache full: ${at} + ${t} positions exceed its ${this.#shape.maxLen}`);
    this.#at.assign(Int32Array.of(at, at + t));
    this.#length = at + t;
    return at;
  }

  /** k, v [B, T, nKv, D] -> the whole cache [B, maxLen, nKv, D] of `layer`, and its filled length int32 [1]. */
  append(layer: number, k: Tensor, v: Tensor): { k: Tensor; v: Tensor; length: Tensor } {
    this.#write(this.#keys[layer]!, k);
    this.#write(this.#values[layer]!, v);
    return { k: this.#keys[layer]!._share(), v: this.#values[layer]!._share(), length: this.#at._view(1, [1]) };
  }

  /** Frees the cache's storage. */
  dispose(): void {
    this.decodeGraph?.dispose();
    for (const t of [...this.#keys, ...this.#values, this.#at]) t.dispose();
  }

  /** dst[:, position : position + T] = src, for src [B, T, nKv, D], the position read on the device. */
  #write(dst: Tensor, src: Tensor): void {
    const { batch: b, maxLen, numKvHeads: h, headDim: d } = this.#shape;
    const t = src.shape[1]!;
    const s = src.dtype === dst.dtype ? src : cast(src, dst.dtype);
    const row = h * d;
    dst.backend.copyStrided(s.storage, 0, [t * row, row, d, 1], dst.storage, 0, [maxLen * row, row, d, 1], [b, t, h, d], dst.dtype, { at: this.#at.storage, stride: row });
  }
}
