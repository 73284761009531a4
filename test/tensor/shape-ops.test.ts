// Layout ops: reshape, transpose, permute, slice, concat, expand, cast. Values against index
// arithmetic done here, gradients against finite differences.

import test from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.ts';
import { gradCheck, type Ref } from './gradcheck.ts';

/** Row-major coordinates of flat index i in `shape`. */
function coords(i: number, shape: number[]): number[] {
  const c = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    c[d] = i % shape[d]!;
    i = Math.floor(i / shape[d]!);
  }
  return c;
}

function flat(c: number[], shape: number[]): number {
  return c.reduce((acc, v, d) => acc * shape[d]! + v, 0);
}

function permuteRef(shape: number[], perm: number[]): Ref {
  const outShape = perm.map((d) => shape[d]!);
  return ([x]) => {
    const out = new Float64Array(x!.length);
    for (let i = 0; i < out.length; i++) {
      const oc = coords(i, outShape);
      const ic = new Array<number>(shape.length);
      perm.forEach((d, k) => (ic[d] = oc[k]!));
      out[i] = x![flat(ic, shape)]!;
    }
    return out;
  };
}

test('reshape keeps the data and infers -1; gradients flow through', () => {
  for (const seed of [1, 2]) gradCheck('reshape', [{ shape: [2, 3, 4] }], ([x]) => T.mul(T.reshape(x!, [4, -1]), T.full([4, 6], 2)), ([x]) => x!.map((v) => 2 * v), seed);
  T.tidy(() => {
    assert.deepEqual(T.reshape(T.zeros([2, 3, 4]), [-1, 4]).shape, [6, 4]);
    assert.throws(() => T.reshape(T.zeros([2, 3]), [4, -1]), /reshape: cannot infer -1/);
    assert.throws(() => T.reshape(T.zeros([2, 3]), [4, 2]), /does not hold 6 elements/);
  });
});

test('transpose and permute', () => {
  for (const seed of [3, 4]) {
    gradCheck('transpose', [{ shape: [2, 3, 4] }], ([x]) => T.transpose(x!, 0, 2), permuteRef([2, 3, 4], [2, 1, 0]), seed);
    gradCheck('transpose -1 -2', [{ shape: [2, 3, 4] }], ([x]) => T.transpose(x!, -1, -2), permuteRef([2, 3, 4], [0, 2, 1]), seed);
    gradCheck('permute', [{ shape: [2, 3, 4, 5] }], ([x]) => T.permute(x!, [0, 2, 3, 1]), permuteRef([2, 3, 4, 5], [0, 2, 3, 1]), seed);
  }
});

test('slice with negative and clamped bounds', () => {
  const shape = [3, 5, 2];
  const sliceRef = (dim: number, s: number, e: number): Ref => ([x]) => {
    const outShape = [...shape];
    outShape[dim] = e - s;
    const out = new Float64Array(outShape.reduce((a, b) => a * b, 1));
    for (let i = 0; i < out.length; i++) {
      const c = coords(i, outShape);
      c[dim]! += s;
      out[i] = x![flat(c, shape)]!;
    }
    return out;
  };
  for (const seed of [5, 6]) {
    gradCheck('slice dim 1', [{ shape }], ([x]) => T.slice(x!, 1, 1, 4), sliceRef(1, 1, 4), seed);
    gradCheck('slice dim -3 negative', [{ shape }], ([x]) => T.slice(x!, -3, -2), sliceRef(0, 1, 3), seed);
    gradCheck('slice clamped', [{ shape }], ([x]) => T.slice(x!, 2, 1, 99), sliceRef(2, 1, 2), seed);
  }
});

test('concat along each dim', () => {
  for (const dim of [0, 1, 2]) {
    const a = [2, 3, 4];
    const b = [...a];
    b[dim] = 2;
    const outShape = [...a];
    outShape[dim] = a[dim]! + 2;
    const ref: Ref = ([x, y]) => {
      const out = new Float64Array(outShape.reduce((p, q) => p * q, 1));
      for (let i = 0; i < out.length; i++) {
        const c = coords(i, outShape);
        if (c[dim]! < a[dim]!) out[i] = x![flat(c, a)]!;
        else {
          c[dim]! -= a[dim]!;
          out[i] = y![flat(c, b)]!;
        }
      }
      return out;
    };
    for (const seed of [7, 8]) gradCheck(`concat dim ${dim}`, [{ shape: a }, { shape: b }], ([x, y]) => T.concat([x!, y!], dim), ref, seed);
  }
  T.tidy(() => assert.throws(() => T.concat([T.zeros([2, 3]), T.zeros([3, 3])], 1), /concat: shapes \[2, 3\] and \[3, 3\] differ outside dim 1/));
});

test('expand broadcasts and sums the gradient back', () => {
  const ref: Ref = ([x]) => {
    const out = new Float64Array(2 * 3 * 4);
    for (let i = 0; i < out.length; i++) {
      const [, j] = coords(i, [2, 3, 4]);
      out[i] = x![j!]!; // x [3, 1]: row j, broadcast over the batch and the last dim
    }
    return out;
  };
  for (const seed of [9, 10]) gradCheck('expand', [{ shape: [3, 1] }], ([x]) => T.expand(x!, [2, 3, 4]), ref, seed);
});

test('cast round trips and carries gradients back to the source dtype', () => {
  T.tidy(() => {
    const x = T.tensor([1.0, -2.5, 3.140625, 65504], undefined, { requiresGrad: true });
    const h = T.cast(x, 'float16');
    assert.equal(h.dtype, 'float16');
    assert.deepEqual([...h.toFloat32Array()], [1, -2.5, 3.140625, 65504]);
    const y = T.cast(T.mul(h, T.cast(T.tensor([2, 2, 2, 2]), 'float16')), 'float32');
    T.sum(y).backward();
    assert.equal(x.grad!.dtype, 'float32');
    assert.deepEqual([...x.grad!.toFloat32Array()], [2, 2, 2, 2]);
    const i = T.cast(T.tensor([1.9, -2.9, 7]), 'int32');
    assert.deepEqual([...i.toInt32Array()], [1, -2, 7]);
  });
});
