// Preallocated key/value cache for decoding: per layer, one device tensor [B, maxLen, nKv, D] for
// keys and one for values, allocated once. Each step copies its keys and values in at the current
// length (a strided copy on the device, no host round trip) and attends over the filled prefix.
// Not here: sampling (./sampling.ts), the decoding loop (./decode.ts).

import { XtunerError } from '../errors.ts';
import { cast, keep, slice, zeros, type DType, type Device, type Tensor } from '../tensor/index.ts';
import type { KvCache } from '../models/decoder.ts';

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
  #length = 0;

  constructor(shape: KvCacheShape, dtype: DType = 'float32', device: Device = 'cpu') {
    this.#shape = shape;
    const full = [shape.batch, shape.maxLen, shape.numKvHeads, shape.headDim]; // [B, maxLen, nKv, D]
    const make = () => keep(zeros(full, { dtype, device }));
    this.#keys = Array.from({ length: shape.numLayers }, make);
    this.#values = Array.from({ length: shape.numLayers }, make);
  }

  get length(): number {
    return this.#length;
  }

  get maxLen(): number {
    return this.#shape.maxLen;
  }

  /** k, v [B, T, nKv, D] -> all cached so far [B, length + T, nKv, D]. The last layer closes the step. */
  append(layer: number, k: Tensor, v: Tensor): { k: Tensor; v: Tensor } {
    const { maxLen, numLayers } = this.#shape;
    const t = k.shape[1]!;
    const len = this.#length + t;
    if (len > maxLen) throw new XtunerError(`KV cache full: ${this.#length} + ${t} positions exceed its ${maxLen}`);
    this.#write(this.#keys[layer]!, k);
    this.#write(this.#values[layer]!, v);
    if (layer === numLayers - 1) this.#length = len; // every layer has now seen this step
    return { k: slice(this.#keys[layer]!, 1, 0, len), v: slice(this.#values[layer]!, 1, 0, len) };
  }

  /** Frees the cache's storage. */
  dispose(): void {
    for (const t of [...this.#keys, ...this.#values]) t.dispose();
  }

  /** dst[:, length : length + T] = src, for src [B, T, nKv, D]. */
  #write(dst: Tensor, src: Tensor): void {
    const { batch: b, maxLen, numKvHeads: h, headDim: d } = this.#shape;
    const t = src.shape[1]!;
    const s = src.dtype === dst.dtype ? src : cast(src, dst.dtype);
    const row = h * d;
    dst.backend.copyStrided(s.storage, 0, [t * row, row, d, 1], dst.storage, this.#length * row, [maxLen * row, row, d, 1], [b, t, h, d], dst.dtype);
  }
}
