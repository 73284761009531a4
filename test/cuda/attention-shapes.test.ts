// Attention (forward out/lse, backward dq/dk/dv) on the shape regimes attention.test.ts does not
// pin: sequence lengths around the kernels' tiles (1, 7, 63, 65, 129 against 64-row query tiles and
// 32/64-key tiles), batch > 1 without cuSeqlens, Tq != Tk both ways, GQA ratios 1, 2, 3, 4, 5, 8 and
// dK/dV group splits that do not divide the group (the emulator reports 4 SMs, so most GQA cases
// split), packed rows of one-token samples and many tiny samples (host and device cuSeqlens), every
// tensor-core head dim (32, 64, 96, 128) and CUDA-core ones (8, 16, 40, 80, 256), the tensor-core
// path forced onto the CUDA-core kernels by an unaligned view, no keys (Tk = 0), rows of one token
// as packed samples, the pipelined forward, and one-token decoding over a KV cache at group sizes
// 1, 3 and 8 (lengths at chunk edges, past the capacity, negative). Plus a few shapes drawn at random per run (the seed is printed
// on a failure; XTUNER_TEST_SEED replays it). CUDA against the CPU twin at the named tolerances.

import test from 'node:test';
import type { AttentionShape } from '../../src/backends/backend.ts';
import { runAttentionCase, samples, type Case } from './attention-cases.ts';
import { compareWithCpu, ints, SKIP, tolFor, uniform } from './helpers.ts';

const row = (B: number, T: number, Hq: number, Hkv: number, D: number, causal: boolean, name = ''): Case => ({
  name: `${name}B=${B} T=${T} Hq=${Hq} Hkv=${Hkv} D=${D} ${causal ? 'causal' : 'full'}`, B, Tq: T, Tk: T, Hq, Hkv, D, causal, cuSeqlens: null,
});

const CASES: Case[] = [
  // lengths around the tiles, batch > 1 without cuSeqlens (T = 1 forward: the decoding kernels)
  ...[1, 7, 63, 65, 129].flatMap((T) => [row(2, T, 4, 2, 64, true), row(2, T, 4, 2, 64, false)]),
  // GQA ratios; with 4 SMs the dK/dV pass splits each group over blocks
  ...[1, 2, 3, 4, 8].map((g) => row(1, 65, 2 * g, 2, 32, true, `GQA ${g}:1 `)),
  row(1, 150, 7, 1, 64, true, 'group 7 split 2+2+2+1 '),
  row(1, 256, 5, 1, 32, true, 'group 5 split 2+2+1 '),
  row(2, 129, 6, 2, 96, true, 'GQA 3:1, D=96 '),
  row(1, 129, 8, 1, 128, false, 'GQA 8:1, D=128 '),
  // Tq != Tk without cuSeqlens
  { name: 'Tq=7 < Tk=129 causal', B: 2, Tq: 7, Tk: 129, Hq: 4, Hkv: 2, D: 64, causal: true, cuSeqlens: null },
  { name: 'Tq=65 < Tk=66 causal', B: 1, Tq: 65, Tk: 66, Hq: 3, Hkv: 1, D: 32, causal: true, cuSeqlens: null },
  { name: 'Tq=2 < Tk=63 full, D=128', B: 3, Tq: 2, Tk: 63, Hq: 2, Hkv: 1, D: 128, causal: false, cuSeqlens: null },
  { name: 'Tq=129 > Tk=7 full', B: 1, Tq: 129, Tk: 7, Hq: 2, Hkv: 2, D: 64, causal: false, cuSeqlens: null },
  { name: 'Tq=1 Tk=1', B: 2, Tq: 1, Tk: 1, Hq: 2, Hkv: 1, D: 32, causal: true, cuSeqlens: null },
  { name: 'no keys (Tk=0), full', B: 2, Tq: 3, Tk: 0, Hq: 2, Hkv: 1, D: 64, causal: false, cuSeqlens: null },
  { name: 'Tq=1 rows as packed samples, on the device', B: 3, Tq: 1, Tk: 1, Hq: 4, Hkv: 2, D: 64, causal: true, cuSeqlens: Int32Array.from([0, 1, 2, 3]), onDevice: true },
  // packed rows
  { name: 'one-token samples, host cuSeqlens', B: 2, Tq: 33, Tk: 33, Hq: 2, Hkv: 1, D: 64, causal: true, cuSeqlens: samples(66, [1]) },
  { name: 'one-token samples, device cuSeqlens', B: 2, Tq: 20, Tk: 20, Hq: 4, Hkv: 2, D: 32, causal: true, cuSeqlens: samples(40, [1]), onDevice: true },
  { name: 'tiny samples 1..3 across row ends, GQA 3:1, on the device', B: 3, Tq: 65, Tk: 65, Hq: 3, Hkv: 1, D: 64, causal: true, cuSeqlens: samples(195, [1, 2, 3, 1, 1, 2]), onDevice: true },
  { name: 'samples of 63, 65, 1, 129 over 2 rows of 129', B: 2, Tq: 129, Tk: 129, Hq: 2, Hkv: 1, D: 128, causal: true, cuSeqlens: Int32Array.from([0, 63, 128, 129, 258]) },
  { name: 'tokens outside samples, samples of 1', B: 1, Tq: 70, Tk: 70, Hq: 4, Hkv: 1, D: 96, causal: true, cuSeqlens: Int32Array.from([0, 1, 2, 3, 40]) },
  { name: 'packed, not causal, length-1 and 64-long samples', B: 1, Tq: 130, Tk: 130, Hq: 2, Hkv: 2, D: 64, causal: false, cuSeqlens: Int32Array.from([0, 1, 65, 66, 130]) },
  // CUDA-core head dims (bf16/f16 too) and small ones
  row(2, 65, 2, 1, 80, true, 'D=80 '),
  row(1, 33, 4, 2, 256, true, 'D=256 '),
  row(2, 63, 3, 3, 16, false, 'D=16 '),
  row(1, 65, 2, 1, 8, true, 'D=8 '),
  row(1, 40, 2, 1, 40, true, 'D=40 '),
  // tensor-core shapes on views: 8 elements in keeps 16-bit tensors aligned (tensor cores), 1 does not (CUDA cores)
  { ...row(2, 65, 4, 2, 64, true, 'aligned views (offset 8) '), offset: 8 },
  { ...row(2, 65, 4, 2, 64, true, 'unaligned views (offset 1) '), offset: 1 },
];

