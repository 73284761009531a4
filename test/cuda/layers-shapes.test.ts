// The fused row kernels on the shape regimes layers.test.ts does not pin, CUDA against the CPU twin
// at the named tolerances on fresh random inputs:
// - RMSNorm forward/backward (dw, no dw, dx accumulated): hidden sizes on both sides of the
//   register path's limits (a multiple of 8, at most threads x 16: 8, 16, 4096, 16384 take it; 4104 and
//   16392 are multiples of 8 past it; 5, 33, 1000, 4100 are not multiples of 8), rows beyond the
//   backward's grid (rows loop per block, on both paths), 16-bit views 8 elements in (aligned: register path on a
//   view) and 4 (8-byte aligned only: scalar path);
// - LayerNorm at odd sizes; softmax at widths around the block (1, 2, 33, 255, 257, 1025, 16385)
//   with -inf entries and constant rows;
// - rope at odd positions and head dims whose half is and is not a multiple of 8 (2, 6, 10, 16, 48,
//   96, 136, 256), per-batch tables, views;
// - cross-entropy at vocabularies around the chunk and block sizes (2, 3, 7, 8, 9, 255, 256, 257,
//   1023, 1032, 2049, 16392), labels at 0 and V - 1, ignore_index on every row, on all but one,
//   on a row's own label value, and on the loss-only path;
// - embedding gather and scatter-add with out-of-order and repeated ids, odd hidden sizes, views.

import test from 'node:test';
import { f32ToHost, hostToF32, type FloatDType, type HostArray } from '../../src/tensor/dtype.ts';
import assert from 'node:assert/strict';
import { cpuBackend } from '../../src/backends/cpu/index.ts';
import type { Backend } from '../../src/backends/backend.ts';
import { compareWithCpu, F32_REDUCE_TOL, ints, SEED, SKIP, tolFor, uniform, type Buf, type Tol } from './helpers.ts';

/**
 * Cross-entropy in float32 cancels where a row is confident: lse - logit[y] (the loss) and
 * softmax - 1 at the label (the gradient) are small beside the numbers they come from (~1e-6 of
 * logits of 8; ~1 ulp of gradScale), as in PyTorch's float32 log_softmax. So each tolerance's scale
 * is at least those numbers' size (`floor`) rather than the largest output alone: a row set of
 * one confident row (V = 2, all other rows ignored) would otherwise compare rounding noise.
 */
function assertCloseFloor(gpu: Float32Array, cpu: Float32Array, tol: Tol, floor: number, what: string): void {
  let scale = floor;
  for (const e of cpu) scale = Math.max(scale, Math.abs(e));
  cpu.forEach((e, i) => {
    const a = gpu[i]!;
    assert.ok(Math.abs(a - e) <= tol.abs * scale + tol.rel * Math.abs(e), `${what}: element ${i} is ${a} on CUDA, ${e} on CPU (scale ${scale}; seed ${SEED})`);
  });
}

/** One cross-entropy call on both backends: loss (floor 8, the logits' range) and d (floor gradScale). */
function compareCe(what: string, bufs: Record<string, Buf>, gradScale: number | null, tol: Tol, call: <S>(b: Backend<S>, s: Record<string, S>) => void): void {
  const gpu = compareWithCpu(what, bufs, [], tol, call);
  const cpuBufs: Record<string, unknown> = {};
  const bases: Record<string, unknown> = {};
  const be = cpuBackend as Backend<unknown>;
  for (const [k, b] of Object.entries(bufs)) {
    const size = b.data?.length ?? b.size ?? 0;
    bases[k] = be.alloc(b.dtype, (b.offset ?? 0) + size);
    if (b.data) be.write(bases[k], b.dtype, b.offset ?? 0, b.data);
    cpuBufs[k] = (bases[k] as Float32Array).subarray(b.offset ?? 0, (b.offset ?? 0) + size);
  }
  call(be, cpuBufs);
  assertCloseFloor(gpu['loss'] as Float32Array, cpuBufs['loss'] as Float32Array, tol, 8, `${what}: loss`);
  if (gradScale !== null) {
    const dt = bufs['d']!.dtype;
    assertCloseFloor(hostToF32(gpu['d']!, dt), hostToF32(cpuBufs['d'] as HostArray, dt), tol, gradScale, `${what}: d`);
  }
}

