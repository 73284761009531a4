// The CUDA nf4Dequantize kernel against the CPU backend's (itself equal to dequantizeNf4): the same
// bits exactly, in float32, bfloat16 and float16, nested and plain absmax, odd sizes and several
// 256-blocks of scales.

import test from 'node:test';
import { quantizeNf4 } from '../../src/quant/nf4.ts';
import type { FloatDType } from '../../src/tensor/dtype.ts';
import { compareWithCpu, SKIP, uniform } from './helpers.ts';

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
