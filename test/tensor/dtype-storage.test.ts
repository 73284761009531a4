// Storage of every dtype through tensors: bf16/f16 bits in and out, conversions on creation and
// cast, integer tensors.

import test from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.ts';

test('bf16 and f16 tensors round trip their bits and decode to float32', () => {
  T.tidy(() => {
    // bf16 bits: 1.0 = 0x3f80, -2.0 = 0xc000, 0.5 = 0x3f00
    const bf = T.tensor(new Uint16Array([0x3f80, 0xc000, 0x3f00]), [3], { dtype: 'bfloat16' });
    assert.equal(bf.dtype, 'bfloat16');
    assert.deepEqual([...bf.toFloat32Array()], [1, -2, 0.5]);
    assert.deepEqual([...(bf.toHostArray() as Uint16Array)], [0x3f80, 0xc000, 0x3f00]);
    // f16 bits: 1.0 = 0x3c00, 65504 = 0x7bff, smallest subnormal 2^-24 = 0x0001
    const h = T.tensor(new Uint16Array([0x3c00, 0x7bff, 0x0001]), [3], { dtype: 'float16' });
    assert.deepEqual([...h.toFloat32Array()], [1, 65504, 2 ** -24]);
    assert.throws(() => T.tensor(new Uint16Array([1])), /Uint16Array holds 16-bit float bits/);
  });
});

test('float32 data stored as bf16 rounds to nearest even', () => {
  T.tidy(() => {
    const t = T.tensor(new Float32Array([1 + 2 ** -8, 1 + 3 * 2 ** -8, 3.140625]), [3], { dtype: 'bfloat16' });
    assert.deepEqual([...t.toFloat32Array()], [1, 1 + 2 ** -6, 3.140625]);
    const back = T.cast(t, 'float32');
    assert.deepEqual([...back.toFloat32Array()], [1, 1 + 2 ** -6, 3.140625]);
  });
});

test('integer tensors: int32, int64, uint8', () => {
  T.tidy(() => {
    const i = T.tensor([[1, -2], [3, 2 ** 30]], undefined, { dtype: 'int32' });
    assert.equal(i.dtype, 'int32');
    assert.deepEqual([...i.toInt32Array()], [1, -2, 3, 2 ** 30]);
    const l = T.tensor(new BigInt64Array([5n, -7n]));
    assert.equal(l.dtype, 'int64');
    assert.deepEqual([...T.cast(l, 'int32').toInt32Array()], [5, -7]);
    const u = T.tensor(new Uint8Array([0, 255]));
    assert.deepEqual([...u.toFloat32Array()], [0, 255]);
  });
});

test('shapes are inferred from nested arrays, checked against data, and ragged arrays are rejected', () => {
  T.tidy(() => {
    assert.deepEqual(T.tensor([[[1], [2]], [[3], [4]]]).shape, [2, 2, 1]);
    assert.deepEqual(T.tensor(5).shape, []);
    assert.equal(T.tensor(5).item(), 5);
    assert.throws(() => T.tensor([[1, 2], [3]]), /ragged/);
    assert.throws(() => T.tensor(new Float32Array(5), [2, 3]), /5 values do not fill shape \[2, 3\]/);
  });
});

test('assign copies values in place, converting dtypes', () => {
  T.tidy(() => {
    const t = T.zeros([3], { dtype: 'bfloat16' });
    t.assign(T.tensor([1.5, 2, -3]));
    assert.deepEqual([...t.toFloat32Array()], [1.5, 2, -3]);
    T.assign(t, new Float32Array([4, 5, 6]));
    assert.deepEqual([...t.toFloat32Array()], [4, 5, 6]);
    assert.throws(() => t.assign(T.zeros([4])), /assign: shape \[4\] does not fit \[3\]/);
  });
});
