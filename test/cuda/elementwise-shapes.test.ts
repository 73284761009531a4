// The flat and broadcasting kernels on the regimes elementwise.test.ts does not pin, CUDA against
// the CPU twin at the named tolerances (dropout exactly) on fresh random inputs:
// - lengths around the 8-element chunk (1, 2, 7, 8, 9, 15, 16, 17, 63, 64, 65, 2061) with each
//   pointer a view at an element offset drawn from {0, 1, 2, 3, 4, 8} (16-bit: 8 keeps 16-byte
//   alignment, 4 leaves 8 bytes; float32: 4 and 8 keep it, 2 leaves 8 bytes): the vector path on
//   views, the scalar path on pointers that are 4- or 8-byte aligned only, in-place calls;
// - broadcasting binary ops whose inner dim is a multiple of 8 with padded row strides (multiples
//   of 8 or not), scalar operands, three-dim broadcasts, on aligned and unaligned views;
// - casts between every float dtype and to and from int32 / uint8 at odd lengths and offsets
//   (float to int: truncation, then wrapping to the width; integers compared bit for bit);
// - dropout at lengths 1..17 and on views that stay 16-byte aligned (the vector path with an
//   offset) or not, out of place, in place and accumulating;
// - axis sums of degenerate and odd shapes; strided copies (transposes, padded rows) of 1-, 2-, 4-
//   and 8-byte elements at offsets, and a KV cache's write at a position read on the device.

import test from 'node:test';
import type { UnaryOp } from '../../src/backends/backend.ts';
import type { DType, FloatDType } from '../../src/tensor/dtype.ts';
import { compareWithCpu, ints, SKIP, tolFor, uniform } from './helpers.ts';

const FLOATS: FloatDType[] = ['float32', 'bfloat16', 'float16'];
const LENGTHS = [1, 2, 7, 8, 9, 15, 16, 17, 63, 64, 65, 2061];
const OFFSETS = [0, 1, 2, 3, 4, 8];
const pick = <X>(xs: readonly X[]): X => xs[ints(1, xs.length)[0]!]!;
const EXACT = { abs: 0, rel: 0 };

test('flat kernels at lengths around the chunk, on views at random element offsets', { skip: SKIP }, () => {
  for (const dtype of FLOATS) {
    for (const n of LENGTHS) {
      for (let draw = 0; draw < 3; draw++) {
        // draw 0: every pointer at one offset (all aligned or all not); then each its own
        const same = pick(OFFSETS);
        const off = (): number => (draw === 0 ? same : pick(OFFSETS));
        const o = { x: off(), y: off(), dy: off(), out: off(), out2: off() };
        const what = `${dtype} n=${n} offsets ${JSON.stringify(o)}`;
        const bufs = {
          x: { dtype, data: uniform(dtype, n, -4, 4), offset: o.x },
          y: { dtype, data: uniform(dtype, n), offset: o.y },
          dy: { dtype, data: uniform(dtype, n), offset: o.dy },
          out: { dtype, data: uniform(dtype, n), offset: o.out }, // stale: written whole
          out2: { dtype, data: uniform(dtype, n), offset: o.out2 },
        };
        const tol = tolFor(dtype);
        for (const op of ['silu', 'gelu', 'exp', 'neg'] as UnaryOp[]) {
          compareWithCpu(`${op} ${what}`, bufs, ['out'], tol, (b, s) => b.unary(op, s['x']!, s['out']!, n, dtype));
          compareWithCpu(`${op}' ${what}`, bufs, ['out'], tol, (b, s) => b.unaryBackward(op, s['x']!, s['dy']!, s['out']!, n, dtype));
        }
        compareWithCpu(`silu in place ${what}`, bufs, ['x'], tol, (b, s) => b.unary('silu', s['x']!, s['x']!, n, dtype));
        compareWithCpu(`scale ${what}`, bufs, ['out'], tol, (b, s) => b.scale(s['x']!, s['out']!, n, 0.75, dtype, null));
        compareWithCpu(`scale in place ${what}`, bufs, ['x'], tol, (b, s) => b.scale(s['x']!, s['x']!, n, -3, dtype, null));
        compareWithCpu(`axpy ${what}`, bufs, ['y'], tol, (b, s) => b.axpy(s['x']!, s['y']!, n, -0.5, dtype));
        compareWithCpu(`add ${what}`, bufs, ['out'], tol, (b, s) => b.binary('add', s['x']!, [1], s['y']!, [1], s['out']!, [n], dtype));
        compareWithCpu(`div ${what}`, { ...bufs, y: { dtype, data: uniform(dtype, n, 0.5, 2), offset: o.y } }, ['out'], tol, (b, s) =>
          b.binary('div', s['x']!, [1], s['y']!, [1], s['out']!, [n], dtype),
        );
        compareWithCpu(`swiglu ${what}`, bufs, ['out'], tol, (b, s) => b.swiglu(s['x']!, s['y']!, s['out']!, n, dtype));
        compareWithCpu(`swiglu' ${what}`, bufs, ['out', 'out2'], tol, (b, s) => b.swigluBackward(s['x']!, s['y']!, s['dy']!, s['out']!, s['out2']!, n, dtype));
        // swiglu' writing dgate over its own gate input (in place on one of three inputs)
        compareWithCpu(`swiglu' in place ${what}`, bufs, ['x', 'out2'], tol, (b, s) => b.swigluBackward(s['x']!, s['y']!, s['dy']!, s['x']!, s['out2']!, n, dtype));
      }
    }
  }
});

