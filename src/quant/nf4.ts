// 4-bit NormalFloat (NF4) quantisation, as QLoRA defines it and bitsandbytes stores it, on typed
// arrays (no tensors, no devices): the layout, and the reference that the backends' nf4Quantize
// and nf4Dequantize kernels (src/backends/cpu/nf4.ts, native/cuda/nf4.cu) equal bit for bit.
//
// Layout (bitsandbytes `quantize_4bit(..., quant_type='nf4', blocksize=64, compress_statistics=True)`):
// - the tensor is flattened (row-major) and cut into blocks of 64; each block keeps absmax = max |x|;
// - each value x becomes the index of the code value nearest to x / absmax (NF4_CODE, 16 values);
// - two indices per byte, the first element in the HIGH nibble: byte i = q[2i] << 4 | q[2i+1];
// - double quantisation ("nested" statistics): offset = mean(absmax); the centred absmax values
//   absmax - offset are quantised blockwise (blocks of 256) to 8 bits with bitsandbytes' signed
//   dynamic map, each block of 256 keeping its own float32 scale; a block's scale is recovered as
//   DYNAMIC_CODE[c] * scale2[j] + offset.
//   The mean is a float64 sum in an order all backends share (absmaxMean: a reduction on the GPU).
// Not here: FP4, other block sizes than the caller asks for, the matmul (see nf4-linear.ts).

import { absmaxMean, DYNAMIC_CODE, DYNAMIC_MIDS, NF4_CODE, NF4_MIDS, NF4_ZERO, nearestCode } from '../backends/cpu/nf4.ts';
import { XtunerError } from '../errors.ts';

export { NF4_CODE, DYNAMIC_CODE };

/** Weights per absmax block (QLoRA and bitsandbytes' default). */
export const NF4_BLOCK_SIZE = 64;
/** absmax values per block of the second-level (double) quantisation. */
export const ABSMAX_BLOCK_SIZE = 256;

const fr = Math.fround;

/** Double-quantised block scales (bitsandbytes' `state2` plus its `offset`). */
export interface NestedAbsmax {
  /** [nBlocks] 8-bit codes into DYNAMIC_CODE of absmax - offset, scaled per 256-block. */
  codes: Uint8Array;
  /** [ceil(nBlocks / 256)] float32 absmax of the centred values of each 256-block. */
  scales: Float32Array;
  /** mean of the original absmax values, added back after decoding. */
  offset: number;
  blockSize: number;
}

/** One quantised tensor: what is stored, nothing more. */
export interface Nf4Data {
  /** Number of weights (product of the original shape). */
  n: number;
  blockSize: number;
  /** [ceil(n / 2)] two 4-bit codes per byte, first element in the high nibble. */
  packed: Uint8Array;
  /** [ceil(n / blockSize)] float32 scales, or null when they are double-quantised. */
  absmax: Float32Array | null;
  nested: NestedAbsmax | null;
}

export interface Nf4Options {
  /** Weights per absmax block; default 64. */
  blockSize?: number;
  /** Double quantisation of the absmax values (QLoRA's `bnb_4bit_use_double_quant`); default true. */
  doubleQuant?: boolean;
}

function blockwiseAbsmax(values: Float32Array, blockSize: number): Float32Array {
  const nBlocks = Math.ceil(values.length / blockSize);
  const absmax = new Float32Array(nBlocks);
  for (let b = 0; b < nBlocks; b++) {
    let m = 0;
    const end = Math.min(values.length, (b + 1) * blockSize);
    for (let i = b * blockSize; i < end; i++) {
      const a = Math.abs(values[i]!);
      if (a > m) m = a;
    }
    absmax[b] = m;
  }
  return absmax;
}

/** 8-bit blockwise quantisation of the centred absmax values (bitsandbytes `quantize_blockwise`). */
function quantizeAbsmax(absmax: Float32Array, blockSize: number): NestedAbsmax {
  // float64 sum in the order every backend's nf4Quantize shares (a reduction on the device)
  const offset = absmaxMean(absmax);
  const centred = new Float32Array(absmax.length);
  for (let i = 0; i < absmax.length; i++) centred[i] = fr(absmax[i]! - offset);
  const scales = blockwiseAbsmax(centred, blockSize);
  const codes = new Uint8Array(absmax.length);
  for (let i = 0; i < absmax.length; i++) {
    const s = scales[Math.floor(i / blockSize)]!;
    codes[i] = s === 0 ? nearestCode(DYNAMIC_MIDS, 0) : nearestCode(DYNAMIC_MIDS, fr(centred[i]! * fr(1 / s)));
  }
  return { codes, scales, offset, blockSize };
}

