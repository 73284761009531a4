// Elementwise ops: forward against float64 references, backward against finite differences,
// numpy broadcasting, and the activations.

import test from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.ts';
import { gradCheck, type Ref } from './gradcheck.ts';

/** Reference broadcasting: out index -> index into a tensor of `shape` aligned on the right. */
function broadcastIndex(outShape: number[], shape: number[]): (i: number) => number {
  const off = outShape.length - shape.length;
  return (i) => {
    let idx = 0;
    let stride = 1;
    let rest = i;
    for (let d = outShape.length - 1; d >= 0; d--) {
      const coord = rest % outShape[d]!;
      rest = Math.floor(rest / outShape[d]!);
      if (d >= off) {
        const n = shape[d - off]!;
        if (n !== 1) idx += coord * stride;
        stride *= n;
      }
    }
    return idx;
  };
}

function binaryRef(a: number[], b: number[], out: number[], f: (x: number, y: number) => number): Ref {
  const ia = broadcastIndex(out, a);
  const ib = broadcastIndex(out, b);
  const n = out.reduce((p, q) => p * q, 1);
  return ([x, y]) => {
    const o = new Float64Array(n);
    for (let i = 0; i < n; i++) o[i] = f(x![ia(i)]!, y![ib(i)]!);
    return o;
  };
}

const CASES: [number[], number[], number[]][] = [
  [[3, 4], [3, 4], [3, 4]],
  [[2, 3, 4], [4], [2, 3, 4]],
  [[2, 1, 4], [3, 1], [2, 3, 4]],
  [[5], [2, 1], [2, 5]],
  [[2, 3], [], [2, 3]],
];

test('add, sub, mul, div with broadcasting: values and gradients', () => {
  const ops: [string, (a: T.Tensor, b: T.Tensor) => T.Tensor, (x: number, y: number) => number][] = [
    ['add', T.add, (x, y) => x + y],
    ['sub', T.sub, (x, y) => x - y],
    ['mul', T.mul, (x, y) => x * y],
    ['div', T.div, (x, y) => x / y],
  ];
  for (const [name, op, f] of ops) {
    for (const [a, b, out] of CASES) {
      for (const seed of [1, 2]) {
        gradCheck(`${name} ${JSON.stringify([a, b])}`, [{ shape: a }, { shape: b, kind: name === 'div' ? 'positive' : 'normal' }], ([x, y]) => op(x!, y!), binaryRef(a, b, out, f), seed);
      }
    }
  }
});

test('broadcast shapes that do not fit are a clear error', () => {
  T.tidy(() => {
    assert.throws(() => T.add(T.zeros([2, 3]), T.zeros([4])), /add: shapes \[2, 3\] and \[4\] do not broadcast/);
  });
});

test('mixed float dtypes promote to float32 and gradients come back in each input dtype', () => {
  T.tidy(() => {
    const a = T.tensor([1.5, -2, 3], undefined, { requiresGrad: true });
    const b = T.cast(T.tensor([2, 4, 0.5]), 'bfloat16');
    b.requiresGrad = true;
    const y = T.mul(a, b);
    assert.equal(y.dtype, 'float32');
    assert.deepEqual([...y.toFloat32Array()], [3, -8, 1.5]);
    T.sum(y).backward();
    assert.deepEqual([...a.grad!.toFloat32Array()], [2, 4, 0.5]);
    assert.equal(b.grad!.dtype, 'bfloat16');
    assert.deepEqual([...b.grad!.toFloat32Array()], [1.5, -2, 3]);
  });
});

function pointwiseRef(f: (x: number) => number): Ref {
  return ([x]) => x!.map(f);
}

function erf64(x: number): number {
  // independent of the kernel's erf: Simpson's rule on 2/sqrt(pi) * exp(-t^2) over [0, x]
  const n = 2000;
  const h = x / n;
  let s = 1 + Math.exp(-x * x);
  for (let i = 1; i < n; i++) s += (i % 2 ? 4 : 2) * Math.exp(-((i * h) ** 2));
  return ((s * h) / 3) * (2 / Math.sqrt(Math.PI));
}

