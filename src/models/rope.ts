// Rotary position tables: inverse frequencies for each rope type (as transformers'
// modeling_rope_utils computes them) and the cos/sin rows for given position ids.
// Arithmetic is rounded to float32 where PyTorch computes in float32, so tables match its bits
// closely even at large positions. Applying the rotation is the `rope` op (src/tensor).

import { allocHost, f32ToHost, type DType, type HostArray } from '../tensor/dtype.ts';
import type { RopeConfig } from './config.ts';

const f32 = Math.fround;

/** inv_freq[i] = 1 / theta^(2i / dim), then scaled per rope type. `seqLen` matters for 'dynamic' only. */
export function inverseFrequencies(rope: RopeConfig, dim: number, seqLen = 0): Float32Array {
  let theta = rope.theta;
  if (rope.type === 'dynamic' && seqLen > rope.originalMaxPositions) {
    // Dynamic NTK: grow the base once the sequence outgrows the trained context.
    theta *= ((rope.factor * seqLen) / rope.originalMaxPositions - (rope.factor - 1)) ** (dim / (dim - 2));
  }
  const inv = new Float32Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) inv[i] = 1 / f32(theta ** f32((2 * i) / dim));
  if (rope.type === 'linear') for (let i = 0; i < inv.length; i++) inv[i] = inv[i]! / rope.factor;
  if (rope.type === 'llama3') llama3Scale(inv, rope);
  return inv;
}

/** Llama 3.1: long wavelengths divided by `factor`, short ones kept, a smooth blend in between. */
function llama3Scale(inv: Float32Array, rope: RopeConfig): void {
  const { factor, lowFreqFactor: lo, highFreqFactor: hi, originalMaxPositions: ctx } = rope;
  const lowFreqWavelen = ctx / lo;
  const highFreqWavelen = ctx / hi;
  for (let i = 0; i < inv.length; i++) {
    const wavelen = (2 * Math.PI) / inv[i]!;
    if (wavelen < highFreqWavelen) continue;
    if (wavelen > lowFreqWavelen) {
      inv[i] = inv[i]! / factor;
      continue;
    }
    const smooth = (ctx / wavelen - lo) / (hi - lo);
    inv[i] = (1 - smooth) * (inv[i]! / factor) + smooth * inv[i]!;
  }
}

/**
 * cos/sin for each position: rows of `dim` values laid out as HF's cat(freqs, freqs), so the
 * rotate_half convention applies. positions: N ids -> { cos, sin } of N * dim floats.
 */
export function ropeTables(inv: Float32Array, positions: Int32Array): { cos: Float32Array; sin: Float32Array } {
  const half = inv.length;
  const dim = 2 * half;
  const cos = new Float32Array(positions.length * dim);
  const sin = new Float32Array(positions.length * dim);
  for (let n = 0; n < positions.length; n++) {
    const p = positions[n]!;
    for (let i = 0; i < half; i++) {
      const angle = f32(p * inv[i]!);
      const c = Math.cos(angle);
      const s = Math.sin(angle);
      cos[n * dim + i] = c;
      cos[n * dim + half + i] = c;
      sin[n * dim + i] = s;
      sin[n * dim + half + i] = s;
    }
  }
  return { cos, sin };
}

/**
 * cos and sin rows by position, each computed once and kept in the model's dtype (host values): a
 * forward copies its positions' rows. Packed rows put other positions in every step, and tables
 * made per step cost N x dim cos and sin evaluations and conversions each time (~3-9 ms of host time
 * a step at 2048 tokens, while the GPU waits). Rows exist for positions 0..the largest seen (grown
 * by doubling), made again when `inv` changes (dynamic NTK). The values are ropeTables', bit for bit.
 */
export class RopeRows {
  #inv: Float32Array | null = null;
  #count = 0;
  #cos: HostArray;
  #sin: HostArray;

  constructor(readonly dtype: DType) {
    this.#cos = this.#sin = allocHost(dtype, 0);
  }

  /** [cos | sin] for `positions`: 2 x positions.length x dim values of the dtype, in one array (one upload). */
  gather(inv: Float32Array, positions: Int32Array): HostArray {
    const dim = 2 * inv.length;
    let max = 0;
    for (const p of positions) if (p > max) max = p;
    if (inv !== this.#inv) {
      this.#inv = inv;
      this.#count = 0;
    }
    if (max >= this.#count) {
      const count = Math.max(max + 1, 2 * this.#count);
      const { cos, sin } = ropeTables(inv, Int32Array.from({ length: count }, (_, p) => p));
      this.#cos = f32ToHost(cos, this.dtype);
      this.#sin = f32ToHost(sin, this.dtype);
      this.#count = count;
    }
    const n = positions.length;
    // float32 values, or 16-bit float bits: copied as they are
    const out = allocHost(this.dtype, 2 * n * dim) as Float32Array | Uint16Array;
    const cos = this.#cos as Float32Array | Uint16Array;
    const sin = this.#sin as Float32Array | Uint16Array;
    // element loops: a subarray per row costs more than its copy at these row lengths
    for (let k = 0, o = 0, so = n * dim; k < n; k++) {
      const row = positions[k]! * dim;
      for (let j = 0; j < dim; j++, o++, so++) {
        out[o] = cos[row + j]!;
        out[so] = sin[row + j]!;
      }
    }
    return out;
  }
}
