// Gradient accumulation against mmengine's OptimWrapper (mmengine/optim/optimizer/optimizer_wrapper.py)
// on a fresh run: initialize_count_status(model, 0, max_iters) sets _divisible_counts =
// max // acc * acc and _remainder_counts = max - _divisible_counts; scale_loss divides by acc
// while _inner_count < _divisible_counts, else by _remainder_counts (acc == 1: by 1); backward
// increments _inner_count; should_update: _inner_count % acc == 0 or _inner_count == max.
import test from 'node:test';
import assert from 'node:assert/strict';
import { Accumulation } from '../../src/train/accumulation.ts';

function mmengine(acc: number, max: number): Array<{ factor: number; step: boolean }> {
  const divisible = Math.floor(max / acc) * acc;
  const remainder = max - divisible;
  const out = [];
  for (let inner = 0; inner < max; ) {
    const factor = acc === 1 ? 1 : inner < divisible ? acc : remainder;
    inner++; // backward
    out.push({ factor, step: inner % acc === 0 || inner === max });
  }
  return out;
}

test('loss factor and optimizer steps equal OptimWrapper.scale_loss / should_update, with a short last window', () => {
  for (const acc of [1, 2, 3, 16]) {
    for (const max of [1, 2, 5, 16, 17, 33, 50]) {
      const a = new Accumulation(acc, max);
      const got = Array.from({ length: max }, (_, i) => ({ factor: a.lossFactor(i), step: a.stepsAfter(i) }));
      assert.deepEqual(got, mmengine(acc, max), `acc ${acc} max ${max}`);
      // a checkpoint after `done` iterations holds gradients exactly when the last iteration did not step
      for (let done = 0; done <= max; done++) assert.equal(a.pendingAfter(done), done > 0 && !got[done - 1]!.step);
    }
  }
});
