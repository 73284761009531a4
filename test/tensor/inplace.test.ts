// In-place helpers: AdamW against the torch.optim.AdamW update written out here in float64, the
// global norm with its clip coefficient, one read for several scalars, scale/add/fill in place.

import test from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.ts';
import { assertClose } from './gradcheck.ts';

/** float32 storage of values computed in float64: ~1e-7 relative per step over a few steps. */
const ADAMW_TOL = 1e-6;

test('adamwStep follows torch.optim.AdamW over several steps', () => {
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
      T.adamwStep([{ param, grad: T.tensor(g), expAvg, expAvgSq, step }], h);
    });
    assertClose(param.toFloat32Array(), p, ADAMW_TOL, 'param');
    assertClose(expAvg.toFloat32Array(), m, ADAMW_TOL, 'exp_avg');
    assertClose(expAvgSq.toFloat32Array(), v, ADAMW_TOL, 'exp_avg_sq');
    assert.throws(() => T.adamwStep([{ param, grad: T.zeros([3]), expAvg, expAvgSq, step: 1 }], h), /grad \[3\]/);
    assert.throws(() => T.adamwStep([{ param, grad: T.zeros([n]), expAvg, expAvgSq, step: 0 }], h), /step counts from 1/);
    assert.throws(() => T.adamwStep([{ param, grad: T.zeros([n]), expAvg, expAvgSq, step: 1 }], h, T.zeros([2])), /gradScale must be a float32 single-element/);
  });
});

test('adamwStep on a bf16 parameter rounds the float32 result', () => {
  T.tidy(() => {
    const p = T.tensor(new Float32Array([1, -1]), [2], { dtype: 'bfloat16' });
    T.adamwStep([{ param: p, grad: T.tensor([0.5, -0.5]), expAvg: T.zeros([2]), expAvgSq: T.zeros([2]), step: 1 }], { lr: 0.125, beta1: 0.9, beta2: 0.999, eps: 0, weightDecay: 0 });
    // first step moves each weight by lr * sign(g) exactly
    assert.deepEqual([...p.toFloat32Array()], [0.875, -0.875]);
  });
});

test('gradNormClip: the global norm of many tensors and min(1, maxNorm / (norm + 1e-6)), on the device', () => {
  T.tidy(() => {
    const a = T.tensor([1, 2, 3]);
    const b = T.cast(T.tensor([[0.5, -0.5]]), 'bfloat16');
    const c = T.tensor([[0.5]]);
    const { norm, coef } = T.gradNormClip([a, b, c], 1, 'cpu');
    assert.deepEqual([norm.shape, coef.shape, norm.dtype], [[1], [1], 'float32']);
    assert.deepEqual(T.readScalars([norm, coef]), [Math.sqrt(14.75), Math.fround(1 / Math.fround(Math.fround(Math.sqrt(14.75)) + Math.fround(1e-6)))].map(Math.fround));
    assert.deepEqual(T.readScalars(Object.values(T.gradNormClip([a], 100, 'cpu'))), [Math.fround(Math.sqrt(14)), 1]); // below maxNorm: 1
    assert.deepEqual(T.readScalars(Object.values(T.gradNormClip([], 1, 'cpu'))), [0, 1]);
    // non-finite norms as the host test `coef < 1` had them: NaN leaves the grads unscaled, inf zeroes them
    assert.deepEqual(T.readScalars(Object.values(T.gradNormClip([T.tensor([NaN, 1])], 1, 'cpu'))), [NaN, 1]);
    assert.deepEqual(T.readScalars(Object.values(T.gradNormClip([T.tensor([Infinity, 1])], 1, 'cpu'))), [Infinity, 0]);
  });
});

