// Choosing a token on the device (native/cuda/sampling.cu) against the CPU twins, through the
// rows generation reads (TensorLogitsRow): the first index of the largest logit, and the
// candidates of temperature then top-k, exactly (same ids, same float32 values, same count), on
// fresh random rows with many ties (16-bit logits have few distinct values near the top), masked
// tokens, k from 1 to the row length less one, temperatures below and above 1, and more ties
// than come back.

import assert from 'node:assert/strict';
import test from 'node:test';
import { TensorLogitsRow } from '../../src/generate/logits-row.ts';
import type { FloatDType } from '../../src/tensor/dtype.ts';
import { tensor } from '../../src/tensor/index.ts';
import { SEED, SKIP, ints, uniform } from './helpers.ts';

function rows(n: number, dtype: FloatDType, levels: number): Float32Array {
  const u = uniform('float32', n, 0, 1) as Float32Array;
  const masked = ints(n, 40);
  return Float32Array.from(u, (v, i) => (masked[i] === 0 ? -Infinity : Math.round((v - 0.5) * levels) / 8));
}

test('argmax and top-k candidates on the device equal the CPU twins exactly', { skip: SKIP }, () => {
  for (const dtype of ['float32', 'bfloat16', 'float16'] as const) {
    for (const [n, levels] of [[1000, 400], [5003, 50], [300, 4], [2000, 1]] as const) {
      const x = rows(n, dtype, levels);
      const on = (device: 'cpu' | 'cuda') => new TensorLogitsRow(tensor(x, [1, 1, n], { dtype, device }), true);
      const [cpu, cuda] = [on('cpu'), on('cuda')];
      const what = `${dtype}, ${n} logits, ${levels} levels (seed ${SEED})`;
      assert.equal(cuda.argmax(), cpu.argmax(), `argmax, ${what}`);
      for (const k of [1, 5, 40, n - 1]) {
        for (const t of [0.1, 0.7, 1, 1.3]) {
          assert.deepEqual(cuda.topK(k, t), cpu.topK(k, t), `top-${k} at temperature ${t}, ${what}`);
        }
      }
      cpu.dispose();
      cuda.dispose();
    }
  }
});
