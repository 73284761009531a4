// In-place helpers: AdamW against the torch.optim.AdamW update written out here in float64,
// sums of squares, scale/add/fill in place.

import test from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.ts';
import { assertClose } from './gradcheck.ts';

/** float32 storage of values computed in float64: ~1e-7 relative per step over a few steps. */
const ADAMW_TOL = 1e-6;

test('adamwUpdate follows torch.optim.AdamW over several steps', () => {
  const rng = new T.Rng(1);
  const n = 10;
  const p0 = Array.from({ length: n }, () => rng.normal());
  const grads = Array.from({ length: 4 }, () => Array.from({ length: n }, () => rng.normal()));
  const h = { lr: 0.05, beta1: 0.9, beta2: 0.99, eps: 1e-6, weightDecay: 0.1 };
  // reference, as in torch/optim/adamw.py (single tensor, no amsgrad)
  const p = [...p0];
  const m = new Array<number>(n).fill(0);
  const v = new Array<number>(n).fill(0);
  T.tidy(() => {
    const param = T.tensor(p0);
    const expAvg = T.zeros([n]);
    const expAvgSq = T.zeros([n]);
    grads.forEach((g, s) => {
      const step = s + 1;
      for (let i = 0; i < n; i++) {
        p[i] = p[i]! * (1 - h.lr * h.weightDecay);
        m[i] = m[i]! + (g[i]! - m[i]!) * (1 - h.beta1);
        v[i] = v[i]! * h.beta2 + (1 - h.beta2) * g[i]! * g[i]!;
        const bc1 = 1 - h.beta1 ** step;
        const bc2 = 1 - h.beta2 ** step;
        const denom = Math.sqrt(v[i]!) / Math.sqrt(bc2) + h.eps;
        p[i] = p[i]! - (h.lr / bc1) * (m[i]! / denom);
      }
      T.adamwUpdate(param, T.tensor(g), expAvg, expAvgSq, { ...h, step });
    });
    assertClose(param.toFloat32Array(), p, ADAMW_TOL, 'param');
    assertClose(expAvg.toFloat32Array(), m, ADAMW_TOL, 'exp_avg');
    assertClose(expAvgSq.toFloat32Array(), v, ADAMW_TOL, 'exp_avg_sq');
    assert.throws(() => T.adamwUpdate(param, T.zeros([3]), expAvg, expAvgSq, { ...h, step: 1 }), /grad \[3\]/);
  });
});

test('adamwUpdate on a bf16 parameter rounds the float32 result', () => {
  T.tidy(() => {
    const p = T.tensor(new Float32Array([1, -1]), [2], { dtype: 'bfloat16' });
    T.adamwUpdate(p, T.tensor([0.5, -0.5]), T.zeros([2]), T.zeros([2]), { lr: 0.125, beta1: 0.9, beta2: 0.999, eps: 0, weightDecay: 0, step: 1 });
    // first step moves each weight by lr * sign(g) exactly
    assert.deepEqual([...p.toFloat32Array()], [0.875, -0.875]);
  });
});

test('sumOfSquares over one and many tensors', () => {
  T.tidy(() => {
    const a = T.tensor([1, 2, 3]);
    const b = T.cast(T.tensor([[0.5, -0.5]]), 'bfloat16');
    assert.equal(T.sumOfSquares(a), 14);
    assert.equal(T.sumOfSquares([a, b]), 14.5);
    assert.equal(T.sumOfSquares([]), 0);
  });
});

test('scaleInPlace, addInPlace and fillInPlace change the storage in place', () => {
  T.tidy(() => {
    const t = T.tensor([1, 2, 3]);
    const view = T.reshape(t, [3, 1]); // shares the storage
    T.scaleInPlace(t, 2);
    T.addInPlace(t, T.tensor([1, 1, 1]), -0.5);
    assert.deepEqual([...view.toFloat32Array()], [1.5, 3.5, 5.5]);
    T.fillInPlace(t, 7);
    assert.deepEqual([...t.toFloat32Array()], [7, 7, 7]);
  });
});
