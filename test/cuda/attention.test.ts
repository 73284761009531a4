// CUDA flash-style attention against the CPU backend on fresh random inputs, forward (out, lse)
// and backward (dq, dk, dv): causal and not, GQA, fewer queries than keys (KV cache, causal
// aligned bottom-right), single-token decoding, packed rows with cuSeqlens (a sample crossing a
// row end, tokens outside every sample; on the device and padded, as training passes it: one
// sample per row, one over all rows, many small ones), head dimensions that are not multiples of
// 32, and 256; bf16/f16 also through the pipelined tensor-core forward; a KV cache filled to a
// length read on the device (decoding through a CUDA graph).

import assert from 'node:assert/strict';
import test from 'node:test';
import type { AttentionShape } from '../../src/backends/backend.ts';
import type { FloatDType } from '../../src/tensor/dtype.ts';
import { dkdvSplit } from '../../src/backends/cuda/attention.ts';
import { runAttentionCase, samples, type Case } from './attention-cases.ts';
import { compareWithCpu, SKIP, tolFor, uniform } from './helpers.ts';

const CASES: Case[] = [
  { name: 'causal MHA', B: 2, Tq: 77, Tk: 77, Hq: 4, Hkv: 4, D: 64, causal: true, cuSeqlens: null },
  { name: 'causal GQA 4:1, D=128', B: 1, Tq: 100, Tk: 100, Hq: 8, Hkv: 2, D: 128, causal: true, cuSeqlens: null },
  { name: 'not causal, Tq != Tk, D=80', B: 2, Tq: 33, Tk: 70, Hq: 3, Hkv: 1, D: 80, causal: false, cuSeqlens: null },
  { name: 'KV cache: 5 new queries over 40 keys', B: 2, Tq: 5, Tk: 40, Hq: 4, Hkv: 2, D: 64, causal: true, cuSeqlens: null },
  { name: 'decoding one token', B: 3, Tq: 1, Tk: 64, Hq: 2, Hkv: 2, D: 32, causal: true, cuSeqlens: null },
  { name: 'packed rows', B: 2, Tq: 96, Tk: 96, Hq: 4, Hkv: 2, D: 64, causal: true, cuSeqlens: Int32Array.from([0, 10, 50, 120, 192]) },
  { name: 'packed, tokens outside samples', B: 1, Tq: 96, Tk: 96, Hq: 2, Hkv: 1, D: 48, causal: true, cuSeqlens: Int32Array.from([0, 30, 61]) },
  { name: 'head dim 256', B: 1, Tq: 40, Tk: 40, Hq: 2, Hkv: 1, D: 256, causal: true, cuSeqlens: null },
  { name: 'tiny (one query, three keys)', B: 1, Tq: 1, Tk: 3, Hq: 1, Hkv: 1, D: 8, causal: false, cuSeqlens: null },
  // several query and key tiles of the tensor-core kernels (64 rows, 64 or 32 keys), partial last tiles
  { name: 'several tiles, not causal, D=96', B: 1, Tq: 130, Tk: 150, Hq: 2, Hkv: 1, D: 96, causal: false, cuSeqlens: null },
  { name: 'KV cache, several key tiles', B: 1, Tq: 20, Tk: 150, Hq: 4, Hkv: 1, D: 64, causal: true, cuSeqlens: null },
  { name: 'packed, several tiles per sample, GQA 2:1', B: 1, Tq: 200, Tk: 200, Hq: 4, Hkv: 2, D: 32, causal: true, cuSeqlens: Int32Array.from([0, 7, 140, 200]) },
  // worst-case grids (tileBound): most blocks idle, or nearly every block a tile of its own
  { name: 'one sample per row, on the device', B: 3, Tq: 80, Tk: 80, Hq: 2, Hkv: 1, D: 64, causal: true, cuSeqlens: Int32Array.from([0, 80, 160, 240]), onDevice: true },
  { name: 'one sample over both rows, on the device', B: 2, Tq: 70, Tk: 70, Hq: 2, Hkv: 2, D: 32, causal: true, cuSeqlens: Int32Array.from([0, 140]), onDevice: true },
  { name: "GQA 7:1 (Qwen2.5-0.5B's heads), packed, several tiles, on the device", B: 1, Tq: 150, Tk: 150, Hq: 14, Hkv: 2, D: 64, causal: true, cuSeqlens: Int32Array.from([0, 37, 150]), onDevice: true },
  { name: 'GQA 7:1 over few key tiles (dK/dV: the group split over blocks, unevenly)', B: 1, Tq: 150, Tk: 150, Hq: 14, Hkv: 2, D: 64, causal: true, cuSeqlens: null },
  { name: 'packed, tokens outside samples, GQA 4:1, D=64', B: 1, Tq: 96, Tk: 96, Hq: 4, Hkv: 1, D: 64, causal: true, cuSeqlens: Int32Array.from([0, 30, 61]) },
  { name: 'many small samples across row ends, on the device', B: 2, Tq: 75, Tk: 75, Hq: 2, Hkv: 1, D: 32, causal: true, cuSeqlens: samples(150, [1, 2, 3, 5, 8, 13, 4, 1, 1, 9]), onDevice: true },
];