test('broadcasting binary ops with inner dims of whole chunks, padded rows and views', { skip: SKIP }, () => {
  // [shape, a strides, b strides, a size, b size]
  const cases: [number[], number[], number[], number, number][] = [
    [[5, 16], [24, 1], [0, 1], 5 * 24, 16], // padded rows (stride a multiple of 8), row bias
    [[5, 16], [17, 1], [0, 1], 5 * 17, 16], // padded rows, stride not a multiple of 8
    [[5, 16], [16, 1], [0, 0], 80, 1], // a scalar b
    [[3, 4, 8], [32, 8, 1], [0, 8, 1], 96, 32], // b [1, 4, 8]
    [[3, 4, 8], [32, 8, 1], [8, 0, 1], 96, 24], // b [3, 1, 8]
    [[3, 4, 8], [32, 8, 1], [1, 0, 0], 96, 3], // b [3, 1, 1]: broadcast along the inner dim
    [[2, 3, 24], [72, 24, 1], [24, 0, 1], 144, 48], // b [2, 1, 24]
    [[7, 8], [1, 7], [8, 1], 56, 56], // a transposed, inner dim 8
    [[1, 1, 1], [1, 1, 1], [0, 0, 0], 1, 1], // one element
  ];
  for (const dtype of FLOATS) {
    for (const op of ['add', 'mul', 'sub'] as const) {
      for (const [shape, as, bs, an, bn] of cases) {
        for (const [ao, bo, oo] of [[0, 0, 0], [8, 8, 8], [1, 0, 0], [0, 3, 0], [0, 0, 4]]) {
          const n = shape.reduce((x, y) => x * y, 1);
          compareWithCpu(
            `${op} ${dtype} [${shape}] a ${as}@${ao} b ${bs}@${bo} out @${oo}`,
            { a: { dtype, data: uniform(dtype, an), offset: ao }, b: { dtype, data: uniform(dtype, bn), offset: bo }, out: { dtype, data: uniform(dtype, n), offset: oo } },
            ['out'],
            tolFor(dtype),
            (b, s) => b.binary(op, s['a']!, as, s['b']!, bs, s['out']!, shape, dtype),
          );
        }
      }
    }
  }
});

test('casts between floats and to and from integers at odd lengths and offsets', { skip: SKIP }, () => {
  const dtypes: DType[] = ['float32', 'bfloat16', 'float16', 'int32', 'uint8'];
  for (const from of dtypes) {
    for (const to of dtypes) {
      if (from === to) continue;
      for (const n of [1, 7, 9, 17, 1001]) {
        for (const [fo, to_] of [[0, 0], [8, 8], [4, 0], [1, 3]]) {
          const data =
            from === 'int32' ? Int32Array.from(ints(n, 400), (v) => v - 200) :
            from === 'uint8' ? Uint8Array.from(ints(n, 256)) :
            // float to int truncates, then wraps to the width (uint8 from -300..300; int32 past 2^31)
            to === 'int32' && from !== 'float16' ? uniform(from, n, -5e9, 5e9) : uniform(from, n, -300, 300);
          const what = `cast ${from} -> ${to} n=${n} offsets ${fo}, ${to_}`;
          const bufs = { x: { dtype: from, data, offset: fo }, y: { dtype: to, size: n, offset: to_ } };
          if (to === 'int32' || to === 'uint8') compareWithCpu(what, bufs, ['y'], EXACT, (b, s) => b.cast(s['x']!, from, s['y']!, to, n)); // integers compared as integers
          else compareWithCpu(what, bufs, ['y'], tolFor(to as FloatDType), (b, s) => b.cast(s['x']!, from, s['y']!, to, n));
        }
      }
    }
  }
});

test('dropout at lengths 1..17 and on aligned and unaligned views', { skip: SKIP }, () => {
  const seed = { dtype: 'int32' as const, data: Int32Array.of(0x1234567, -99) };
  for (const dtype of FLOATS) {
    for (let n = 1; n <= 17; n++) {
      for (const [xo, oo] of [[0, 0], [8, 8], [4, 4], [8, 0], [1, 1]]) {
        const what = `dropout ${dtype} n=${n} offsets ${xo}, ${oo}`;
        const bufs = { x: { dtype, data: uniform(dtype, n), offset: xo }, out: { dtype, data: uniform(dtype, n), offset: oo }, seed };
        compareWithCpu(what, bufs, ['out'], EXACT, (b, s) => b.dropout(s['x']!, s['out']!, n, 0.4, s['seed']!, 7, dtype));
        compareWithCpu(`${what} accumulate`, bufs, ['out'], EXACT, (b, s) => b.dropout(s['x']!, s['out']!, n, 0.4, s['seed']!, 8, dtype, true));
        compareWithCpu(`${what} in place`, bufs, ['x'], EXACT, (b, s) => b.dropout(s['x']!, s['x']!, n, 0.4, s['seed']!, 9, dtype));
      }
    }
  }
});