test('attention shapes, bfloat16 (tensor cores where D and alignment allow)', { skip: SKIP }, () => {
  for (const c of CASES) runAttentionCase(c, 'bfloat16');
});

test('attention shapes, float32 (CUDA cores)', { skip: SKIP }, () => {
  for (const c of CASES) runAttentionCase(c, 'float32');
});

test('attention shapes, float16 (every other case)', { skip: SKIP }, () => {
  CASES.forEach((c, i) => i % 2 === 1 && runAttentionCase(c, 'float16'));
});

test('attention shapes, the pipelined tensor-core forward (every third case, copies landing late and early)', { skip: SKIP }, () => {
  process.env['XTUNER_CUDA_ATTENTION'] = 'pipe';
  try {
    for (const landing of ['late', 'early']) {
      process.env['FAKE_CUDA_ASYNC'] = landing;
      CASES.forEach((c, i) => i % 3 === (landing === 'late' ? 0 : 1) && runAttentionCase({ ...c, backward: false }, i % 2 ? 'float16' : 'bfloat16'));
    }
  } finally {
    delete process.env['XTUNER_CUDA_ATTENTION'];
    delete process.env['FAKE_CUDA_ASYNC'];
  }
});

test('attention, random shapes near the tile edges', { skip: SKIP }, () => {
  const pick = <X>(xs: readonly X[]): X => xs[ints(1, xs.length)[0]!]!;
  for (let n = 0; n < 6; n++) {
    const dtype = pick(['bfloat16', 'float16', 'float32'] as const);
    const D = pick([32, 64, 96, 128, 48, 80]);
    const Hkv = pick([1, 2]);
    const Hq = Hkv * pick([1, 2, 3, 4, 5, 8]);
    const B = pick([1, 2, 3]);
    const T = pick([1, 2, 15, 16, 17, 31, 33, 63, 64, 65, 95, 97, 127, 128, 129]);
    const causal = pick([true, false]);
    const packed = B * T > 2 && pick([false, true]);
    let cuSeqlens: Int32Array | null = null;
    if (packed) {
      // random sample lengths 1..40 over every token
      const cu = [0];
      while (cu[cu.length - 1]! < B * T) cu.push(Math.min(B * T, cu[cu.length - 1]! + 1 + ints(1, 40)[0]!));
      cuSeqlens = Int32Array.from(cu);
    }
    runAttentionCase({ name: `random #${n}: B=${B} T=${T} Hq=${Hq} Hkv=${Hkv} D=${D} causal=${causal} cu=${cuSeqlens ? `[${cuSeqlens}]` : 'none'}`, B, Tq: T, Tk: T, Hq, Hkv, D, causal, cuSeqlens, onDevice: packed && pick([false, true]) }, dtype);
  }
});

// One query row (decoding kernels: chunks of 32 keys, the GQA group in one block) over a KV cache
// filled to a length on the device, around the chunk edges.
test('attention, one-token decoding over a KV cache: chunk edges and group sizes', { skip: SKIP }, () => {
  const cases: [number, number, number, number, number, number][] = [
    // [B, Tk, kvLength, Hq, Hkv, D]
    [2, 65, 64, 6, 2, 96],
    [1, 65, 65, 8, 1, 64],
    [3, 33, 32, 3, 3, 80],
    [1, 129, 1, 8, 1, 128],
    [2, 1, 1, 4, 1, 32],
    [1, 97, 33, 16, 2, 256],
    [1, 40, 45, 4, 2, 64], // a length past the capacity: clamped to it
    [2, 40, -3, 4, 2, 64], // a negative length: clamped to 0 (out 0, lse -inf)
  ];
  for (const dtype of ['float32', 'bfloat16', 'float16'] as const) {
    for (const [B, Tk, kvLength, Hq, Hkv, D] of cases) {
      const shape: AttentionShape = { B, Tq: 1, Tk, Hq, Hkv, D, causal: true, cuSeqlens: null, dtype, scale: 1 / Math.sqrt(D) };
      const qN = B * Hq * D;
      const kN = B * Tk * Hkv * D;
      compareWithCpu(
        `decoding B=${B} Tk=${Tk} filled ${kvLength} Hq=${Hq} Hkv=${Hkv} D=${D} ${dtype}`,
        {
          q: { dtype, data: uniform(dtype, qN) },
          k: { dtype, data: uniform(dtype, kN) },
          v: { dtype, data: uniform(dtype, kN) },
          len: { dtype: 'int32', data: Int32Array.of(kvLength) },
          out: { dtype, data: uniform(dtype, qN) },
          lse: { dtype: 'float32', data: uniform('float32', B * Hq) },
        },
        ['out', 'lse'],
        tolFor(dtype, true),
        (b, s) => b.attention({ ...shape, kvLength: s['len']!, q: s['q']!, k: s['k']!, v: s['v']!, out: s['out']!, lse: s['lse']! }),
      );
    }
  }
});
