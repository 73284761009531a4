import test from 'node:test';
import assert from 'node:assert/strict';
import { XtunerError } from '../../src/errors.ts';
import { adamwBiasTerms } from '../../src/backends/cpu/optim.ts';
import { AdamW } from '../../src/optim/adamw.ts';
import { clipCoefficient, clipGradNorm, gradNorm } from '../../src/optim/clip.ts';
import { f32ToHalf, halfToF32, readScalars, Rng, tensor, type FloatDType, type Tensor } from '../../src/tensor/index.ts';
import { assertClose, assertCloseRel, readExpected } from '../peft/helpers.ts';

/** float32 rounding of a few operations on values of order 1e-2. */
const F32_TOL = 1e-7;

/** One bfloat16 ulp relative (2^-7): a weight rounded once more or less. */
const BF16_TOL = 2 ** -7;

function param(values: number[]): Tensor {
  return tensor(Float32Array.from(values), [values.length], { requiresGrad: true });
}

function randomValues(rng: Rng, n: number, sd: number): Float32Array {
  return Float32Array.from({ length: n }, () => sd * rng.normal());
}

/** A trainable tensor of `dtype` with these values (rounded to it). */
function paramOf(values: Float32Array, dtype: FloatDType): Tensor {
  return tensor(values, [values.length], { dtype, requiresGrad: true });
}

/** Values as `dtype` stores them. */
function roundTo(values: Float32Array, dtype: FloatDType): Float32Array {
  return dtype === 'float32' ? values : halfToF32(f32ToHalf(values, dtype), dtype);
}

/**
 * The per-tensor CPU kernel that the multi-tensor step replaced, as it was: float64 arithmetic,
 * results stored as float32 (moments) and as the parameter's dtype; p, m, v updated in place.
 */
function perTensorStep(
  p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, dtype: FloatDType,
  h: { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number }, step: number,
): void {
  const decay = 1 - h.lr * h.weightDecay;
  const stepSize = h.lr / (1 - h.beta1 ** step);
  const bc2Sqrt = Math.sqrt(1 - h.beta2 ** step);
  for (let i = 0; i < p.length; i++) {
    const mi = h.beta1 * m[i]! + (1 - h.beta1) * g[i]!;
    const vi = h.beta2 * v[i]! + (1 - h.beta2) * g[i]! * g[i]!;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i]! * decay - (stepSize * mi) / (Math.sqrt(vi) / bc2Sqrt + h.eps);
  }
  p.set(roundTo(p, dtype));
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

