// Gradients added where they are gathered (BackwardFn's `into`): where an intermediate tensor feeds
// several ops (q, k and v; a base layer and its LoRA branch; the residual stream and its norm), each
// backward after the first adds its gradient into the one gathered so far (a GEMM with beta = 1,
// the dropout or RMSNorm kernel adding), instead of the engine adding a new tensor. Checked against
// float64 references and finite differences, with the engine's own additions counted: none left.
// And where one storage is two gradients (add passes its dy to both inputs), a sum never writes
// into it while the other is still to be used.

import test from 'node:test';
import assert from 'node:assert/strict';
import { cpuBackend } from '../../src/backends/cpu/index.ts';
import { loraBranch } from '../../src/peft/lora-branch.ts';
import { DropoutStream, Rng, add, concat, linear, rmsNorm, scale, tensor } from '../../src/tensor/index.ts';
import { gradCheck, rmsNormRef } from './gradcheck.ts';
import { dropoutScale, dropoutThreshold, philox4x32 } from '../../src/backends/cpu/dropout.ts';

const [ROWS, IN, OUT, R] = [5, 8, 6, 3];
const EPS = 1e-6;

/** Runs `fn` and returns how many times the CPU backend's axpy (the engine's addition) ran. */
function countingAxpy(fn: () => void): number {
  const be = cpuBackend;
  const axpy = be.axpy;
  let n = 0;
  be.axpy = (...args) => (n++, axpy.apply(be, args));
  try {
    fn();
  } finally {
    be.axpy = axpy;
  }
  return n;
}

/** x [ROWS, IN] times w [n, IN] transposed, float64. */
function matmulT(x: Float64Array, w: Float64Array, n: number): Float64Array {
  const out = new Float64Array(ROWS * n);
  for (let r = 0; r < ROWS; r++) {
    for (let o = 0; o < n; o++) {
      let s = 0;
      for (let i = 0; i < IN; i++) s += x[r * IN + i]! * w[o * IN + i]!;
      out[r * n + o] = s;
    }
  }
  return out;
}

test('q, k and v over one input: each linear adds its dx into the gathered gradient', () => {
  // h = x (through an op, so its gradient is gathered, not a leaf's); out = q + k + v
  const ref = ([x, wq, wk, wv]: Float64Array[]): Float64Array => {
    const [q, k, v] = [wq!, wk!, wv!].map((w) => matmulT(x!, w, IN));
    return q!.map((e, i) => e + k![i]! + v![i]!);
  };
  const adds = countingAxpy(() =>
    gradCheck('qkv', [{ shape: [ROWS, IN] }, { shape: [IN, IN] }, { shape: [IN, IN] }, { shape: [IN, IN] }], ([x, wq, wk, wv]) => {
      const h = scale(x!, 1);
      return add(linear(h, wq!), add(linear(h, wk!), linear(h, wv!)));
    }, ref, 1),
  );
  assert.equal(adds, 0, 'the engine added nothing');
});

test('the residual stream and its RMSNorm: the norm kernel adds its dx into the residual gradient', () => {
  const norm = rmsNormRef(ROWS, IN, EPS);
  const ref = ([x, w, wq]: Float64Array[]): Float64Array => {
    const q = matmulT(norm([x!, w!]), wq!, IN);
    return x!.map((h, i) => h + q[i]!);
  };
  const adds = countingAxpy(() =>
    gradCheck('residual', [{ shape: [ROWS, IN] }, { shape: [IN], kind: 'positive' }, { shape: [IN, IN] }], ([x, w, wq]) => {
      const h = scale(x!, 1);
      // (scaled by 1 so that the residual's dy is the engine's own, not the caller's seed, which must not be written)
      return scale(add(h, linear(rmsNorm(h, w!, EPS), wq!)), 1);
    }, ref, 2),
  );
  assert.equal(adds, 0, 'the engine added nothing');
});

