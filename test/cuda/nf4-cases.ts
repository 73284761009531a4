// nf4Quantize on both backends, the one comparison both NF4 test files run.

import type { FloatDType } from '../../src/tensor/dtype.ts';
import { compareWithCpu } from './helpers.ts';

const EXACT = { abs: 0, rel: 0 };

export interface Quantised {
  packed: Uint8Array;
  absmax: Float32Array;
  codes: Uint8Array | null;
  scales: Float32Array | null;
  offset: number;
}

/** nf4Quantize on both backends (the same bytes required); CUDA's bytes returned. */
export function quantize(what: string, x: Uint16Array | Float32Array, dtype: FloatDType, n: number, blockSize: number, absBlockSize: number, nested: boolean): Quantised {
  const nBlocks = Math.ceil(n / blockSize);
  const q = compareWithCpu(
    `nf4Quantize ${what}`,
    {
      x: { dtype, data: x },
      packed: { dtype: 'uint8', data: new Uint8Array(Math.ceil(n / 2)).fill(0xa5) }, // stale bytes: written whole
      absmax: { dtype: 'float32', size: nBlocks },
      codes: { dtype: 'uint8', size: nBlocks },
      scales: { dtype: 'float32', size: Math.ceil(nBlocks / absBlockSize) },
      offset: { dtype: 'float32', size: 1 },
    },
    nested ? ['packed', 'absmax', 'codes', 'scales', 'offset'] : ['packed', 'absmax'],
    EXACT,
    (b, s) => b.nf4Quantize(
      s['x']!, s['packed']!, s['absmax']!, nested ? s['codes']! : null, nested ? s['scales']! : null, nested ? s['offset']! : null,
      n, blockSize, absBlockSize, dtype,
    ),
  );
  return {
    packed: q['packed'] as Uint8Array,
    absmax: q['absmax'] as Float32Array,
    codes: nested ? (q['codes'] as Uint8Array) : null,
    scales: nested ? (q['scales'] as Float32Array) : null,
    offset: nested ? (q['offset'] as Float32Array)[0]! : 0,
  };
}