const FLOATS: FloatDType[] = ['float32', 'bfloat16', 'float16'];

test('rmsNorm forward/backward around the register path limits, with accumulate and views', { skip: SKIP }, () => {
  // [rows, cols, offset of x/dy/out/dx views]
  const cases: [number, number, number][] = [
    [3, 5, 0], [2, 8, 0], [37, 16, 0], [4, 33, 0], [2, 1000, 0], [2, 4096, 0], [2, 4100, 0], [2, 4104, 0], [1, 16384, 0], [1, 16392, 0],
    [37, 33, 0], [20, 4100, 3], [37, 64, 8], [5, 64, 4], [3, 4096, 8], [3, 1000, 3],
  ];
  for (const dtype of FLOATS) {
    for (const [rows, cols, offset] of cases) {
      // float32: offset 4 is 16-byte aligned; 16-bit: offset 8 is, 4 is not
      const n = rows * cols;
      const bufs = {
        x: { dtype, data: uniform(dtype, n, -3, 3), offset },
        w: { dtype, data: uniform(dtype, cols, 0.5, 1.5) },
        out: { dtype, size: n, offset },
        rstd: { dtype: 'float32' as const, size: rows },
        dy: { dtype, data: uniform(dtype, n), offset },
        dx: { dtype, data: uniform(dtype, n), offset }, // stale: written whole, or added to
        dw: { dtype: 'float32' as const, data: uniform('float32', cols) },
      };
      const what = `${dtype} [${rows},${cols}] offset ${offset}`;
      const fwd = compareWithCpu(`rmsNorm ${what}`, bufs, ['out', 'rstd'], tolFor(dtype), (b, s) =>
        b.rmsNorm(s['x']!, s['w']!, s['out']!, s['rstd']!, rows, cols, 1e-6, dtype, dtype),
      );
      const back = { ...bufs, rstd: { dtype: 'float32' as const, data: fwd['rstd']! } };
      for (const accumulate of [false, true]) {
        for (const withDw of [true, false]) {
          compareWithCpu(`rmsNorm' ${what} accumulate=${accumulate} dw=${withDw}`, back, withDw ? ['dx', 'dw'] : ['dx'], tolFor(dtype, true), (b, s) =>
            b.rmsNormBackward(s['x']!, s['w']!, s['rstd']!, s['dy']!, s['dx']!, withDw ? s['dw']! : null, rows, cols, dtype, dtype, accumulate),
          );
        }
      }
    }
  }
});

test('layerNorm forward/backward at odd sizes and float32 weights under 16-bit data', { skip: SKIP }, () => {
  for (const dtype of FLOATS) {
    for (const [rows, cols] of [[3, 5], [37, 33], [2, 4100], [20, 6145]] as const) {
      const n = rows * cols;
      const bufs = {
        x: { dtype, data: uniform(dtype, n, -3, 3) },
        w: { dtype: 'float32' as const, data: uniform('float32', cols, 0.5, 1.5) },
        bias: { dtype: 'float32' as const, data: uniform('float32', cols) },
        out: { dtype, size: n },
        mean: { dtype: 'float32' as const, size: rows },
        rstd: { dtype: 'float32' as const, size: rows },
        dy: { dtype, data: uniform(dtype, n) },
        dx: { dtype, size: n },
        dw: { dtype: 'float32' as const, data: uniform('float32', cols) },
        db: { dtype: 'float32' as const, data: uniform('float32', cols) },
      };
      const what = `${dtype} [${rows},${cols}]`;
      const ln = compareWithCpu(`layerNorm ${what}`, bufs, ['out', 'mean', 'rstd'], tolFor(dtype), (b, s) =>
        b.layerNorm(s['x']!, s['w']!, s['bias']!, s['out']!, s['mean']!, s['rstd']!, rows, cols, 1e-5, dtype, 'float32'),
      );
      const back = { ...bufs, mean: { dtype: 'float32' as const, data: ln['mean']! }, rstd: { dtype: 'float32' as const, data: ln['rstd']! } };
      compareWithCpu(`layerNorm' ${what}`, back, ['dx', 'dw', 'db'], tolFor(dtype, true), (b, s) =>
        b.layerNormBackward(s['x']!, s['w']!, s['mean']!, s['rstd']!, s['dy']!, s['dx']!, s['dw']!, s['db']!, rows, cols, dtype, 'float32'),
      );
    }
  }
});