/** The options' block size (default 64), checked: pairs of codes share a byte, so it is even. */
export function nf4BlockSize(options: Nf4Options): number {
  const blockSize = options.blockSize ?? NF4_BLOCK_SIZE;
  if (!Number.isInteger(blockSize) || blockSize < 2 || blockSize % 2 !== 0) {
    throw new XtunerError(`NF4 blockSize must be an even integer >= 2, got ${blockSize}`);
  }
  return blockSize;
}

/** Quantise float values (any length) to NF4, with double-quantised scales by default. */
export function quantizeNf4(values: Float32Array, options: Nf4Options = {}): Nf4Data {
  const blockSize = nf4BlockSize(options);
  const n = values.length;
  if (n === 0) throw new XtunerError('NF4: cannot quantise an empty tensor');
  const absmax = blockwiseAbsmax(values, blockSize);
  const packed = new Uint8Array(Math.ceil(n / 2));
  for (let b = 0; b < absmax.length; b++) {
    const inv = absmax[b] === 0 ? 0 : fr(1 / absmax[b]!);
    const end = Math.min(n, (b + 1) * blockSize);
    for (let i = b * blockSize; i < end; i++) {
      const q = inv === 0 ? NF4_ZERO : nearestCode(NF4_MIDS, fr(values[i]! * inv));
      // blocks are even-sized, so a pair of elements never straddles two blocks
      packed[i >> 1] |= i & 1 ? q : q << 4;
    }
  }
  if (options.doubleQuant ?? true) {
    return { n, blockSize, packed, absmax: null, nested: quantizeAbsmax(absmax, ABSMAX_BLOCK_SIZE) };
  }
  return { n, blockSize, packed, absmax, nested: null };
}

/** The per-block scales that dequantisation uses (decoded from the nested form when present). */
export function nf4BlockScales(q: Nf4Data): Float32Array {
  if (q.absmax) return q.absmax;
  const nested = q.nested;
  if (!nested) throw new XtunerError('NF4 data has neither absmax nor nested absmax');
  const out = new Float32Array(nested.codes.length);
  for (let i = 0; i < out.length; i++) {
    const s = nested.scales[Math.floor(i / nested.blockSize)]!;
    out[i] = fr(fr(DYNAMIC_CODE[nested.codes[i]!]! * s) + nested.offset);
  }
  return out;
}

/** The 4-bit code index of element i. */
export function nf4Index(q: Nf4Data, i: number): number {
  const byte = q.packed[i >> 1]!;
  return i & 1 ? byte & 0x0f : byte >> 4;
}

/** Dequantise to float32 (into `out` when given). */
export function dequantizeNf4(q: Nf4Data, out: Float32Array = new Float32Array(q.n)): Float32Array {
  if (out.length !== q.n) throw new XtunerError(`dequantizeNf4: output has ${out.length} elements, expected ${q.n}`);
  const scales = nf4BlockScales(q);
  const bs = q.blockSize;
  for (let b = 0; b < scales.length; b++) {
    const s = scales[b]!;
    const end = Math.min(q.n, (b + 1) * bs);
    for (let i = b * bs; i < end; i++) {
      const byte = q.packed[i >> 1]!;
      out[i] = fr(NF4_CODE[i & 1 ? byte & 0x0f : byte >> 4]! * s);
    }
  }
  return out;
}

/**
 * Bytes this tensor's quantised form keeps: packed codes + scales (+ second-level scales and the
 * offset). The 256-entry dynamic code table is one shared constant and is not counted.
 */
export function nf4StoredBytes(q: Nf4Data): number {
  let bytes = q.packed.byteLength;
  if (q.absmax) bytes += q.absmax.byteLength;
  if (q.nested) bytes += q.nested.codes.byteLength + q.nested.scales.byteLength + 4;
  return bytes;
}
