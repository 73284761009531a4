// CUDA fused row kernels against the CPU backend on fresh random inputs: softmax, RMSNorm and
// LayerNorm (forward, backward with and without weight grads, weights in another dtype), rope in
// both directions with shared and per-batch tables, embedding gather/scatter-add, cross-entropy
// with and without its gradient, with ignored rows.

import test from 'node:test';
import type { FloatDType } from '../../src/tensor/dtype.ts';
import { compareWithCpu, F32_REDUCE_TOL, ints, SKIP, tolFor, uniform } from './helpers.ts';

const FLOATS: FloatDType[] = ['float32', 'bfloat16', 'float16'];
const ROWS_COLS: [number, number][] = [
  [1, 1],
  [3, 31],
  [64, 256],
  [17, 1000],
  [5, 20_000], // 1024-thread rows; dw/db partials do not fit shared memory
];
// A norm over one column has a gradient of pure rounding noise (x * rstd is +-1): not compared.
const NORM_ROWS_COLS = ROWS_COLS.filter(([, cols]) => cols > 1);

test('softmax forward and backward', { skip: SKIP }, () => {
  for (const dtype of FLOATS) {
    for (const [rows, cols] of ROWS_COLS) {
      const bufs = {
        x: { dtype, data: uniform(dtype, rows * cols, -6, 6) },
        y: { dtype, size: rows * cols },
        dy: { dtype, data: uniform(dtype, rows * cols) },
        dx: { dtype, size: rows * cols },
      };
      const y = compareWithCpu(`softmax ${dtype} [${rows},${cols}]`, bufs, ['y'], tolFor(dtype), (b, s) => b.softmax(s['x']!, s['y']!, rows, cols, dtype));
      const back = { ...bufs, y: { dtype, data: y['y']! } };
      compareWithCpu(`softmax' ${dtype} [${rows},${cols}]`, back, ['dx'], tolFor(dtype, true), (b, s) =>
        b.softmaxBackward(s['y']!, s['dy']!, s['dx']!, rows, cols, dtype),
      );
    }
  }
});

test('rmsNorm and layerNorm forward and backward', { skip: SKIP }, () => {
  for (const dtype of FLOATS) {
    for (const wDtype of [...new Set(['float32', dtype] as FloatDType[])]) {
      for (const [rows, cols] of NORM_ROWS_COLS) {
        const n = rows * cols;
        const bufs = {
          x: { dtype, data: uniform(dtype, n, -3, 3) },
          w: { dtype: wDtype, data: uniform(wDtype, cols, 0.5, 1.5) },
          bias: { dtype: wDtype, data: uniform(wDtype, cols) },
          out: { dtype, size: n },
          mean: { dtype: 'float32' as const, size: rows },
          rstd: { dtype: 'float32' as const, size: rows },
          dy: { dtype, data: uniform(dtype, n) },
          dx: { dtype, size: n },
          dw: { dtype: 'float32' as const, data: uniform('float32', cols) }, // stale values: written whole
          db: { dtype: 'float32' as const, data: uniform('float32', cols) },
        };
        const what = `${dtype}/${wDtype} [${rows},${cols}]`;
        const tol = tolFor(dtype);
        const rms = compareWithCpu(`rmsNorm ${what}`, bufs, ['out', 'rstd'], tol, (b, s) =>
          b.rmsNorm(s['x']!, s['w']!, s['out']!, s['rstd']!, rows, cols, 1e-6, dtype, wDtype),
        );
        const rmsBack = { ...bufs, rstd: { dtype: 'float32' as const, data: rms['rstd']! } };
        compareWithCpu(`rmsNorm' ${what}`, rmsBack, ['dx', 'dw'], tolFor(dtype, true), (b, s) =>
          b.rmsNormBackward(s['x']!, s['w']!, s['rstd']!, s['dy']!, s['dx']!, s['dw']!, rows, cols, dtype, wDtype),
        );
        compareWithCpu(`rmsNorm' (no dw) ${what}`, rmsBack, ['dx', 'dw'], tolFor(dtype, true), (b, s) =>
          b.rmsNormBackward(s['x']!, s['w']!, s['rstd']!, s['dy']!, s['dx']!, null, rows, cols, dtype, wDtype),
        );
        // dx added to what it holds (a gradient gathered in place)
        compareWithCpu(`rmsNorm' (dx added) ${what}`, { ...rmsBack, dx: { dtype, data: uniform(dtype, n) } }, ['dx', 'dw'], tolFor(dtype, true), (b, s) =>
          b.rmsNormBackward(s['x']!, s['w']!, s['rstd']!, s['dy']!, s['dx']!, s['dw']!, rows, cols, dtype, wDtype, true),
        );
        for (const withBias of [true, false]) {
          const ln = compareWithCpu(`layerNorm ${what} bias=${withBias}`, bufs, ['out', 'mean', 'rstd'], tol, (b, s) =>
            b.layerNorm(s['x']!, s['w']!, withBias ? s['bias']! : null, s['out']!, s['mean']!, s['rstd']!, rows, cols, 1e-5, dtype, wDtype),
          );
          const lnBack = { ...bufs, mean: { dtype: 'float32' as const, data: ln['mean']! }, rstd: { dtype: 'float32' as const, data: ln['rstd']! } };
          compareWithCpu(`layerNorm' ${what} db=${withBias}`, lnBack, ['dx', 'dw', 'db'], tolFor(dtype, true), (b, s) =>
            b.layerNormBackward(s['x']!, s['w']!, s['mean']!, s['rstd']!, s['dy']!, s['dx']!, s['dw']!, withBias ? s['db']! : null, rows, cols, dtype, wDtype),
          );
        }
      }
    }
  }
});