test('softmax forward/backward at widths around the block, with -inf entries and constant rows', { skip: SKIP }, () => {
  for (const dtype of FLOATS) {
    for (const [rows, cols] of [[2, 1], [3, 2], [5, 33], [2, 255], [2, 257], [3, 1025], [1, 16385]] as const) {
      const xf = uniform('float32', rows * cols, -6, 6) as Float32Array;
      // row 0: every other entry -inf (the first kept); the last row constant
      for (let c = 1; c < cols; c += 2) xf[c] = -Infinity;
      if (rows > 1) xf.fill(1.5, (rows - 1) * cols, rows * cols);
      const xs = f32ToHost(xf, dtype);
      const bufs = {
        x: { dtype, data: xs },
        y: { dtype, size: rows * cols },
        dy: { dtype, data: uniform(dtype, rows * cols) },
        dx: { dtype, size: rows * cols },
      };
      const y = compareWithCpu(`softmax ${dtype} [${rows},${cols}]`, bufs, ['y'], tolFor(dtype), (b, s) => b.softmax(s['x']!, s['y']!, rows, cols, dtype));
      compareWithCpu(`softmax' ${dtype} [${rows},${cols}]`, { ...bufs, y: { dtype, data: y['y']! } }, ['dx'], tolFor(dtype, true), (b, s) =>
        b.softmaxBackward(s['y']!, s['dy']!, s['dx']!, rows, cols, dtype),
      );
    }
  }
});

