// The CUDA NF4 kernels against the CPU backend's (themselves equal to quantizeNf4 and
// dequantizeNf4): the same bits exactly, in float32, bfloat16 and float16, nested and plain
// absmax, odd sizes, several 256-blocks of scales, and (quantisation) the edge cases of rounding;
// the few-row product within the tolerance of a sum in another order.

import test from 'node:test';
import { NF4_MIDS } from '../../src/backends/cpu/nf4.ts';
import { ABSMAX_BLOCK_SIZE, NF4_BLOCK_SIZE, quantizeNf4 } from '../../src/quant/nf4.ts';
import { f32ToHalf, type FloatDType } from '../../src/tensor/dtype.ts';
import { compareWithCpu, SKIP, tolFor, uniform } from './helpers.ts';
import { quantize } from './nf4-cases.ts';

const FLOATS: FloatDType[] = ['float32', 'bfloat16', 'float16'];
const EXACT = { abs: 0, rel: 0 };

test('nf4Dequantize: CUDA gives the CPU bits', { skip: SKIP }, () => {
  for (const n of [1, 129, 40_001]) {
    for (const opts of [{}, { doubleQuant: false }, { blockSize: 128 }]) {
      const q = quantizeNf4(uniform('float32', n, -0.2, 0.2) as Float32Array, opts);
      const nested = q.nested;
      const scales = nested?.scales ?? q.absmax!;
      for (const dtype of FLOATS) {
        compareWithCpu(
          `nf4Dequantize ${dtype} n=${n} ${JSON.stringify(opts)}`,
          {
            packed: { dtype: 'uint8', data: q.packed },
            codes: { dtype: 'uint8', data: nested?.codes ?? new Uint8Array(1) },
            scales: { dtype: 'float32', data: scales },
            out: { dtype, size: n },
          },
          ['out'],
          EXACT,
          (b, s) => b.nf4Dequantize(
            s['packed']!, nested ? s['codes']! : null, s['scales']!, nested?.offset ?? 0,
            s['out']!, n, q.blockSize, nested?.blockSize ?? 1, dtype,
          ),
        );
      }
    }
  }
});

/** Weights with the edge cases of rounding: midpoint ties, a NaN, zero, infinite and subnormal blocks. */
function edgeCases(): Float32Array {
  const x = uniform('float32', 64 * 6 + 5, -0.5, 0.5) as Float32Array;
  x[0] = 1;
  x.set(NF4_MIDS, 1);
  x[64] = NaN;
  x.fill(0, 128, 192);
  x[192] = Infinity;
  x[256] = Math.fround(1e-40);
  x[257] = -Math.fround(1e-40);
  x[258] = 0;
  return x;
}

/**
 * 2048 blocks whose absmax mean rounds one way in the shared summation order and the other way
 * summed one by one (see test/backends/nf4.test.ts, absmaxMean): absmax 2048, 2^-13, then 2^-43.
 */
function meanOrderCase(): Float32Array {
  const x = new Float32Array(2048 * 64);
  for (let b = 0; b < 2048; b++) x[b * 64] = b === 0 ? 2048 : b === 1 ? 2 ** -13 : 2 ** -43;
  return x;
}

test('nf4Quantize: CUDA gives the CPU bytes (codes, absmax, double-quantised absmax)', { skip: SKIP }, () => {
  // 96_007 weights: 1501 blocks, so the mean's 1024 lanes wrap and the absmax codes span 6 blocks of 256
  const inputs: Array<[string, Float32Array | null, number]> = [
    ['edge cases', edgeCases(), 64 * 6 + 5],
    ['mean order', meanOrderCase(), 2048 * 64],
    ...[1, 129, 40_001, 96_007].map((n): [string, null, number] => [`n=${n}`, null, n]),
  ];
  for (const [what, fixed, n] of inputs) {
    for (const opts of [{}, { doubleQuant: false }, { blockSize: 128 }]) {
      const blockSize = opts.blockSize ?? NF4_BLOCK_SIZE;
      const nested = opts.doubleQuant !== false;
      for (const dtype of FLOATS) {
        const x = fixed ? (dtype === 'float32' ? fixed : f32ToHalf(fixed, dtype)) : uniform(dtype, n, -0.2, 0.2);
        quantize(`${dtype} ${what} ${JSON.stringify(opts)}`, x as Uint16Array | Float32Array, dtype, n, blockSize, ABSMAX_BLOCK_SIZE, nested);
      }
    }
  }
});

test('nf4Matvec: CUDA gives x W^T (+ bias) as the CPU does, on the 16-byte path and the scalar one', { skip: SKIP }, () => {
  // [out, in, rows, x offset]: in a multiple of 32 and x aligned take the vector path; in = 72 or
  // an x offset of 3 elements the scalar one
  const cases: Array<[number, number, number, number]> = [[37, 256, 1, 0], [16, 4096, 3, 0], [64, 96, 8, 0], [5, 72, 2, 0], [9, 256, 1, 3]];
  for (const [outF, inF, rows, xOffset] of cases) {
    for (const opts of [{}, { doubleQuant: false }, { blockSize: 128 }]) {
      const q = quantizeNf4(uniform('float32', outF * inF, -0.2, 0.2) as Float32Array, opts);
      const nested = q.nested;
      for (const dtype of FLOATS) {
        for (const withBias of [false, true]) {
          compareWithCpu(
            `nf4Matvec ${dtype} [${outF}, ${inF}] rows ${rows} x offset ${xOffset} ${JSON.stringify(opts)}${withBias ? ' bias' : ''}`,
            {
              x: { dtype, data: uniform(dtype, rows * inF), offset: xOffset },
              packed: { dtype: 'uint8', data: q.packed },
              codes: { dtype: 'uint8', data: nested?.codes ?? new Uint8Array(1) },
              scales: { dtype: 'float32', data: nested?.scales ?? q.absmax! },
              bias: { dtype, data: uniform(dtype, outF) },
              out: { dtype, size: rows * outF },
            },
            ['out'],
            tolFor(dtype, true),
            (b, s) => b.nf4Matvec(
              { packed: s['packed']!, absCodes: nested ? s['codes']! : null, absScales: s['scales']!, offset: nested?.offset ?? 0, blockSize: q.blockSize, absBlockSize: nested?.blockSize ?? 1 },
              s['x']!, withBias ? s['bias']! : null, s['out']!, rows, outF, inF, dtype,
            ),
          );
        }
      }
    }
  }
});
