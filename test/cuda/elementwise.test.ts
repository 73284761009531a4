// CUDA elementwise kernels against the CPU backend on fresh random inputs: broadcasting binary ops,
// every unary op and its derivative, scale, axpy, axis sums and SwiGLU, in float32, bfloat16 and
// float16, on sizes that are and are not multiples of the block size.

import test from 'node:test';
import type { BinaryOp, UnaryOp } from '../../src/backends/backend.ts';
import type { FloatDType } from '../../src/tensor/dtype.ts';
import { compareWithCpu, SKIP, tolFor, uniform } from './helpers.ts';

const FLOATS: FloatDType[] = ['float32', 'bfloat16', 'float16'];
const SIZES = [1, 31, 1000, 65_537];

test('binary ops with broadcasting', { skip: SKIP }, () => {
  // [shape, a strides, b strides, a size, b size]
  const cases: [number[], number[], number[], number, number][] = [
    [[1000], [1], [1], 1000, 1000],
    [[37, 129], [129, 1], [0, 1], 37 * 129, 129], // row bias
    [[37, 129], [129, 1], [1, 0], 37 * 129, 37], // column scale
    [[3, 5, 7, 11], [385, 77, 11, 1], [0, 11, 0, 1], 1155, 55], // b [1,5,1,11]
    [[64, 48], [1, 64], [48, 1], 3072, 3072], // a transposed
  ];
  for (const dtype of FLOATS) {
    for (const op of ['add', 'sub', 'mul', 'div'] as BinaryOp[]) {
      for (const [shape, as, bs, an, bn] of cases) {
        const n = shape.reduce((x, y) => x * y, 1);
        compareWithCpu(
          `${op} ${dtype} [${shape}]`,
          { a: { dtype, data: uniform(dtype, an) }, b: { dtype, data: uniform(dtype, bn, 0.5, 2) }, out: { dtype, size: n } },
          ['out'],
          tolFor(dtype),
          (b, s) => b.binary(op, s['a']!, as, s['b']!, bs, s['out']!, shape, dtype),
        );
      }
    }
  }
});

const UNARY: UnaryOp[] = ['silu', 'gelu', 'geluTanh', 'quickGelu', 'relu', 'sigmoid', 'tanh', 'exp', 'log', 'sqrt', 'neg'];

test('unary ops and their derivatives', { skip: SKIP }, () => {
  for (const dtype of FLOATS) {
    for (const op of UNARY) {
      const positive = op === 'log' || op === 'sqrt';
      for (const n of SIZES) {
        const x = positive ? uniform(dtype, n, 0.05, 4) : uniform(dtype, n, -4, 4);
        compareWithCpu(`${op} ${dtype} n=${n}`, { x: { dtype, data: x }, y: { dtype, size: n } }, ['y'], tolFor(dtype), (b, s) =>
          b.unary(op, s['x']!, s['y']!, n, dtype),
        );
        compareWithCpu(
          `${op}' ${dtype} n=${n}`,
          { x: { dtype, data: x }, dy: { dtype, data: uniform(dtype, n) }, dx: { dtype, size: n } },
          ['dx'],
          tolFor(dtype),
          (b, s) => b.unaryBackward(op, s['x']!, s['dy']!, s['dx']!, n, dtype),
        );
      }
    }
  }
});

test('scale, axpy (in place) and swiglu forward/backward', { skip: SKIP }, () => {
  for (const dtype of FLOATS) {
    for (const n of SIZES) {
      compareWithCpu(`scale ${dtype} n=${n}`, { x: { dtype, data: uniform(dtype, n) }, y: { dtype, size: n } }, ['y'], tolFor(dtype), (b, s) =>
        b.scale(s['x']!, s['y']!, n, -0.37, dtype, null),
      );
      // by a device scalar (the cross-entropy backward's upstream gradient), in place
      const by = { dtype: 'float32' as const, data: Float32Array.of(0.4375001) };
      compareWithCpu(`scale by device ${dtype} n=${n}`, { x: { dtype, data: uniform(dtype, n) }, by }, ['x'], tolFor(dtype), (b, s) =>
        b.scale(s['x']!, s['x']!, n, -1.5, dtype, s['by']!),
      );
      compareWithCpu(`axpy ${dtype} n=${n}`, { x: { dtype, data: uniform(dtype, n) }, y: { dtype, data: uniform(dtype, n) } }, ['y'], tolFor(dtype), (b, s) =>
        b.axpy(s['x']!, s['y']!, n, 1.5, dtype),
      );
      const bufs = {
        g: { dtype, data: uniform(dtype, n, -5, 5) },
        u: { dtype, data: uniform(dtype, n) },
        dy: { dtype, data: uniform(dtype, n) },
        out: { dtype, size: n },
        dg: { dtype, size: n },
        du: { dtype, size: n },
      };
      compareWithCpu(`swiglu ${dtype} n=${n}`, bufs, ['out'], tolFor(dtype), (b, s) => b.swiglu(s['g']!, s['u']!, s['out']!, n, dtype));
      compareWithCpu(`swiglu' ${dtype} n=${n}`, bufs, ['dg', 'du'], tolFor(dtype), (b, s) =>
        b.swigluBackward(s['g']!, s['u']!, s['dy']!, s['dg']!, s['du']!, n, dtype),
      );
    }
  }
});

