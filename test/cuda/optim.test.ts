// CUDA optimizer kernels against the CPU backend: the AdamW step over many tensors in one call
// (sizes on both sides of the kernels' 16384-element chunks, each state in its own dtype, mixed step
// counts, with and without a gradient multiplier read on the device), the global norm with its clip
// coefficient (non-finite norms too), and the traffic of a whole clipped step through AdamW: three
// launches, one upload (the step state: the tables stay on the device), no memset, nothing read back.

import test from 'node:test';
import assert from 'node:assert/strict';
import type { AdamWHyper, AdamWTensor } from '../../src/backends/backend.ts';
import { cudaBackend } from '../../src/backends/cuda/index.ts';
import { adamwStateWords } from '../../src/backends/backend.ts';
import { AdamW } from '../../src/optim/adamw.ts';
import { clipCoefficient } from '../../src/optim/clip.ts';
import { hostToF32, type FloatDType } from '../../src/tensor/dtype.ts';
import { readScalars, tensor, tidy } from '../../src/tensor/index.ts';
import { compareWithCpu, SKIP, tolFor, uniform, type Buf } from './helpers.ts';

const FLOATS: FloatDType[] = ['float32', 'bfloat16', 'float16'];
const POISON = process.env['XTUNER_POISON_UNINIT'] === '1';
const COMBOS: AdamWTensor<unknown>['dtypes'][] = [
  { param: 'float32', grad: 'float32', expAvg: 'float32', expAvgSq: 'float32' },
  { param: 'bfloat16', grad: 'bfloat16', expAvg: 'float32', expAvgSq: 'float32' },
  { param: 'float32', grad: 'bfloat16', expAvg: 'bfloat16', expAvgSq: 'float32' },
  { param: 'float16', grad: 'float16', expAvg: 'float16', expAvgSq: 'float16' },
];
/** Around the kernels' chunk (OPT_CHUNK = 16384 elements), and several chunks. */
const SIZES = [1, 1000, 16_384, 16_385, 100_003];
const HYPERS: AdamWHyper[] = [
  { lr: 2e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 },
  { lr: 1e-3, beta1: 0.8, beta2: 0.95, eps: 1e-6, weightDecay: 0.1 },
];
/**
 * The norm: a float32 sum in chunks and a tree on CUDA, a float64 sum on the CPU, ~1e-7 relative
 * apart at these sizes on the emulator (tight on purpose: leaving out one element per 16384-element
 * chunk moves the norm by 3e-5). The coefficient is float32 arithmetic on that norm on both.
 */
const NORM_TOL = { abs: 0, rel: 4e-6 };

test('adamwStep: tensors of mixed sizes and dtypes in one call, with and without a device-side gradient scale', { skip: SKIP }, () => {
  // every (dtypes, size) pair once, 20 tensors, each at its own step count
  const tensors = COMBOS.flatMap((dtypes, c) => SIZES.map((n, k) => ({ dtypes, n, step: 1 + ((c * SIZES.length + k) * 7) % 40 })));
  const bufs: Record<string, Buf> = { scale: { dtype: 'float32', data: Float32Array.of(0.37) } };
  tensors.forEach(({ dtypes: d, n }, i) => {
    bufs[`p${i}`] = { dtype: d.param, data: uniform(d.param, n) };
    bufs[`g${i}`] = { dtype: d.grad, data: uniform(d.grad, n, -0.1, 0.1) };
    bufs[`m${i}`] = { dtype: d.expAvg, data: uniform(d.expAvg, n, -0.01, 0.01) };
    bufs[`v${i}`] = { dtype: d.expAvgSq, data: uniform(d.expAvgSq, n, 0, 1e-4) };
  });
  const outputs = tensors.flatMap((_, i) => [`p${i}`, `m${i}`, `v${i}`]);
  // the step state: the furthest tensor's step, the others lag behind it
  const STEP = Math.max(...tensors.map((t) => t.step));
  for (const h of HYPERS) bufs[`state ${h.lr}`] = { dtype: 'int32', data: adamwStateWords({ ...h, step: STEP }) };
  for (const h of HYPERS) {
    for (const scaled of [false, true]) {
      compareWithCpu(
        `adamwStep lr=${h.lr} wd=${h.weightDecay}${scaled ? ' gradScale 0.37' : ''}`,
        bufs,
        outputs,
        // each output at its own dtype's tolerance: both compute in float32 or better and round once
        (name) => tolFor(bufs[name]!.dtype as FloatDType, true),
        (b, s) =>
          b.adamwStep(
            tensors.map((t, i) => ({
              param: s[`p${i}`]!, grad: s[`g${i}`]!, expAvg: s[`m${i}`]!, expAvgSq: s[`v${i}`]!, size: t.n, dtypes: t.dtypes, stepLag: STEP - t.step,
            })),
            s[`state ${h.lr}`]!,
            scaled ? s['scale']! : null,
          ),
      );
    }
  }
});

