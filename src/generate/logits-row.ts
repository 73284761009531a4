// A row of next-token logits as a tensor, on any device: greedy and top-k sampling read what
// they need through the backend's token-choosing ops (on CUDA one id, or the few candidates top-k
// keeps, instead of the whole row: 600 KB at a 152k vocabulary, widened and scanned on the host
// for every token).

import type { FloatDType } from '../tensor/dtype.ts';
import { Tensor } from '../tensor/index.ts';
import type { Candidates, LogitsRow } from './sampling.ts';

/** Most candidates topK brings back; more (ties with the k-th) and the caller reads the whole row. */
export const MAX_CANDIDATES = 1024;

export class TensorLogitsRow implements LogitsRow {
  readonly size: number;

  /** `logits`: the row's last axis is the vocabulary; `owned`: dispose() frees it. */
  constructor(
    private readonly logits: Tensor,
    private readonly owned: boolean,
  ) {
    this.size = logits.shape[logits.shape.length - 1]!;
  }

  toFloat32Array(): Float32Array {
    return this.logits.toFloat32Array();
  }

  argmax(): number {
    return this.#query(1, (out) => this.logits.backend.sampleArgmax(this.logits.storage, this.size, this.#dtype, out))[0]!;
  }

  topK(k: number, temperature: number): Candidates | null {
    // the kernels' contract (Backend.topKCandidates); outside it the CPU and CUDA answers differ
    if (!(Number.isInteger(k) && k >= 1 && k < this.size)) throw new RangeError(`topK: k must be an integer in [1, ${this.size}), got ${k}`);
    const cap = MAX_CANDIDATES;
    const out = this.#query(1 + 2 * cap, (o) => this.logits.backend.topKCandidates(this.logits.storage, this.size, k, temperature, this.#dtype, o, cap));
    const n = out[0]!;
    if (n > cap) return null;
    const values = new Float32Array(out.buffer, out.byteOffset + 4 * (1 + cap), n);
    const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => out[1 + a]! - out[1 + b]!); // ids ascending
    return { ids: Int32Array.from(order, (i) => out[1 + i]!), logits: Float32Array.from(order, (i) => values[i]!) };
  }

  dispose(): void {
    if (this.owned) this.logits.dispose();
  }

  get #dtype(): FloatDType {
    return this.logits.dtype as FloatDType;
  }

  /** Runs `op` into a fresh int32 buffer of `size` on the row's device and reads it back. */
  #query(size: number, op: (out: Tensor['storage']) => void): Int32Array {
    const out = Tensor._allocUninit([size], 'int32', this.logits.device, false);
    try {
      op(out.storage);
      return out.toInt32Array();
    } finally {
      out.dispose();
    }
  }
}