test('axis sums of degenerate and odd shapes, into views', { skip: SKIP }, () => {
  const cases: [number, number, number][] = [[1, 1, 1], [3, 1, 5], [1, 7, 1], [4, 3, 1], [2, 257, 33], [1, 1, 65], [9, 2, 31], [2, 1025, 1]];
  for (const dtype of FLOATS) {
    for (const [outer, mid, inner] of cases) {
      for (const offset of [0, 3]) {
        compareWithCpu(
          `reduceSum ${dtype} [${outer},${mid},${inner}] offset ${offset}`,
          { x: { dtype, data: uniform(dtype, outer * mid * inner), offset }, out: { dtype, data: uniform(dtype, outer * inner), offset } },
          ['out'],
          dtype === 'float32' ? { abs: 1e-5, rel: 1e-4 } : tolFor(dtype),
          (b, s) => b.reduceSum(s['x']!, s['out']!, outer, mid, inner, dtype),
        );
      }
    }
  }
});

test('strided copies of 1-, 2-, 4- and 8-byte elements: transposes and padded rows at offsets', { skip: SKIP }, () => {
  const dtypes: DType[] = ['uint8', 'bfloat16', 'float32', 'int32'];
  // [shape, src strides, src size, dst strides, dst size]
  const cases: [number[], number[], number, number[], number][] = [
    [[7, 9], [9, 1], 63, [1, 7], 63], // transpose into contiguous
    [[7, 9], [1, 7], 63, [9, 1], 63],
    [[3, 5, 2], [10, 2, 1], 30, [1, 3, 15], 30],
    [[5, 3], [8, 1], 40, [3, 1], 15], // padded source rows
    [[5, 3], [3, 1], 15, [11, 1], 55], // padded destination rows
    [[1, 17], [17, 1], 17, [17, 1], 17], // contiguous: a device copy
  ];
  for (const dtype of dtypes) {
    for (const [shape, ss, sn, ds, dn] of cases) {
      for (const [so, dof] of [[0, 0], [3, 5]]) {
        const data = dtype === 'uint8' ? Uint8Array.from(ints(so + sn, 256)) : dtype === 'int32' ? ints(so + sn, 1 << 24) : uniform(dtype as FloatDType, so + sn);
        compareWithCpu(
          `copyStrided ${dtype} [${shape}] ${ss} -> ${ds} offsets ${so}, ${dof}`,
          // the destination's gaps keep what they held
          { x: { dtype, data }, y: { dtype, data: dtype === 'uint8' ? Uint8Array.from(ints(dof + dn, 256)) : dtype === 'int32' ? ints(dof + dn, 1000) : uniform(dtype as FloatDType, dof + dn) } },
          ['y'],
          EXACT,
          (b, s) => b.copyStrided(s['x']!, so, ss, s['y']!, dof, ds, shape, dtype),
        );
      }
    }
  }
  // a KV cache's write: [B, T, H, D] rows into a cache [B, cap, H, D] at a position read on the
  // device (shift: at[0] * stride), odd positions, contiguous and padded (a device copy is never taken)
  for (const dtype of ['bfloat16', 'float32'] as const) {
    const [B, T, H, D, cap] = [2, 3, 3, 5, 11];
    for (const pos of [0, 1, 7, cap - T]) {
      compareWithCpu(
        `copyStrided ${dtype} KV cache write at position ${pos}`,
        { x: { dtype, data: uniform(dtype, B * T * H * D) }, y: { dtype, data: uniform(dtype, 2 + B * cap * H * D) }, at: { dtype: 'int32', data: Int32Array.of(pos) } },
        ['y'],
        EXACT,
        (b, s) => b.copyStrided(s['x']!, 0, [T * H * D, H * D, D, 1], s['y']!, 2, [cap * H * D, H * D, D, 1], [B, T, H, D], dtype, { at: s['at']!, stride: H * D }),
      );
    }
  }
  // 8-byte elements (int64): a transpose
  const n = 35;
  const big = new BigInt64Array(n);
  for (let i = 0; i < n; i++) big[i] = BigInt(ints(1, 1 << 24)[0]!) - 99n;
  compareWithCpu(
    'copyStrided int64 [5,7] transposed',
    { x: { dtype: 'int64', data: big }, y: { dtype: 'int64', size: n + 3 } },
    ['y'],
    EXACT,
    (b, s) => b.copyStrided(s['x']!, 0, [7, 1], s['y']!, 3, [1, 5], [5, 7], 'int64'),
  );
});