test('gradNormClip: the global norm of tensors of mixed sizes and dtypes, and the clip coefficient', { skip: SKIP }, () => {
  const spans = [0, 1, 257, 16_384, 16_385, 1_000_001].map((n, k) => ({ n, dtype: FLOATS[k % FLOATS.length]! }));
  const out = { norm: { dtype: 'float32', size: 1 }, coef: { dtype: 'float32', size: 1 } } as const;
  const bufs: Record<string, Buf> = { ...out };
  spans.forEach(({ n, dtype }, i) => (bufs[`x${i}`] = { dtype, data: uniform(dtype, n) }));
  for (const maxNorm of [1, 1e6]) { // clipped (norm ~1150), and not
    compareWithCpu(`gradNormClip maxNorm=${maxNorm}`, bufs, ['norm', 'coef'], NORM_TOL, (b, s) =>
      b.gradNormClip(spans.map(({ n, dtype }, i) => ({ x: s[`x${i}`]!, size: n, dtype })), maxNorm, s['norm']!, s['coef']!),
    );
  }
  // nothing to sum: 0 and 1; non-finite norms: NaN -> coef 1, inf -> coef 0 on both
  compareWithCpu('gradNormClip of no tensors', { ...out }, ['norm', 'coef'], NORM_TOL, (b, s) => b.gradNormClip([], 1, s['norm']!, s['coef']!));
  for (const bad of [NaN, Infinity]) {
    const bufs = { ...out, x: { dtype: 'float32', data: Float32Array.of(1, bad, 2) } } as const;
    const gpu = compareWithCpu(`gradNormClip with ${bad}`, bufs, ['norm', 'coef'], NORM_TOL, (b, s) =>
      b.gradNormClip([{ x: s['x']!, size: 3, dtype: 'float32' }], 1, s['norm']!, s['coef']!),
    );
    assert.deepEqual([...gpu['norm']!, ...gpu['coef']!], [bad, Number.isNaN(bad) ? 1 : 0]);
  }
});

test('a clipped AdamW step over 40 tensors: three launches, one upload (the step state), no memset, nothing read back', { skip: SKIP }, () => {
  const be = cudaBackend();
  tidy(() => {
    const params = Array.from({ length: 40 }, (_, i) => {
      const dtype = FLOATS[i % 2]!; // float32 and bfloat16 parameters (and grads), float32 moments
      return tensor(uniform(dtype, 1 + i * 997), [1 + i * 997], { dtype, device: 'cuda', requiresGrad: true });
    });
    const opt = new AdamW(params.map((p, i) => [`p${i}`, p] as const), { lr: 1e-3 });
    for (let step = 1; step <= 3; step++) {
      let sum = 0;
      for (const p of params) {
        const g = uniform(p.dtype, p.size, -0.1, 0.1);
        for (const x of hostToF32(g, p.dtype)) sum += x * x;
        // the gradients where they were (as a step whose allocations repeat): the tables stay valid
        if (p.grad) p.grad.assign(g);
        else p.grad = tensor(g, p.shape, { dtype: p.dtype, device: 'cuda' });
      }
      be.takeCounters();
      const clip = clipCoefficient(params, 1);
      opt.step(clip.coef);
      const c = be.takeCounters();
      // step 1 zero-fills the moments (alloc) and uploads the two tables; from step 2 on, the step is
      // this: one upload, AdamW's step state (XTUNER_POISON_UNINIT=1 adds its fills of the
      // uninitialised norm and coefficient)
      if (step >= 2) {
        assert.deepEqual(
          { launches: c.launches, byKernel: Object.fromEntries(c.byKernel), htod: c.htod, dtoh: c.dtoh, syncs: c.syncs, memsets: c.memsets, gemms: c.gemms },
          { launches: 3, byKernel: { sum_squares_multi: 1, grad_norm_clip: 1, adamw_multi: 1 }, htod: 1, dtoh: 0, syncs: 0, memsets: POISON ? 2 : 0, gemms: 0 },
        );
      }
      const [norm, coef] = readScalars([clip.norm, clip.coef]);
      assert.ok(Math.abs(norm! - Math.sqrt(sum)) <= NORM_TOL.rel * Math.sqrt(sum), `step ${step}: norm ${norm} vs ${Math.sqrt(sum)}`);
      assert.equal(coef, Math.fround(1 / Math.fround(norm! + Math.fround(1e-6))));
      clip.norm.dispose();
      clip.coef.dispose();
    }
    assert.deepEqual(opt.scalars().steps, Object.fromEntries(params.map((_, i) => [`p${i}`, 3])));
    opt.dispose();
  });
});