test('rope forward and inverse, shared and per-batch tables', { skip: SKIP }, () => {
  for (const dtype of FLOATS) {
    for (const [B, T, H, D] of [[1, 1, 1, 2], [2, 37, 3, 64], [3, 16, 5, 128], [1, 9, 2, 80]] as const) {
      for (const perBatch of [false, true]) {
        for (const inverse of [false, true]) {
          const cs = (perBatch ? B : 1) * T * D;
          compareWithCpu(
            `rope ${dtype} [${B},${T},${H},${D}] perBatch=${perBatch} inverse=${inverse}`,
            {
              x: { dtype, data: uniform(dtype, B * T * H * D) },
              cos: { dtype, data: uniform(dtype, cs, -1, 1) },
              sin: { dtype, data: uniform(dtype, cs, -1, 1) },
              out: { dtype, size: B * T * H * D },
            },
            ['out'],
            tolFor(dtype),
            (b, s) => b.rope(s['x']!, s['cos']!, s['sin']!, s['out']!, B, T, H, D, perBatch ? T * D : 0, inverse, dtype),
          );
        }
      }
    }
  }
});

test('embedding gather and scatter-add backward (repeated ids add up)', { skip: SKIP }, () => {
  for (const dtype of FLOATS) {
    for (const [V, H, n] of [[10, 1, 1], [50, 64, 300], [1000, 257, 129]] as const) {
      const ids = ints(n, V);
      compareWithCpu(
        `embedding ${dtype} V=${V} H=${H} n=${n}`,
        { w: { dtype, data: uniform(dtype, V * H) }, ids: { dtype: 'int32', data: ids }, out: { dtype, size: n * H } },
        ['out'],
        { abs: 0, rel: 0 },
        (b, s) => b.embedding(s['w']!, s['ids']!, s['out']!, n, H, dtype),
      );
    }
  }
  // the CPU backward takes float32 dy only
  for (const [V, H, n] of [[10, 1, 1], [50, 64, 300], [7, 1000, 513]] as const) {
    compareWithCpu(
      `embedding' V=${V} H=${H} n=${n}`,
      // dw starts with stale values: the kernel zeroes it, then adds rows
      { dy: { dtype: 'float32', data: uniform('float32', n * H) }, ids: { dtype: 'int32', data: ints(n, V) }, dw: { dtype: 'float32', data: uniform('float32', V * H) } },
      ['dw'],
      F32_REDUCE_TOL,
      (b, s) => b.embeddingBackward(s['dy']!, s['ids']!, s['dw']!, n, H, 'float32'),
    );
  }
});