test('rope at odd positions and head dims, per-batch tables, views', { skip: SKIP }, () => {
  // [B, T, H, D, offset of x and out]
  const cases: [number, number, number, number, number][] = [
    [1, 7, 3, 2, 0], [2, 5, 1, 6, 0], [1, 3, 5, 10, 0], [3, 7, 2, 16, 0], [2, 9, 3, 48, 0], [1, 13, 2, 96, 0],
    [2, 3, 2, 136, 0], [1, 5, 2, 256, 0], [2, 7, 3, 16, 8], [2, 7, 3, 32, 4], [1, 5, 2, 64, 2],
  ];
  for (const dtype of FLOATS) {
    for (const [B, T, H, D, offset] of cases) {
      for (const perBatch of [false, true]) {
        for (const inverse of [false, true]) {
          const cs = (perBatch ? B : 1) * T * D;
          compareWithCpu(
            `rope ${dtype} [${B},${T},${H},${D}] offset ${offset} perBatch=${perBatch} inverse=${inverse}`,
            {
              x: { dtype, data: uniform(dtype, B * T * H * D), offset },
              cos: { dtype, data: uniform(dtype, cs, -1, 1) },
              sin: { dtype, data: uniform(dtype, cs, -1, 1) },
              out: { dtype, size: B * T * H * D, offset },
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

test('crossEntropy at vocabularies around the chunk and block, with ignored rows everywhere', { skip: SKIP }, () => {
  for (const dtype of FLOATS) {
    for (const V of [2, 3, 7, 8, 9, 255, 256, 257, 1023, 1032, 2049, 16392]) {
      const N = 5;
      const base = ints(N, V);
      base[0] = 0;
      base[1] = V - 1;
      const labelSets: [string, Int32Array][] = [
        ['labels at 0 and V-1', base],
        ['every row ignored', new Int32Array(N).fill(-100)],
        ['all but the last row ignored', Int32Array.from(base, (y, i) => (i === N - 1 ? y : -100))],
      ];
      for (const [how, labels] of labelSets) {
        const bufs = {
          logits: { dtype, data: uniform(dtype, N * V, -8, 8) },
          labels: { dtype: 'int32' as const, data: labels },
          loss: { dtype: 'float32' as const, data: uniform('float32', N) }, // written whole
          d: { dtype, data: uniform(dtype, N * V) }, // written whole
        };
        const what = `crossEntropy ${dtype} N=${N} V=${V} ${how}`;
        compareCe(what, bufs, null, tolFor(dtype, true), (b, s) => b.crossEntropy(s['logits']!, s['labels']!, s['loss']!, null, N, V, -100, 1, dtype));
        compareCe(`${what} with grad`, bufs, 0.37, tolFor(dtype, true), (b, s) =>
          b.crossEntropy(s['logits']!, s['labels']!, s['loss']!, s['d']!, N, V, -100, 0.37, dtype),
        );
      }
      // an ignore index that is also a real class id (0): rows labelled 0 are ignored
      const bufs = {
        logits: { dtype, data: uniform(dtype, N * V, -8, 8) },
        labels: { dtype: 'int32' as const, data: base },
        loss: { dtype: 'float32' as const, size: N },
        d: { dtype, size: N * V },
      };
      compareCe(`crossEntropy ${dtype} V=${V} ignoreIndex 0`, bufs, 1 / N, tolFor(dtype, true), (b, s) =>
        b.crossEntropy(s['logits']!, s['labels']!, s['loss']!, s['d']!, N, V, 0, 1 / N, dtype),
      );
    }
  }
});

test('crossEntropy on views: aligned (offset 8) and not (offset 2)', { skip: SKIP }, () => {
  for (const dtype of FLOATS) {
    for (const offset of [8, 2]) {
      const [N, V] = [3, 1032];
      const labels = ints(N, V);
      labels[2] = -100;
      compareCe(
        `crossEntropy ${dtype} N=${N} V=${V} offset ${offset}`,
        {
          logits: { dtype, data: uniform(dtype, N * V, -8, 8), offset },
          labels: { dtype: 'int32' as const, data: labels },
          loss: { dtype: 'float32' as const, size: N },
          d: { dtype, data: uniform(dtype, N * V), offset },
        },
        1 / N,
        tolFor(dtype, true),
        (b, s) => b.crossEntropy(s['logits']!, s['labels']!, s['loss']!, s['d']!, N, V, -100, 1 / N, dtype),
      );
    }
  }
});

test('embedding gather and scatter-add with out-of-order, repeated and edge ids', { skip: SKIP }, () => {
  for (const dtype of FLOATS) {
    for (const [V, H, n, offset] of [[7, 1, 9, 0], [13, 3, 20, 0], [100, 257, 33, 0], [5, 8, 17, 8], [9, 7, 11, 3]] as const) {
      const ids = ints(n, V);
      ids[0] = V - 1;
      ids[n - 1] = 0;
      ids.reverse(); // descending at the ends, random between
      compareWithCpu(
        `embedding ${dtype} V=${V} H=${H} n=${n} offset ${offset}`,
        { w: { dtype, data: uniform(dtype, V * H), offset }, ids: { dtype: 'int32', data: ids }, out: { dtype, size: n * H, offset } },
        ['out'],
        { abs: 0, rel: 0 },
        (b, s) => b.embedding(s['w']!, s['ids']!, s['out']!, n, H, dtype),
      );
    }
  }
  for (const [V, H, n] of [[7, 1, 9], [13, 3, 40], [4, 1001, 9]] as const) {
    const ids = ints(n, V);
    ids[0] = V - 1;
    ids[1] = V - 1; // repeated
    compareWithCpu(
      `embedding' V=${V} H=${H} n=${n}`,
      { dy: { dtype: 'float32', data: uniform('float32', n * H) }, ids: { dtype: 'int32', data: ids }, dw: { dtype: 'float32', data: uniform('float32', V * H) } },
      ['dw'],
      F32_REDUCE_TOL,
      (b, s) => b.embeddingBackward(s['dy']!, s['ids']!, s['dw']!, n, H, 'float32'),
    );
  }
});
