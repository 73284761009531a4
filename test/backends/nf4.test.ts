// The CPU backend's NF4 kernels against src/quant/nf4.ts (itself checked against bitsandbytes'
// numbers in test/quant/nf4.test.ts). nf4Dequantize: the float32 bits of dequantizeNf4, and for
// bf16/f16 outputs the float32 values rounded once. nf4Quantize: the bytes of quantizeNf4 (codes,
// absmax or its double-quantised form), for weights of every float dtype. Nested and plain absmax,
// odd sizes, several 256-blocks of scales, other block sizes, and the edge cases of rounding.

import test from 'node:test';
import assert from 'node:assert/strict';
import { cpuBackend } from '../../src/backends/cpu/index.ts';
import { absmaxMean, NF4_MIDS, NF4_ZERO } from '../../src/backends/cpu/nf4.ts';
import { ABSMAX_BLOCK_SIZE, dequantizeNf4, NF4_BLOCK_SIZE, nf4Index, quantizeNf4, type Nf4Data, type Nf4Options } from '../../src/quant/nf4.ts';
import { f32ToHalf, halfToF32, type FloatDType } from '../../src/tensor/dtype.ts';

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

/** cpuBackend.nf4Quantize of `x` (host values of `dtype`) as an Nf4Data, plus its plain absmax. */
function quantizeKernel(x: Float32Array | Uint16Array, dtype: FloatDType, opts: Nf4Options = {}): { q: Nf4Data; absmax: Float32Array } {
  const n = x.length;
  const blockSize = opts.blockSize ?? NF4_BLOCK_SIZE;
  const nBlocks = Math.ceil(n / blockSize);
  const packed = new Uint8Array(Math.ceil(n / 2)).fill(0xff); // stale bytes: the kernel writes every one
  const absmax = new Float32Array(nBlocks);
  if (opts.doubleQuant === false) {
    cpuBackend.nf4Quantize(x, packed, absmax, null, null, null, n, blockSize, 1, dtype);
    return { q: { n, blockSize, packed, absmax, nested: null }, absmax };
  }
  const codes = new Uint8Array(nBlocks);
  const scales = new Float32Array(Math.ceil(nBlocks / ABSMAX_BLOCK_SIZE));
  const offset = new Float32Array(1);
  cpuBackend.nf4Quantize(x, packed, absmax, codes, scales, offset, n, blockSize, ABSMAX_BLOCK_SIZE, dtype);
  return { q: { n, blockSize, packed, absmax: null, nested: { codes, scales, offset: offset[0]!, blockSize: ABSMAX_BLOCK_SIZE } }, absmax };
}

test('nf4Quantize (CPU) gives the bytes of quantizeNf4, for float32, bfloat16 and float16 weights', () => {
  for (const n of [1, 2, 63, 129, 1001, 40_001, 64 * 700 + 3]) {
    for (const opts of [{}, { doubleQuant: false }, { blockSize: 128 }, { blockSize: 2 }]) {
      const v = values(n);
      for (const dtype of ['float32', 'bfloat16', 'float16'] as const) {
        const x = dtype === 'float32' ? v : f32ToHalf(v, dtype);
        const want = quantizeNf4(dtype === 'float32' ? v : halfToF32(x as Uint16Array, dtype), opts);
        const { q } = quantizeKernel(x, dtype, opts);
        assert.deepEqual(q, want, `${dtype} n=${n} ${JSON.stringify(opts)}`);
      }
    }
  }
});

test('nf4Quantize (CPU): ties go to the lower code, NaN to code 0, all-zero and infinite blocks to zeros', () => {
  const fr = Math.fround;
  // block 0: absmax 1 and every midpoint exactly (a tie between two codes); block 1: a NaN and
  // zeros; block 2: all zero; block 3: an infinity (1/inf = 0: zeros, as quantizeNf4);
  // block 4: a subnormal absmax (1/absmax overflows to inf)
  const x = new Float32Array(64 * 5);
  x[0] = 1;
  x.set(NF4_MIDS, 1);
  x[64] = NaN;
  x[65] = 0.5;
  x[64 * 3] = Infinity;
  x[64 * 3 + 1] = 2;
  x[64 * 4] = fr(1e-40);
  x[64 * 4 + 1] = -fr(1e-40);
  for (const opts of [{ doubleQuant: false }, {}]) {
    const { q, absmax } = quantizeKernel(x, 'float32', opts);
    assert.deepEqual(q, quantizeNf4(x, opts), JSON.stringify(opts));
    for (let k = 0; k < 15; k++) assert.equal(nf4Index(q, 1 + k), k, `midpoint ${k} rounds down`);
    assert.equal(nf4Index(q, 64), 0, 'NaN');
    assert.equal(nf4Index(q, 65), 15, 'NaN is left out of the absmax');
    for (const i of [128, 129, 64 * 3 + 1]) assert.equal(nf4Index(q, i), NF4_ZERO, `element ${i}`);
    assert.deepEqual([nf4Index(q, 256), nf4Index(q, 257), nf4Index(q, 258)], [15, 0, 0]); // 0 * inf = NaN -> 0
    assert.deepEqual([...absmax], [1, 0.5, 0, Infinity, fr(1e-40)]);
  }
});

/**
 * absmax values whose mean rounds differently in the shared lane order than summed one by one:
 * 2048 + 2^-13 (mean 1 + 2^-24, a float32 tie that rounds to even: 1) plus 2046 values of 2^-43,
 * each below half a float64 unit of 2048 (lost when added to it one at a time, kept when the lanes
 * first add them to each other: the mean then rounds up to 1 + 2^-23).
 */
function meanOrderAbsmax(): Float32Array {
  const a = new Float32Array(2048).fill(2 ** -43);
  a[0] = 2048;
  a[1] = 2 ** -13;
  return a;
}

test('absmaxMean: the shared float64 order; the sequential float64 mean except near a float32 tie', () => {
  for (const n of [1, 5, 1023, 1024, 1025, 70_001]) {
    const a = values(n * 3).filter((_, i) => i % 3 === 0).map(Math.abs);
    let sum = 0;
    for (const v of a) sum += v;
    assert.equal(absmaxMean(a), Math.fround(sum / n), `n=${n}`);
  }
  const a = meanOrderAbsmax();
  let sequential = 0;
  for (const v of a) sequential += v;
  assert.equal(Math.fround(sequential / a.length), 1);
  assert.equal(absmaxMean(a), 1 + 2 ** -23);
});