for (const p of [0, 0.4]) {
  test(`a base layer, its LoRA branch (dropout ${p}) and a sibling layer over one input: every dx added where it is gathered`, () => {
    const rng = new Rng(9);
    // the branch's dropout factors: the stream's first call
    const twin = Rng.fromState(rng.getState());
    const [k0, k1] = [twin.nextUint32(), twin.nextUint32()];
    const c = new Uint32Array(4);
    const mask = Float64Array.from({ length: ROWS * IN }, (_, i) => {
      if (p === 0) return 1;
      c.set([Math.floor(i / 4), 0, 0, 0]);
      philox4x32(c, k0, k1);
      return c[i % 4]! < dropoutThreshold(p) ? 0 : dropoutScale(p);
    });
    const SCALING = 0.5;
    // out = [x W^T + s dropout(x) A^T B^T | x V^T]
    const ref = ([x, w, a, b, v]: Float64Array[]): Float64Array => {
      const base = matmulT(x!, w!, OUT);
      const z = matmulT(x!.map((e, i) => e * mask[i]!), a!, R);
      const side = matmulT(x!, v!, OUT);
      const out = new Float64Array(2 * ROWS * OUT);
      for (let r = 0; r < ROWS; r++) {
        for (let o = 0; o < OUT; o++) {
          let s = base[r * OUT + o]!;
          for (let k = 0; k < R; k++) s += SCALING * z[r * R + k]! * b![o * R + k]!;
          out[r * OUT + o] = s;
          out[ROWS * OUT + r * OUT + o] = side[r * OUT + o]!;
        }
      }
      return out;
    };
    const adds = countingAxpy(() =>
      gradCheck(`lora p=${p}`, [{ shape: [ROWS, IN] }, { shape: [OUT, IN] }, { shape: [R, IN] }, { shape: [OUT, R] }, { shape: [OUT, IN] }], ([x, w, a, b, v]) => {
        const h = scale(x!, 1);
        const lora = loraBranch(linear(h, w!), h, a!, b!, { scaling: SCALING, p, stream: new DropoutStream(rng) });
        const side = linear(h, v!);
        return concat([lora, side], 0);
      }, ref, 3),
    );
    assert.equal(adds, 0, 'the engine added nothing');
  });
}

test('a gradient passed to two inputs (add) is not written by a sum while the other still needs it', () => {
  // x (leaf, or through an op) feeds out = x + (x Wq^T + x Wk^T): add hands one dy to x and to the
  // inner sum, whose linears later add their dx to x's gradient
  const ref = ([x, wq, wk]: Float64Array[]): Float64Array => {
    const [q, k] = [wq!, wk!].map((w) => matmulT(x!, w, IN));
    return x!.map((e, i) => e + q![i]! + k![i]!);
  };
  // x + (x + x Wq^T): both gradients of x from the inner add are that one shared dy (a copy is summed)
  const ref2 = ([x, wq]: Float64Array[]): Float64Array => {
    const q = matmulT(x!, wq!, IN);
    return x!.map((e, i) => 2 * e + q[i]!);
  };
  for (const through of [false, true]) {
    const what = through ? 'through an op' : 'a leaf';
    gradCheck(`x + (q + k), x ${what}`, [{ shape: [ROWS, IN] }, { shape: [IN, IN] }, { shape: [IN, IN] }], ([x, wq, wk]) => {
      const h = through ? scale(x!, 1) : x!;
      return add(h, add(linear(h, wq!), linear(h, wk!)));
    }, ref, 4);
    gradCheck(`x + (x + q), x ${what}`, [{ shape: [ROWS, IN] }, { shape: [IN, IN] }], ([x, wq]) => {
      const h = through ? scale(x!, 1) : x!;
      return add(h, add(h, linear(h, wq!)));
    }, ref2, 5);
  }
});

test("a parameter's grad is added into where it is kept: a weight used twice, and a second backward (accumulated micro-batches)", () => {
  // out = x W^T + y W^T
  const ref = ([x, y, w]: Float64Array[]): Float64Array => {
    const [a, b] = [matmulT(x!, w!, OUT), matmulT(y!, w!, OUT)];
    return a.map((e, i) => e + b[i]!);
  };
  const adds = countingAxpy(() =>
    gradCheck('shared weight', [{ shape: [ROWS, IN] }, { shape: [ROWS, IN] }, { shape: [OUT, IN] }], ([x, y, w]) => add(linear(x!, w!), linear(y!, w!)), ref, 5),
  );
  assert.equal(adds, 0, 'the engine added nothing');
  const rng = new Rng(6);
  const values = (n: number) => Float32Array.from({ length: n }, () => rng.normal());
  const w = tensor(values(OUT * IN), [OUT, IN], { requiresGrad: true });
  const [x1, x2] = [tensor(values(ROWS * IN), [ROWS, IN]), tensor(values(ROWS * IN), [ROWS, IN])];
  const g = tensor(values(ROWS * OUT), [ROWS, OUT]);
  linear(x1, w).backward(g);
  const first = w.grad!;
  linear(x2, w).backward(g);
  assert.equal(w.grad, first, 'the same grad tensor, added into');
  // dW = g^T x1 + g^T x2
  const want = new Float64Array(OUT * IN);
  const [gv, a, b] = [g, x1, x2].map((t) => t.toFloat32Array());
  for (let o = 0; o < OUT; o++) for (let i = 0; i < IN; i++) for (let r = 0; r < ROWS; r++) want[o * IN + i] += gv![r * OUT + o]! * (a![r * IN + i]! + b![r * IN + i]!);
  w.grad!.toFloat32Array().forEach((v, i) => assert.ok(Math.abs(v - want[i]!) < 1e-5, `dW[${i}] ${v} against ${want[i]}`));
});