test("the dK/dV pass splits a GQA group over blocks only where a kv head per key tile leaves SMs idle", () => {
  const H200 = 132; // SMs
  // 2048 tokens: 32 key tiles of 64
  assert.deepEqual(dkdvSplit(32 * 2, 7, H200), { per: 1, splits: 7 }, 'Qwen2.5-0.5B: 2 kv heads, 7 query heads each');
  assert.deepEqual(dkdvSplit(32 * 8, 4, H200), { per: 2, splits: 2 }, 'Llama-3-8B: 8 kv heads, 4 query heads each');
  assert.deepEqual(dkdvSplit(32 * 32, 1, H200), { per: 1, splits: 1 }, 'Llama-2-7B: no GQA');
  assert.deepEqual(dkdvSplit(32 * 8, 4, 46), { per: 4, splits: 1 }, 'Llama-3-8B on a 46-SM card: enough blocks already');
  assert.deepEqual(dkdvSplit(3 * 2, 7, 4), { per: 3, splits: 3 }, 'uneven: 3 + 3 + 1 heads');
});

test('attention forward and backward, float32', { skip: SKIP }, () => {
  for (const c of CASES) runAttentionCase(c, 'float32');
});

test('attention forward and backward, bfloat16', { skip: SKIP }, () => {
  for (const c of CASES) runAttentionCase(c, 'bfloat16');
});

test('attention forward and backward, float16', { skip: SKIP }, () => {
  for (const c of CASES.slice(0, 3)) runAttentionCase(c, 'float16');
});

// A KV cache of Tk rows filled to kvLength (read on the device): decoding one token, a prompt's
// rows, a cache filled to capacity, an empty one; the rows past the length hold garbage. One query
// row takes the decoding kernels (keys split over blocks), more the training kernels.
const KV_CASES: (Case & { kvLength: number })[] = [
  { name: 'KV cache of 64 filled to 37, one token', B: 1, Tq: 1, Tk: 64, Hq: 4, Hkv: 2, D: 64, causal: true, cuSeqlens: null, kvLength: 37 },
  { name: 'KV cache of 150 filled to 99, 20 rows', B: 2, Tq: 20, Tk: 150, Hq: 2, Hkv: 1, D: 128, causal: true, cuSeqlens: null, kvLength: 99 },
  { name: 'KV cache filled to capacity, D=80', B: 1, Tq: 1, Tk: 70, Hq: 3, Hkv: 1, D: 80, causal: true, cuSeqlens: null, kvLength: 70 },
  { name: 'KV cache, not causal, D=32', B: 1, Tq: 2, Tk: 40, Hq: 2, Hkv: 2, D: 32, causal: false, cuSeqlens: null, kvLength: 9 },
  // decoding kernels (one query row): chunks of 32 keys, a GQA group of 7, a partial last chunk
  { name: 'KV cache of 200 filled to 133, GQA 7:1, two rows', B: 2, Tq: 1, Tk: 200, Hq: 14, Hkv: 2, D: 64, causal: true, cuSeqlens: null, kvLength: 133 },
  { name: 'KV cache of 97 filled to 65, D=256 (shared memory over 48 KiB)', B: 1, Tq: 1, Tk: 97, Hq: 8, Hkv: 2, D: 256, causal: true, cuSeqlens: null, kvLength: 65 },
  { name: 'KV cache of 50 filled to 1, D=48', B: 1, Tq: 1, Tk: 50, Hq: 2, Hkv: 1, D: 48, causal: true, cuSeqlens: null, kvLength: 1 },
  { name: 'an empty KV cache', B: 1, Tq: 1, Tk: 40, Hq: 2, Hkv: 1, D: 64, causal: false, cuSeqlens: null, kvLength: 0 },
];

function runKv(c: Case & { kvLength: number }, dtype: FloatDType): void {
  const { name, onDevice: _, kvLength, ...rest } = c;
  const shape: AttentionShape = { ...rest, dtype, scale: 1 / Math.sqrt(c.D) };
  const qN = c.B * c.Tq * c.Hq * c.D;
  const kN = c.B * c.Tk * c.Hkv * c.D;
  compareWithCpu(
    `attention ${name} ${dtype}`,
    {
      q: { dtype, data: uniform(dtype, qN) },
      k: { dtype, data: uniform(dtype, kN) },
      v: { dtype, data: uniform(dtype, kN) },
      len: { dtype: 'int32', data: Int32Array.of(kvLength) },
      out: { dtype, data: uniform(dtype, qN) },
      lse: { dtype: 'float32', data: uniform('float32', c.B * c.Hq * c.Tq) },
    },
    ['out', 'lse'],
    tolFor(dtype, true),
    (b, s) => b.attention({ ...shape, kvLength: s['len']!, q: s['q']!, k: s['k']!, v: s['v']!, out: s['out']!, lse: s['lse']! }),
  );
}

test('attention over a KV cache filled to a length on the device', { skip: SKIP }, () => {
  for (const dtype of ['float32', 'bfloat16', 'float16'] as const) for (const c of KV_CASES) runKv(c, dtype);
});

test('attention, the pipelined tensor-core forward (XTUNER_CUDA_ATTENTION=pipe: K and V tiles by cp.async)', { skip: SKIP }, () => {
  process.env['XTUNER_CUDA_ATTENTION'] = 'pipe';
  try {
    // on the kernel emulator, copies land at their thread's wait (a missing wait shows), then at
    // their issue (a copy over a tile still being read shows); a card ignores FAKE_CUDA_ASYNC
    for (const landing of ['late', 'early']) {
      process.env['FAKE_CUDA_ASYNC'] = landing;
      for (const c of CASES) runAttentionCase(c, 'bfloat16');
      for (const c of CASES.slice(0, 3)) runAttentionCase(c, 'float16');
    }
  } finally {
    delete process.env['XTUNER_CUDA_ATTENTION'];
    delete process.env['FAKE_CUDA_ASYNC'];
  }
});
