// CUDA optimizer kernels against the CPU backend: AdamW steps with each state in its own dtype and
// weight decay on or off, and sums of squares into slots of one float32 output.

import test from 'node:test';
import type { AdamWHyper } from '../../src/backends/backend.ts';
import type { FloatDType } from '../../src/tensor/dtype.ts';
import { compareWithCpu, F32_REDUCE_TOL, SKIP, tolFor, uniform } from './helpers.ts';

test('adamwUpdate over tensors of mixed dtypes', { skip: SKIP }, () => {
  const combos: { param: FloatDType; grad: FloatDType; expAvg: FloatDType; expAvgSq: FloatDType }[] = [
    { param: 'float32', grad: 'float32', expAvg: 'float32', expAvgSq: 'float32' },
    { param: 'bfloat16', grad: 'bfloat16', expAvg: 'float32', expAvgSq: 'float32' },
    { param: 'float32', grad: 'bfloat16', expAvg: 'bfloat16', expAvgSq: 'float32' },
    { param: 'float16', grad: 'float16', expAvg: 'float16', expAvgSq: 'float16' },
  ];
  for (const dtypes of combos) {
    for (const n of [1, 1000, 100_003]) {
      for (const h of [
        { lr: 2e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, step: 1 },
        { lr: 1e-3, beta1: 0.8, beta2: 0.95, eps: 1e-6, weightDecay: 0.1, step: 37 },
      ] satisfies AdamWHyper[]) {
        const worst = [dtypes.param, dtypes.expAvg, dtypes.expAvgSq].includes('bfloat16')
          ? 'bfloat16'
          : [dtypes.param, dtypes.expAvg, dtypes.expAvgSq].includes('float16')
            ? 'float16'
            : 'float32';
        compareWithCpu(
          `adamw ${JSON.stringify(dtypes)} n=${n} step=${h.step}`,
          {
            p: { dtype: dtypes.param, data: uniform(dtypes.param, n) },
            g: { dtype: dtypes.grad, data: uniform(dtypes.grad, n, -0.1, 0.1) },
            m: { dtype: dtypes.expAvg, data: uniform(dtypes.expAvg, n, -0.01, 0.01) },
            v: { dtype: dtypes.expAvgSq, data: uniform(dtypes.expAvgSq, n, 0, 1e-4) },
          },
          ['p', 'm', 'v'],
          tolFor(worst as FloatDType, true),
          (b, s) => b.adamwUpdate(s['p']!, s['g']!, s['m']!, s['v']!, n, dtypes, h),
        );
      }
    }
  }
});

test('sumOfSquares writes its slot and leaves the others', { skip: SKIP }, () => {
  for (const dtype of ['float32', 'bfloat16', 'float16'] as FloatDType[]) {
    for (const n of [0, 1, 257, 1_000_001]) {
      compareWithCpu(
        `sumOfSquares ${dtype} n=${n}`,
        { x: { dtype, data: uniform(dtype, n) }, out: { dtype: 'float32', data: uniform('float32', 4) } },
        ['out'],
        F32_REDUCE_TOL, // a float32 sum of the same values on both
        (b, s) => b.sumOfSquares(s['x']!, n, dtype, s['out']!, 2),
      );
    }
  }
});
