// NF4 kernels on the regimes nf4.test.ts does not pin, CUDA against the CPU twin: quantisation and
// dequantisation bit for bit at block sizes other than 64 and 128 (any even size is allowed: 2, 6,
// 32, 34, 96, 4096) and absmax block sizes other than 256 (1, 5, 300), at sizes that end inside a
// pair, a block and a 256-block; the few-row product at the tolerance of a sum in another order,
// on the 16-byte path (inputs a multiple of 32, block sizes 32 and 96, x and the codes on aligned
// views) and the scalar one (block size 34, codes at an odd byte, x 4 bytes off), 1 to 8 rows, one
// lane's worth of inputs (32), one output feature.

import test from 'node:test';
import { compareWithCpu, SKIP, tolFor, uniform } from './helpers.ts';
import { quantize } from './nf4-cases.ts';
import type { FloatDType } from '../../src/tensor/dtype.ts';

const FLOATS: FloatDType[] = ['float32', 'bfloat16', 'float16'];
const EXACT = { abs: 0, rel: 0 };

test('nf4 quantise and dequantise at odd block sizes, absmax block sizes and lengths', { skip: SKIP }, () => {
  // [n, blockSize, absBlockSize]
  const cases: [number, number, number][] = [
    [1, 2, 1], [3, 2, 5], [13, 6, 5], [65, 32, 1], [1023, 34, 5], [777, 96, 300], [9001, 4096, 1], [70_001, 34, 300], [64 * 257 + 1, 64, 256],
  ];
  for (const [n, blockSize, absBlockSize] of cases) {
    for (const nested of [true, false]) {
      for (const dtype of FLOATS) {
        const what = `${dtype} n=${n} block ${blockSize} abs block ${absBlockSize} nested=${nested}`;
        const x = uniform(dtype, n, -0.3, 0.3) as Uint16Array | Float32Array;
        const q = quantize(what, x, dtype, n, blockSize, absBlockSize, nested);
        for (const outDtype of FLOATS) {
          for (const offset of [0, 3]) {
            compareWithCpu(
              `nf4Dequantize ${what} -> ${outDtype} out offset ${offset}`,
              {
                packed: { dtype: 'uint8', data: q.packed },
                codes: { dtype: 'uint8', data: q.codes ?? new Uint8Array(1) },
                scales: { dtype: 'float32', data: q.scales ?? q.absmax },
                out: { dtype: outDtype, data: uniform(outDtype, n), offset },
              },
              ['out'],
              EXACT,
              (b, s) => b.nf4Dequantize(s['packed']!, nested ? s['codes']! : null, s['scales']!, q.offset, s['out']!, n, blockSize, absBlockSize, outDtype),
            );
          }
        }
      }
    }
  }
});

test('nf4Matvec on both paths: block sizes 32, 96 and 34, views, 1 to 8 rows, one lane and one feature', { skip: SKIP }, () => {
  // [outF, inF, blockSize, absBlockSize, x offset, packed offset (bytes)]
  const cases: [number, number, number, number, number, number][] = [
    [3, 64, 32, 5, 0, 0], // vector path: a scale per lane chunk
    [5, 192, 96, 300, 8, 16], // vector path on aligned views (16-bit x: 8 elements = 16 bytes)
    [1, 32, 32, 1, 0, 0], // one lane has work
    [6, 96, 34, 5, 0, 0], // block size not a multiple of 32: scalar path, blocks across rows
    [4, 128, 64, 256, 0, 1], // codes at an odd byte: scalar path
    [4, 128, 64, 256, 2, 0], // x 4 bytes (16-bit) or 8 bytes (float32) off: scalar path
    [9, 2112, 64, 7, 0, 0], // 66 lane chunks: lanes wrap
  ];
  for (const [outF, inF, blockSize, absBlockSize, xOff, pOff] of cases) {
    for (const dtype of FLOATS) {
      const n = outF * inF;
      const q = quantize(`for matvec ${dtype} [${outF}, ${inF}] block ${blockSize}`, uniform(dtype, n, -0.3, 0.3) as Uint16Array | Float32Array, dtype, n, blockSize, absBlockSize, true);
      for (const rows of [1, 2, 3, 5, 7, 8]) {
        for (const withBias of [false, true]) {
          compareWithCpu(
            `nf4Matvec ${dtype} [${outF}, ${inF}] block ${blockSize} rows ${rows} x offset ${xOff} packed offset ${pOff}${withBias ? ' bias' : ''}`,
            {
              x: { dtype, data: uniform(dtype, rows * inF), offset: xOff },
              packed: { dtype: 'uint8', data: q.packed, offset: pOff },
              codes: { dtype: 'uint8', data: q.codes! },
              scales: { dtype: 'float32', data: q.scales! },
              bias: { dtype, data: uniform(dtype, outF) },
              out: { dtype, data: uniform(dtype, rows * outF) },
            },
            ['out'],
            tolFor(dtype, true),
            (b, s) => b.nf4Matvec(
              { packed: s['packed']!, absCodes: s['codes']!, absScales: s['scales']!, offset: q.offset, blockSize, absBlockSize },
              s['x']!, withBias ? s['bias']! : null, s['out']!, rows, outF, inF, dtype,
            ),
          );
        }
      }
    }
  }
});