test('beginStep + queueStep is step(); zeroGrad(false) zeroes in place, keeping the gradient storage', () => {
  const grads = [[0.3, -0.1, 0.2], [0.1, 0.1, -0.4], [-0.2, 0.5, 0.1]];
  const run = (split: boolean) => {
    const p = param([1, 2, 3]);
    const opt = new AdamW([['w', p]], { lr: 0.01 });
    for (const g of grads) {
      p.grad = tensor(Float32Array.from(g), [3]);
      if (split) {
        opt.beginStep();
        opt.queueStep();
      } else opt.step();
      const held = p.grad;
      opt.zeroGrad(!split);
      if (split) {
        assert.equal(p.grad, held, 'the same gradient tensor');
        assert.deepEqual([...p.grad!.toFloat32Array()], [0, 0, 0]);
      } else assert.equal(p.grad, null);
    }
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

test('one multi-tensor step equals the old per-tensor steps bit for bit (mixed sizes, dtypes, step counts)', () => {
  const rng = new Rng(3);
  const sizes = [1, 7, 300, 20_000];
  const dtypes: FloatDType[] = ['float32', 'bfloat16', 'float32', 'bfloat16'];
  const h = { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-6, weightDecay: 0.1 };
  const params = sizes.map((n, k) => [`p${k}`, paramOf(randomValues(rng, n, 1), dtypes[k]!)] as const);
  const ref = params.map(([, p]) => ({ p: p.toFloat32Array(), m: new Float32Array(p.size), v: new Float32Array(p.size), step: 0 }));
  const opt = new AdamW(params, { lr: h.lr, betas: [h.beta1, h.beta2], eps: h.eps, weightDecay: h.weightDecay });
  for (let t = 0; t < 3; t++) {
    params.forEach(([, p], k) => {
      if (t === 1 && k === 2) return void (p.grad = null); // skipped once: its step count lags the others'
      const g = roundTo(randomValues(rng, p.size, 0.1), dtypes[k]!);
      p.grad = tensor(g, p.shape, { dtype: dtypes[k]! });
      const r = ref[k]!;
      perTensorStep(r.p, g, r.m, r.v, dtypes[k]!, h, ++r.step);
    });
    opt.step();
  }
  assert.deepEqual(opt.scalars().steps, { p0: 3, p1: 3, p2: 2, p3: 3 });
  const state = new Map(opt.tensorState());
  params.forEach(([name, p], k) => {
    assert.deepEqual(p.toFloat32Array(), ref[k]!.p, `${name} (${dtypes[k]})`);
    assert.deepEqual(state.get(`exp_avg.${name}`)!.toFloat32Array(), ref[k]!.m, `exp_avg.${name}`);
    assert.deepEqual(state.get(`exp_avg_sq.${name}`)!.toFloat32Array(), ref[k]!.v, `exp_avg_sq.${name}`);
  });
});

// optim.cu computes the bias corrections on the device from the step state, by squaring in float64
// (powi, as the CPU twin), and rounds them to float32 once; before, the host passed
// fround(lr / (1 - b1 ** t)) and fround(sqrt(1 - b2 ** t)) as launch arguments. Same bits here.
test('bias corrections by squaring round to the float32 values of Math.pow, steps 1..20000', () => {
  for (const [beta1, beta2] of [[0.9, 0.999], [0.8, 0.95], [0.9, 0.95], [0.95, 0.9999]] as const) {
    for (const lr of [2e-4, 1e-3, 2e-9]) {
      const h = { lr, beta1, beta2, eps: 1e-8, weightDecay: 0 };
      for (let t = 1; t <= 20_000; t++) {
        const { stepSize, bc2Sqrt } = adamwBiasTerms(h, t);
        if (Math.fround(stepSize) !== Math.fround(lr / (1 - beta1 ** t)) || Math.fround(bc2Sqrt) !== Math.fround(Math.sqrt(1 - beta2 ** t))) {
          assert.fail(`betas ${beta1}, ${beta2} lr ${lr} step ${t}: ${stepSize}, ${bc2Sqrt}`);
        }
      }
    }
  }
});

test('clipping fused into the step (coefficient on the device) equals clipGradNorm in place, then the step', () => {
  // float32 gradients: the same bits (both round g * coef to float32 once); bfloat16 gradients were
  // rounded to bf16 after scaling in place, the fused step keeps g * coef in float32: within a bf16 ulp
  for (const dtype of ['float32', 'bfloat16'] as FloatDType[]) {
    const run = (fused: boolean) => {
      const rng = new Rng(5);
      const params = [3, 5000, 40].map((n, k) => [`p${k}`, paramOf(randomValues(rng, n, 1), dtype)] as const);
      const opt = new AdamW(params, { lr: 1e-3, weightDecay: 0.01 });
      const norms: number[] = [];
      const grads: Float32Array[] = [];
      for (let t = 0; t < 3; t++) {
        for (const [, p] of params) p.grad = tensor(randomValues(rng, p.size, 0.5), p.shape, { dtype }); // norm ~35: clipped
        const list = params.map(([, p]) => p);
        if (fused) {
          const { norm, coef } = clipCoefficient(list, 1);
          opt.step(coef);
          norms.push(readScalars([norm])[0]!);
        } else {
          norms.push(clipGradNorm(list, 1));
          opt.step();
        }
        grads.push(...list.map((p) => p.grad!.toFloat32Array()));
      }
      return { params: params.map(([, p]) => p.toFloat32Array()), moments: [...opt.tensorState()].map(([, t]) => t.toFloat32Array()), norms, grads };
    };
    const inPlace = run(false);
    const fused = run(true);
    assert.deepEqual(fused.norms, inPlace.norms);
    assert.ok(inPlace.norms.every((n) => n > 10), `norms ${inPlace.norms} should be clipped`);
    if (dtype === 'float32') {
      assert.deepEqual(fused.params, inPlace.params);
      assert.deepEqual(fused.moments, inPlace.moments);
    } else {
      fused.params.forEach((p, k) => assertCloseRel(p, inPlace.params[k]!, BF16_TOL, `bf16 param ${k}`));
    }
    // the fused path leaves the gradients as backward made them
    fused.grads.forEach((g, k) => assert.ok(g.some((x, i) => x !== inPlace.grads[k]![i]), `grad ${k} should differ from the clipped one`));
  }
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