test('activations and pointwise math: values and gradients', () => {
  const sig = (x: number) => 1 / (1 + Math.exp(-x));
  const cases: [string, (x: T.Tensor) => T.Tensor, (x: number) => number, ('normal' | 'positive')?][] = [
    ['silu', T.silu, (x) => x * sig(x)],
    ['gelu', T.gelu, (x) => 0.5 * x * (1 + erf64(x / Math.SQRT2))],
    ['geluTanh', T.geluTanh, (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)))],
    ['quickGelu', T.quickGelu, (x) => x * sig(1.702 * x)],
    ['relu', T.relu, (x) => Math.max(0, x)],
    ['sigmoid', T.sigmoid, sig],
    ['tanh', T.tanh, Math.tanh],
    ['exp', T.exp, Math.exp],
    ['log', T.log, Math.log, 'positive'],
    ['sqrt', T.sqrt, Math.sqrt, 'positive'],
    ['neg', T.neg, (x) => -x],
    ['scale', (x) => T.scale(x, -2.5), (x) => -2.5 * x],
    // by a scale read on the device (not a launch constant); the scale tensor gets no gradient
    ['scale by a tensor', (x) => T.scale(x, T.tensor([-2.5])), (x) => -2.5 * x],
  ];
  for (const [name, op, f, kind] of cases) {
    for (const seed of [3, 4]) gradCheck(name, [{ shape: [4, 7], kind }], ([x]) => op(x!), pointwiseRef(f), seed);
  }
  assert.equal(T.gelu_tanh, T.geluTanh);
  T.tidy(() => assert.throws(() => T.scale(T.ones([2]), T.ones([2])), /a tensor scale must be float32 with one element/));
});

test('gelu at large |x| (erf tail) matches the reference', () => {
  T.tidy(() => {
    const xs = [-8, -4.5, -2.1, 2.05, 3.3, 6];
    const y = T.gelu(T.tensor(xs)).toFloat32Array();
    xs.forEach((x, i) => assert.ok(Math.abs(y[i]! - 0.5 * x * (1 + erf64(x / Math.SQRT2))) < 1e-6, `gelu(${x})`));
  });
});

test('swiglu = silu(gate) * up', () => {
  for (const seed of [5, 6]) {
    gradCheck('swiglu', [{ shape: [3, 10] }, { shape: [3, 10] }], ([g, u]) => T.swiglu(g!, u!), ([g, u]) => g!.map((x, i) => (x / (1 + Math.exp(-x))) * u![i]!), seed);
  }
});

test('softmax over the last dim', () => {
  const ref: Ref = ([x]) => {
    const cols = 9;
    const out = new Float64Array(x!.length);
    for (let r = 0; r < x!.length / cols; r++) {
      const row = x!.subarray(r * cols, (r + 1) * cols);
      const m = Math.max(...row);
      const e = row.map((v) => Math.exp(v - m));
      const s = e.reduce((a, b) => a + b, 0);
      e.forEach((v, c) => (out[r * cols + c] = v / s));
    }
    return out;
  };
  for (const seed of [7, 8]) gradCheck('softmax', [{ shape: [2, 3, 9] }], ([x]) => T.softmax(x!), ref, seed);
});

test('sum and mean over all, one, several and kept dims', () => {
  const shape = [2, 3, 4];
  const sumRef = (dims: number[], div = false): Ref => ([x]) => {
    const outShape = shape.map((n, d) => (dims.includes(d) ? 1 : n));
    const idx = broadcastIndex(shape, outShape);
    const out = new Float64Array(outShape.reduce((a, b) => a * b, 1));
    for (let i = 0; i < x!.length; i++) out[idx(i)]! += x![i]!;
    const count = dims.reduce((n, d) => n * shape[d]!, 1);
    return div ? out.map((v) => v / count) : out;
  };
  for (const seed of [9, 10]) {
    gradCheck('sum all', [{ shape }], ([x]) => T.sum(x!), sumRef([0, 1, 2]), seed);
    gradCheck('sum dim 1', [{ shape }], ([x]) => T.sum(x!, 1), sumRef([1]), seed);
    gradCheck('sum dims 0,2 keep', [{ shape }], ([x]) => T.sum(x!, [0, 2], true), sumRef([0, 2]), seed);
    gradCheck('mean -1', [{ shape }], ([x]) => T.mean(x!, -1), sumRef([2], true), seed);
    gradCheck('mean all', [{ shape }], ([x]) => T.mean(x!), sumRef([0, 1, 2], true), seed);
  }
  T.tidy(() => {
    assert.deepEqual(T.sum(T.zeros([2, 3, 4]), 1).shape, [2, 4]);
    assert.deepEqual(T.sum(T.zeros([2, 3, 4]), [0, 2], true).shape, [1, 3, 1]);
    assert.deepEqual(T.sum(T.zeros([2, 3])).shape, []);
  });
});
