// Rotary position tables: inverse frequencies for each rope type (as transformers'
// modeling_rope_utils computes them) and the cos/sin rows for given position ids.
// Arithmetic is rounded to float32 where PyTorch computes in float32, so tables match its bits
// closely even at large positions. Applying the rotation is the `rope` op (src/tensor).

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

// The last tables made: training asks for the same positions every step (2 * N * dim cos/sin
// evaluations saved per forward; comparing the positions is N integer reads).
let last: { inv: Float32Array; positions: Int32Array; cos: Float32Array; sin: Float32Array } | null = null;

function samePositions(a: Int32Array, b: Int32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * cos/sin for each position: rows of `dim` values laid out as HF's cat(freqs, freqs), so the
 * rotate_half convention applies. positions: N ids -> { cos, sin } of N * dim floats. The arrays
 * may be the ones returned by the previous call (same `inv`, same positions): read them, do not
 * modify them.
 */
export function ropeTables(inv: Float32Array, positions: Int32Array): { cos: Float32Array; sin: Float32Array } {
  if (last !== null && last.inv === inv && samePositions(last.positions, positions)) return { cos: last.cos, sin: last.sin };
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
  last = { inv, positions: positions.slice(), cos, sin };
  return { cos, sin };
}