test('readScalars reads single-element tensors of any float dtype together', () => {
  T.tidy(() => {
    assert.deepEqual(T.readScalars([T.tensor([1.5]), T.cast(T.tensor([[-2]]), 'bfloat16'), T.tensor(3)]), [1.5, -2, 3]);
    assert.throws(() => T.readScalars([T.tensor([1, 2])]), /readScalars: \[2\] is not a single element/);
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

test('version: every in-place write through any handle counts; ops and reads do not', () => {
  T.tidy(() => {
    const p = T.tensor([1, 2, 3, 4], [4], { requiresGrad: true });
    const view = p.detach();
    const seen = [p.version];
    T.assign(p, new Float32Array([4, 3, 2, 1]));
    T.scaleInPlace(view, 2);
    T.scaleInPlace(p, T.tensor([0.5]));
    T.addInPlace(view, T.ones([4]));
    T.fillInPlace(p, 7);
    T.adamwStep([{ param: p, grad: T.ones([4]), expAvg: T.zeros([4]), expAvgSq: T.zeros([4]), step: 1 }], { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 });
    seen.push(p.version);
    T.mul(p, p).toFloat32Array(); // an op reading p: no write
    seen.push(view.version);
    assert.deepEqual(seen, [0, 6, 6]);
  });
});

test('scaleInPlace by a single-element tensor: the value read by the kernel, as the number', () => {
  T.tidy(() => {
    for (const dtype of ['float32', 'bfloat16'] as const) {
      const x = T.tensor([1.5, -3, 0.1, 7], [4], { dtype });
      const want = T.scale(x, Math.fround(0.3)).toHostArray();
      assert.deepEqual(T.scaleInPlace(x, T.tensor([0.3])).toHostArray(), want, dtype);
    }
    assert.throws(() => T.scaleInPlace(T.ones([2]), T.ones([2])), /single element/);
  });
});

test('castCopy: cached until the source is written; AdamW refreshes it in its step; a copy held elsewhere is never overwritten', () => {
  T.tidy(() => {
    const a = T.keep(T.tensor([0.1, 0.2, 0.3, 1 / 3], [4], { requiresGrad: true }));
    const bits = (t: T.Tensor) => [...t.toHostArray()];
    const c1 = T.castCopy(a, 'bfloat16');
    assert.deepEqual(bits(c1), bits(T.cast(a, 'bfloat16')));
    const c2 = T.castCopy(a, 'bfloat16');
    assert.equal(c2.storage, c1.storage, 'the same cached storage while a is unchanged');
    c1.dispose();
    c2.dispose();
    // written: the copy is made again (in place: only the cache holds it)
    T.assign(a, new Float32Array([1, 2, 3, 4]));
    assert.deepEqual(bits(T.castCopy(a, 'bfloat16')), bits(T.cast(a, 'bfloat16')));
    // the AdamW step writes the copy along with a: equal to the cast of the new values, no cast needed after
    const expAvg = T.zeros([4]);
    const expAvgSq = T.zeros([4]);
    const h = { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 };
    T.adamwStep([{ param: a, grad: T.tensor([0.5, -1, 2, 1e-3]), expAvg, expAvgSq, step: 1 }], h);
    const after = T.castCopy(a, 'bfloat16');
    assert.deepEqual(bits(after), bits(T.cast(a, 'bfloat16')));
    // held elsewhere (as a pending backward holds it): the step leaves it alone, the next castCopy is new
    const old = bits(after);
    T.adamwStep([{ param: a, grad: T.tensor([1, 1, 1, 1]), expAvg, expAvgSq, step: 2 }], h);
    assert.deepEqual(bits(after), old, 'a held copy keeps its values');
    const fresh = T.castCopy(a, 'bfloat16');
    assert.notEqual(fresh.storage, after.storage);
    assert.deepEqual(bits(fresh), bits(T.cast(a, 'bfloat16')));
    // freed with a's storage
    const before = T.memoryStats().liveTensors;
    fresh.dispose();
    after.dispose();
    a.dispose();
    assert.equal(T.memoryStats().liveTensors, before - 4, 'the two handles, a, and the cached copy');
  });
});
