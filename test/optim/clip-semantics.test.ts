// clip_grad_norm_ (XTuner's clip_grad) as torch/nn/utils/clip_grad.py computes it:
// clip_coef = max_norm / (total_norm + 1e-6); clip_coef_clamped = torch.clamp(clip_coef, max=1.0);
// every gradient *= clip_coef_clamped. (A NaN norm: torch multiplies by NaN, here the gradients are
// left unscaled; the trainer stops at such a step either way, see test/train/nonfinite-semantics.)
import test from 'node:test';
import assert from 'node:assert/strict';
import { clipCoefficient } from '../../src/optim/clip.ts';
import { readScalars, tensor } from '../../src/tensor/index.ts';

const param = (v: number[]) => tensor(Float32Array.from(v), [v.length], { requiresGrad: true });

test('finite gradients, clipped and not: coef = min(1, max_norm / (norm + 1e-6)) over all of them', () => {
  const a = param([0, 0]);
  const b = param([0]);
  a.grad = tensor(Float32Array.of(6, 8), [2]); // norm 10 over both
  b.grad = tensor(Float32Array.of(0), [1]);
  const { norm, coef } = clipCoefficient([a, b], 2.5);
  const [n, c] = readScalars([norm, coef]);
  assert.equal(n, 10);
  assert.equal(c, Math.fround(2.5 / (10 + 1e-6)));
});
