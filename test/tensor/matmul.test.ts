// matmul and linear against float64 triple loops, including bias, batched and shared right
// operands, and bf16 weights.

import test from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.ts';
import { assertClose, gradCheck, type Ref } from './gradcheck.ts';

/** [batch, M, K] x [batch | 1, K, N] in float64. */
function matmulRef(batch: number, M: number, K: number, N: number, sharedB: boolean): Ref {
  return ([a, b]) => {
    const out = new Float64Array(batch * M * N);
    for (let z = 0; z < batch; z++) {
      const bo = sharedB ? 0 : z * K * N;
      for (let i = 0; i < M; i++) {
        for (let j = 0; j < N; j++) {
          let s = 0;
          for (let p = 0; p < K; p++) s += a![z * M * K + i * K + p]! * b![bo + p * N + j]!;
          out[z * M * N + i * N + j] = s;
        }
      }
    }
    return out;
  };
}

test('matmul 2-D, batched, and batched with a shared [K, N]', () => {
  for (const seed of [1, 2]) {
    gradCheck('matmul 2d', [{ shape: [5, 7] }, { shape: [7, 3] }], ([a, b]) => T.matmul(a!, b!), matmulRef(1, 5, 7, 3, true), seed);
    gradCheck('matmul batched', [{ shape: [2, 3, 4, 6] }, { shape: [2, 3, 6, 5] }], ([a, b]) => T.matmul(a!, b!), matmulRef(6, 4, 6, 5, false), seed);
    gradCheck('matmul shared b', [{ shape: [2, 3, 4, 6] }, { shape: [6, 5] }], ([a, b]) => T.matmul(a!, b!), matmulRef(6, 4, 6, 5, true), seed);
  }
  T.tidy(() => assert.throws(() => T.matmul(T.zeros([2, 3]), T.zeros([4, 5])), /matmul: \[2, 3\] @ \[4, 5\] do not fit/));
});

function linearRef(rows: number, inF: number, outF: number, bias: boolean): Ref {
  return ([x, w, b]) => {
    const out = new Float64Array(rows * outF);
    for (let r = 0; r < rows; r++) {
      for (let o = 0; o < outF; o++) {
        let s = bias ? b![o]! : 0;
        for (let i = 0; i < inF; i++) s += x![r * inF + i]! * w![o * inF + i]!;
        out[r * outF + o] = s;
      }
    }
    return out;
  };
}

test('linear with and without bias, over leading dims', () => {
  for (const seed of [3, 4, 5]) {
    gradCheck('linear', [{ shape: [2, 3, 8] }, { shape: [5, 8] }], ([x, w]) => T.linear(x!, w!), linearRef(6, 8, 5, false), seed);
    gradCheck('linear bias', [{ shape: [4, 8] }, { shape: [6, 8] }, { shape: [6] }], ([x, w, b]) => T.linear(x!, w!, b!), linearRef(4, 8, 6, true), seed);
    gradCheck('linear frozen weight', [{ shape: [4, 8] }, { shape: [6, 8], noGrad: true }], ([x, w]) => T.linear(x!, w!), linearRef(4, 8, 6, false), seed);
  }
});

test('linear with a frozen weight computes no weight gradient', () => {
  T.tidy(() => {
    const x = T.randn([3, 4], { requiresGrad: true });
    const w = T.randn([2, 4]);
    T.sum(T.linear(x, w)).backward();
    assert.equal(w.grad, null);
    assert.ok(x.grad);
  });
});

test('linear with a bf16 weight equals float32 math on the rounded weight', () => {
  T.tidy(() => {
    const rng = new T.Rng(7);
    const x = T.randn([3, 16], { rng });
    const w32 = T.randn([5, 16], { rng });
    const wbf = T.cast(w32, 'bfloat16');
    wbf.requiresGrad = true;
    const y = T.linear(x, wbf);
    assert.equal(y.dtype, 'float32');
    const wr = wbf.toFloat32Array(); // the bf16 values, exactly
    const xs = x.toFloat32Array();
    const want = linearRef(3, 16, 5, false)([Float64Array.from(xs), Float64Array.from(wr)]);
    assertClose(y.toFloat32Array(), want, 1e-5, 'bf16 linear');
    T.sum(y).backward();
    assert.equal(wbf.grad!.dtype, 'bfloat16');
  });
});