test('crossEntropy loss, and its gradient from the same pass, with ignored rows', { skip: SKIP }, () => {
  for (const dtype of FLOATS) {
    for (const [N, V] of [[1, 2], [7, 1000], [33, 32_000], [4, 151_646]] as const) {
      const labels = ints(N, V);
      for (let i = 0; i < N; i += 3) labels[i] = -100;
      const bufs = {
        logits: { dtype, data: uniform(dtype, N * V, -8, 8) },
        labels: { dtype: 'int32' as const, data: labels },
        loss: { dtype: 'float32' as const, size: N },
        d: { dtype, data: uniform(dtype, N * V) }, // overwritten whole
      };
      const what = `crossEntropy ${dtype} N=${N} V=${V}`;
      compareWithCpu(what, bufs, ['loss'], tolFor(dtype, true), (b, s) => b.crossEntropy(s['logits']!, s['labels']!, s['loss']!, null, N, V, -100, 1, dtype));
      compareWithCpu(`${what} with grad`, bufs, ['loss', 'd'], tolFor(dtype, true), (b, s) =>
        b.crossEntropy(s['logits']!, s['labels']!, s['loss']!, s['d']!, N, V, -100, 1 / N, dtype),
      );
    }
  }
});

// RMSNorm, rope and cross-entropy take 16-byte chunks of a row when every pointer is 16-byte
// aligned (allocations are) and the row length allows; a view 1 element into its allocation
// makes one pointer unaligned at a time, so the scalar paths run on shapes that would take chunks.
test('rmsNorm, rope and crossEntropy on unaligned pointers (scalar paths)', { skip: SKIP }, () => {
  for (const dtype of FLOATS) {
    const [rows, cols] = [6, 64];
    for (const shifted of ['x', 'w', 'dy', 'out']) {
      const off = (name: string) => (name === shifted ? 1 : 0);
      const n = rows * cols;
      const what = `${dtype} [${rows},${cols}] ${shifted} shifted`;
      const bufs = {
        x: { dtype, data: uniform(dtype, n, -3, 3), offset: off('x') },
        w: { dtype, data: uniform(dtype, cols, 0.5, 1.5), offset: off('w') },
        out: { dtype, size: n, offset: off('out') },
        rstd: { dtype: 'float32' as const, size: rows },
        dy: { dtype, data: uniform(dtype, n), offset: off('dy') },
        dw: { dtype: 'float32' as const, size: cols },
      };
      const rms = compareWithCpu(`rmsNorm ${what}`, bufs, ['out', 'rstd'], tolFor(dtype), (b, s) =>
        b.rmsNorm(s['x']!, s['w']!, s['out']!, s['rstd']!, rows, cols, 1e-6, dtype, dtype),
      );
      const back = { ...bufs, rstd: { dtype: 'float32' as const, data: rms['rstd']! } };
      compareWithCpu(`rmsNorm' ${what}`, back, ['out', 'dw'], tolFor(dtype, true), (b, s) =>
        b.rmsNormBackward(s['x']!, s['w']!, s['rstd']!, s['dy']!, s['out']!, s['dw']!, rows, cols, dtype, dtype),
      );
    }
    const [B, T, H, D] = [2, 5, 3, 32];
    for (const shifted of ['x', 'cos', 'out']) {
      const off = (name: string) => (name === shifted ? 1 : 0);
      compareWithCpu(
        `rope ${dtype} [${B},${T},${H},${D}] ${shifted} shifted`,
        {
          x: { dtype, data: uniform(dtype, B * T * H * D), offset: off('x') },
          cos: { dtype, data: uniform(dtype, T * D, -1, 1), offset: off('cos') },
          sin: { dtype, data: uniform(dtype, T * D, -1, 1) },
          out: { dtype, size: B * T * H * D, offset: off('out') },
        },
        ['out'],
        tolFor(dtype),
        (b, s) => b.rope(s['x']!, s['cos']!, s['sin']!, s['out']!, B, T, H, D, 0, false, dtype),
      );
    }
    const [N, V] = [4, 1000];
    const labels = ints(N, V);
    labels[1] = -100;
    for (const shifted of ['logits', 'd']) {
      const off = (name: string) => (name === shifted ? 1 : 0);
      compareWithCpu(
        `crossEntropy ${dtype} N=${N} V=${V} ${shifted} shifted`,
        {
          logits: { dtype, data: uniform(dtype, N * V, -8, 8), offset: off('logits') },
          labels: { dtype: 'int32' as const, data: labels },
          loss: { dtype: 'float32' as const, size: N },
          d: { dtype, data: uniform(dtype, N * V), offset: off('d') },
        },
        ['loss', 'd'],
        tolFor(dtype, true),
        (b, s) => b.crossEntropy(s['logits']!, s['labels']!, s['loss']!, s['d']!, N, V, -100, 1 / N, dtype),
      );
    }
  }
});
