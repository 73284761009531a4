// The CPU backend's nf4Dequantize kernel against dequantizeNf4 (src/quant/nf4.ts, itself checked
// against bitsandbytes' numbers in test/quant/nf4.test.ts): the same float32 bits, and for bf16/f16
// outputs the float32 values rounded once. Nested and plain absmax, odd sizes, several 256-blocks
// of scales, another block size.

import test from 'node:test';
import assert from 'node:assert/strict';
import { cpuBackend } from '../../src/backends/cpu/index.ts';
import { dequantizeNf4, quantizeNf4, type Nf4Data } from '../../src/quant/nf4.ts';
import { f32ToHalf, type FloatDType } from '../../src/tensor/dtype.ts';

function values(n: number): Float32Array {
  // blocks of different magnitudes, one all-zero block, a spike
  const v = new Float32Array(n).map((_, i) => Math.sin(i * 0.731) * (1 + ((i >> 6) % 13)) * 0.01);
  v.fill(0, 64, Math.min(n, 128));
  if (n > 300) v[300] = 7.5;
  return v;
}

function kernel(q: Nf4Data, dtype: FloatDType): Float32Array | Uint16Array {
  const out = cpuBackend.alloc(dtype, q.n);
  const nested = q.nested;
  cpuBackend.nf4Dequantize(
    q.packed, nested?.codes ?? null, nested?.scales ?? q.absmax!, nested?.offset ?? 0,
    out, q.n, q.blockSize, nested?.blockSize ?? 1, dtype,
  );
  return out as Float32Array | Uint16Array;
}

test('nf4Dequantize (CPU) gives the bits of dequantizeNf4', () => {
  for (const n of [1, 63, 129, 1001, 40_001]) {
    for (const opts of [{}, { doubleQuant: false }, { blockSize: 128 }]) {
      const q = quantizeNf4(values(n), opts);
      const ref = dequantizeNf4(q);
      assert.deepEqual(kernel(q, 'float32'), ref, `float32 n=${n} ${JSON.stringify(opts)}`);
      for (const dtype of ['bfloat16', 'float16'] as const) {
        assert.deepEqual(kernel(q, dtype), f32ToHalf(ref, dtype), `${dtype} n=${n} ${JSON.stringify(opts)}`);
      }
    }
  }
});
