// The CUDA dropout kernel against the CPU backend's: the same Philox4x32-10 mask bits, so the
// outputs must be equal exactly (not within a tolerance), in float32, bfloat16 and float16, for
// sizes that do and do not fill the last group of 4, for base seeds (read from a device buffer) and
// call numbers with the top bits set (uint32 values travel as int32 bits); out of place, in place,
// and added to what out holds (accumulate: a gradient gathered in place).

import test from 'node:test';
import type { FloatDType } from '../../src/tensor/dtype.ts';
import { compareWithCpu, SKIP, uniform } from './helpers.ts';

const FLOATS: FloatDType[] = ['float32', 'bfloat16', 'float16'];
const EXACT = { abs: 0, rel: 0 };

test('dropout: CUDA draws the CPU mask bit for bit', { skip: SKIP }, () => {
  // [seed0, seed1, call]
  const keys: [number, number, number][] = [[0, 0, 0], [1, 2, 1], [0xffffffff, 0x80000000, 0xffffffff], [0x9e3779b9, 0x7fffffff, 336]];
  for (const dtype of FLOATS) {
    for (const size of [1, 3, 4, 1001, 65_537]) {
      for (const p of [0.1, 0.5, 0.9]) {
        for (const [s0, s1, call] of keys) {
          const seed = { dtype: 'int32' as const, data: Int32Array.of(s0, s1) };
          compareWithCpu(
            `dropout ${dtype} n=${size} p=${p} seed=[${s0}, ${s1}] call ${call}`,
            { x: { dtype, data: uniform(dtype, size) }, out: { dtype, size }, seed },
            ['out'],
            EXACT,
            (b, s) => b.dropout(s['x']!, s['out']!, size, p, s['seed']!, call, dtype),
          );
          // in place (the LoRA branch's backward masks dx where it lies)
          compareWithCpu(
            `dropout in place ${dtype} n=${size} p=${p} seed=[${s0}, ${s1}] call ${call}`,
            { x: { dtype, data: uniform(dtype, size) }, seed },
            ['x'],
            EXACT,
            (b, s) => b.dropout(s['x']!, s['x']!, size, p, s['seed']!, call, dtype),
          );
          compareWithCpu(
            `dropout added to out ${dtype} n=${size} p=${p} seed=[${s0}, ${s1}] call ${call}`,
            { x: { dtype, data: uniform(dtype, size) }, out: { dtype, data: uniform(dtype, size) }, seed },
            ['out'],
            EXACT,
            (b, s) => b.dropout(s['x']!, s['out']!, size, p, s['seed']!, call, dtype, true),
          );
        }
      }
    }
  }
});

// Chunks of 8 (two Philox groups) on aligned pointers, groups of 4 otherwise: the same mask either way.
test('dropout on unaligned pointers (the scalar path) draws the same mask', { skip: SKIP }, () => {
  for (const dtype of FLOATS) {
    for (const [xOff, outOff] of [[1, 0], [0, 3], [5, 5]]) {
      const size = 1003;
      compareWithCpu(
        `dropout ${dtype} offsets x ${xOff} out ${outOff}`,
        { x: { dtype, data: uniform(dtype, size), offset: xOff }, out: { dtype, size, offset: outOff }, seed: { dtype: 'int32', data: Int32Array.of(12345, 678) } },
        ['out'],
        EXACT,
        (b, s) => b.dropout(s['x']!, s['out']!, size, 0.3, s['seed']!, 9, dtype),
      );
    }
  }
});
