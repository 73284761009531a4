import test from 'node:test';
import assert from 'node:assert/strict';
import { XtunerError } from '../../src/errors.ts';
import { AdamW } from '../../src/optim/adamw.ts';
import { clipGradNorm, gradNorm } from '../../src/optim/clip.ts';
import { tensor, type Tensor } from '../../src/tensor/index.ts';
import { assertClose, readExpected } from '../peft/helpers.ts';

/** float32 rounding of a few operations on values of order 1e-2. */
const F32_TOL = 1e-7;

function param(values: number[]): Tensor {
  return tensor(Float32Array.from(values), [values.length], { requiresGrad: true });
}

test("AdamW's step from PEFT's fixture: before.* + clipped grad.* -> after_adamw.*", () => {
  const lora = readExpected('lora');
  const names = lora.names().filter((n) => n.startsWith('before.')).map((n) => n.slice('before.'.length));
  assert.equal(names.length, 28);
  const params = names.map((n) => [n, tensor(lora.get(`before.${n}`), lora.shape(`before.${n}`), { requiresGrad: true })] as const);
  for (const [n, p] of params) p.grad = tensor(lora.get(`grad.${n}`), p.shape);
  const opt = new AdamW(params, { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01 });
  opt.step();
  for (const [n, p] of params) assertClose(p.toFloat32Array(), lora.get(`after_adamw.${n}`), F32_TOL, n);
});

test('AdamW by hand: decoupled decay first, bias correction, eps outside the sqrt, per-parameter steps', () => {
  const lr = 0.1, b1 = 0.9, b2 = 0.99, eps = 1e-3, wd = 0.5;
  const p = param([2, -1]);
  const q = param([1]);
  const opt = new AdamW([['p', p], ['q', q]], { lr, betas: [b1, b2], eps, weightDecay: wd });
  const grads = [[0.5, -0.25], [0.1, 0.2]];
  let ref = [2, -1];
  const m = [0, 0];
  const v = [0, 0];
  for (let t = 1; t <= 2; t++) {
    p.grad = tensor(Float32Array.from(grads[t - 1]!), [2]);
    opt.step(); // q has no gradient: untouched, its step count stays 0
    ref = ref.map((x, i) => {
      const g = grads[t - 1]![i]!;
      m[i] = b1 * m[i]! + (1 - b1) * g;
      v[i] = b2 * v[i]! + (1 - b2) * g * g;
      const mHat = m[i]! / (1 - b1 ** t);
      const vHat = v[i]! / (1 - b2 ** t);
      return x * (1 - lr * wd) - (lr * mHat) / (Math.sqrt(vHat) + eps);
    });
    assertClose(p.toFloat32Array(), ref, 1e-6, `step ${t}`);
  }
  assert.deepEqual([...q.toFloat32Array()], [1]);
  assert.deepEqual(opt.scalars().steps, { p: 2 });
  opt.zeroGrad();
  assert.equal(p.grad, null);
});

test('AdamW state round-trips: 2 steps + save/load + 2 steps == 4 steps', () => {
  const grads = [[0.3, -0.1, 0.2], [0.1, 0.1, -0.4], [-0.2, 0.5, 0.1], [0.05, -0.3, 0.3]];
  const run = (split: boolean) => {
    const p = param([1, 2, 3]);
    let opt = new AdamW([['w', p]], { lr: 0.01 });
    grads.forEach((g, i) => {
      if (split && i === 2) {
        const scalars = JSON.parse(JSON.stringify(opt.scalars()));
        const tensors = new Map([...opt.tensorState()].map(([k, t]) => [k, t.toFloat32Array()] as const));
        assert.deepEqual([...tensors.keys()], ['exp_avg.w', 'exp_avg_sq.w']);
        opt.dispose();
        opt = new AdamW([['w', p]], { lr: 0.01 });
        opt.loadState(scalars, tensors);
      }
      p.grad = tensor(Float32Array.from(g), [3]);
      opt.step();
    });
    return p.toFloat32Array();
  };
  assert.deepEqual(run(true), run(false));
});

test('clip_grad_norm_: returns the norm before clipping, scales by max_norm / (norm + 1e-6) only above max_norm', () => {
  const a = param([0, 0]);
  const b = param([0]);
  const frozen = param([9]);
  a.grad = tensor(Float32Array.of(3, 0), [2]);
  b.grad = tensor(Float32Array.of(4), [1]);
  assert.equal(gradNorm([a, b, frozen]), 5);
  assert.equal(clipGradNorm([a, b, frozen], 1), 5);
  const c = 1 / (5 + 1e-6);
  assertClose(a.grad!.toFloat32Array(), [3 * c, 0], F32_TOL, 'a');
  assertClose(b.grad!.toFloat32Array(), [4 * c], F32_TOL, 'b');
  assert.ok(Math.abs(clipGradNorm([a, b], 2) - 1) < 1e-6); // below max_norm: unchanged
  assertClose(b.grad!.toFloat32Array(), [4 * c], F32_TOL, 'b unchanged');
});

test('bad optimiser settings are refused', () => {
  const p = param([1]);
  const err = (re: RegExp) => (e: unknown) => e instanceof XtunerError && re.test(e.message);
  assert.throws(() => new AdamW([['p', p]], { lr: -1 }), err(/lr must be/));
  assert.throws(() => new AdamW([['p', p]], { lr: 1, betas: [0.9, 1] }), err(/betas\[1\] must be in \[0, 1\)/));
  assert.throws(() => new AdamW([], { lr: 1 }), err(/no parameters/));
  assert.throws(() => new AdamW([['p', p], ['p', p]], { lr: 1 }), err(/listed twice/));
  assert.throws(() => clipGradNorm([p], 0), err(/max_norm must be > 0/));
  const opt = new AdamW([['p', p]], { lr: 1 });
  assert.throws(() => opt.loadState({ lr: 1, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0, steps: { q: 1 } }, new Map()), err(/'q' is not being optimised/));
});
