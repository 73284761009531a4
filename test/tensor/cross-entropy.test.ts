// crossEntropy: a hand-computed case, ignored labels, finite-difference gradients, stability with
// large logits, and bad labels.

import test from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.ts';
import { gradCheck, type Ref } from './gradcheck.ts';

test('crossEntropy equals the hand computation, ignoring -100', () => {
  T.tidy(() => {
    const logits = T.tensor([
      [1, 2, 3],
      [0, 0, 0],
      [5, -1, 2],
    ]);
    const loss = T.crossEntropy(logits, new Int32Array([2, -100, 0]));
    // row 0: log(e^1 + e^2 + e^3) - 3; row 2: log(e^5 + e^-1 + e^2) - 5; mean over 2 rows
    const r0 = Math.log(Math.E + Math.E ** 2 + Math.E ** 3) - 3;
    const r2 = Math.log(Math.E ** 5 + Math.E ** -1 + Math.E ** 2) - 5;
    assert.deepEqual(loss.shape, []);
    assert.ok(Math.abs(loss.item() - (r0 + r2) / 2) < 1e-6);
  });
});

test('crossEntropy gradients by finite differences, with ignored rows and a custom ignoreIndex', () => {
  const labels = new Int32Array([3, -100, 0, 6, 6, -100]);
  const ref = (lab: Int32Array, ignore: number): Ref => ([x]) => {
    const V = 7;
    let s = 0;
    let n = 0;
    lab.forEach((y, i) => {
      if (y === ignore) return;
      const row = x!.subarray(i * V, (i + 1) * V);
      const m = Math.max(...row);
      s += m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0)) - row[y]!;
      n++;
    });
    return Float64Array.of(n ? s / n : 0);
  };
  for (const seed of [1, 2, 3]) {
    gradCheck('crossEntropy', [{ shape: [6, 7] }], ([x]) => T.crossEntropy(x!, labels), ref(labels, -100), seed);
    const lab2 = new Int32Array([3, 0, 0, 6, 1, 0]);
    gradCheck('crossEntropy ignore 0', [{ shape: [6, 7] }], ([x]) => T.crossEntropy(x!, T.tensor(lab2), { ignoreIndex: 0 }), ref(lab2, 0), seed);
  }
});

test('crossEntropy is 0 with zero gradient when every label is ignored', () => {
  T.tidy(() => {
    const x = T.randn([3, 5], { requiresGrad: true });
    const loss = T.crossEntropy(x, new Int32Array([-100, -100, -100]));
    assert.equal(loss.item(), 0);
    loss.backward();
    assert.ok(x.grad!.toFloat32Array().every((v) => v === 0));
  });
});

test('crossEntropy is stable for large logits', () => {
  T.tidy(() => {
    const loss = T.crossEntropy(T.tensor([[1000, 0, -1000]]), new Int32Array([1]));
    assert.ok(Math.abs(loss.item() - 1000) < 1e-3);
  });
});

test('crossEntropy rejects labels out of range and a wrong count', () => {
  T.tidy(() => {
    const x = T.zeros([2, 4]);
    assert.throws(() => T.crossEntropy(x, new Int32Array([1, 4])), /label 4 at row 1 is outside \[0, 4\)/);
    assert.throws(() => T.crossEntropy(x, new Int32Array([1])), /1 labels for logits \[2, 4\]/);
  });
});

test("crossEntropy reduction 'sum' is count x the mean, with gradients count x the mean's", () => {
  T.tidy(() => {
    const labels = new Int32Array([2, -100, 0, 4]);
    const x = T.randn([4, 5], { requiresGrad: true });
    const mean = T.crossEntropy(x, labels);
    mean.backward();
    const gMean = x.grad!.toFloat32Array();
    x.grad = null;
    const sum = T.crossEntropy(x, labels, { reduction: 'sum' });
    sum.backward();
    assert.ok(Math.abs(sum.item() - 3 * mean.item()) <= 1e-6 * sum.item());
    x.grad!.toFloat32Array().forEach((g, i) => assert.ok(Math.abs(g - 3 * gMean[i]!) <= 1e-6, `grad ${i}`));
    const none = T.crossEntropy(x, new Int32Array([-100, -100, -100, -100]), { reduction: 'sum' });
    assert.equal(none.item(), 0);
  });
});
