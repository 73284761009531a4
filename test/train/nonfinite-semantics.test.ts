// Non-finite gradients under a finite loss. XTuner trains with mmengine's AmpOptimWrapper
// (loss_scale='dynamic'): AmpOptimWrapper.step unscales, clips, then GradScaler.step(optimizer),
// which skips optimizer.step() when the unscaled gradients hold inf/NaN; the weights stay finite.
// Here the step's optimizer update runs on the device before its norm is read back, so the run
// stops at that iteration as it does on a non-finite loss: nothing is saved after it, and the
// checkpoint the error names as the last good one is one from before it.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { XtunerError } from '../../src/errors.ts';
import { hostToFloat32 } from '../../src/io/safetensors.ts';
import { loadCheckpoint } from '../../src/train/checkpoint.ts';
import { trainerFixture } from './fixture.ts';

const { config, workDir, run } = trainerFixture('xtuner-nonfinite-sem-');

test('the checkpoint a NaN stop names as "the last good checkpoint" holds finite weights', async () => {
  // full fine-tuning at lr 100: iteration 2 has a finite loss (~1e5) and non-finite gradients; iteration 3's loss is NaN
  const cfg = config({ lora: null, max_iters: 4, accumulative_counts: 1, save_steps: 1, warmup_ratio: 0, lr: 100 });
  const dir = workDir('nan-grads');
  let good: string | null = null;
  await assert.rejects(run(cfg, dir), (err: unknown) => {
    assert.ok(err instanceof XtunerError);
    good = /the last good checkpoint is (\S+)/.exec(err.hint ?? '')?.[1] ?? null;
    return true;
  });
  assert.ok(good, 'the hint names a checkpoint');
  const ck = loadCheckpoint(good!);
  const bad: string[] = [];
  for (const [name, t] of ck.trainable) {
    const n = hostToFloat32(t).filter((x) => !Number.isFinite(x)).length;
    if (n > 0) bad.push(`${name}: ${n}`);
  }
  assert.deepEqual(bad, [], `${path.basename(good!)} holds non-finite weights`);
});

test('a non-finite gradient norm under a finite loss stops the run at that iteration, naming the norm', async () => {
  const cfg = config({ lora: null, max_iters: 4, accumulative_counts: 1, save_steps: 100, warmup_ratio: 0, lr: 100 });
  const dir = workDir('nan-norm');
  await assert.rejects(run(cfg, dir), (err: unknown) => err instanceof XtunerError && /the gradient norm is (NaN|Infinity) at iteration 2/.test(err.message));
  // the log's last line is of iteration 1: the spoilt step is neither logged nor saved
  const lines = fs.readFileSync(path.join(dir, 'logs.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { iter?: number });
  assert.deepEqual(lines.filter((l) => l.iter !== undefined).map((l) => l.iter), [1]);
});
