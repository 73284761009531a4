// Preallocated key/value cache for decoding: per layer, room for `maxLen` positions of
// [B, maxLen, nKv, D]; each step appends its keys and values and attends over all so far.
// The storage is host float32 for now: append copies the step in, and the returned tensors are
// the filled prefix. Not here: sampling (./sampling.ts), the decoding loop (./decode.ts).

import { XtunerError } from '../errors.ts';
import { tensor, type DType, type Device, type Tensor } from '../tensor/index.ts';
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
  readonly #keys: Float32Array[];
  readonly #values: Float32Array[];
  readonly #dtype: DType;
  readonly #device: Device;
  #length = 0;

  constructor(shape: KvCacheShape, dtype: DType = 'float32', device: Device = 'cpu') {
    this.#shape = shape;
    const size = shape.batch * shape.maxLen * shape.numKvHeads * shape.headDim;
    this.#keys = Array.from({ length: shape.numLayers }, () => new Float32Array(size));
    this.#values = Array.from({ length: shape.numLayers }, () => new Float32Array(size));
    this.#dtype = dtype;
    this.#device = device;
  }

  get length(): number {
    return this.#length;
  }

  get maxLen(): number {
    return this.#shape.maxLen;
  }

  /** k, v [B, T, nKv, D] -> all cached so far [B, length + T, nKv, D]. Layer numLayers-1 closes the step. */
  append(layer: number, k: Tensor, v: Tensor): { k: Tensor; v: Tensor } {
    const { batch: b, maxLen, numKvHeads: h, headDim: d, numLayers } = this.#shape;
    const t = k.shape[1]!;
    const past = this.#length;
    if (past + t > maxLen) throw new XtunerError(`KV cache full: ${past} + ${t} positions exceed its ${maxLen}`);
    const row = h * d; // one position of one batch row
    const write = (dst: Float32Array, src: Float32Array) => {
      for (let i = 0; i < b; i++) dst.set(src.subarray(i * t * row, (i + 1) * t * row), (i * maxLen + past) * row);
    };
    write(this.#keys[layer]!, k.toFloat32Array());
    write(this.#values[layer]!, v.toFloat32Array());
    const len = past + t;
    const read = (src: Float32Array) => {
      const out = new Float32Array(b * len * row);
      for (let i = 0; i < b; i++) out.set(src.subarray(i * maxLen * row, (i * maxLen + len) * row), i * len * row);
      return tensor(out, [b, len, h, d], { dtype: this.#dtype, device: this.#device }); // [B, len, nKv, D]
    };
    const result = { k: read(this.#keys[layer]!), v: read(this.#values[layer]!) };
    if (layer === numLayers - 1) this.#length = len; // every layer has now seen this step
    return result;
  }
}