test('reduceSum over rows, columns and middle axes', { skip: SKIP }, () => {
  const cases: [number, number, number][] = [
    [1, 5000, 1],
    [300, 77, 1],
    [1, 4096, 129],
    [7, 33, 40],
    [70_000, 2, 3], // more outer slices than one grid dimension holds
    [5, 0, 4], // empty axis: zeros
  ];
  for (const dtype of FLOATS) {
    for (const [outer, mid, inner] of cases) {
      compareWithCpu(
        `reduceSum ${dtype} [${outer},${mid},${inner}]`,
        { x: { dtype, data: uniform(dtype, outer * mid * inner) }, out: { dtype, data: uniform(dtype, outer * inner) } },
        ['out'],
        // float32 sums of thousands of terms in another order: relative to the largest sum
        dtype === 'float32' ? { abs: 1e-5, rel: 1e-4 } : tolFor(dtype),
        (b, s) => b.reduceSum(s['x']!, s['out']!, outer, mid, inner, dtype),
      );
    }
  }
});

// The flat kernels take 16-byte chunks when every pointer is 16-byte aligned (allocations are) and
// one element at a time otherwise: views 1 element (or, float32, 2) into their allocations make
// each pointer unaligned in turn, so the scalar paths run; the sizes leave tails after the chunks.
test('flat kernels on unaligned pointers (scalar path) and with tails', { skip: SKIP }, () => {
  for (const dtype of FLOATS) {
    for (const n of [13, 1003]) {
      for (const shifted of ['x', 'y', 'out', ''] as const) {
        const off = (name: string) => (name === shifted ? 1 : 0);
        const what = `${dtype} n=${n} ${shifted || 'aligned'}`;
        const bufs = {
          x: { dtype, data: uniform(dtype, n, -4, 4), offset: off('x') },
          y: { dtype, data: uniform(dtype, n), offset: off('y') },
          dy: { dtype, data: uniform(dtype, n) },
          out: { dtype, size: n, offset: off('out') },
          out2: { dtype, size: n },
        };
        compareWithCpu(`add ${what}`, bufs, ['out'], tolFor(dtype), (b, s) => b.binary('add', s['x']!, [1], s['y']!, [1], s['out']!, [n], dtype));
        compareWithCpu(`silu ${what}`, bufs, ['out'], tolFor(dtype), (b, s) => b.unary('silu', s['x']!, s['out']!, n, dtype));
        compareWithCpu(`axpy ${what}`, bufs, ['y'], tolFor(dtype), (b, s) => b.axpy(s['x']!, s['y']!, n, 1.5, dtype));
        compareWithCpu(`swiglu ${what}`, bufs, ['out'], tolFor(dtype), (b, s) => b.swiglu(s['x']!, s['y']!, s['out']!, n, dtype));
        compareWithCpu(`swiglu' ${what}`, bufs, ['out', 'out2'], tolFor(dtype), (b, s) =>
          b.swigluBackward(s['x']!, s['y']!, s['dy']!, s['out']!, s['out2']!, n, dtype),
        );
        const to: FloatDType = dtype === 'float32' ? 'bfloat16' : 'float32';
        compareWithCpu(`cast to ${to} ${what}`, { ...bufs, out: { dtype: to, size: n, offset: off('out') } }, ['out'], tolFor(to), (b, s) =>
          b.cast(s['x']!, dtype, s['out']!, to, n),
        );
      }
    }
    // a row bias over [rows, cols] with cols a multiple of 8 takes chunks; 13 columns do not
    for (const cols of [16, 13]) {
      const rows = 5;
      compareWithCpu(
        `row bias ${dtype} [${rows},${cols}]`,
        { a: { dtype, data: uniform(dtype, rows * cols) }, b: { dtype, data: uniform(dtype, cols) }, out: { dtype, size: rows * cols } },
        ['out'],
        tolFor(dtype),
        (b, s) => b.binary('mul', s['a']!, [cols, 1], s['b']!, [0, 1], s['out']!, [rows, cols], dtype),
      );
    }
  }
});
